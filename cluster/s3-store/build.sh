#!/usr/bin/env bash
# Builds the test object store's image (zkop/s3-store:e2e) and loads it into the local cluster
# (not with --no-load). The e2e tests run it as a Deployment in their namespace: S3 over TLS
# with checked signatures.
#   cluster/s3-store/build.sh [--no-load] [IMAGE]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
load=1
if [[ ${1:-} == --no-load ]]; then load=0; shift; fi
image=${1:-zkop/s3-store:e2e}
context="$root/build/s3-store-image-context"
# A test tool: the debug binary the workspace's test build makes (its integration test runs
# it), as `make test` builds it: a build of this package alone compiles dependencies again with
# other features, and a release build with LTO took about 2 minutes of CI. Stripped, it stays
# small.
cargo test --quiet --locked --workspace --all-targets --no-run --manifest-path "$root/Cargo.toml"
rm -rf "$context" && mkdir -p "$context"
strip -o "$context/s3-store" "$root/target/debug/s3-store"
base=$(docker image inspect -f '{{.Id}}' "${BASE_IMAGE:-debian:bookworm-slim}")
docker build --quiet --build-arg BASE="$base" -f "$root/cluster/s3-store/Dockerfile" -t "$image" "$context" >/dev/null
if (( load )); then
  "$root/cluster/load-image.sh" "$image"
  echo "$image built and loaded"
else
  echo "$image built"
fi
