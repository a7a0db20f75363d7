#!/usr/bin/env bash
# ringftpd's data paths side by side: one server per --data-path (sendfile, splice, mmap, copy),
# interleaved rounds of the download scenarios, plus the sendfile pump ceiling; one markdown table
# with each path's ratio to sendfile.
#
#   bash benches/datapaths.sh            # ROUNDS=5
#   PATHS="sendfile splice" ROUNDS=3 bash benches/datapaths.sh
#
# Reuses the data that `bash benches/compare.sh` prepares (run it once first, QUICK=0, for the
# 1 GiB file; this script says so if it is missing). Loopback only; every process it starts is
# stopped on exit. SINK (splice|read) is the load generator's receive side, as in compare.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
ROUNDS=${ROUNDS:-5}
WORK=${BENCH_DIR:-/tmp/ringftpd-bench}
DATA=$WORK/data-1024m
PATHS=${PATHS:-sendfile splice mmap copy}
SINK=${SINK:-splice}
BASE_PORT=21941

[[ -f $DATA/big.bin && -d $DATA/many ]] ||
    { echo "run 'bash benches/compare.sh' (QUICK=0, for the 1 GiB file) once first" >&2; exit 1; }

cd "$REPO"
cargo build --release --quiet
cargo bench --bench loadgen --no-run --quiet 2>/dev/null
LOADGEN=$(find target/release/deps -maxdepth 1 -type f -executable -name 'loadgen-*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
RESULTS=$WORK/datapaths-$(date +%Y%m%d-%H%M%S).jsonl

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
port_free() { ! (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

declare -A PORT PID
i=0
for path in $PATHS; do
    port=$((BASE_PORT + i))
    port_free "$port" || { echo "port $port is taken; stop what uses it" >&2; exit 1; }
    # Disjoint passive ranges, below the ephemeral range.
    lo=$((36000 + i * 1000))
    as_root=(); ((EUID == 0)) && as_root=(--allow-root)
    setsid target/release/ringftpd "${as_root[@]}" --root "$DATA" --listen "127.0.0.1:$port" --shards 2 \
        --data-path "$path" --pasv-ports "$lo-$((lo + 999))" --log-level warn \
        >>"$WORK/datapaths-$path.log" 2>&1 &
    PIDS+=("$!")
    PID[$path]=$!
    PORT[$path]=$port
    i=$((i + 1))
done
for path in $PATHS; do wait_port "${PORT[$path]}" || { echo "the $path server did not start" >&2; exit 1; }; done
cat "$DATA/big.bin" "$DATA"/many/* >/dev/null

TICK=$(getconf CLK_TCK)
# user + system time of a server (all its threads), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # scenario round label args...
    local sc=$1 round=$2 label=$3 out before=0 after bytes
    shift 3
    [[ -n ${PID[$label]:-} ]] && before=$(cpu_ticks "${PID[$label]}")
    out=$("$LOADGEN" "$@" --label "$label" --scenario "$sc" --round "$round" --sink "$SINK")
    printf '%s\n' "$out" | grep '^{' >>"$RESULTS" || true
    printf '%s\n' "$out" | grep -v '^{' | sed 's/^/  /' >&2 || true
    # Server CPU per GB moved: steadier than GB/s on shared cores.
    if [[ -n ${PID[$label]:-} ]]; then
        after=$(cpu_ticks "${PID[$label]}")
        bytes=$(printf '%s\n' "$out" | grep '^{' | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' | head -1)
        if [[ -n $bytes && $bytes != 0 ]]; then
            printf '{"mode":"cpu","server":"%s","scenario":"%s (server CPU)","round":%s,"cpu_s_per_gb":%s}\n' \
                "$label" "$sc" "$round" "$(printf '%.6f' "$(echo "($after - $before) / $TICK / ($bytes / 1000000000)" | bc -l)")" >>"$RESULTS"
        fi
    fi
}

# Rotate the order each round so no path always goes first.
order() { # round
    local -a p=($PATHS)
    local n=${#p[@]} k
    for k in $(seq 0 $((n - 1))); do echo "${p[$(((k + $1) % n))]}"; done
}

for r in $(seq 1 "$ROUNDS"); do
    for path in $(order "$r"); do
        a=(--addr "127.0.0.1:${PORT[$path]}")
        run "get 1 session x 1 GiB" "$r" "$path" get "${a[@]}" --sessions 1 --file big.bin --repeat 2
        run "get 4 sessions x 1 GiB" "$r" "$path" get "${a[@]}" --sessions 4 --file big.bin --repeat 1
        run "many 8 x 200 x 1 MiB" "$r" "$path" many "${a[@]}" --sessions 8 --files-glob many/f --count 200
    done
    run "get 1 session x 1 GiB" "$r" loopback pump --sessions 1 --file "$DATA/big.bin" --repeat 2
    run "get 4 sessions x 1 GiB" "$r" loopback pump --sessions 4 --file "$DATA/big.bin" --repeat 1
done

servers=$(echo "$PATHS loopback" | tr ' ' ',')
echo "ringftpd $(git rev-parse --short HEAD) data paths, 2 shards, sink $SINK, $ROUNDS rounds; medians (min–max); loopback = blocking sendfile pump"
echo
"$LOADGEN" report --results "$RESULTS" --servers "$servers"
