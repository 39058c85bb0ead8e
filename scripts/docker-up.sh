#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`.
#
# Idempotent: if one already runs, nothing is done. Otherwise Debian's docker.io
# is installed (if missing) and dockerd is started in the background.
#
# Where the process lacks CAP_SYS_RESOURCE in its bounding set (as on our VMs),
# `docker run --privileged` fails with "unable to apply caps". We then register
# a small runc wrapper as Docker's default runtime that drops CAP_SYS_RESOURCE
# from the OCI capability lists before calling the real runc (other containers pass
# through it unchanged), merged into the machine's own daemon.json.
set -euo pipefail

log() { echo "docker-up: $*" >&2; }

if docker info >/dev/null 2>&1; then
  log "docker engine already running"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1; then
  log "installing docker.io and jq from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q docker.io jq >/dev/null
fi

# Is CAP_SYS_RESOURCE (bit 24) missing from our bounding set?
capbnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)
if (( (16#$capbnd >> 24 & 1) == 0 )); then
  log "CAP_SYS_RESOURCE not in bounding set: installing runc wrapper"
  wrapper=/usr/local/libexec/zk-on-k8s/runc-wrapper
  config=/etc/docker/daemon.json
  # Merged into a daemon.json of the machine's own (its settings stay; one that names another
  # default runtime is refused, saying why): scripts/docker-daemon-json.sh.
  merged=$("$(dirname "$0")/docker-daemon-json.sh" "$config" "$wrapper")
  install -D -m 0755 "$(dirname "$0")/runc-wrapper.sh" "$wrapper"
  mkdir -p /etc/docker
  if [ -s "$config" ] && [ "$(jq -S -c . "$config")" != "$(jq -S -c . <<<"$merged")" ]; then
    [ -e "$config.before-zk-on-k8s" ] || cp -p "$config" "$config.before-zk-on-k8s"
    log "$config: runtime runc-nosysres added and made the default; its other settings kept (the original: $config.before-zk-on-k8s)"
  fi
  printf '%s\n' "$merged" >"$config"
fi

log "starting dockerd (log: /var/log/dockerd.log)"
# setsid: dockerd must not die with the shell that started it.
setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "docker engine ready"
    exit 0
  fi
  sleep 1
done
log "dockerd did not become ready; see /var/log/dockerd.log"
tail -20 /var/log/dockerd.log >&2
exit 1
