#!/usr/bin/env bash
# The README's main job, after `make cluster` and `scripts/install-operator.sh`: a three-member
# ensemble from examples/zookeeper.yaml, then the seed's test, printing each step and its result.
# Safe to run again: it reuses what exists.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ns=${NAMESPACE:-zookeeper}
step() { printf '\n==> %s\n' "$*"; }
result() { printf '    %s\n' "$*"; }
zkcli() { # zkcli POD COMMAND...: the seed's `kubectl exec ... zkCli.sh`, without the client's banner
  kubectl -n "$ns" exec "$1" -- /opt/zookeeper/bin/zkCli.sh "${@:2}" 2>&1 |
    grep -v -e '^Connecting to' -e '^$' -e 'WATCHER::' -e 'WatchedEvent' || true
}

step "namespace $ns (Pod Security: restricted)"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$ns" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
result "ok"

step "apply examples/zookeeper.yaml"
start=$(date +%s)
kubectl -n "$ns" apply -f "$root/examples/zookeeper.yaml"
kubectl -n "$ns" wait zookeepercluster/zookeeper --for=condition=Available --timeout=5m >/dev/null
result "Available after $(($(date +%s) - start))s"
kubectl -n "$ns" get zookeepercluster zookeeper
kubectl -n "$ns" get pods -l app.kubernetes.io/instance=zookeeper -o wide

step "TLS is on: members talk TLS to each other, clients use mutual TLS on 2182"
phase=$(kubectl -n "$ns" get zookeepercluster zookeeper -o jsonpath='{.status.tls.phase}')
result "TLS phase: $phase; certificate valid until $(kubectl -n "$ns" get zookeepercluster zookeeper -o jsonpath='{.status.tls.certificateNotAfter}')"
result "$(zkcli zookeeper-0 whoami | grep -E 'x509|super' | tr '\n' ' ')(zkCli.sh in a member connects with the member's certificate)"
[ "$phase" = "tls" ]

step "kubectl exec zookeeper-0 -- zkCli.sh create /foo bar"
zkcli zookeeper-0 delete /foo >/dev/null
out=$(zkcli zookeeper-0 create /foo bar)
result "$out"
[[ "$out" == *"Created /foo"* ]]

step "kubectl delete pod zookeeper-0"
volume=$(kubectl -n "$ns" get pvc data-zookeeper-0 -o jsonpath='{.spec.volumeName}')
old_uid=$(kubectl -n "$ns" get pod zookeeper-0 -o jsonpath='{.metadata.uid}')
kubectl -n "$ns" delete pod zookeeper-0 --wait=false
result "deleted (volume $volume)"

step "kubectl exec zookeeper-1 -- zkCli.sh get /foo"
out=$(zkcli zookeeper-1 get /foo)
result "$out"
[[ "$out" == *bar* ]]

step "zookeeper-0 comes back under the same name, with the same volume"
until [ "$(kubectl -n "$ns" get pod zookeeper-0 -o jsonpath='{.metadata.uid}' 2>/dev/null)" != "$old_uid" ]; do sleep 1; done
kubectl -n "$ns" wait pod/zookeeper-0 --for=condition=Ready --timeout=3m >/dev/null
now_volume=$(kubectl -n "$ns" get pvc data-zookeeper-0 -o jsonpath='{.spec.volumeName}')
result "zookeeper-0 Ready again, volume $now_volume"
[ "$now_volume" = "$volume" ]

step "kubectl exec zookeeper-0 -- zkCli.sh get /foo"
out=$(zkcli zookeeper-0 get /foo)
result "$out"
[[ "$out" == *bar* ]]

printf '\nThe seed test passed: /foo survived the deletion of zookeeper-0, which came back with its data.\n'
