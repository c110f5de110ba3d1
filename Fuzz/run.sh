#!/usr/bin/env bash
# Runs fuzz targets one after another (README.md, Fuzzing) and prints, per target, the
# executions, the coverage libFuzzer reached (cov: code edges, ft: features) and the
# findings (crashing, leaking, hanging or out-of-memory inputs).
#
# Usage: Fuzz/run.sh [target|all] [executions]      (default: all, 1000000)
# Environment: FUZZ_FLAGS adds libFuzzer flags (e.g. -use_value_profile=1).
#
# Each target starts from its seed corpus (Fuzz/Corpus/<target>) and its regression inputs
# (Fuzz/Regressions/<target>), both read-only; what it discovers goes to
# .build-fuzz/corpus/<target>, findings to .build-fuzz/findings/<target>, the log to
# .build-fuzz/logs/<target>.log. Fuzz/Dictionaries/<target>.dict, when present, gives
# libFuzzer the tokens of a text format. libFuzzer stops a target at its first finding: copy the
# input to Fuzz/Regressions/<target>/, fix the code, add a unit test, run again.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$PWD/.build-fuzz
target=${1:-all}
runs=${2:-1000000}
if [ "$target" = all ]; then
  targets=()
  for f in Fuzz/Targets/*.swift; do targets+=("$(basename "$f" .swift)"); done
else
  targets=("$target")
fi
Fuzz/build.sh "${targets[@]}"

# Scratch files (packs) go to memory when possible; libFuzzer reports crashes itself.
scratch=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/guts-fuzz-run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch SWIFT_BACKTRACE=enable=no

printf '%-16s %12s %8s %8s %7s %7s %8s %s\n' target executions seconds exec/s cov ft corpus findings
status=0
for t in "${targets[@]}"; do
  mkdir -p "$OUT/corpus/$t" "$OUT/findings/$t" "$OUT/logs" "Fuzz/Regressions/$t"
  log=$OUT/logs/$t.log
  before=$(ls "$OUT/findings/$t" | wc -l)
  start=$(date +%s)
  dict=()
  [ -f "Fuzz/Dictionaries/$t.dict" ] && dict=(-dict="Fuzz/Dictionaries/$t.dict")
  # shellcheck disable=SC2086
  "$OUT/bin/$t" -runs="$runs" -timeout=10 -print_final_stats=1 -artifact_prefix="$OUT/findings/$t/" "${dict[@]}" ${FUZZ_FLAGS:-} \
    "$OUT/corpus/$t" "Fuzz/Corpus/$t" "Fuzz/Regressions/$t" >"$log" 2>&1 || status=1
  seconds=$(( $(date +%s) - start ))
  executions=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" || true)
  [ -n "$done_line" ] && executions=$(echo "$done_line" | awk '{print $2}')
  last=$(grep -E 'cov: [0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | awk '{print $2}')
  ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | awk '{print $2}')
  corpus=$(echo "$last" | grep -oE 'corp: [0-9]+' | awk '{print $2}')
  findings=$(( $(ls "$OUT/findings/$t" | wc -l) - before ))
  rate=$(( ${executions:-0} / (seconds > 0 ? seconds : 1) ))
  printf '%-16s %12s %8s %8s %7s %7s %8s %s\n' "$t" "${executions:-0}" "$seconds" "$rate" "${cov:--}" "${ft:--}" \
    "${corpus:--}" "$findings$([ "$findings" -gt 0 ] && echo " (see $log)")"
done
exit $status
