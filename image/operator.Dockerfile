# The ZooKeeperCluster operator. Built by `make operator-image` from a context holding the
# release binary `zookeeper-operator`.
FROM debian:bookworm-slim
COPY zookeeper-operator /usr/local/bin/zookeeper-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/zookeeper-operator"]
