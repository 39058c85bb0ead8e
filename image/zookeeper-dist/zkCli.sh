#!/bin/sh
# The ZooKeeper command-line client, as in Apache's release: zkCli.sh [-server host:port] [command]
# Inside a member with TLS on, it connects over mutual TLS with the member's own certificate,
# to localhost:2182 unless -server says otherwise: the seed's `kubectl exec ... zkCli.sh` works.
ZOOKEEPER_HOME=$(cd "$(dirname "$0")/.." && pwd)
TLS_DIR=${ZK_TLS_DIR:-/tls}
TLS_FLAGS=""
if [ -r "$TLS_DIR/member.pem" ] && [ -r "$TLS_DIR/ca.pem" ]; then
  TLS_FLAGS="-Dzookeeper.client.secure=true -Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty \
    -Dzookeeper.ssl.keyStore.location=$TLS_DIR/member.pem -Dzookeeper.ssl.keyStore.type=PEM \
    -Dzookeeper.ssl.trustStore.location=$TLS_DIR/ca.pem -Dzookeeper.ssl.trustStore.type=PEM"
  case " $* " in
    *" -server "*) ;;
    *) set -- -server localhost:2182 "$@" ;;
  esac
fi
exec "${JAVA:-java}" ${CLIENT_JVMFLAGS:--Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1} $TLS_FLAGS \
  -Dzookeeper.console.threshold="${ZOO_CLI_LOG_LEVEL:-WARN}" \
  -cp "$ZOOKEEPER_HOME/lib/*:$ZOOKEEPER_HOME/conf" \
  org.apache.zookeeper.ZooKeeperMain "$@"
