#!/usr/bin/env bash
# Start time of ZooKeeper images side by side: from `docker run` to the first `zk-agent probe
# ready` that succeeds, for a 1-member ensemble (ZK_REPLICAS=1), then how long zkCli.sh takes for
# `ls /` (a client JVM). Runs alternate between the images; the medians are printed at the end.
# Usage: image/start-time.sh RUNS IMAGE... (e.g. image/start-time.sh 5 zkop/zookeeper:old zkop/zookeeper:new)
set -euo pipefail
runs=${1:?usage: start-time.sh RUNS IMAGE...}
shift
[ $# -gt 0 ] || { echo "usage: start-time.sh RUNS IMAGE..." >&2; exit 2; }
net=zk-start-time
domain=zk-headless.default.svc.cluster.local
results=$(mktemp)
cleanup() { docker rm -f zk-start-time >/dev/null 2>&1 || true; docker network rm $net >/dev/null 2>&1 || true; rm -f "$results"; }
trap cleanup EXIT
cleanup
docker network create $net >/dev/null
now() { date +%s.%N; }
for run in $(seq "$runs"); do
  for image in "$@"; do
    docker rm -f zk-start-time >/dev/null 2>&1 || true
    started=$(now)
    docker run -d --name zk-start-time --hostname zk-0 --network $net --network-alias "zk-0.$domain" --memory 512m \
      -e ZK_REPLICAS=1 -e ZK_HEADLESS_SERVICE=zk-headless -e ZK_NAMESPACE=default -e ZK_ENSEMBLE_STATE=new \
      "$image" >/dev/null
    until docker exec zk-start-time zk-agent probe ready >/dev/null 2>&1; do sleep 0.05; done
    ready=$(now)
    listing=$(docker exec zk-start-time /opt/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181 ls / 2>&1)
    listed=$(now)
    grep -q '^\[zookeeper\]' <<<"$listing" || { echo "zkCli.sh ls / failed in $image: $listing" >&2; exit 1; }
    ready_s=$(awk -v a="$started" -v b="$ready" 'BEGIN {printf "%.2f", b - a}')
    cli_s=$(awk -v a="$ready" -v b="$listed" 'BEGIN {printf "%.2f", b - a}')
    printf '%s\trun %d\tready %s s\tzkCli.sh ls / %s s\n' "$image" "$run" "$ready_s" "$cli_s"
    printf '%s %s %s\n' "$image" "$ready_s" "$cli_s" >>"$results"
  done
done
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo
printf '| %-40s | %-29s | %-23s |\n' image "docker run -> ready, median s" "zkCli.sh ls /, median s"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "$(printf -- '-%.0s' {1..30}):" "$(printf -- '-%.0s' {1..24}):"
for image in "$@"; do
  printf '| %-40s | %29s | %23s |\n' "$image" \
    "$(awk -v i="$image" '$1 == i {print $2}' "$results" | median)" \
    "$(awk -v i="$image" '$1 == i {print $3}' "$results" | median)"
done
