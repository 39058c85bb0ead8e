#!/usr/bin/env bash
# Check that the kind cluster does what the project needs. Ends with a line
# "N passed, M failed" and exits non-zero if anything failed.
#
# Test pods use an image built here from debian:bookworm-slim and loaded with
# `kind load docker-image` (imagePullPolicy: Never), so every check also uses a
# locally built image. Servers are perl-base one-liners; clients use bash's
# /dev/tcp and getent (all in Debian's minimal base).
. "$(dirname "$0")/lib.sh"
set +e
ctx=kind-$CLUSTER_NAME
ns=zk-cluster-test-$$
k() { kubectl --context "$ctx" "$@"; }
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...: pass if the command succeeds
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() {
  k delete namespace "$ns" --wait=false >/dev/null 2>&1
  for w in "${workers[@]}"; do k uncordon "$w" >/dev/null 2>&1; done
  echo "$passed passed, $failed failed"
  [[ $failed == 0 && $passed -gt 0 ]]
}
trap 'exit 1' INT TERM

IMAGE=zk-on-k8s/cluster-test:1
SERVER='use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 10, ReuseAddr => 1) or die $!;
while (my $c = $s->accept) { print $c "hello from $ENV{HOSTNAME}\n"; close $c }'

# pod NAME [NODE] [COMMAND]: a bare pod of the test image
pod() {
  local name=$1 node=${2:-} cmd=${3:-sleep infinity}
  k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {app: $name}}
spec:
  ${node:+nodeName: $node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: $IMAGE
      imagePullPolicy: Never
      command: ["bash", "-c", $(jq -Rn --arg c "$cmd" '$c')]
EOF
}
retry() { # retry SECONDS COMMAND...: until the command succeeds, once a second
  local until=$((SECONDS + $1)); shift
  until "$@"; do (( SECONDS < until )) || return 1; sleep 1; done
}
ready() { k -n "$ns" wait --for=condition=Ready --timeout=120s "$@" >/dev/null; }
ex() { local p=$1; shift; k -n "$ns" exec "$p" -- "$@"; }

