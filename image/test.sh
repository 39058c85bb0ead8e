#!/usr/bin/env bash
# The image on its own (Docker, no Kubernetes): the seed's test with three containers.
# Each container is started as a StatefulSet pod would be (hostname zk-<i>, a DNS name under a
# headless Service, a volume of its own), and checked through the image's own zkCli.sh. Then
# what the image's cut-down Java runtime must still do: zkCli.sh's interactive line editing
# (jline), the JVM and file-descriptor metrics, and (with openssl on this machine) the three
# again with TLS as zk-agent configures it: ECDSA P-256 certificates in PEM, TLS between peers,
# mutual TLS with x509 authentication on the client port.
# Usage: image/test.sh IMAGE
set -euo pipefail
image=${1:?usage: test.sh IMAGE}
net=zk-image-test
domain=zk-headless.default.svc.cluster.local
passed=0 failed=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok   - $1"; passed=$((passed + 1)); else echo "FAIL - $1"; failed=$((failed + 1)); fi
}
tls=""
cleanup() {
  docker rm -f zk-0 zk-1 zk-2 >/dev/null 2>&1 || true
  docker volume rm zk-image-test-{,tls-}{0,1,2} >/dev/null 2>&1 || true
  docker network rm $net >/dev/null 2>&1 || true
  [ -z "$tls" ] || rm -rf "$tls"
}
trap cleanup EXIT
cleanup
docker network create $net >/dev/null

volumes=zk-image-test
start() { # start ORDINAL ENSEMBLE_STATE [DOCKER RUN OPTIONS...]; the volume is $volumes-ORDINAL
  docker run -d --name "zk-$1" --hostname "zk-$1" --network $net --network-alias "zk-$1.$domain" \
    --memory 512m -v "$volumes-$1:/data" \
    -e ZK_REPLICAS=3 -e ZK_HEADLESS_SERVICE=zk-headless -e ZK_NAMESPACE=default -e ZK_ENSEMBLE_STATE="$2" \
    "${@:3}" "$image" >/dev/null
}
ready() { # ready ORDINAL [SECONDS]
  local deadline=$((SECONDS + ${2:-120}))
  until docker exec "zk-$1" zk-agent probe ready >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { docker logs --tail 30 "zk-$1"; return 1; }
    sleep 0.5
  done
}
zkcli() { # zkcli ORDINAL COMMAND... ; prints the command's output without the client's banner
  docker exec "zk-$1" /opt/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181 "${@:2}" 2>&1 | grep -v -e '^Connecting to' -e '^$' -e 'WATCHER' -e 'WatchedEvent'
}

all_ready() { ready 0 && ready 1 && ready 2; }
created_foo() { zkcli 0 create /foo bar | grep -q 'Created /foo'; }
reads_bar() { zkcli "$1" get /foo | grep -qx bar; }

for i in 0 1 2; do start $i new; done
check "three containers started by zk-agent reach quorum" all_ready
check "runs as a non-root user" test "$(docker exec zk-0 id -u)" = 1000
check "the ZooKeeper JVM is PID 1 (signals reach it)" sh -c "docker exec zk-0 cat /proc/1/cmdline | tr '\0' ' ' | grep -q QuorumPeerMain"
check "heap sized from the 512 MiB memory limit" sh -c "docker logs zk-0 2>&1 | grep -q -- '-Xmx256m'"
check "zkCli.sh create /foo bar through zk-0" created_foo
stop_start=$SECONDS
docker stop -t 30 zk-0 >/dev/null
check "SIGTERM stops the JVM promptly ($((SECONDS - stop_start))s) with its exit status (143)" \
  test "$(docker inspect -f '{{.State.ExitCode}}' zk-0)" = 143 -a $((SECONDS - stop_start)) -lt 20
docker rm zk-0 >/dev/null
check "zk-1 serves /foo = bar while zk-0 is gone" reads_bar 1
start 0 existing
check "zk-0 comes back under the same name and volume" ready 0
check "zk-0 serves /foo = bar again" reads_bar 0
live() { docker exec zk-0 zk-agent probe live >/dev/null; }
check "probe live answers" live

