#!/usr/bin/env bash
# Prints Docker's daemon.json with the runc wrapper (scripts/runc-wrapper.sh) registered as the
# runtime "runc-nosysres" and made the default, keeping every other setting of FILE (which may
# not exist). kind's node containers are privileged and kind cannot name a runtime for them, so
# the wrapper must be the default; it only edits containers that ask for CAP_SYS_RESOURCE and
# passes every other one to runc as it is. A default runtime of the user's own is not replaced:
# that fails, saying so.
# Usage: docker-daemon-json.sh FILE WRAPPER_PATH
set -euo pipefail
file=${1:?usage: docker-daemon-json.sh FILE WRAPPER_PATH}
wrapper=${2:?usage: docker-daemon-json.sh FILE WRAPPER_PATH}
current='{}'
if [ -s "$file" ]; then
  current=$(jq -e 'if type == "object" then . else error("not a JSON object") end' "$file") ||
    { echo "docker-daemon-json: $file is not a JSON object; fix or move it" >&2; exit 1; }
fi
jq --arg wrapper "$wrapper" '
  if (has("default-runtime") and .["default-runtime"] != "runc-nosysres") then
    error("it sets default-runtime \(.["default-runtime"]); kind nodes here need the runtime runc-nosysres as the default (see scripts/docker-up.sh): set it yourself, or use a machine of its own for the cluster")
  else
    .runtimes = ((.runtimes // {}) + {"runc-nosysres": {"path": $wrapper}})
    | .["default-runtime"] = "runc-nosysres"
  end' <<<"$current" 2> >(sed "s|^jq: error (at <stdin>:[0-9]*): |docker-daemon-json: $file: |" >&2)
