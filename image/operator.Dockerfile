# The ZooKeeperCluster operator. Built by `make operator-image` from a context holding the
# release binary `zookeeper-operator`.
# BASE is pinned by image/build-operator.sh to the exact local base image (its ID).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY zookeeper-operator /usr/local/bin/zookeeper-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/zookeeper-operator"]
