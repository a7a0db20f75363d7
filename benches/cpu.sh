#!/usr/bin/env bash
# Throughput and server CPU, ringftpd vs vsftpd, interleaved: one 1 GiB download with curl,
# 8 parallel 256 MiB uploads with the load generator, and 16 workers looping connect + login +
# RETR 4 KiB + QUIT for 5 s. Server CPU is user+system time of the server process and the session
# processes it reaped (vsftpd forks one per session), read from /proc/PID/stat before and after each
# run; "CPU s/GB" is CPU-seconds per 10^9 bytes moved, "CPU us/session" CPU-microseconds per session.
# On these 2 shared cores throughput is capped by the client and the kernel's loopback TCP work;
# CPU per unit of work is what a server with its own cores would see.
#
#   bash benches/cpu.sh            # ROUNDS=5
#   SINK=trunc SERVERS=ringftpd KINDS=get bash benches/cpu.sh
#       # the download with the load generator instead of curl (3 x 1 GiB RETR on one session,
#       # GET_REPEAT), received with --sink read|splice|trunc; ringftpd alone
#
# Reuses the data, the unpacked vsftpd and its config that `bash benches/compare.sh` prepares
# (run `QUICK=1 bash benches/compare.sh` once first; this script says so if they are missing).
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
ROUNDS=${ROUNDS:-5}
WORK=${BENCH_DIR:-/tmp/ringftpd-bench}
DATA=$WORK/data-1024m
VSFTPD=/tmp/refservers/root/usr/sbin/vsftpd
RING_PORT=21931
VS_PORT=21922
UP_SESSIONS=${UP_SESSIONS:-8}
UP_MB=${UP_MB:-256}
CONN_WORKERS=${CONN_WORKERS:-16}
CONN_SECS=${CONN_SECS:-5}
KINDS=${KINDS:-get put conn}
# Empty: the download is curl's. read|splice|trunc: loadgen get with that --sink.
SINK=${SINK:-}
GET_REPEAT=${GET_REPEAT:-3}
SERVERS=${SERVERS:-ringftpd vsftpd}