# As `kubectl exec -ti <pod> bash` then zkCli.sh: on a terminal, with jline (it needs java.desktop).
interactive() {
  local out
  out=$( (sleep 1; printf 'ls /zoo\t\n'; sleep 10; printf 'quit\n') |
    docker exec -i zk-0 script -qc "/opt/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181" /dev/null 2>&1 | tr -d '\r')
  # JLine 3 (ZooKeeper 3.8.6, 3.9.5) writes terminal control sequences before the listing.
  grep -q 'JLine support is enabled' <<<"$out" && grep -q '\[config, quota\]$' <<<"$out" ||
    { echo "$out" | tail -20; return 1; }
}
check "interactive zkCli.sh on a terminal: jline completes ls /zoo<TAB> to /zookeeper" interactive
metrics() {
  local out name
  out=$(docker exec zk-0 bash -c 'exec 3<>/dev/tcp/127.0.0.1/7000 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3')
  for name in jvm_info jvm_memory_bytes_used jvm_gc_collection_seconds_count process_open_fds open_file_descriptor_count; do
    grep -q "^$name[{ ]" <<<"$out" || { echo "no $name in /metrics"; return 1; }
  done
}
check "metrics on :7000 with JVM info and open file descriptors" metrics

if command -v openssl >/dev/null; then
  # A CA, a member certificate for every member's name and a client certificate, as the
  # operator issues them: ECDSA P-256, keys in PKCS#8 PEM, the Secret's file names.
  tls=$(mktemp -d)
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/$1" 2>/dev/null; }
  leaf() { # leaf NAME SUBJECT EXTENSIONS
    key "$1.key"
    openssl req -new -key "$tls/$1.key" -subj "$2" |
      openssl x509 -req -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 1 -out "$tls/$1.crt" \
        -extfile <(printf '%b' "$3") 2>/dev/null
  }
  key ca.key
  openssl req -x509 -new -key "$tls/ca.key" -subj "/CN=image test CA" -days 1 -out "$tls/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE,pathlen:0 -addext keyUsage=critical,keyCertSign,cRLSign
  # ZooKeeper 3.8 also checks a connecting peer's certificate against the name its address
  # resolves back to: in Kubernetes the pod's name under the headless Service, here
  # <container>.<network>, hence *.$net.
  usage="keyUsage=digitalSignature,keyAgreement\nauthorityKeyIdentifier=keyid"
  leaf member "/CN=*.$domain" "subjectAltName=DNS:*.$domain,DNS:*.$net,DNS:localhost,IP:127.0.0.1\n$usage\nextendedKeyUsage=serverAuth,clientAuth"
  leaf client "/CN=zookeeper-operator" "$usage\nextendedKeyUsage=clientAuth"
  mkdir "$tls/secret"
  cp "$tls/member.crt" "$tls/secret/tls.crt" && cp "$tls/member.key" "$tls/secret/tls.key" && cp "$tls/ca.crt" "$tls/secret/ca.crt"
  chmod 755 "$tls" "$tls/secret" && chmod 644 "$tls/secret"/*

  docker rm -f zk-0 zk-1 zk-2 >/dev/null
  volumes=zk-image-test-tls
  for i in 0 1 2; do
    start $i new -v "$tls/secret:/etc/zookeeper-tls:ro" \
      --tmpfs /tls:uid=1000,gid=1000,mode=0700 -e ZK_TLS_PHASE=tls -e ZK_ENFORCE_AUTHENTICATION=true
  done
  check "with TLS (phase tls: TLS between peers, PEM stores): quorum" all_ready
  tls_zkcli() { docker exec "zk-$1" /opt/zookeeper/bin/zkCli.sh "${@:2}" 2>&1; }
  s_client() { # s_client WORD [OPENSSL OPTIONS...]: the word's answer over TLS, from outside
    local ip
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' zk-2)
    (printf '%s' "$1"; sleep 3) | timeout 10 openssl s_client -quiet -connect "$ip:2182" -CAfile "$tls/ca.crt" \
      -verify_hostname "zk-2.$domain" -verify_return_error "${@:2}" 2>/dev/null
  }
  # Output is taken whole before it is searched: under pipefail, grep -q leaving early would
  # fail the writer with SIGPIPE.
  tls_created() { local out; out=$(tls_zkcli 0 create /tls on); grep -q 'Created /tls' <<<"$out"; }
  tls_identity() { local out; out=$(tls_zkcli 1 whoami); grep -qF "x509: CN=*.$domain" <<<"$out"; }
  tls_srvr() { local out; out=$(s_client srvr -cert "$tls/client.crt" -key "$tls/client.key"); grep -q '^Mode: ' <<<"$out"; }
  tls_refused() { local out; out=$(s_client ruok || true); ! grep -q imok <<<"$out"; }
  check "zkCli.sh over mutual TLS (localhost:2182): create /tls" tls_created
  check "zkCli.sh over mutual TLS: its x509 identity is the member's certificate" tls_identity
  check "srvr over TLS with a client certificate (openssl s_client, hostname verified)" tls_srvr
  check "a TLS client without a certificate gets no answer" tls_refused
else
  echo "skip - TLS checks: no openssl on this machine"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
