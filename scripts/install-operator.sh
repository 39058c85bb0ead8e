#!/usr/bin/env bash
# Builds the ZooKeeper and operator images, loads them into the local cluster and installs (or
# upgrades) the operator with Helm into namespace zkop-system (Pod Security: restricted).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Every ZooKeeper version the tests use: the default, and the one upgrades start from.
versions=${ZOOKEEPER_VERSIONS:-3.9.5 3.8.6}
images=()
for version in $versions; do
  "$root/image/build.sh" "$version" "zkop/zookeeper:$version"
  images+=("zkop/zookeeper:$version")
done
operator_image=$("$root/image/build-operator.sh" zkop/zookeeper-operator | tail -1)
"$root/cluster/load-image.sh" "${images[@]}" "$operator_image"
# helm from its Go module (cached after the first build), on PATH like the cluster's tools.
"$root/cluster/build-bins.sh" helm >&2
ln -sf "${ZK_CACHE:-/var/cache/zk-on-k8s}/bin/tools/helm" /usr/local/bin/helm
kubectl create namespace zkop-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace zkop-system --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
# Helm installs crds/ only on first install; apply the generated CRD so upgrades get it too.
kubectl apply --server-side --force-conflicts -f "$root/deploy/chart/crds/zookeeperclusters.yaml" >/dev/null
helm upgrade --install zookeeper-operator "$root/deploy/chart" --namespace zkop-system \
  --set image.tag="${operator_image##*:}" --set clusterWide=true --wait --timeout 3m >/dev/null
echo "operator $operator_image installed in zkop-system"
