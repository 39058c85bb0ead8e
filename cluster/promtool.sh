#!/usr/bin/env bash
# promtool from the Prometheus build the local cluster runs (build-bins.sh prometheus, cached):
#   cluster/promtool.sh ARGS...      e.g. test rules deploy/monitoring/zookeeper-rules.test.yaml
. "$(dirname "$0")/lib.sh"
promtool=$BIN_CACHE/prometheus-$PROMETHEUS_VERSION/promtool
[[ -x $promtool ]] || "$CLUSTER_DIR/build-bins.sh" prometheus
exec "$promtool" "$@"
