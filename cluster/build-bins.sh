#!/usr/bin/env bash
# Build every binary the cluster needs from Go modules (and pause from C),
# into $BIN_CACHE/<name>-<version>/. A finished dir is never rebuilt.
#
#   cluster/build-bins.sh [kubernetes|etcd|coredns|crictl|kind|helm|local-path|kube-router|pause|prometheus ...]
#
# Each Go program is built through a small wrapper module in $CACHE/src/<name>:
# it requires the upstream module at the pinned version and `replace`s the
# upstream's relative replaces (k8s staging modules, etcd submodules) with the
# published versions, since a dependency's own replaces are ignored.
. "$(dirname "$0")/lib.sh"

# go_wrapper NAME VERSION 'ldflags' PKG... ; go.mod body on stdin
# (require/replace lines); optional extra files already in $CACHE/src/NAME.
# GO_TAGS (optional): build tags, comma-separated.
go_wrapper() {
  local name=$1 version=$2 ldflags=$3; shift 3
  local out=$BIN_CACHE/$name-$version
  if [ -d "$out" ]; then log "$name $version: cached"; cat >/dev/null; return; fi
  local src=$CACHE/src/$name-$version
  mkdir -p "$src"
  { echo "module zk-on-k8s/build/$name"; echo; echo "go 1.24"; echo; cat; } >"$src/go.mod"
  if [ ! -f "$src/main.go" ]; then
    { echo "//go:build tools"; echo; echo "package tools"; echo; echo "import ("
      for p in "$@"; do echo "	_ \"$p\""; done; echo ")"; } >"$src/tools.go"
  fi
  log "$name $version: resolving modules"
  (cd "$src" && go mod tidy)
  local tags=()
  if [ -n "${GO_TAGS:-}" ]; then tags=(-tags "$GO_TAGS"); fi
  log "$name $version: building $*${GO_TAGS:+ (tags $GO_TAGS)}"
  local start=$SECONDS tmp=$out.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  # No DWARF: the link strips it anyway (-w), and not generating it made a cold build of
  # CoreDNS 11-14% faster here (82 and 86 s against 73 and 74 s, empty GOCACHE each time).
  (cd "$src" && go build "${tags[@]}" -gcflags=all=-dwarf=false -ldflags "-s -w $ldflags" -o "$tmp/" "$@")
  commit_cache "$tmp" "$out"
  log "$name $version: built in $((SECONDS - start))s"
}

build_kubernetes() {
  local v=$K8S_VERSION k=$GOMODCACHE/k8s.io/kubernetes@$K8S_VERSION
  [ -d "$BIN_CACHE/kubernetes-$v" ] && { log "kubernetes $v: cached"; return; }
  go mod download "k8s.io/kubernetes@$v"
  local minor=${v#v1.}; minor=${minor%%.*}
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  {
    echo "require k8s.io/kubernetes $v"
    echo "replace ("
    # every "k8s.io/x => ./staging/src/k8s.io/x" of upstream becomes the published k8s.io/x
    awk -v sv="$K8S_STAGING_VERSION" '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " " sv}' "$k/go.mod"
    echo ")"
  } | go_wrapper kubernetes "$v" "$ld" \
    k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
}

build_etcd() {
  local v=$ETCD_VERSION src=$CACHE/src/etcd-$ETCD_VERSION
  mkdir -p "$src"
  cat >"$src/main.go" <<'EOF'
// etcd server: the same entry point as upstream's main package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  go_wrapper etcd "$v" "-X go.etcd.io/etcd/api/v3/version.GitSHA=release-$v" . <<EOF
require go.etcd.io/etcd/server/v3 $v
replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $v
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $v
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $v
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $v
)
EOF
}

