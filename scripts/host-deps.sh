#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian 12 machine, and nothing that is
# already there: a JDK 17 (the tests run ZooKeeper), Maven (assembles ZooKeeper from Maven
# Central), util-linux's unshare (the tests give each member its own /etc/hosts).
# Rust (cargo, rustfmt, clippy) must be installed already. Docker is set up by scripts/docker-up.sh.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v unshare >/dev/null || missing+=(util-linux)
command -v realpath >/dev/null || missing+=(coreutils)
if [ ${#missing[@]} -gt 0 ]; then
  echo "host-deps: installing ${missing[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi
for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null || { echo "host-deps: $tool not found; install Rust with rustfmt and clippy" >&2; exit 1; }
done
