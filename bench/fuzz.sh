#!/usr/bin/env bash
# Fuzzes the readers of untrusted bytes with libFuzzer (cargo-fuzz, nightly):
# each target of fuzz/ for FUZZ_SECONDS seconds, starting from its corpus in
# tests/fuzz-corpus/TARGET (copied to fuzz/corpus/TARGET, where what libFuzzer
# finds accumulates between runs). Prints, per target, the inputs run, the
# time, the rate, the corpus size and any crash (the input is kept in
# fuzz/artifacts/TARGET/). Exits 1 if any target crashed.
#
#   bash bench/fuzz.sh                  # every target, FUZZ_SECONDS=60 each
#   FUZZ_SECONDS=300 bash bench/fuzz.sh archive bolt
#
# A crash, once fixed: minimize it (cargo +nightly fuzz tmin TARGET ARTIFACT,
# from fuzz/) and add the result to tests/fuzz-corpus/TARGET/, which CI
# replays (tests/tests/fuzz_corpus.rs). fuzz/target holds the instrumented
# build (a few GB): remove it when done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${FUZZ_SECONDS:-60}
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(archive mountinfo request change tarsplit bolt)
fi

command -v cargo >/dev/null || { echo "cargo is needed: install a Rust toolchain (rustup)" >&2; exit 1; }
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
cargo +nightly fuzz build --debug-assertions >/dev/null 2>&1 \
  || cargo +nightly fuzz build --debug-assertions

crashed=0
printf '%-10s %12s %8s %10s %8s  %s\n' target execs seconds 'execs/s' corpus crashes
for t in "${targets[@]}"; do
  corpus=corpus/$t artifacts=artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -n "$root/tests/fuzz-corpus/$t"/* "$corpus"/ 2>/dev/null || true
  log=$artifacts/last-run.log
  rc=0
  cargo +nightly fuzz run --debug-assertions "$t" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  size=$(find "$corpus" -type f | wc -l)
  found=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
  if ((rc != 0)) || [[ -n $found ]]; then
    crashed=1
    printf '%-10s %12s %8s %10s %8s  %s\n' "$t" "${execs:-?}" "${took:-$secs}" "${rate:-?}" "$size" \
      "exit $rc: ${found//$'\n'/ } (log: fuzz/$log)"
    grep -m1 -A3 -E 'panicked at|ERROR: libFuzzer' "$log" | sed 's/^/    /' || true
  else
    printf '%-10s %12s %8s %10s %8s  %s\n' "$t" "${execs:-?}" "${took:-$secs}" "${rate:-?}" "$size" none
  fi
done
exit "$crashed"
