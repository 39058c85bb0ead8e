#!/usr/bin/env bash
# `make test`: everything CI runs, as timed phases in lanes that run side by side. On two cores
# the Rust and Go builds each fill the other's waits (downloads, links, JVM start-ups), and what
# the e2e tests do not need runs beside them at the lowest CPU priority:
#
#   docker      Docker and the Debian base image
#   cluster     the Go builds of Kubernetes and its add-ons, the node image, the kind cluster,
#               the cluster test
#   prometheus  helm and Prometheus built (after the cluster's Go builds, beside the node image,
#               at the lowest CPU priority), the alert rules' unit tests, Prometheus on the
#               cluster; the e2e tests that need it wait for it (e2e::Need), the others do not
#   main        cargo fmt; one build of every target of the workspace, linted by clippy as it
#               compiles; unit and integration tests (real ZooKeeper; the CRD check among them),
#               the images (from the binaries that build made: ZK_PROFILE=dev, see
#               image/build-binaries.sh), the image test, the operator installed, then the e2e
#               tests (see the e2e phase)
#
# Every cargo run here selects the whole workspace: cargo unifies features over the packages a
# run selects, so a run of one package (-p) compiled a few dozen dependencies again with other
# features.
#
# Each phase's output goes to build/ci/<phase>.log (the main lane's also here); a failed phase
# prints its log's tail. At the end, and on failure, scripts/phase-report.sh prints each phase's
# time beside its usual cold and warm times (.ci/phase-times.tsv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ci=$root/build/ci
rm -rf "$ci"
mkdir -p "$ci"
: "${ZK_STARTED:=$(date +%s)}"
export ZK_STARTED ZK_PHASES=$ci/phases.tsv ZK_PROFILE=dev
# Clippy lints the workspace's own crates while they compile for the tests, as `cargo clippy`
# does (it sets the same two variables): one compile, not a check of every dependency and then
# a build. Every cargo run here sees them, so nothing is compiled again without them.
export RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
touch "$ZK_PHASES"
# Cold: the cluster cache holds no Kubernetes build yet (this run builds everything).
. cluster/versions.env
if [[ -d ${ZK_CACHE:-/var/cache/zk-on-k8s}/bin/kubernetes-$K8S_VERSION ]]; then echo warm; else echo cold; fi >"$ci/kind"

lanes=()
cleanup() {
  local rc=$?
  # Each lane is a process group of its own (set -m): stopping it stops its builds too.
  for pid in "${lanes[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  scripts/phase-report.sh "$ci" || true
  exit "$rc"
}
trap cleanup EXIT

phase() { scripts/phase.sh "$@"; }

# lane NAME FUNCTION: runs FUNCTION in the background (its phases log to build/ci/<phase>.log),
# stopping at its first failed phase; its exit status lands in build/ci/lane-NAME.rc.
lane() {
  local name=$1 fn=$2
  ( set +e; ( set -e; ZK_LANE=$name "$fn" ) >"$ci/lane-$name.log" 2>&1; echo $? >"$ci/lane-$name.rc" ) &
  lanes+=("$!")
}
# await LANE: waits for a lane to end; fails, showing its log's tail, if it failed.
await() {
  until [[ -s $ci/lane-$1.rc ]]; do sleep 2; done
  if [[ $(cat "$ci/lane-$1.rc") != 0 ]]; then
    echo "lane $1 failed; the last lines of $ci/lane-$1.log:" >&2
    tail -n 80 "$ci/lane-$1.log" >&2
    return 1
  fi
}
# await_phase PHASE: waits until a phase of another lane has ended; fails if it failed or if its
# lane ended without it.
await_phase() {
  local line
  while ! line=$(grep -m1 "^$1	" "$ZK_PHASES"); do
    for rc in "$ci"/lane-*.rc; do
      [[ -s $rc && $(cat "$rc") != 0 ]] && { echo "waiting for $1: lane ${rc##*/lane-} failed" >&2; return 1; }
    done
    sleep 2
  done
  [[ $(cut -f5 <<<"$line") == 0 ]]
}

docker_lane() {
  phase docker scripts/docker-up.sh
  phase docker-config scripts/docker-daemon-json.test.sh
  phase debian-base scripts/debian-base.sh
}

cluster_lane() {
  # What the node image holds; helm (for the install) and Prometheus build beside the node image.
  phase go-builds cluster/build-bins.sh pause kind kubernetes etcd coredns crictl local-path kube-router
  await docker
  phase node-image cluster/build-node-image.sh
  phase cluster-up cluster/up.sh
  phase cluster-test cluster/test.sh
}

# Whether Prometheus is on the cluster, for the e2e tests that need it (e2e-run, e2e::Need).
export E2E_PROMETHEUS_READY=$ci/prometheus.ready
prometheus_lane() {
  trap 'echo "the prometheus lane failed: build/ci/lane-prometheus.log" >"$E2E_PROMETHEUS_READY"' ERR
  await_phase go-builds
  phase helm cluster/build-bins.sh helm
  phase chart-test deploy/chart/test.sh
  # Beside the first e2e tests on a cold run: their JVMs come first.
  phase prometheus-build nice -n 19 cluster/build-bins.sh prometheus
  phase rules cluster/promtool.sh test rules deploy/monitoring/zookeeper-rules.test.yaml
  await cluster
  phase prometheus cluster/prometheus.sh
  echo ready >"$E2E_PROMETHEUS_READY"
}

exec 3>&1
set -m
ZK_LANE=main phase prereqs scripts/prereqs.sh
lane docker docker_lane
lane cluster cluster_lane
lane prometheus prometheus_lane
export ZK_LANE=main
phase fmt cargo fmt --all --check
phase build cargo test --quiet --locked --workspace --all-targets --no-run
phase unit-tests make -s test-rust
await docker
phase images sh -c 'make -s images && image/build-operator.sh zkop/zookeeper-operator && cluster/s3-store/build.sh --no-load'
phase image-test make -s test-image
# After the cluster test: it drains a node.
await cluster
await_phase helm
phase install sh -c 'scripts/install-operator.sh && cluster/load-image.sh zkop/s3-store:e2e'
# Two e2e tests side by side (E2E_LANES=1: one at a time). The workload's proofs are counted
# writes before and after each fault, not writes per window, so a loaded machine only slows them
# (docs/ci.md, 2026-12-03: "41 writes in 20 s" failed a window-based check). The observability
# test starts once Prometheus is installed (E2E_PROMETHEUS_READY), the others at once.
E2E_LANES=${E2E_LANES:-2} phase e2e target/debug/e2e-run
await prometheus