# CoreDNS with the plugins kubeadm's Corefile names, and log: upstream's main links in every
# plugin (cloud DNS providers' SDKs among them), which took about twice as long to build.
build_coredns() {
  local src=$CACHE/src/coredns-$COREDNS_VERSION
  mkdir -p "$src"
  rm -f "$src/tools.go"
  cat >"$src/main.go" <<'EOF'
// CoreDNS with the plugins a kubeadm cluster's Corefile uses (and log).
package main

import (
	_ "github.com/coredns/caddy/onevent"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
EOF
  echo "require github.com/coredns/coredns $COREDNS_VERSION" | go_wrapper coredns "$COREDNS_VERSION" "" .
}

build_kind() {
  echo "require sigs.k8s.io/kind $KIND_VERSION" | go_wrapper kind "$KIND_VERSION" "" sigs.k8s.io/kind
}

build_helm() {
  echo "require helm.sh/helm/v3 $HELM_VERSION" |
    go_wrapper helm "$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
}

build_local_path() {
  echo "require github.com/rancher/local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION" |
    go_wrapper local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" "" github.com/rancher/local-path-provisioner
}

build_crictl() {
  echo "require sigs.k8s.io/cri-tools $CRICTL_VERSION" |
    go_wrapper crictl "$CRICTL_VERSION" "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
}

build_kube_router() {
  echo "require github.com/cloudnativelabs/kube-router/v2 $KUBE_ROUTER_VERSION" |
    go_wrapper kube-router "$KUBE_ROUTER_VERSION" \
      "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
      github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
}

# Prometheus server and promtool. The module's v0.3MM.P is Prometheus 3.MM.P (its VERSION file).
# Only Kubernetes service discovery is compiled in (plugins/: remove_all_sd + enable_<name>_sd;
# file and http SD are always there). No web UI: its assets are embedded only with the
# builtinassets tag and built by npm, which the module does not ship; the HTTP API is complete.
# The module proxy gives no commit, so Revision is the module version; the build date is the
# module's publication time, so that the same version always gives the same binary.
build_prometheus() {
  local v=$PROMETHEUS_VERSION mod=github.com/prometheus/prometheus
  [ -d "$BIN_CACHE/prometheus-$v" ] && { log "prometheus $v: cached"; return; }
  go mod download "$mod@$v"
  local published pkg=github.com/prometheus/common/version ld
  published=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$GOMODCACHE/cache/download/$mod/@v/$v.info")
  ld="-X $pkg.Version=$(cat "$GOMODCACHE/$mod@$v/VERSION") -X $pkg.Revision=$v -X $pkg.Branch=HEAD"
  ld+=" -X $pkg.BuildUser=zk-on-k8s -X $pkg.BuildDate=$(date -u -d "$published" +%Y%m%d-%H:%M:%S)"
  echo "require $mod $v" |
    GO_TAGS=remove_all_sd,enable_kubernetes_sd go_wrapper prometheus "$v" "$ld" $mod/cmd/prometheus $mod/cmd/promtool
}

build_pause() {
  local out=$BIN_CACHE/pause-$PAUSE_IMAGE_TAG
  [ -d "$out" ] && { log "pause: cached"; return; }
  local tmp=$out.tmp.$$; mkdir -p "$tmp"
  gcc -static -Os -o "$tmp/pause" "$CLUSTER_DIR/images/pause/pause.c"
  strip "$tmp/pause"
  commit_cache "$tmp" "$out"
}

# Host tools (kind, kubectl, helm) on PATH via $BIN_CACHE/tools.
link_tools() {
  mkdir -p "$BIN_CACHE/tools"
  ln -sf "../kind-$KIND_VERSION/kind" "$BIN_CACHE/tools/kind"
  ln -sf "../kubernetes-$K8S_VERSION/kubectl" "$BIN_CACHE/tools/kubectl"
  [ -x "$BIN_CACHE/helm-$HELM_VERSION/helm" ] && ln -sf "../helm-$HELM_VERSION/helm" "$BIN_CACHE/tools/helm"
  [ -x "$BIN_CACHE/prometheus-$PROMETHEUS_VERSION/promtool" ] &&
    ln -sf "../prometheus-$PROMETHEUS_VERSION/promtool" "$BIN_CACHE/tools/promtool"
  true
}

what=${*:-pause kind kubernetes etcd coredns crictl local-path kube-router helm}
for w in $what; do
  case $w in
    kubernetes) build_kubernetes ;;
    etcd) build_etcd ;;
    coredns) build_coredns ;;
    kind) build_kind ;;
    helm) build_helm ;;
    local-path) build_local_path ;;
    kube-router) build_kube_router ;;
    pause) build_pause ;;
    crictl) build_crictl ;;
    prometheus) build_prometheus ;;
    *) echo "unknown: $w" >&2; exit 2 ;;
  esac
done
link_tools
