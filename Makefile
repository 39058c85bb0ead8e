# ZooKeeper on Kubernetes: zk-agent, the ZooKeeper image, the local cluster.
#
#   make test          everything CI runs (scripts/test.sh): lint, unit and integration tests on
#                      real ZooKeeper, the image test in Docker, the cluster test, the e2e tests;
#                      ends with a table of each phase's time
#   make image         the ZooKeeper images (3.9.5, and 3.8.6 for upgrade tests)
#   make bench-agent   benchmark: ensemble start by zk-agent vs by hand
#   make demo          the main job: local cluster, operator, a 3-member ensemble, the seed's test
#   make e2e           the gate's end-to-end tests of the operator on the local cluster, side by
#                      side (E2E="faults::drains" runs the tests whose name contains it)
#   make e2e-full      every end-to-end test: the gate's and those that repeat a claim of the gate
#                      in another setting (crates/e2e/src/lib.rs); run it before closing an issue
#                      that touches what they cover
#   make bench         benchmark: operator vs a plain StatefulSet, on the local cluster
#   make bench-day2    benchmark: write stalls during day-2 operations, on the local cluster
#   make bench-scale   benchmark: the operator's cost with 1-30 real and 100-300 unscheduled clusters
#   make bench-backup  benchmark: client write stalls while backups run, against none running
#   make chaos         the fault-injection suite in randomized repeated rounds (CHAOS_ROUNDS=3)
#   make test-rules    the alert rules' unit tests (promtool, built from Prometheus' Go module)
#   make prometheus    Prometheus on the local cluster (see cluster/cluster.mk)
#   make cluster       local kind cluster (see cluster/cluster.mk)

ZOOKEEPER_VERSION ?= 3.9.5
ZOOKEEPER_VERSIONS := 3.9.5 3.8.6
IMAGE_REPO ?= zkop/zookeeper
IMAGE ?= $(IMAGE_REPO):$(ZOOKEEPER_VERSION)

export ZK_TEST_ZOOKEEPER_HOME := $(CURDIR)/build/zookeeper-$(ZOOKEEPER_VERSION)

.PHONY: prereqs all build lint test test-rust test-rules test-image image images zookeeper-dist bench-agent clean crd check-crd install demo e2e e2e-full bench bench-day2 bench-scale bench-backup chaos s3-store

all: build

build:
	cargo build --release -p zk-agent

zookeeper-dist:
	image/zookeeper-dist/fetch.sh $(ZOOKEEPER_VERSION) build/zookeeper-$(ZOOKEEPER_VERSION)

# What the build needs, checked before it starts: installs Debian's parts, names the rest.
prereqs:
	scripts/prereqs.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

test:
	scripts/test.sh

# The ensemble tests start JVMs; two tests at a time fit two cores.
test-rust: zookeeper-dist
	cargo test --workspace --exclude e2e -- --test-threads=2

# promtool from the same Go module build as the local cluster's Prometheus (cached after the first).
test-rules:
	cluster/build-bins.sh prometheus
	cluster/promtool.sh test rules deploy/monitoring/zookeeper-rules.test.yaml

# The CRD is generated from crates/api; the committed copy must match.
crd:
	cargo run -q -p zkop-api --bin crdgen > deploy/chart/crds/zookeeperclusters.yaml

check-crd:
	@cargo run -q -p zkop-api --bin crdgen | diff -u deploy/chart/crds/zookeeperclusters.yaml - \
	  || { echo "deploy/chart/crds is stale: run make crd" >&2; exit 1; }

install: prereqs cluster docker
	scripts/install-operator.sh

# PROMETHEUS=1 make demo also installs the local Prometheus (off by default: its first build
# takes a few minutes).
demo: install $(if $(PROMETHEUS),prometheus)
	scripts/demo.sh

# Side by side, as crates/e2e/src/lib.rs allows (E2E_LANES tests at once, default 2); the tests
# that disturb nodes one at a time, after the others. Prometheus is there for the observability test.
e2e: install prometheus s3-store
	cargo run -q --locked -p e2e --bin e2e-run -- $(E2E)

# e2e-full also upgrades from the release before the default: its image is built and loaded too.
e2e-full: export ZOOKEEPER_VERSIONS := $(ZOOKEEPER_VERSIONS) 3.9.4
e2e-full: install prometheus s3-store
	cargo run -q --locked -p e2e --bin e2e-run -- --full $(E2E)

# The object store the backup tests write to (S3 over TLS, signatures checked), on the local cluster.
s3-store: cluster docker
	cluster/s3-store/build.sh

chaos: install
	scripts/chaos.sh

bench: install
	cargo bench --profile dev --workspace --bench operator

bench-day2: install
	cargo bench --profile dev --workspace --bench day2

bench-scale: install
	cargo bench --profile dev --workspace --bench scale

bench-backup: install s3-store
	cargo bench --profile dev --workspace --bench backup

image: docker
	image/build.sh $(ZOOKEEPER_VERSION) $(IMAGE)

images: docker
	@for v in $(ZOOKEEPER_VERSIONS); do image/build.sh $$v $(IMAGE_REPO):$$v || exit 1; done

test-image: image
	image/test.sh $(IMAGE)

bench-agent: zookeeper-dist
	cargo bench -p zk-agent --bench bootstrap -- 5

clean:
	rm -rf build target

include cluster/cluster.mk
