# Common settings for the cluster scripts. Source it: `. "$(dirname "$0")/lib.sh"`.
set -euo pipefail

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$CLUSTER_DIR")
# shellcheck source=versions.env
. "$CLUSTER_DIR/versions.env"

# Per-machine cache, outside the repo: built binaries, images, Go caches.
CACHE=${ZK_CACHE:-/var/cache/zk-on-k8s}
BIN_CACHE=$CACHE/bin          # host tools and node binaries, one dir per version
IMG_CACHE=$CACHE/images       # docker-save'd image tarballs
mkdir -p "$BIN_CACHE" "$IMG_CACHE" "$CACHE/src"

export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/go-build GOTOOLCHAIN=local
export CGO_ENABLED=0 GOFLAGS=-trimpath
export PATH=$BIN_CACHE/tools:$PATH

# Time since the first of these scripts started, so a long first build shows it is moving.
: "${ZK_STARTED:=$(date +%s)}"; export ZK_STARTED
log() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - ZK_STARTED ))s] ${0##*/}: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Move a finished temp dir/file into place atomically (so a half-written cache
# entry is never mistaken for a complete one).
commit_cache() { # $1 = temp path, $2 = final path
  rm -rf "$2.old"; [ -e "$2" ] && mv "$2" "$2.old"
  mv "$1" "$2"; rm -rf "$2.old"
}
