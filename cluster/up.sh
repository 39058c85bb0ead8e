#!/usr/bin/env bash
# Create the kind cluster (1 control-plane + 3 workers) if it is not running.
#
# Node image: the upstream kindest/node if it is already present locally (or,
# with ZK_TRY_PULL=1, if it can be pulled); otherwise ours, built offline by
# build-node-image.sh and cached. Host tools kind and kubectl are built from their Go modules
# and linked into /usr/local/bin (helm too, once built: scripts/install-operator.sh builds it).
. "$(dirname "$0")/lib.sh"
start=$SECONDS

"$REPO_DIR/scripts/docker-up.sh"

if docker image inspect "$NODE_IMAGE_UPSTREAM" >/dev/null 2>&1 ||
   { [[ ${ZK_TRY_PULL:-0} == 1 ]] && timeout 300 docker pull "$NODE_IMAGE_UPSTREAM" >&2; }; then
  node_image=$NODE_IMAGE_UPSTREAM
else
  node_image=$("$CLUSTER_DIR/build-node-image.sh")
fi
"$CLUSTER_DIR/build-bins.sh" kind kubernetes
for t in kind kubectl helm; do
  [[ -e $BIN_CACHE/tools/$t ]] && ln -sf "$BIN_CACHE/tools/$t" "/usr/local/bin/$t"
done

ctx=kind-$CLUSTER_NAME

# Every container shares the machine's inotify limits, and each ZooKeeper member watches its
# certificate files (certificate reload): at the default 128 instances, about 30 members on one
# machine and a member's JVM exits with "User limit of inotify instances reached". The values
# are those kind's known issues recommend.
raise_inotify_limit() {
  local key=$1 want=$2 have
  have=$(sysctl -n "$key" 2>/dev/null || echo 0)
  (( have >= want )) && return 0
  if [[ $(id -u) == 0 ]] && sysctl -qw "$key=$want" 2>/dev/null; then
    log "raised $key from $have to $want (the nodes' pods share it)"
  else
    log "note: $key is $have; run 'sysctl -w $key=$want' as root, or members may fail to start when many run"
  fi
}
raise_inotify_limit fs.inotify.max_user_instances 1024
raise_inotify_limit fs.inotify.max_user_watches 524288

