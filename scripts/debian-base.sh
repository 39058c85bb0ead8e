#!/usr/bin/env bash
# Make sure the image debian:bookworm-slim exists in the local Docker engine.
#
# Idempotent: if the image exists (pulled or made earlier), nothing is done.
# Otherwise a minimal Debian bookworm is bootstrapped with debootstrap from the
# mirror this machine's apt uses, and imported under that name, so Dockerfiles
# saying `FROM debian:bookworm-slim` build offline as well as online.
set -euo pipefail

IMAGE=${IMAGE:-debian:bookworm-slim}
SUITE=${SUITE:-bookworm}
log() { echo "debian-base: $*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
fi

# The Debian mirror apt already uses (deb822 "URIs:" or one-line "deb URL ...").
mirror=${DEBIAN_MIRROR:-$(
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '/^URIs:/ {print $2} /^deb / {print ($2 ~ /^\[/ ? $3 : $2)}' |
    grep -E '/debian/?$' | head -1 || true
)}
if [[ -z $mirror ]]; then
  log "error: no Debian mirror found in this machine's apt sources; configure one for apt" \
      "(/etc/apt/sources.list.d/) or set DEBIAN_MIRROR=<url ending in /debian>"
  exit 1
fi
log "bootstrapping $SUITE from $mirror"

dir=$(mktemp -d /tmp/debian-base.XXXXXX)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" >"$dir.log" 2>&1 ||
  { tail -20 "$dir.log" >&2; exit 1; }
rm -f "$dir.log"
# Like the official slim image: no apt lists, no caches.
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
log "imported $IMAGE"
