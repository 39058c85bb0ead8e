#!/usr/bin/env bash
# Delete the kind cluster (the cached images and binaries stay).
. "$(dirname "$0")/lib.sh"
if command -v kind >/dev/null && docker info >/dev/null 2>&1; then
  kind delete cluster --name "$CLUSTER_NAME"
fi
