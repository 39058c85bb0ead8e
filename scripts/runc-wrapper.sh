#!/bin/sh
# runc wrapper: drop CAP_SYS_RESOURCE from the capabilities a container asks for,
# then exec the real runc.
#
# Needed where CAP_SYS_RESOURCE is missing from the bounding set: privileged
# containers ask for every capability and runc fails with "unable to apply caps".
# On `create`/`run` the OCI bundle's config.json is edited; on `exec` the
# --process file. Used by the host's Docker and by containerd inside kind nodes.
REAL_RUNC=${REAL_RUNC:-runc}
for c in /usr/sbin/runc /usr/bin/runc; do
  [ -x "$c" ] && REAL_RUNC=$c && break
done

strip() { # $1 = json file, $2 = jq path of the capabilities object
  [ -f "$1" ] || return 0
  # Most execs (every exec probe) ask for no such capability: jq only where there is one to drop.
  grep -q CAP_SYS_RESOURCE "$1" || return 0
  tmp="$1.nosysres.$$"
  if jq "if $2 then $2 |= map_values(if type == \"array\" then map(select(. != \"CAP_SYS_RESOURCE\")) else . end) else . end" "$1" >"$tmp"; then
    cat "$tmp" >"$1"
  fi
  rm -f "$tmp"
}

cmd="" bundle="." process=""
prev=""
for a in "$@"; do
  case "$prev" in
    --bundle|-b) bundle=$a ;;
    --process|-p) process=$a ;;
  esac
  case "$a" in
    --bundle=*) bundle=${a#--bundle=} ;;
    --process=*) process=${a#--process=} ;;
    create|run|exec) [ -z "$cmd" ] && cmd=$a ;;
  esac
  prev=$a
done

case "$cmd" in
  create|run) strip "$bundle/config.json" .process.capabilities ;;
  exec) [ -n "$process" ] && strip "$process" .capabilities ;;
esac
exec "$REAL_RUNC" "$@"
