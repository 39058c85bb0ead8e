#!/usr/bin/env bash
# Tests of scripts/docker-daemon-json.sh: a daemon.json of the user's own keeps its settings.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
merge() { "$here/docker-daemon-json.sh" "$1" /opt/wrapper; }
failed=0
check() { if "${@:2}"; then echo "ok   - $1"; else echo "FAIL - $1"; failed=1; fi; }

none() { [ "$(merge "$dir/absent" | jq -c .)" = '{"runtimes":{"runc-nosysres":{"path":"/opt/wrapper"}},"default-runtime":"runc-nosysres"}' ]; }
check "no daemon.json: the wrapper is registered and the default" none

echo '{"log-driver":"json-file","log-opts":{"max-size":"10m"},"runtimes":{"nvidia":{"path":"/usr/bin/nvidia-container-runtime"}},"registry-mirrors":["https://mirror.example"]}' >"$dir/own.json"
kept() {
  local out
  out=$(merge "$dir/own.json")
  [ "$(jq -c '{a: .["log-driver"], b: .["log-opts"], c: .runtimes.nvidia, d: .["registry-mirrors"], e: .runtimes["runc-nosysres"].path, f: .["default-runtime"]}' <<<"$out")" = \
    '{"a":"json-file","b":{"max-size":"10m"},"c":{"path":"/usr/bin/nvidia-container-runtime"},"d":["https://mirror.example"],"e":"/opt/wrapper","f":"runc-nosysres"}' ]
}
check "a daemon.json of the user's own keeps its settings and runtimes" kept

merge "$dir/own.json" >"$dir/again.json"
twice() { [ "$(merge "$dir/again.json" | jq -S -c .)" = "$(jq -S -c . "$dir/again.json")" ]; }
check "merging twice changes nothing" twice

echo '{"default-runtime":"nvidia"}' >"$dir/theirs.json"
refused() { local err; ! err=$(merge "$dir/theirs.json" 2>&1 >/dev/null) && grep -q 'sets default-runtime nvidia' <<<"$err"; }
check "a default runtime of the user's own is not replaced: refused, saying why" refused

echo 'not json' >"$dir/broken.json"
broken() { ! merge "$dir/broken.json" >/dev/null 2>&1; }
check "a daemon.json that is not JSON is refused" broken
exit $failed
