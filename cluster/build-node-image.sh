#!/usr/bin/env bash
# Build the kind node image offline and print its name on stdout.
#
#  1. binaries from Go modules (build-bins.sh), Debian base (scripts/debian-base.sh)
#  2. the images kubeadm expects (registry.k8s.io/kube-apiserver:v1.34.x, etcd,
#     coredns, pause, ...) plus our add-ons (tools image with zk-cni, local-path)
#  3. the node: Debian + systemd + containerd/runc/CNI plugins from Debian +
#     kubeadm/kubelet/kubectl/crictl, with the images of 2 preloaded into
#     containerd's k8s.io namespace.
#
# The node image is tagged with a hash of everything it is made from, so an
# unchanged tree reuses it; it is also saved under $IMG_CACHE.
# ZK_REBUILD=1 rebuilds it and its images without Docker's layer cache.
. "$(dirname "$0")/lib.sh"

"$REPO_DIR/scripts/docker-up.sh"
IMAGE=debian:$DEBIAN_SUITE-slim SUITE=$DEBIAN_SUITE "$REPO_DIR/scripts/debian-base.sh"

inputs_hash=$(cd "$REPO_DIR" && cat cluster/versions.env scripts/runc-wrapper.sh cluster/build-node-image.sh cluster/build-bins.sh \
  $(find cluster/node cluster/images -type f | sort) | sha256sum | cut -c1-12)
NODE_IMAGE=zk-on-k8s/kind-node:$K8S_VERSION-$inputs_hash
node_tar=$IMG_CACHE/kind-node-$K8S_VERSION-$inputs_hash.tar

nocache=()
if [[ ${ZK_REBUILD:-0} == 1 ]]; then
  nocache=(--no-cache)
elif docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  log "node image $NODE_IMAGE: present"; echo "$NODE_IMAGE"; exit 0
elif [[ -f $node_tar ]]; then
  log "node image: loading $node_tar"; docker load -i "$node_tar" >&2; echo "$NODE_IMAGE"; exit 0
fi

# What the node holds (helm and Prometheus run on the host: they are built when needed).
"$CLUSTER_DIR/build-bins.sh" pause kind kubernetes etcd coredns crictl local-path kube-router >&2
K8S_BIN=$BIN_CACHE/kubernetes-$K8S_VERSION

TOOLS_IMAGE=docker.io/zk-on-k8s/tools:$inputs_hash
LPP_IMAGE=docker.io/zk-on-k8s/local-path-provisioner:$LOCAL_PATH_PROVISIONER_VERSION
PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_IMAGE_TAG
KUBE_ROUTER_IMAGE=docker.io/zk-on-k8s/kube-router:$KUBE_ROUTER_VERSION

