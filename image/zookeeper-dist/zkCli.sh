#!/bin/sh
# The ZooKeeper command-line client, as in Apache's release: zkCli.sh [-server host:port] [command]
ZOOKEEPER_HOME=$(cd "$(dirname "$0")/.." && pwd)
exec "${JAVA:-java}" ${CLIENT_JVMFLAGS:--Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1} \
  -Dzookeeper.console.threshold="${ZOO_CLI_LOG_LEVEL:-WARN}" \
  -cp "$ZOOKEEPER_HOME/lib/*:$ZOOKEEPER_HOME/conf" \
  org.apache.zookeeper.ZooKeeperMain "$@"
