#!/usr/bin/env bash
# Assembles an Apache ZooKeeper server distribution from Maven Central into DEST:
#   DEST/lib/*.jar   the server, jute, their runtime dependencies, the Prometheus metrics provider
#   DEST/conf/       logging configuration
#   DEST/bin/        zkCli.sh and zkServer-less helpers
# Every jar must match the pinned SHA256SUMS.<version> beside this script, and nothing else may be there.
# Usage: fetch.sh VERSION DEST
set -euo pipefail
version=${1:?usage: fetch.sh VERSION DEST}
dest=$(realpath -m "${2:?usage: fetch.sh VERSION DEST}")
here=$(cd "$(dirname "$0")" && pwd)
sums="$here/SHA256SUMS.$version"
[ -f "$sums" ] || { echo "fetch.sh: no pinned checksums for ZooKeeper $version ($sums); supported: $(ls "$here" | sed -n 's/^SHA256SUMS\.//p' | tr '\n' ' ')" >&2; exit 2; }

# What the assembled directory is made of; a change to any of it assembles it again.
stamp=$(cat "$sums" "$here/logback.xml" "$here/zkCli.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$dest/.complete" ] && [ "$(cat "$dest/.complete")" = "$stamp" ]; then
  exit 0
fi
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "${dest%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Read from the pinned list: JLine 2 (jline:jline) or 3 (org.jline:jline, from 3.8.6 and 3.9.5),
# and the metrics provider's version. The Prometheus provider is a plugin of ZooKeeper's
# metrics interface, released with each version; where a release's own is not served here
# (3.9.5, 3.8.6), the list pins the newest of its line that is (3.9.4, 3.8.3).
if grep -q ' jline-2\.' "$sums"; then jline_group=jline; else jline_group=org.jline; fi
metrics_version=$(sed -n 's/.* zookeeper-prometheus-metrics-\(.*\)\.jar$/\1/p' "$sums")
# -C: fail when a download does not match the repository's own checksum.
mvn -q -B -C -f "$here/pom.xml" -Dzookeeper.version="$version" \
  -Djline.groupId="$jline_group" -Dmetrics.version="${metrics_version:?no metrics provider in $sums}" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/lib"
( cd "$tmp/lib" && sha256sum --quiet --strict -c "$sums" )
extra=$(comm -13 <(cut -d' ' -f3 "$sums" | sort) <(ls "$tmp/lib" | sort))
[ -z "$extra" ] || { echo "fetch.sh: unpinned jars resolved: $extra" >&2; exit 1; }
mkdir -p "$tmp/conf" "$tmp/bin"
cp "$here/logback.xml" "$tmp/conf/logback.xml"
cp "$here/zkCli.sh" "$tmp/bin/zkCli.sh"
chmod 0755 "$tmp/bin/zkCli.sh"
echo "$stamp" > "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "ZooKeeper $version assembled in $dest ($(ls "$dest/lib" | wc -l) jars, checksums verified)"