with_vs() { [[ " $SERVERS " == *" vsftpd "* ]]; }
[[ -f $DATA/big.bin ]] && { ! with_vs || [[ -x $VSFTPD && -f $WORK/vsftpd.conf ]]; } ||
    { echo "run 'bash benches/compare.sh' (QUICK=0, for the 1 GiB file) once first" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

cd "$REPO"
cargo build --release --quiet
cargo bench --bench loadgen --no-run --quiet 2>/dev/null
LOADGEN=$(find target/release/deps -maxdepth 1 -type f -executable -name 'loadgen-*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
TICK=$(getconf CLK_TCK)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# utime + stime + cutime + cstime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }

# SO_REUSEPORT would let a second server silently share a busy port: refuse instead.
for p in $RING_PORT $(with_vs && echo $VS_PORT); do
    if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then echo "port $p is already in use" >&2; exit 1; fi
done
mkdir -p "$DATA/upload"
# All load comes from 127.0.0.1: the per-address caps are lifted (vsftpd's max_per_ip=0 too).
# A benchmark run as root serves as root (the server refuses that without --allow-root).
as_root=(); ((EUID == 0)) && as_root=(--allow-root)
setsid target/release/ringftpd "${as_root[@]}" --root "$DATA" --listen 127.0.0.1:$RING_PORT --shards 2 \
    --max-per-ip 0 --max-connects-per-ip-per-sec 0 \
    --anonymous-upload upload --log-level warn >>"$WORK/cpu-ringftpd.log" 2>&1 &
RING=$!; PIDS+=("$RING")
wait_port $RING_PORT || { echo "ringftpd did not start" >&2; exit 1; }
if with_vs; then
    LD_LIBRARY_PATH=/tmp/refservers/root/usr/lib/x86_64-linux-gnu setsid "$VSFTPD" "$WORK/vsftpd.conf" \
        >>"$WORK/cpu-vsftpd.log" 2>&1 &
    VS=$!; PIDS+=("$VS")
    wait_port $VS_PORT || { echo "vsftpd did not start" >&2; exit 1; }
fi
cat "$DATA/big.bin" >/dev/null

declare -A GBPS CPU
measure() { # name pid port kind
    local name=$1 pid=$2 port=$3 kind=$4 before after t0 t1 bytes
    # Removed uploads still have writeback in flight: finish it before the next run starts, or
    # the next run pays for it (upload numbers swung by 1.5x without this).
    rm -f "$DATA"/upload/* 2>/dev/null || true
    sync
    before=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
    if [[ $kind == get && -n $SINK ]]; then
        "$LOADGEN" get --addr 127.0.0.1:$port --sessions 1 --file big.bin --repeat "$GET_REPEAT" \
            --sink "$SINK" --max-secs 300 --label "$name" >/dev/null
        bytes=$((GET_REPEAT * $(stat -c %s "$DATA/big.bin")))
    elif [[ $kind == get ]]; then
        bytes=$(curl -s -o /dev/null -w '%{size_download}' "ftp://127.0.0.1:$port/big.bin")
    elif [[ $kind == conn ]]; then
        # "bytes" here counts sessions: the per-unit maths below is the same.
        bytes=$("$LOADGEN" conn --addr 127.0.0.1:$port --workers "$CONN_WORKERS" --duration "$CONN_SECS" \
            --file small4k --label "$name" | grep '^{' | sed 's/.*"sessions":\([0-9]*\).*/\1/')
    else
        "$LOADGEN" put --addr 127.0.0.1:$port --sessions "$UP_SESSIONS" --size $((UP_MB << 20)) \
            --dir upload --label "$name" >/dev/null
        bytes=$((UP_SESSIONS * (UP_MB << 20)))
    fi
    t1=$(date +%s.%N); after=$(cpu_ticks "$pid")
    # Per 10^9 bytes (GB/s, CPU s/GB), or per session (sessions/s, CPU us/session).
    local unit=1000000000 rate=1000000000
    if [[ $kind == conn ]]; then unit=1000000 rate=1; fi
    GBPS[$name.$kind]+="$(echo "$bytes / ($t1 - $t0) / $rate" | bc -l) "
    CPU[$name.$kind]+="$(echo "($after - $before) / $TICK / ($bytes / $unit)" | bc -l) "
}

for r in $(seq 1 "$ROUNDS"); do
    for kind in $KINDS; do
        if ! with_vs; then measure ringftpd $RING $RING_PORT $kind
        elif ((r % 2)); then measure ringftpd $RING $RING_PORT $kind; measure vsftpd $VS $VS_PORT $kind
        else measure vsftpd $VS $VS_PORT $kind; measure ringftpd $RING $RING_PORT $kind; fi
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
if ! with_vs; then
    echo "| run | ringftpd rate (each round) | median | ringftpd CPU (each round) | median |"
    echo "|---|---|---|---|---|"
    for kind in $KINDS; do
        printf '| %s %s | %s | %.3f | %s | %.3f |\n' "$kind" "${SINK:+sink $SINK}" \
            "$(printf '%.3f ' ${GBPS[ringftpd.$kind]})" "$(median <<<"${GBPS[ringftpd.$kind]}")" \
            "$(printf '%.3f ' ${CPU[ringftpd.$kind]})" "$(median <<<"${CPU[ringftpd.$kind]}")"
    done
    echo "(rates in GB/s or sessions/s, CPU in s/GB or us/session; $ROUNDS rounds; 2 CPUs shared; loopback)"
    exit 0
fi
echo "| run | ringftpd rate | vsftpd rate | ratio | ringftpd CPU | vsftpd CPU | ratio |"
echo "|---|---|---|---|---|---|---|"
for kind in $KINDS; do
    rg=$(median <<<"${GBPS[ringftpd.$kind]}"); vg=$(median <<<"${GBPS[vsftpd.$kind]}")
    rc=$(median <<<"${CPU[ringftpd.$kind]}"); vc=$(median <<<"${CPU[vsftpd.$kind]}")
    case $kind in
        get) label="1 x 1 GiB RETR (${SINK:+loadgen x $GET_REPEAT, sink }${SINK:-curl}): GB/s, CPU s/GB" ;;
        put) label="$UP_SESSIONS x $UP_MB MiB STOR (loadgen): GB/s, CPU s/GB" ;;
        conn) label="$CONN_WORKERS workers connect+RETR 4K+QUIT (loadgen): sessions/s, CPU us/session" ;;
    esac
    printf '| %s | %.2f | %.2f | x%.2f | %.3f | %.3f | x%.2f |\n' "$label" "$rg" "$vg" "$(echo "$rg/$vg" | bc -l)" \
        "$rc" "$vc" "$(echo "$rc/$vc" | bc -l)"
done
echo "(medians of $ROUNDS interleaved rounds; 2 CPUs shared by clients and servers; loopback)"
