#!/usr/bin/env bash
# Tests of the chart's install modes (helm template; the cluster-wide policies themselves are
# tested on the cluster by tenants::the_operators_account_is_fenced).
set -euo pipefail
chart=$(cd "$(dirname "$0")" && pwd)
# helm as build-bins.sh leaves it (make test's helm phase), unless one is on PATH.
helm=${HELM:-$(command -v helm || echo "${ZK_CACHE:-/var/cache/zk-on-k8s}/bin/tools/helm")}
failed=0
check() { if "${@:2}"; then echo "ok   - $1"; else echo "FAIL - $1"; failed=1; fi; }
render() { "$helm" template zookeeper-operator "$chart" --namespace zkop-system "$@"; }

default=$(render)
namespaced() {
  ! grep -q '^kind: ClusterRole' <<<"$default" &&
    ! grep -q '^kind: ValidatingAdmissionPolicy' <<<"$default" &&
    grep -A1 'name: ZKOP_WATCH_NAMESPACES' <<<"$default" | grep -q 'value: "zkop-system"' &&
    [ "$(grep -c '^kind: Role$' <<<"$default")" = 2 ]
}
check "the default install is namespaced: the release's namespace, a Role, no ClusterRole" namespaced

listed=$(render --set 'watchNamespaces={team-a,team-b}')
several() {
  ! grep -q '^kind: ClusterRole' <<<"$listed" &&
    grep -A1 'name: ZKOP_WATCH_NAMESPACES' <<<"$listed" | grep -q 'value: "team-a,team-b"' &&
    grep -q 'namespace: team-a' <<<"$listed" && grep -q 'namespace: team-b' <<<"$listed"
}
check "watchNamespaces: a Role in each, and only those watched" several

wide=$(render --set clusterWide=true)
cluster_wide() {
  grep -q '^kind: ClusterRole$' <<<"$wide" &&
    ! grep -q 'name: ZKOP_WATCH_NAMESPACES' <<<"$wide" &&
    [ "$(grep -c '^kind: ValidatingAdmissionPolicy$' <<<"$wide")" = 2 ] &&
    [ "$(grep -c '^kind: ValidatingAdmissionPolicyBinding$' <<<"$wide")" = 2 ] &&
    grep -q 'request.userInfo.username == "system:serviceaccount:zkop-system:zookeeper-operator"' <<<"$wide"
}
check "clusterWide: a ClusterRole, fenced by two policies bound to the operator's account" cluster_wide

both() { local err; ! err=$(render --set clusterWide=true --set 'watchNamespaces={a}' 2>&1) && grep -q 'set clusterWide or watchNamespaces, not both' <<<"$err"; }
check "clusterWide with watchNamespaces is refused, saying why" both

exit $failed
