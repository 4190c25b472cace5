#!/usr/bin/env bash
# Runs the whole test command (scripts/test.sh) N times in a row in this
# checkout and says how many runs passed, naming each failed test of each run:
# how the suite's stability is shown (issue: "20 runs in a row").
# Usage: scripts/soak.sh [N] [ctest args...]   (default N=20; log in soak.log)
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
shift || true
log=soak.log
: >"$log"
passed=0
for i in $(seq 1 "$n"); do
  start=$(date +%s)
  out=$(mktemp)
  scripts/test.sh "$@" >"$out" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  failed=$(grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)\)' "$out" | sed -E 's/^\s+[0-9]+ - //' | tr '\n' ';')
  leftovers=$(grep -E '^leftovers: the tests left' "$out" | tr '\n' ';')
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "run $i/$n: pass in ${secs}s" | tee -a "$log"
  else
    echo "run $i/$n: FAIL (rc $rc) in ${secs}s: ${failed:-?} ${leftovers}" | tee -a "$log"
    cp "$out" "soak-run-$i.out"
  fi
  rm -f "$out"
done
echo "soak: $passed of $n runs passed" | tee -a "$log"
[ "$passed" -eq "$n" ]
