#!/usr/bin/env bash
# The release binaries the images hold (zk-agent, zookeeper-operator), built in one cargo run:
# their shared dependencies are then compiled once, with one feature set, instead of once per
# binary (each image script asks for both; the second request finds them fresh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --locked --release -p zk-agent -p zkop-operator --manifest-path "$root/Cargo.toml"
