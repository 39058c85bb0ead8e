#!/usr/bin/env bash
# Builds the test object store's image (zkop/s3-store:e2e) and loads it into the local cluster.
# The e2e tests run it as a Deployment in their namespace: S3 over TLS with checked signatures.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
image=${1:-zkop/s3-store:e2e}
context="$root/build/s3-store-image-context"
# A test tool: the debug profile reuses what `cargo test` built (a release build with LTO took
# about 2 minutes of CI); stripped, it stays small.
cargo build --quiet --locked -p zkop-s3-store --manifest-path "$root/Cargo.toml"
rm -rf "$context" && mkdir -p "$context"
strip -o "$context/s3-store" "$root/target/debug/s3-store"
base=$(docker image inspect -f '{{.Id}}' "${BASE_IMAGE:-debian:bookworm-slim}")
docker build --quiet --build-arg BASE="$base" -f "$root/cluster/s3-store/Dockerfile" -t "$image" "$context" >/dev/null
"$root/cluster/load-image.sh" "$image"
echo "$image built and loaded"
