#!/usr/bin/env bash
# Build the fuzz targets and run each for a bounded time: `bash fuzz/run.sh [SECONDS] [TARGET...]`
# (default 20 s each, every target). Prints each target's runs and CPU seconds; exits non-zero
# when a target crashes (the input is left in fuzz/artifacts/TARGET/). Uses `cargo +nightly fuzz`
# where rustup has a nightly toolchain, else the stable toolchain with RUSTC_BOOTSTRAP=1 (the
# sanitizer and coverage flags are nightly-only); skips, exit 0, when cargo-fuzz cannot be
# installed or neither toolchain can build fuzz targets at all, and fails when the targets
# themselves do not compile.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-20}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(line_framer command_parser virtual_path addr_codecs listing)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked --quiet; then
        echo "fuzz: SKIPPED: cargo-fuzz could not be installed"
        exit 0
    fi
fi

fuzz=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly' &&
    cargo +nightly fuzz build -O >build.log 2>&1; then
    fuzz=(cargo +nightly fuzz)
elif RUSTC_BOOTSTRAP=1 cargo fuzz build -O >build.log 2>&1; then
    fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
elif grep -q 'could not compile `ringftpd' build.log; then
    # The toolchain works but the targets (or the crate) do not compile: that is a bug, not a
    # machine that cannot fuzz.
    echo "fuzz: FAILED: the fuzz targets do not compile:"
    grep -E '^error' -A8 build.log | head -40
    exit 1
else
    echo "fuzz: SKIPPED: no toolchain builds the targets (nightly, or stable with RUSTC_BOOTSTRAP=1):"
    tail -20 build.log
    exit 0
fi
echo "fuzz: built with ${fuzz[*]}"

status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    # -max_len lets the framer see lines past its 4096-byte cap and the listing very long names.
    # bash's `time` (user and system CPU seconds of the run) needs no time(1) binary.
    TIMEFORMAT='%U %S'
    { time "${fuzz[@]}" run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -max_len=16384 -print_final_stats=1 >"run-$t.log" 2>&1; } \
        2>"time-$t.txt"
    rc=$?
    cpu=$(awk '{printf "%.0f", $1 + $2}' "time-$t.txt" 2>/dev/null || echo "?")
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "run-$t.log" | grep -o '[0-9]*$' || echo "?")
    if ((rc != 0)); then
        echo "fuzz: $t FAILED (exit $rc) after ${cpu} CPU-s; input in fuzz/artifacts/$t/:"
        grep -E 'panicked|ERROR|SUMMARY' "run-$t.log" | head -5
        status=1
    else
        echo "fuzz: $t ok: ${runs} runs, ${cpu} CPU-s without a crash"
    fi
done
exit "$status"
