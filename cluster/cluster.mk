# Kubernetes-in-Docker cluster for the tests (issue 3). Included by the
# top-level Makefile; paths are relative to the repository root.
#
#   make docker                   Docker engine + debian:bookworm-slim base image
#   make cluster                  kind cluster, 1 control-plane + 3 workers (cached builds)
#   make cluster-down             delete it
#   make test-cluster             check the cluster does what the project needs
#   make load-image IMAGE=name:tag  load a local image into the cluster's nodes
#   make prometheus               Prometheus in namespace monitoring scraping ZooKeeper and the
#                                 operator, API on NodePort 30080; promtool on the host
#                                 (RULES_FILE=path: the rules it loads)

.PHONY: docker cluster cluster-down test-cluster load-image prometheus

docker:
	scripts/docker-up.sh
	scripts/debian-base.sh

cluster:
	cluster/up.sh

cluster-down:
	cluster/down.sh

# depends on cluster: creates it if it is not up (a second or so if it is)
test-cluster: cluster
	cluster/test.sh

load-image:
	@test -n "$(IMAGE)" || { echo "usage: make load-image IMAGE=name:tag" >&2; exit 2; }
	cluster/load-image.sh $(IMAGE)

# depends on cluster: creates it if it is not up (a second or so if it is)
prometheus: cluster
	cluster/prometheus.sh
