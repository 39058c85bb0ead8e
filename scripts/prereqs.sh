#!/usr/bin/env bash
# Checks everything `make demo` and `make test` need on a Debian 12 machine before the long build
# starts. What Debian's packages provide is installed (a JRE for the tests' ZooKeeper, Maven to
# assemble ZooKeeper, util-linux, jq); for the rest, one line per missing piece says what to install.
# Docker itself is installed and started by scripts/docker-up.sh.
set -euo pipefail
log() { echo "prereqs: $*" >&2; }
root=$(cd "$(dirname "$0")/.." && pwd)

# version_at_least HAVE WANT: dotted versions compared field by field
version_at_least() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1) == "$2" ]]; }

missing_packages=()
command -v java >/dev/null || missing_packages+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing_packages+=(maven)
command -v unshare >/dev/null || missing_packages+=(util-linux)
command -v jq >/dev/null || missing_packages+=(jq)
command -v openssl >/dev/null || missing_packages+=(openssl) # the image test's TLS checks
command -v strip >/dev/null || missing_packages+=(binutils) # strips the test object store's binary
if (( ${#missing_packages[@]} )); then
  log "installing from Debian: ${missing_packages[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing_packages[@]}" >/dev/null
fi

problems=()
rust_wanted=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  problems+=("Rust $rust_wanted or newer: install it with rustup, with the rustfmt and clippy components")
else
  rust_have=$(rustc --version | awk '{print $2}')
  version_at_least "$rust_have" "$rust_wanted" ||
    problems+=("Rust $rust_wanted or newer (found $rust_have): rustup update stable")
  for tool in rustfmt cargo-clippy; do
    command -v "$tool" >/dev/null || problems+=("$tool: rustup component add ${tool#cargo-}")
  done
fi
go_wanted=1.24 # the local cluster's Kubernetes, kind, helm and kube-router are built from their Go modules
if ! command -v go >/dev/null; then
  problems+=("Go $go_wanted or newer (Debian 12's golang is too old): unpack an official Go release into /usr/local/go and add /usr/local/go/bin to PATH")
else
  go_have=$(go env GOVERSION | sed 's/^go//')
  version_at_least "$go_have" "$go_wanted" ||
    problems+=("Go $go_wanted or newer (found $go_have, too old): unpack an official Go release into /usr/local/go and add /usr/local/go/bin to PATH")
fi

# Sizes measured on a cold build: the cluster cache (node image, Go builds) about 14 GiB, Docker's
# images and node volumes about 15 GiB, cargo's target directory about 10 GiB.
cache=/var/cache/zk-on-k8s
free_gib=$(( $(df -Pk "$root" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
if [[ -d $cache/gomod ]]; then need_gib=10; else need_gib=40; fi
(( free_gib >= need_gib )) ||
  problems+=("disk: ${need_gib} GiB free needed on $(df -P "$root" | awk 'NR==2 {print $6}') (found $free_gib GiB); free some space")
mem_gib=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / 1024 ))
(( mem_gib >= 7 )) || problems+=("memory: 8 GiB needed for a 4-node cluster and its ensembles (found $mem_gib GiB)")
(( $(id -u) == 0 )) || problems+=("root: the scripts start dockerd and install packages; run as root (or in a root shell)")

if (( ${#problems[@]} )); then
  for p in "${problems[@]}"; do log "missing: $p"; done
  exit 1
fi
log "ok (Rust $rust_have, Go $go_have, $free_gib GiB free, $mem_gib GiB memory)"
