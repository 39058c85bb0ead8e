#!/usr/bin/env bash
# Builds the ZooKeeper and operator images, loads them into the local cluster and installs (or
# upgrades) the operator with Helm into namespace zkop-system (Pod Security: restricted).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${ZOOKEEPER_VERSION:-3.9.4}
"$root/image/build.sh" "$version" "zkop/zookeeper:$version"
operator_image=$("$root/image/build-operator.sh" zkop/zookeeper-operator | tail -1)
"$root/cluster/load-image.sh" "zkop/zookeeper:$version" "$operator_image"
kubectl create namespace zkop-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace zkop-system --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
# Helm installs crds/ only on first install; apply the generated CRD so upgrades get it too.
kubectl apply --server-side --force-conflicts -f "$root/deploy/chart/crds/zookeeperclusters.yaml" >/dev/null
helm upgrade --install zookeeper-operator "$root/deploy/chart" --namespace zkop-system \
  --set image.tag="${operator_image##*:}" --wait --timeout 3m >/dev/null
echo "operator $operator_image installed in zkop-system"
