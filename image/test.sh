#!/usr/bin/env bash
# The image on its own (Docker, no Kubernetes): the seed's test with three containers.
# Each container is started as a StatefulSet pod would be (hostname zk-<i>, a DNS name under a
# headless Service, a volume of its own), and checked through the image's own zkCli.sh.
# Usage: image/test.sh IMAGE
set -euo pipefail
image=${1:?usage: test.sh IMAGE}
net=zk-image-test
domain=zk-headless.default.svc.cluster.local
passed=0 failed=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok   - $1"; passed=$((passed + 1)); else echo "FAIL - $1"; failed=$((failed + 1)); fi
}
cleanup() {
  docker rm -f zk-0 zk-1 zk-2 >/dev/null 2>&1 || true
  docker volume rm zk-image-test-0 zk-image-test-1 zk-image-test-2 >/dev/null 2>&1 || true
  docker network rm $net >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
docker network create $net >/dev/null

start() { # start ORDINAL ENSEMBLE_STATE
  docker run -d --name "zk-$1" --hostname "zk-$1" --network $net --network-alias "zk-$1.$domain" \
    --memory 512m -v "zk-image-test-$1:/data" \
    -e ZK_REPLICAS=3 -e ZK_HEADLESS_SERVICE=zk-headless -e ZK_NAMESPACE=default -e ZK_ENSEMBLE_STATE="$2" \
    "$image" >/dev/null
}
ready() { # ready ORDINAL [SECONDS]
  local deadline=$((SECONDS + ${2:-120}))
  until docker exec "zk-$1" zk-agent probe ready >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { docker logs --tail 30 "zk-$1"; return 1; }
    sleep 0.5
  done
}
zkcli() { # zkcli ORDINAL COMMAND... ; prints the command's output without the client's banner
  docker exec "zk-$1" /opt/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181 "${@:2}" 2>&1 | grep -v -e '^Connecting to' -e '^$' -e 'WATCHER' -e 'WatchedEvent'
}

all_ready() { ready 0 && ready 1 && ready 2; }
created_foo() { zkcli 0 create /foo bar | grep -q 'Created /foo'; }
reads_bar() { zkcli "$1" get /foo | grep -qx bar; }

for i in 0 1 2; do start $i new; done
check "three containers started by zk-agent reach quorum" all_ready
check "runs as a non-root user" test "$(docker exec zk-0 id -u)" = 1000
check "the ZooKeeper JVM is PID 1 (signals reach it)" sh -c "docker exec zk-0 cat /proc/1/cmdline | tr '\0' ' ' | grep -q QuorumPeerMain"
check "heap sized from the 512 MiB memory limit" sh -c "docker logs zk-0 2>&1 | grep -q -- '-Xmx256m'"
check "zkCli.sh create /foo bar through zk-0" created_foo
stop_start=$SECONDS
docker stop -t 30 zk-0 >/dev/null
check "SIGTERM stops the JVM promptly ($((SECONDS - stop_start))s) with its exit status (143)" \
  test "$(docker inspect -f '{{.State.ExitCode}}' zk-0)" = 143 -a $((SECONDS - stop_start)) -lt 20
docker rm zk-0 >/dev/null
check "zk-1 serves /foo = bar while zk-0 is gone" reads_bar 1
start 0 existing
check "zk-0 comes back under the same name and volume" ready 0
check "zk-0 serves /foo = bar again" reads_bar 0
check "probe live answers" docker exec zk-0 zk-agent probe live >/dev/null
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
