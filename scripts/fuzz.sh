#!/usr/bin/env bash
# Builds the synack-core fuzz targets (fuzz/) and runs each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS]      # default 60 s per target
#   FUZZ_TARGETS="endpoint" scripts/fuzz.sh 300
#
# Exits non-zero if any target crashes, times out or runs out of memory; the input that did
# it is in fuzz/artifacts/<target>/ (replay: fuzz/target/<triple>/release/<target> FILE).
#
# The targets are built with cargo and libfuzzer-sys directly, with the coverage flags
# cargo-fuzz would pass for `--sanitizer none`. Every flag here is stable rustc, so this needs
# neither nightly, RUSTC_BOOTSTRAP nor `cargo install cargo-fuzz` (which takes minutes on a
# clean machine and is one more thing to fetch). AddressSanitizer is what that gives up, and
# synack-core is `#![forbid(unsafe_code)]`: its memory errors are panics, which libFuzzer
# catches without a sanitizer. `cargo fuzz run <target>` works on this project as well.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds < 1)); then
    echo "usage: $0 [SECONDS per target]" >&2
    exit 2
fi
targets=(${FUZZ_TARGETS:-ip_parse tcp_options endpoint})

if ! command -v c++ >/dev/null; then
    echo "fuzz.sh: libfuzzer-sys compiles libFuzzer (C++): install g++" >&2
    exit 2
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
# As cargo-fuzz: edge coverage with 8-bit counters and a PC table (libFuzzer's "cov" and
# "ft"), comparison tracing (so it can solve magic values and lengths), stack depth, and
# `--cfg fuzzing`. `--target` keeps these flags away from build scripts and proc macros.
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    --cfg fuzzing
)
echo "== building fuzz targets (${targets[*]}) for $triple"
# Not --locked: fuzz/Cargo.lock pins the fuzzing crates, but synack-core may gain a dependency
# on main before someone refreshes this lock, and that must not break the CI step.
RUSTFLAGS="${flags[*]} ${RUSTFLAGS:-}" cargo build \
    --manifest-path fuzz/Cargo.toml --target "$triple" --release \
    $(printf -- '--bin %s ' "${targets[@]}")

bin_dir="fuzz/target/$triple/release"
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    log="fuzz/artifacts/$t.log"
    mkdir -p "$corpus" "$artifacts"
    # Inputs that once failed (fuzz/regressions/<target>, kept as found) are read with the
    # corpus, so libFuzzer replays each of them first and a regression fails the run.
    inputs=("$corpus")
    if [[ -d "fuzz/regressions/$t" ]]; then
        inputs+=("fuzz/regressions/$t")
    fi
    echo "== $t: ${seconds}s, corpus ${inputs[*]}"
    # -timeout: one input running 10 s is a hang; -rss_limit_mb: unbounded growth is a bug.
    status=0
    "$bin_dir/$t" "${inputs[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$log" || status=$?
    # The last status line ("#N DONE cov: .. ft: .. corp: ..") and the final stats.
    last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    summary+=("$t: exit $status, ${execs:-?} execs (${rate:-?}/s) in ${seconds}s; ${last#*[[:space:]]}")
    if ((status != 0)); then
        failed+=("$t")
        echo "!! $t failed (exit $status); log: $log" >&2
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" >&2 || true
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
    echo "fuzz.sh: failing targets: ${failed[*]}" >&2
    exit 1
fi
