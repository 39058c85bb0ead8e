#!/usr/bin/env bash
# scripts/phase.sh NAME COMMAND...: runs COMMAND as one timed phase of `make test`
# (scripts/test.sh). Its output goes to build/ci/NAME.log, and also to this terminal in the
# main lane; a line on the run's console says when it starts and ends. A failed phase prints
# its log's last lines. The phase is recorded in $ZK_PHASES for scripts/phase-report.sh.
set -uo pipefail
name=$1
shift
phases=${ZK_PHASES:?run through scripts/test.sh}
log=$(dirname "$phases")/$name.log
lane=${ZK_LANE:-main}
: "${ZK_STARTED:=$(date +%s)}"
clock() { local s=$(( $(date +%s) - ZK_STARTED )); printf '%d:%02d' $((s / 60)) $((s % 60)); }
# The run's console: fd 3 where scripts/test.sh opened it (the lanes' own output goes to files).
say() { if { true >&3; } 2>/dev/null; then echo "$*" >&3; else echo "$*" >&2; fi; }

say "[$(clock)] $lane: $name: $*"
start=$(date +%s)
if [[ $lane == main ]]; then
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
else
  "$@" >"$log" 2>&1
  rc=$?
fi
end=$(date +%s)
printf '%s\t%s\t%d\t%d\t%d\n' "$name" "$lane" $((start - ZK_STARTED)) $((end - ZK_STARTED)) "$rc" >>"$phases"
if (( rc == 0 )); then
  say "[$(clock)] $lane: $name done in $((end - start)) s"
else
  say "[$(clock)] $lane: $name FAILED after $((end - start)) s (exit $rc); the last lines of $log:"
  tail -n 60 "$log" | while IFS= read -r line; do say "    $line"; done
fi
exit "$rc"
