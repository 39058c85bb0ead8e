#!/usr/bin/env bash
# Create the kind cluster (1 control-plane + 3 workers) if it is not running.
#
# Node image: the upstream kindest/node if it is already present locally (or,
# with ZK_TRY_PULL=1, if it can be pulled); otherwise ours, built offline by
# build-node-image.sh and cached. Host tools kind/kubectl/helm are built from
# their Go modules and linked into /usr/local/bin.
. "$(dirname "$0")/lib.sh"
start=$SECONDS

"$REPO_DIR/scripts/docker-up.sh"

if docker image inspect "$NODE_IMAGE_UPSTREAM" >/dev/null 2>&1 ||
   { [[ ${ZK_TRY_PULL:-0} == 1 ]] && timeout 300 docker pull "$NODE_IMAGE_UPSTREAM" >&2; }; then
  node_image=$NODE_IMAGE_UPSTREAM
else
  node_image=$("$CLUSTER_DIR/build-node-image.sh")
fi
"$CLUSTER_DIR/build-bins.sh" kind kubernetes helm
for t in kind kubectl helm; do
  [[ -e $BIN_CACHE/tools/$t ]] && ln -sf "$BIN_CACHE/tools/$t" "/usr/local/bin/$t"
done

ctx=kind-$CLUSTER_NAME
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  # After a restart of Docker the nodes are stopped, or restarted by Docker
  # (kind's restart policy) maybe with other IPs: recreate rather than reuse.
  current=$(docker inspect -f '{{.Config.Image}}' "$CLUSTER_NAME-control-plane" 2>/dev/null || true)
  restarted=""
  for n in $(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER_NAME"); do
    read -r running created started < <(docker inspect -f '{{.State.Running}} {{.Created}} {{.State.StartedAt}}' "$n")
    if [[ $running != true ]] || (( $(date -d "$started" +%s) - $(date -d "$created" +%s) > 60 )); then
      restarted+=" $n"
    fi
  done
  if [[ $current == "$node_image" && -z $restarted ]] &&
     kubectl --context "$ctx" wait nodes --all --for=condition=Ready --timeout=60s >/dev/null 2>&1; then
    log "cluster $CLUSTER_NAME already up ($node_image)"; exit 0
  fi
  log "cluster $CLUSTER_NAME is stale or unhealthy${restarted:+ (not running since creation:$restarted)}: recreating"
  kind delete cluster --name "$CLUSTER_NAME"
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
# node images of older inputs that the previous cluster still used
docker images zk-on-k8s/kind-node --format '{{.Repository}}:{{.Tag}}' | grep -vxF "$node_image" |
  xargs -r docker rmi >/dev/null 2>&1 || true
log "cluster $CLUSTER_NAME ready in $((SECONDS - start))s (kubectl context $ctx)"
