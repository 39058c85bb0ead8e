#!/usr/bin/env bash
# Builds the test object store's image (zkop/s3-store:e2e) and loads it into the local cluster.
# The e2e tests run it as a Deployment in their namespace: S3 over TLS with checked signatures.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
image=${1:-zkop/s3-store:e2e}
context="$root/build/s3-store-image-context"
cargo build --quiet --locked --release -p zkop-s3-store --manifest-path "$root/Cargo.toml"
rm -rf "$context" && mkdir -p "$context"
cp "$root/target/release/s3-store" "$context/"
base=$(docker image inspect -f '{{.Id}}' "${BASE_IMAGE:-debian:bookworm-slim}")
docker build --quiet --build-arg BASE="$base" -f "$root/cluster/s3-store/Dockerfile" -t "$image" "$context" >/dev/null
"$root/cluster/load-image.sh" "$image"
echo "$image built and loaded"
