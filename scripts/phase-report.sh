#!/usr/bin/env bash
# scripts/phase-report.sh [DIR]: the table of a `make test` run's phases (DIR: build/ci): what
# each took, beside its usual time on a cold and on a warm machine (.ci/phase-times.tsv, from the
# runs in docs/ci.md). A phase much longer than its usual time of the same kind says so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build/ci}
phases=$dir/phases.tsv
[[ -s $phases ]] || { echo "no phases recorded in $phases" >&2; exit 0; }
kind=$(cat "$dir/kind" 2>/dev/null || echo warm)
now=$(date +%s)
awk -F'\t' -v kind="$kind" -v total_end="$(( now - ${ZK_STARTED:-$now} ))" '
  function mmss(s) { return (s == "" ? "" : sprintf("%d:%02d", int(s / 60), s % 60)) }
  FNR == NR { if ($0 !~ /^#/ && NF >= 3) { cold[$1] = $2; warm[$1] = $3; order[++n] = $1 } next }
  { name[++m] = $1; lane[m] = $2; start[m] = $3; took[m] = $4 - $3; rc[m] = $5; seen[$1] = 1
    if ($4 > last) last = $4 }
  END {
    printf "\nmake test: a %s run (%s), %s in all\n", kind,
      kind == "cold" ? "the cluster cache held no Kubernetes build when it started" : "caches and cluster present", mmss(last)
    print "| phase | lane | started | took | usual cold | usual warm | |"
    print "|---|---|---|---|---|---|---|"
    for (i = 1; i <= m; i++) {
      usual = (kind == "cold" ? cold[name[i]] : warm[name[i]]); note = ""
      if (rc[i] != 0) note = "FAILED (exit " rc[i] ")"
      else if (usual != "" && took[i] > usual * 1.5 + 60) note = "much longer than its usual " mmss(usual) " (" kind ")"
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", name[i], lane[i], mmss(start[i]), mmss(took[i]), mmss(cold[name[i]]), mmss(warm[name[i]]), note
    }
    for (j = 1; j <= n; j++) if (!(order[j] in seen) && order[j] != "total")
      printf "| %s | | | not run | %s | %s | |\n", order[j], mmss(cold[order[j]]), mmss(warm[order[j]])
    usual = (kind == "cold" ? cold["total"] : warm["total"]); note = ""
    if (usual != "" && last > usual * 1.25 + 120) note = "much longer than its usual " mmss(usual) " (" kind ")"
    printf "| total | | | %s | %s | %s | %s |\n", mmss(last), mmss(cold["total"]), mmss(warm["total"]), note
  }' "$root/.ci/phase-times.tsv" "$phases"