# --- 1. four nodes, all Ready --------------------------------------------------
mapfile -t nodes < <(k get nodes -o name 2>/dev/null)
mapfile -t workers < <(k get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null)
check "cluster has 4 nodes (found ${#nodes[@]})" test "${#nodes[@]}" = 4
check "all nodes Ready" k wait --for=condition=Ready nodes --all --timeout=120s
if (( ${#workers[@]} < 2 )); then fail "need 2 workers, found ${#workers[@]}"; finish; exit; fi

k create namespace "$ns" >/dev/null
# bare pods are refused until the namespace has its default ServiceAccount
has_default_sa() { k -n "$ns" get serviceaccount default >/dev/null 2>&1; }
check "namespace $ns gets its default ServiceAccount" retry 120 has_default_sa

# --- 2. a locally built image is loaded with kind load and runs ----------------
stamp=$(date +%s%N)
ctxdir=$(mktemp -d)
printf 'FROM debian:%s-slim\nRUN echo %s >/built-locally\n' "$DEBIAN_SUITE" "$stamp" >"$ctxdir/Dockerfile"
"$REPO_DIR/scripts/debian-base.sh" >/dev/null 2>&1
check "docker build of the test image" docker build -q -t "$IMAGE" "$ctxdir"
rm -rf "$ctxdir"
check "kind load docker-image $IMAGE" kind load docker-image --name "$CLUSTER_NAME" "$IMAGE"
docker rmi "$IMAGE" >/dev/null  # the nodes have it now; each run builds a new one
pod loaded "" 'cat /built-locally; sleep infinity'
check "pod from the loaded image runs (imagePullPolicy Never)" ready pod/loaded
check "it is the image built just now" test "$(ex loaded cat /built-locally 2>/dev/null)" = "$stamp"

# --- 3. DNS: kubernetes.default and a StatefulSet pod behind a headless Service --
kube_ip=$(k get svc kubernetes -o jsonpath='{.spec.clusterIP}')
lookup() { resolved=$(ex loaded getent hosts "$1" 2>/dev/null | awk '{print $1}'); [[ -n $resolved ]]; }
retry 30 lookup kubernetes.default.svc.cluster.local
check "pod resolves kubernetes.default.svc.cluster.local ($resolved = $kube_ip)" \
  test -n "$kube_ip" -a "$resolved" = "$kube_ip"
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080, name: http}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: $IMAGE
          imagePullPolicy: Never
          command: ["perl", "-e", $(jq -Rn --arg c "$SERVER" '$c')]
EOF
check "StatefulSet web rolls out" k -n "$ns" rollout status statefulset/web --timeout=180s
web1_ip=$(k -n "$ns" get pod web-1 -o jsonpath='{.status.podIP}')
retry 30 lookup "web-1.web.$ns.svc.cluster.local"  # the record appears once web-1 is Ready
check "pod resolves web-1.web.$ns.svc.cluster.local to web-1's IP ($resolved = $web1_ip)" \
  test -n "$web1_ip" -a "$resolved" = "$web1_ip"

# --- 4. pods on two different workers reach each other --------------------------
pod server "${workers[0]}" "perl -e '$SERVER'"
pod client "${workers[1]}"
ready pod/server pod/client
server_ip=$(k -n "$ns" get pod server -o jsonpath='{.status.podIP}')
hello() { # hello FROM-POD IP EXPECTED: connect from a pod, read the greeting
  reply=$(ex "$1" timeout 5 bash -c "exec 3<>/dev/tcp/$2/8080 && cat <&3" 2>&1); [[ $reply == "$3" ]]
}
retry 20 hello client "$server_ip" "hello from server"
check "pod on ${workers[1]} reaches pod on ${workers[0]} ($server_ip): '$reply'" test "$reply" = "hello from server"
retry 20 hello server "$web1_ip" "hello from web-1"
check "and a pod reaches web-1 by IP: '$reply'" test "$reply" = "hello from web-1"

# --- 5. a PVC from the default StorageClass binds; data survives the pod ---------
default_sc=$(k get storageclass -o jsonpath='{range .items[?(@.metadata.annotations.storageclass\.kubernetes\.io/is-default-class=="true")]}{.metadata.name}{end}')
check "a default StorageClass exists ($default_sc)" test -n "$default_sc"
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
EOF
volpod() { # volpod NAME COMMAND
  k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: $IMAGE
      imagePullPolicy: Never
      command: ["bash", "-c", $(jq -Rn --arg c "$2" '$c')]
      volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
EOF
}
volpod writer "echo $stamp >/data/token && sync && sleep infinity"
check "writer pod with the PVC starts" ready pod/writer --timeout=180s
check "PVC is Bound" k -n "$ns" wait --for=jsonpath='{.status.phase}'=Bound pvc/data --timeout=60s
check "PVC got the default StorageClass" test "$(k -n "$ns" get pvc data -o jsonpath='{.spec.storageClassName}')" = "$default_sc"
k -n "$ns" delete pod writer --wait=true --timeout=60s >/dev/null
volpod reader "cat /data/token; sleep infinity"
ready pod/reader --timeout=180s
node_w=$(k -n "$ns" get pvc data -o jsonpath='{.metadata.annotations.volume\.kubernetes\.io/selected-node}')
check "data written by the deleted pod is read by a new pod (on $node_w)" test "$(ex reader cat /data/token 2>/dev/null)" = "$stamp"

# --- 6. drain of a worker evicts its pods, they are rescheduled -----------------
k -n "$ns" delete pod --all --wait=true --timeout=60s >/dev/null   # bare pods would block drain
k -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: ${#workers[@]}
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: DoNotSchedule
          labelSelector: {matchLabels: {app: spread}}
          nodeAffinityPolicy: Honor
          nodeTaintsPolicy: Honor
      containers:
        - name: main
          image: $IMAGE
          imagePullPolicy: Never
          command: ["sleep", "infinity"]
EOF
check "Deployment spread rolls out" k -n "$ns" rollout status deployment/spread --timeout=180s
victim=${workers[0]}
before=$(k -n "$ns" get pods -l app=spread --field-selector "spec.nodeName=$victim" -o name | wc -l)
check "spread has a pod on $victim before the drain ($before)" test "$before" -ge 1
check "kubectl drain $victim" k drain "$victim" --ignore-daemonsets --delete-emptydir-data --timeout=180s
sleep 2
check "Deployment spread is whole again after the drain" k -n "$ns" rollout status deployment/spread --timeout=180s
check "all ${#workers[@]} spread pods Ready" k -n "$ns" wait --for=condition=Ready pod -l app=spread --timeout=120s
left=$(k -n "$ns" get pods -l app=spread --field-selector "spec.nodeName=$victim" -o name | wc -l)
check "no spread pod left on $victim ($left)" test "$left" = 0
check "StatefulSet web is whole again after the drain" k -n "$ns" rollout status statefulset/web --timeout=180s
check "kubectl uncordon $victim" k uncordon "$victim"

finish