work=$(mktemp -d /tmp/zk-node-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

# scratch_image TAG BINARY [ENTRYPOINT]: an image holding one static binary.
scratch_image() {
  local tag=$1 bin=$2 entry=${3:-}
  local ctx=$work/ctx-${bin##*/}
  mkdir -p "$ctx"; cp "$bin" "$ctx/"
  {
    echo "FROM scratch"
    echo "COPY ${bin##*/} /usr/local/bin/${bin##*/}"
    echo "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [[ -n $entry ]] && echo "ENTRYPOINT [\"$entry\"]"
  } >"$ctx/Dockerfile"
  docker build -q "${nocache[@]}" -t "$tag" "$ctx" >/dev/null
  echo "$tag"
}

log "first build of the node image, offline from Kubernetes' Go modules (about 15 minutes on 2 cores, cached afterwards);" \
    "next: component images, the node image, preloading, then the host tools and the cluster"
log "building component images"
images=()
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  images+=("$(scratch_image "registry.k8s.io/$c:$K8S_VERSION" "$K8S_BIN/$c")")
done
images+=("$(scratch_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "$BIN_CACHE/etcd-$ETCD_VERSION/etcd")")
images+=("$(scratch_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
  "$BIN_CACHE/coredns-$COREDNS_VERSION/coredns" /usr/local/bin/coredns)")
images+=("$(scratch_image "$PAUSE_IMAGE" "$BIN_CACHE/pause-$PAUSE_IMAGE_TAG/pause" /usr/local/bin/pause)")
images+=("$(scratch_image "$LPP_IMAGE" \
  "$BIN_CACHE/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION/local-path-provisioner")")

# kube-proxy (iptables mode) needs iptables and conntrack: Debian base.
mkdir -p "$work/ctx-kube-proxy"; cp "$K8S_BIN/kube-proxy" "$work/ctx-kube-proxy/"
cat >"$work/ctx-kube-proxy/Dockerfile" <<EOF
FROM debian:$DEBIAN_SUITE-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      iptables conntrack nftables && rm -rf /var/lib/apt/lists/*
COPY kube-proxy /usr/local/bin/kube-proxy
EOF
docker build -q "${nocache[@]}" -t "registry.k8s.io/kube-proxy:$K8S_VERSION" "$work/ctx-kube-proxy" >/dev/null
images+=("registry.k8s.io/kube-proxy:$K8S_VERSION")

# kube-router's NetworkPolicy controller programs iptables (the same nft backend as
# kube-proxy's, both Debian's) and ipset.
mkdir -p "$work/ctx-kube-router"; cp "$BIN_CACHE/kube-router-$KUBE_ROUTER_VERSION/kube-router" "$work/ctx-kube-router/"
cat >"$work/ctx-kube-router/Dockerfile" <<EOF
FROM debian:$DEBIAN_SUITE-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      iptables ipset conntrack && rm -rf /var/lib/apt/lists/*
COPY kube-router /usr/local/bin/kube-router
ENTRYPOINT ["/usr/local/bin/kube-router"]
EOF
docker build -q "${nocache[@]}" -t "$KUBE_ROUTER_IMAGE" "$work/ctx-kube-router" >/dev/null
images+=("$KUBE_ROUTER_IMAGE")

docker build -q "${nocache[@]}" -t "$TOOLS_IMAGE" "$CLUSTER_DIR/images/tools" >/dev/null
images+=("$TOOLS_IMAGE")

log "saving ${#images[@]} images for preloading"
docker save -o "$work/preload.tar" "${images[@]}"

log "building node image"
ctx=$work/ctx-node
mkdir -p "$ctx/bin"
cp -a "$CLUSTER_DIR/node/files" "$ctx/files"
install -D -m 0755 "$REPO_DIR/scripts/runc-wrapper.sh" "$ctx/files/usr/local/libexec/zk-on-k8s/runc-wrapper"
sed -i -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" -e "s|@TOOLS_IMAGE@|$TOOLS_IMAGE|g" -e "s|@LPP_IMAGE@|$LPP_IMAGE|g" \
  -e "s|@KUBE_ROUTER_IMAGE@|$KUBE_ROUTER_IMAGE|g" \
  "$ctx/files/etc/containerd/config.toml" "$ctx"/files/kind/manifests/*.yaml
echo "$K8S_VERSION" >"$ctx/files/kind/version"
for b in kubeadm kubelet kubectl; do cp "$K8S_BIN/$b" "$ctx/bin/"; done
cp "$BIN_CACHE/crictl-$CRICTL_VERSION/crictl" "$ctx/bin/"
cp "$CLUSTER_DIR/node/Dockerfile" "$ctx/Dockerfile"
docker build -q "${nocache[@]}" --build-arg "BASE=debian:$DEBIAN_SUITE-slim" -t "$NODE_IMAGE-stage" "$ctx" >/dev/null

log "preloading images into the node's containerd"
cid=$(docker run -d --privileged --entrypoint /bin/bash -v "$work/preload.tar:/preload.tar:ro" "$NODE_IMAGE-stage" -c '
  containerd >/tmp/containerd.log 2>&1 &
  for i in $(seq 1 60); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
  ctr -n k8s.io images import --no-unpack --all-platforms /preload.tar
  rc=$?
  ctr -n k8s.io images ls -q
  kill %1; wait
  exit $rc')
if [[ $(docker wait "$cid") != 0 ]]; then docker logs "$cid" >&2; docker rm -f "$cid" >/dev/null; exit 1; fi
docker logs "$cid" >&2
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
  "$cid" "$NODE_IMAGE" >/dev/null
docker rm "$cid" >/dev/null
docker rmi "$NODE_IMAGE-stage" >/dev/null

log "saving $NODE_IMAGE to $node_tar"
docker save -o "$node_tar.tmp" "$NODE_IMAGE" && mv "$node_tar.tmp" "$node_tar"

# Drop node images of older inputs (an image still used by a running node stays).
find "$IMG_CACHE" -name 'kind-node-*.tar' ! -name "${node_tar##*/}" -delete
for repo in zk-on-k8s/kind-node zk-on-k8s/tools; do
  docker images "$repo" --format '{{.Repository}}:{{.Tag}}' |
    grep -vxF -e "$NODE_IMAGE" -e "${TOOLS_IMAGE#docker.io/}" | xargs -r docker rmi >/dev/null 2>&1 || true
done
echo "$NODE_IMAGE"
