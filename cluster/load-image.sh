#!/usr/bin/env bash
# Load locally built Docker images into every node of the cluster.
#   cluster/load-image.sh IMAGE[:TAG]...
. "$(dirname "$0")/lib.sh"
(( $# > 0 )) || { echo "usage: $0 IMAGE..." >&2; exit 2; }
kind load docker-image --name "$CLUSTER_NAME" "$@"
