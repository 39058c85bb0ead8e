#!/usr/bin/env bash
# The binaries the images hold (zk-agent, zookeeper-operator); prints the directory they are in.
#
#   ZK_PROFILE=release (the default): release builds, in one cargo run, so that their shared
#     dependencies are compiled once, with one feature set.
#   ZK_PROFILE=dev: the binaries `cargo test --workspace` builds anyway (make test's images):
#     nothing is compiled twice. Debug builds are stricter than release ones (integer overflow
#     and debug assertions panic), slower, and larger; the images strip them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case ${ZK_PROFILE:-release} in
  release)
    cargo build --quiet --locked --release -p zk-agent -p zkop-operator --manifest-path "$root/Cargo.toml"
    echo "$root/target/release" ;;
  dev)
    cargo test --quiet --locked --workspace --all-targets --no-run --manifest-path "$root/Cargo.toml"
    echo "$root/target/debug" ;;
  *) echo "ZK_PROFILE is release or dev, not ${ZK_PROFILE}" >&2; exit 2 ;;
esac
