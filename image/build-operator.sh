#!/usr/bin/env bash
# Builds the operator image: image/build-operator.sh REPOSITORY
# The tag is derived from the binary's content, so a new build is a new tag and `helm upgrade`
# rolls the operator out. Prints the full reference on its last line.
set -euo pipefail
repository=${1:?usage: build-operator.sh REPOSITORY}
root=$(cd "$(dirname "$0")/.." && pwd)
context="$root/build/operator-image-context"
binaries=$("$root/image/build-binaries.sh")
rm -rf "$context" && mkdir -p "$context"
strip -o "$context/zookeeper-operator" "$binaries/zookeeper-operator"
tag="0.1.0-$(sha256sum "$context/zookeeper-operator" | cut -c1-12)"
base=$(docker image inspect -f '{{.Id}}' "${BASE_IMAGE:-debian:bookworm-slim}")
docker build --quiet --build-arg BASE="$base" -f "$root/image/operator.Dockerfile" -t "$repository:$tag" "$context" >/dev/null
echo "$repository:$tag"
