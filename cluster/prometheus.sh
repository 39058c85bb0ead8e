#!/usr/bin/env bash
# Prometheus on the local cluster, scraping every ZooKeeper member and the operator through
# Kubernetes service discovery; promtool on the host (/usr/local/bin) for rule unit tests.
#
#   cluster/prometheus.sh            (make prometheus)
#   RULES_FILE=path cluster/prometheus.sh
#
# 1. prometheus + promtool from their Go module (build-bins.sh prometheus, cached);
# 2. the image zkop/prometheus:<release> (prometheus/Dockerfile), rebuilt only when its inputs
#    change, loaded into every node;
# 3. namespace monitoring (Pod Security: restricted), ConfigMaps prometheus-config
#    (prometheus/prometheus.yml) and zookeeper-rules (RULES_FILE, default
#    deploy/chart/files/zookeeper-rules.yaml; empty if that file does not exist), both checked
#    with promtool first; RBAC, Deployment and NodePort Service (prometheus/manifests.yaml). A
#    changed configuration, rules file or image restarts the pod; unchanged, nothing happens.
# 4. waits until the HTTP API answers on http://<any node's InternalIP>:$PROMETHEUS_NODE_PORT.
#
# A ZooKeeperCluster is scraped only if its NetworkPolicy lets this pod in:
#   spec.access.metrics: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}},
#                          podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}}]
. "$(dirname "$0")/lib.sh"
start=$SECONDS

# In the band of NodePorts the API server never allocates by itself (30000-30085 for the default
# range), so no other Service can hold it.
PROMETHEUS_NODE_PORT=${PROMETHEUS_NODE_PORT:-30080}
RULES_FILE=${RULES_FILE:-$REPO_DIR/deploy/chart/files/zookeeper-rules.yaml}
ns=monitoring
ctx=kind-$CLUSTER_NAME
k() { kubectl --context "$ctx" "$@"; }

"$CLUSTER_DIR/build-bins.sh" prometheus
bin=$BIN_CACHE/prometheus-$PROMETHEUS_VERSION
ln -sf "$BIN_CACHE/tools/promtool" /usr/local/bin/promtool
release=$("$bin/prometheus" --version | awk 'NR == 1 {print $3}')
image=zkop/prometheus:$release

# The image: rebuilt when the Dockerfile, the version or the base image changes.
"$REPO_DIR/scripts/docker-up.sh"
base=$(docker image inspect -f '{{.Id}}' "debian:$DEBIAN_SUITE-slim")
inputs=$( { echo "$PROMETHEUS_VERSION $base"; cat "$CLUSTER_DIR/prometheus/Dockerfile"; } | sha256sum | cut -c1-12)
if [[ $(docker image inspect -f '{{index .Config.Labels "zk-on-k8s.inputs"}}' "$image" 2>/dev/null) == "$inputs" ]]; then
  log "image $image: present"
else
  log "building image $image"
  work=$(mktemp -d /tmp/zk-prometheus-image.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  cp "$bin/prometheus" "$bin/promtool" "$work/"
  docker build -q --build-arg BASE="$base" --label "zk-on-k8s.inputs=$inputs" \
    -f "$CLUSTER_DIR/prometheus/Dockerfile" -t "$image" "$work" >/dev/null
  log "built $image: $(( $(docker image inspect -f '{{.Size}}' "$image") / 1000 / 1000 )) MB"
fi
image_id=$(docker image inspect -f '{{.Id}}' "$image")
"$CLUSTER_DIR/load-image.sh" "$image" >&2

# Configuration and rules, checked before anything in the cluster changes.
config=$CLUSTER_DIR/prometheus/prometheus.yml
out=$(promtool check config --syntax-only "$config" 2>&1) || { echo "$out" >&2; die "$config: promtool check config failed"; }
rules_src=() rules_args=() rules=0
if [[ -f $RULES_FILE ]]; then
  rules_src=("$RULES_FILE")
  out=$(promtool check rules "$RULES_FILE" 2>&1) || { echo "$out" >&2; die "$RULES_FILE: promtool check rules failed"; }
  rules=$(sed -n 's/^ *SUCCESS: \([0-9]*\) rules found$/\1/p' <<<"$out")
  rules_args=(--from-file="zookeeper-rules.yaml=$RULES_FILE")
  log "rules: $RULES_FILE ($rules rules)"
else
  log "rules: $RULES_FILE does not exist; ConfigMap zookeeper-rules stays empty"
fi
config_hash=$(cat "$config" "${rules_src[@]}" | sha256sum | cut -c1-12)

k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
k label namespace "$ns" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
k -n "$ns" create configmap prometheus-config --from-file=prometheus.yml="$config" --dry-run=client -o yaml |
  k apply -f - >/dev/null
k -n "$ns" create configmap zookeeper-rules "${rules_args[@]}" --dry-run=client -o yaml | k apply -f - >/dev/null
sed -e "s|@IMAGE@|$image|g" -e "s|@IMAGE_ID@|$image_id|g" -e "s|@INPUTS@|$config_hash|g" \
  -e "s|@NODE_PORT@|$PROMETHEUS_NODE_PORT|g" "$CLUSTER_DIR/prometheus/manifests.yaml" |
  k apply -f - | { grep -v unchanged || true; } | while read -r line; do log "$line"; done
k -n "$ns" rollout status deployment/prometheus --timeout=180s >/dev/null ||
  { k -n "$ns" get pods -o wide >&2; die "Prometheus is not ready after 3 minutes"; }

# The HTTP API from the host, through the NodePort; and the rules it loaded.
ip=$(k get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
url=http://$ip:$PROMETHEUS_NODE_PORT
for _ in $(seq 60); do
  curl -sf --max-time 2 "$url/-/ready" >/dev/null && break
  sleep 1
done
curl -sf --max-time 2 "$url/-/ready" >/dev/null || die "no answer from $url/-/ready"
loaded=$(curl -sf --max-time 5 "$url/api/v1/rules" | jq '[.data.groups[].rules[]] | length')
[[ $loaded == "$rules" ]] || die "Prometheus has $loaded rules loaded, $RULES_FILE has $rules"
log "Prometheus $release ready in $((SECONDS - start))s: $url (any node's InternalIP), $loaded rules"
