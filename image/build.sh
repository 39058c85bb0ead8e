#!/usr/bin/env bash
# Builds the ZooKeeper image: image/build.sh VERSION TAG
# Prepares a small build context (zk-agent, a release build unless ZK_PROFILE=dev: see
# image/build-binaries.sh; the verified ZooKeeper distribution) and runs `docker build` with
# image/Dockerfile. Prints the image size.
set -euo pipefail
version=${1:?usage: build.sh ZOOKEEPER_VERSION TAG}
tag=${2:?usage: build.sh ZOOKEEPER_VERSION TAG}
root=$(cd "$(dirname "$0")/.." && pwd)
context="$root/build/image-context-$version"

binaries=$("$root/image/build-binaries.sh")
"$root/image/zookeeper-dist/fetch.sh" "$version" "$root/build/zookeeper-$version"

rm -rf "$context"
mkdir -p "$context"
strip -o "$context/zk-agent" "$binaries/zk-agent"
cp -r "$root/build/zookeeper-$version" "$context/zookeeper-$version"
rm -f "$context/zookeeper-$version/.complete"
cp "$root/image/zookeeper-dist/SHA256SUMS.$version" "$context/"

# The base, pinned: the exact image (by ID) that scripts/debian-base.sh built.
base=$(docker image inspect -f '{{.Id}}' "${BASE_IMAGE:-debian:bookworm-slim}")
docker build --quiet --build-arg ZOOKEEPER_VERSION="$version" --build-arg BASE="$base" \
  -f "$root/image/Dockerfile" -t "$tag" "$context" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "built $tag: $((size / 1000 / 1000)) MB"
