#!/usr/bin/env bash
# Randomized repeated rounds of the fault-injection suite (crates/e2e/tests/faults.rs) on the
# local cluster: each round runs every fault case once, in a random order, and the fault table
# of all rounds is printed at the end. Bounded: CHAOS_ROUNDS rounds (default 3), each case under
# its own time limit.
#
#   make chaos                      # 3 rounds
#   CHAOS_ROUNDS=10 make chaos
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${CHAOS_ROUNDS:-3}
case_timeout=${CHAOS_CASE_TIMEOUT:-1200}
log=$(mktemp /tmp/zk-chaos.XXXXXX)
cd "$root"
cargo test -q -p e2e --test faults --no-run
cases=$(cargo test -q -p e2e --test faults -- --list 2>/dev/null | sed -n 's/: test$//p')
failed=0
for round in $(seq "$rounds"); do
  for case in $(shuf -e $cases); do
    echo "[$(date +%H:%M:%S)] chaos round $round/$rounds: $case" >&2
    if ! timeout "$case_timeout" cargo test -q -p e2e --test faults -- --exact "$case" --nocapture --test-threads=1 \
         >>"$log" 2>&1; then
      echo "[$(date +%H:%M:%S)] FAILED: round $round, $case (log: $log)" >&2
      failed=$((failed + 1))
    fi
  done
done
echo
echo "| case | writes acknowledged | lost | largest stall | elections | time to recover | human action |"
echo "|---|---|---|---|---|---|---|"
grep '^FAULT-ROW' "$log" | sed 's/^FAULT-ROW //' | sort
echo
echo "$rounds rounds, $failed failed case runs; full output: $log"
[[ $failed == 0 ]]