# Docker hands out container addresses afresh when its daemon restarts (with the machine), but
# etcd, the API server and each kubelet keep the address the node had when it joined
# (--node-ip). Stopped nodes are started in the order of those addresses (Docker gives a
# network's free addresses out in order); a node that still ends up elsewhere is moved back,
# pinned, where the network lets addresses be chosen. Nodes already on their address are left
# alone: nothing is stopped on a healthy cluster.
node_address() { docker inspect -f '{{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}}' "$1"; }
restore_node_addresses() {
  local nodes node want moved=() stopped
  nodes=$(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME" | xargs -r docker inspect -f '{{.Name}}' | tr -d /)
  declare -A wanted
  for node in $nodes; do
    want=$(docker cp "$node:/var/lib/kubelet/kubeadm-flags.env" - 2>/dev/null | grep -ao -- '--node-ip=[0-9.]*' | cut -d= -f2 || true)
    [[ -n $want ]] && wanted[$node]=$want
  done
  in_address_order() { for n in "$@"; do echo "${wanted[$n]:-255.255.255.255} $n"; done | sort -V | cut -d' ' -f2; }
  stopped=$(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME" --filter status=exited --filter status=created |
    xargs -r docker inspect -f '{{.Name}}' | tr -d /)
  if [[ -n $stopped ]]; then
    log "starting stopped nodes of $CLUSTER_NAME in the order of their addresses: $(in_address_order $stopped | xargs)"
    # Docker may have started some nodes itself (their restart policy) before this ran, and
    # one of them may hold an address another node is pinned to: that start then fails
    # ("Address already in use"), and the node counts as moved below.
    for node in $(in_address_order $stopped); do docker start "$node" >/dev/null 2>&1 || log "$node did not start yet"; done
  fi
  for node in $nodes; do
    [[ -n ${wanted[$node]:-} && $(node_address "$node") != "${wanted[$node]}" ]] && moved+=("$node")
  done
  (( ${#moved[@]} )) || return 0
  log "nodes on other addresses than the cluster was built with: $(for n in "${moved[@]}"; do printf '%s has %s, wants %s; ' "$n" "$(node_address "$n")" "${wanted[$n]}"; done)"
  docker stop $nodes >/dev/null
  for node in "${moved[@]}"; do
    docker network disconnect kind "$node" >/dev/null
    if ! docker network connect --ip "${wanted[$node]}" kind "$node" 2>/dev/null; then
      # This Docker lets addresses be chosen only on networks whose subnet was set by hand.
      docker network connect kind "$node"
    fi
  done
  for node in $(in_address_order $nodes); do docker start "$node" >/dev/null; done
  moved=()
  for node in $nodes; do
    [[ -n ${wanted[$node]:-} && $(node_address "$node") != "${wanted[$node]}" ]] && moved+=("$node")
  done
  (( ${#moved[@]} == 0 )) ||
    die "nodes ${moved[*]} could not get back the addresses the cluster was built with; the cluster cannot work" \
        "on new ones: rebuild it with 'make cluster-down cluster' (this deletes every ensemble and volume in it)"
}
# Nodes Ready is not the whole control plane: after a restart the controller manager may still
# be waiting for its lease, and until it runs a new namespace gets no ServiceAccount (pods in it
# are refused). Wait until a namespace made here gets its default ServiceAccount.
wait_control_plane() {
  local probe=zk-control-plane-probe-$$ ok=0
  kubectl --context "$ctx" create namespace "$probe" >/dev/null 2>&1 || true
  for _ in $(seq 90); do
    if kubectl --context "$ctx" -n "$probe" get serviceaccount default --request-timeout=5s >/dev/null 2>&1; then ok=1; break; fi
    sleep 2
  done
  kubectl --context "$ctx" delete namespace "$probe" --wait=false >/dev/null 2>&1 || true
  (( ok )) || { kubectl --context "$ctx" -n kube-system get pods >&2 || true; return 1; }
}

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  # A cluster is never deleted behind the user's back: it holds their ensembles and volumes.
  # Nodes stopped (a Docker or machine restart, a test that stops one) are started again in
  # place; if the nodes do not come back Ready, say what to run instead.
  current=$(docker inspect -f '{{.Config.Image}}' "$CLUSTER_NAME-control-plane" 2>/dev/null || true)
  if [[ $current != "$node_image" ]]; then
    log "note: cluster $CLUSTER_NAME runs node image $current, not the current $node_image;" \
        "run 'make cluster-down cluster' to rebuild it (this deletes every ensemble and volume in it)"
  fi
  restore_node_addresses
  # Nodes may also have been restarted by Docker itself (its daemon restarted with the machine).
  # Until each kubelet reports again, the API server may refuse connections and Ready may be
  # the stale value from before: wait for a heartbeat newer than the node's container start.
  ready=1
  for node in $(docker ps -q --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME" | xargs -r docker inspect -f '{{.Name}}' | tr -d /); do
    started=$(date -d "$(docker inspect -f '{{.State.StartedAt}}' "$node")" +%s)
    fresh=0
    for _ in $(seq 90); do
      beat=$(kubectl --context "$ctx" get node "$node" --request-timeout=5s \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null || true)
      if [[ -n $beat ]] && (( $(date -d "$beat" +%s) >= started )); then fresh=1; break; fi
      sleep 2
    done
    (( fresh )) || { log "node $node has not reported since its container started"; ready=0; }
  done
  if (( ready )) && kubectl --context "$ctx" wait nodes --all --for=condition=Ready --timeout=180s >/dev/null 2>&1 &&
    wait_control_plane; then
    log "cluster $CLUSTER_NAME up ($current)"; exit 0
  fi
  kubectl --context "$ctx" get nodes >&2 || true
  die "cluster $CLUSTER_NAME exists but its nodes are not Ready (or new namespaces get no ServiceAccount) after 3 minutes. Look at 'docker logs $CLUSTER_NAME-control-plane'," \
      "or rebuild it with 'make cluster-down cluster' (this deletes every ensemble and volume in it)"
fi

log "creating cluster $CLUSTER_NAME from $node_image"
kind create cluster --name "$CLUSTER_NAME" --image "$node_image" \
  --config "$CLUSTER_DIR/kind-config.yaml" --wait 5m
if [[ $node_image != "$NODE_IMAGE_UPSTREAM" ]]; then
  # Our nodes keep Docker's resolver (127.0.0.11) in /etc/resolv.conf, which
  # from a pod is the pod's own loopback: CoreDNS would forward to itself (its
  # loop plugin then exits). Nothing here needs names outside the cluster, so
  # CoreDNS serves cluster.local only: no forward, no loop check.
  corefile=$(kubectl --context "$ctx" -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
  if grep -q 'forward \.' <<<"$corefile"; then
    log "CoreDNS: serving cluster names only"
    sed -e '/^ *forward \. /,/^ *}/d' -e '/^ *loop$/d' <<<"$corefile" >"$CACHE/Corefile.$$"
    kubectl --context "$ctx" -n kube-system create configmap coredns --from-file=Corefile="$CACHE/Corefile.$$" \
      --dry-run=client -o yaml | kubectl --context "$ctx" replace -f - >/dev/null
    rm -f "$CACHE/Corefile.$$"
    kubectl --context "$ctx" -n kube-system rollout restart deployment/coredns >/dev/null
  fi
fi
kubectl --context "$ctx" wait nodes --all --for=condition=Ready --timeout=180s
kubectl --context "$ctx" -n kube-system rollout status deployment/coredns --timeout=180s
kubectl --context "$ctx" -n local-path-storage rollout status deployment/local-path-provisioner --timeout=120s
wait_control_plane || die "the controller manager gives new namespaces no ServiceAccount after 3 minutes"
# node images of older inputs that the previous cluster still used
docker images zk-on-k8s/kind-node --format '{{.Repository}}:{{.Tag}}' | grep -vxF "$node_image" |
  xargs -r docker rmi >/dev/null 2>&1 || true
log "cluster $CLUSTER_NAME ready in $((SECONDS - start))s (kubectl context $ctx)"
