#!/usr/bin/env bash
# ringftpd vs vsftpd, pure-ftpd and proftpd (and the loopback ceiling, iperf3), interleaved rounds,
# markdown tables of medians: ringftpd against the best reference per metric, then every server.
#
#   bash benches/compare.sh            # default sizes, ROUNDS=5 (about 6-10 minutes on 2 cores)
#   QUICK=1 bash benches/compare.sh    # small sizes, short runs: a smoke test of the whole pipeline
#
# Environment: ROUNDS (5; 2 with QUICK=1), QUICK (0), BENCH_DIR (/tmp/ringftpd-bench), SHARDS (2), DATA_PATH
# (sendfile|copy), RING_IO (auto|io-uring|epoll, if the build has --io), RING_LOG (warn),
# REFS (reference servers, "vsftpd pure-ftpd proftpd"),
# RING_PORT/VS_PORT/IPERF_PORT/PURE_PORT/PRO_PORT (21921/21922/21923/21924/21925),
# RINGFTPD_BIN / LOADGEN_BIN (skip the builds), SCENARIOS (space-separated subset of the names below),
# RING_EXTRA (more ringftpd flags), SINK (splice|read|trunc: how loadgen receives data; see benches/README.md),
# CONN_WORKERS (16), TLS_SESSIONS (8: the wide PROT P scenario), MANY_COUNT (800 RETRs per session in `many`:
# about 2 s a run, so one scheduling hiccup does not decide a round).
#
# Only 127.0.0.1 is ever used. The reference servers are not installed as packages: their .debs
# are downloaded and unpacked under /tmp/refservers. Each runs as Debian configures it by default
# where that is possible on loopback as root (vsftpd without its privilege-separation helper);
# pure-ftpd serves through a virtual user (its anonymous account must be a system user `ftp`,
# which this script does not create). Every process this script starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then ROUNDS=${ROUNDS:-2}; else ROUNDS=${ROUNDS:-5}; fi
WORK=${BENCH_DIR:-/tmp/ringftpd-bench}
REF=/tmp/refservers
SHARDS=${SHARDS:-2}
DATA_PATH=${DATA_PATH:-sendfile}
RING_LOG=${RING_LOG:-warn}
RING_PORT=${RING_PORT:-21921}
VS_PORT=${VS_PORT:-21922}
IPERF_PORT=${IPERF_PORT:-21923}
PURE_PORT=${PURE_PORT:-21924}
PRO_PORT=${PRO_PORT:-21925}
read -r -a REFS <<<"${REFS:-vsftpd pure-ftpd proftpd}"
# Passive ranges sit below the ephemeral range (32768-60999) so client ports never collide with them.
RING_PASV=20000-24999
VS_PASV_MIN=25000
VS_PASV_MAX=27999
PURE_PASV=28000:30499
PRO_PASV_MIN=30500
PRO_PASV_MAX=32767
# pure-ftpd's virtual user (bench data only; the password is no secret).
PURE_USER=bench
PURE_PASS=bench-pw
ALL_SCENARIOS="get1 get4 many conn list mlsd put idle idle10k cold tls1 tls8 nlst"
# splice: the client moves received pages to /dev/null without copying, so on 2 shared cores the
# client's receive copy is not what is measured. read: read(2) into a buffer, as curl does.
SINK=${SINK:-splice}
CONN_WORKERS=${CONN_WORKERS:-16}
TLS_SESSIONS=${TLS_SESSIONS:-8}
PUT_SESSIONS=${PUT_SESSIONS:-8}
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}

if [[ $QUICK == 1 ]]; then
    BIG_MB=128 NFILES=20 REPEAT1=2 REPEAT4=1 MANY_SESSIONS=4 MANY_COUNT=10
    CONN_SECS=1 LIST_COUNT=5 PUT_MB=32 IDLE_N=200 IDLE_BIG=1000 COLD_COUNT=100 IPERF_SECS=2
else
    BIG_MB=1024 NFILES=100 REPEAT1=3 REPEAT4=2 MANY_SESSIONS=8 MANY_COUNT=${MANY_COUNT:-800}
    CONN_SECS=5 LIST_COUNT=20 PUT_MB=256 IDLE_N=2000 IDLE_BIG=10000 COLD_COUNT=300 IPERF_SECS=5
fi
LIST_ENTRIES=10000
DATA=$WORK/data-${BIG_MB}m
RESULTS=$WORK/results-$(date +%Y%m%d-%H%M%S).jsonl
mkdir -p "$WORK"

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup: stop only what this script started (each server runs in its own process group).
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# Wait (bounded) until something accepts on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Build
command -v ss >/dev/null || die "ss (iproute2) is needed"
command -v curl >/dev/null || die "curl is needed"
for r in "${REFS[@]}"; do
    case $r in vsftpd | pure-ftpd | proftpd) ;; *) die "unknown reference server $r (REFS)" ;; esac
done
for p in "$RING_PORT" "$VS_PORT" "$IPERF_PORT" "$PURE_PORT" "$PRO_PORT"; do
    # SO_REUSEPORT would let a second server silently share a busy port: refuse instead.
    port_busy "$p" && die "port $p is already in use (set RING_PORT/VS_PORT/IPERF_PORT)"
done

if [[ -z ${RINGFTPD_BIN:-} || -z ${LOADGEN_BIN:-} ]]; then
    log "building ringftpd (release) and the loadgen bench in $REPO"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || die "cargo metadata failed"
    RINGFTPD_BIN=${RINGFTPD_BIN:-$TARGET_DIR/release/ringftpd}
    if [[ -z ${LOADGEN_BIN:-} ]]; then
        # Compiler errors go to stdout as JSON here, so on failure build again to show them.
        LOADGEN_BIN=$(cd "$REPO" && cargo bench --bench loadgen --no-run --message-format=json 2>/dev/null |
            grep -o '"executable":"[^"]*loadgen[^"]*"' | tail -1 | cut -d'"' -f4) || true
        if [[ -z $LOADGEN_BIN ]]; then
            (cd "$REPO" && cargo bench --bench loadgen --no-run) || true
            die "building the loadgen bench failed"
        fi
    fi
fi
[[ -x $RINGFTPD_BIN ]] || die "no ringftpd binary at $RINGFTPD_BIN"
[[ -x $LOADGEN_BIN ]] || die "no loadgen binary (LOADGEN_BIN=$LOADGEN_BIN)"

# ---------------------------------------------------------------------------------------------
# Data: a big file (get), a second one (cold, so get's file stays cached), NFILES x 1 MiB, a 4 KiB
# file, a 10,000-entry directory, and an upload directory vsftpd's anonymous user may write to.
prepare_data() {
    if [[ -f $DATA/.complete ]]; then
        log "reusing data in $DATA"
    else
        log "preparing data in $DATA (${BIG_MB} MiB x2, $NFILES x 1 MiB, 4 KiB, $LIST_ENTRIES entries)"
        rm -rf "$DATA"
        mkdir -p "$DATA/many" "$DATA/dir10k" "$DATA/upload"
        dd if=/dev/urandom of="$DATA/big.bin" bs=1M count="$BIG_MB" status=none
        dd if=/dev/urandom of="$DATA/cold.bin" bs=1M count="$BIG_MB" status=none
        dd if=/dev/urandom of="$DATA/small4k" bs=4096 count=1 status=none
        for i in $(seq 0 $((NFILES - 1))); do
            dd if=/dev/urandom of="$(printf '%s/many/f%03d' "$DATA" "$i")" bs=1M count=1 status=none
        done
        (cd "$DATA/dir10k" && seq -f 'entry-%05g.dat' 0 $((LIST_ENTRIES - 1)) | xargs touch)
        sync
        touch "$DATA/.complete"
    fi
    rm -f "$DATA"/upload/*
    # vsftpd runs anonymous uploads as ftp_username (nobody).
    chown nobody "$DATA/upload"
    chmod 755 "$DATA/upload"
    mkdir -p "$WORK/empty"
    # A self-signed certificate for the PROT P scenarios (RSA 2048, as most FTPS sites still use).
    if [[ ! -s $WORK/tls-cert.pem ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/tls-key.pem" -out "$WORK/tls-cert.pem" \
            -days 3650 -subj /CN=localhost >/dev/null 2>&1 || die "openssl req (test certificate) failed"
    fi
}

# ---------------------------------------------------------------------------------------------
# Reference servers from the Debian archive, unpacked into one tree (never installed).
VSFTPD=$REF/root/usr/sbin/vsftpd
PURE_FTPD=$REF/root/usr/sbin/pure-ftpd
PURE_PW=$REF/root/usr/bin/pure-pw
PROFTPD=$REF/root/usr/sbin/proftpd
REF_LIBS=$REF/root/usr/lib/x86_64-linux-gnu
# apt-get download + dpkg -x of packages $2..., unless binary $1 is already there.
fetch_debs() {
    local bin=$1 deb
    shift
    [[ -x $bin ]] && return 0
    log "fetching $* with apt-get download into $REF"
    mkdir -p "$REF/debs" "$REF/root"
    (cd "$REF/debs" && apt-get download "$@" >/dev/null 2>&1) ||
        { apt-get update -qq >/dev/null 2>&1 && (cd "$REF/debs" && apt-get download "$@" >/dev/null 2>&1); } ||
        die "apt-get download $* failed"
    for deb in "$@"; do dpkg -x "$(ls "$REF"/debs/"${deb}"_*.deb | tail -1)" "$REF/root"; done
    [[ -x $bin ]] || die "$bin missing after dpkg -x"
}
fetch_refs() {
    local r
    for r in "${REFS[@]}"; do
        case $r in
            vsftpd) fetch_debs "$VSFTPD" vsftpd libwrap0 ;;
            pure-ftpd) fetch_debs "$PURE_FTPD" pure-ftpd pure-ftpd-common ;;
            # proftpd-core's libraries that a minimal Debian lacks.
            proftpd) fetch_debs "$PROFTPD" proftpd-core libhiredis0.14 libmemcached11 \
                libmemcachedutil2 libhashkit2 libpcre2-posix3 libwrap0 ;;
        esac
    done
}

write_vsftpd_conf() {
    cat >"$WORK/vsftpd.conf" <<EOF
# Generated by benches/compare.sh: anonymous download (and upload into /upload) on loopback.
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$VS_PORT
background=NO
anonymous_enable=YES
local_enable=NO
anon_root=$DATA
no_anon_password=YES
# Running as root in a sandbox: no privilege separation helper, no user switch, no namespaces.
run_as_launching_user=YES
ftp_username=nobody
nopriv_user=nobody
secure_chroot_dir=$WORK/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
allow_writeable_chroot=YES
pasv_enable=YES
pasv_min_port=$VS_PASV_MIN
pasv_max_port=$VS_PASV_MAX
write_enable=YES
anon_upload_enable=YES
anon_other_write_enable=YES
anon_mkdir_write_enable=NO
anon_umask=022
use_sendfile=YES
max_clients=0
max_per_ip=0
tcp_wrappers=NO
xferlog_enable=NO
dual_log_enable=NO
syslog_enable=NO
vsftpd_log_file=$WORK/vsftpd-xfer.log
EOF
    # FTPS for the PROT P scenarios (tls1, tls8): explicit AUTH TLS, optional for anonymous, so the
    # cleartext scenarios run as before; data sessions must resume the control session (the default).
    if tls_scenarios; then
        cat >>"$WORK/vsftpd.conf" <<EOF
ssl_enable=YES
allow_anon_ssl=YES
force_anon_logins_ssl=NO
force_anon_data_ssl=NO
require_ssl_reuse=YES
rsa_cert_file=$WORK/tls-cert.pem
rsa_private_key_file=$WORK/tls-key.pem
EOF
    fi
}

# pure-ftpd: one virtual user (uid nobody, chrooted to the data). pure-pw hashes with argon2id at
# about a second of CPU per login, which would make the conn scenario measure the hash: the
# password is stored as an MD5-crypt hash instead, which pure-ftpd accepts through crypt(3).
write_pure_db() {
    local hash
    hash=$(openssl passwd -1 "$PURE_PASS") || die "openssl passwd failed"
    rm -f "$WORK/pureftpd.passwd" "$WORK/pureftpd.pdb"
    printf '%s\n%s\n' "$PURE_PASS" "$PURE_PASS" |
        LD_LIBRARY_PATH=$REF_LIBS "$PURE_PW" useradd "$PURE_USER" -u 65534 -g 65534 -d "$DATA" \
            -f "$WORK/pureftpd.passwd" >/dev/null || die "pure-pw useradd failed"
    awk -F: -v OFS=: -v h="$hash" '{ $2 = h; print }' "$WORK/pureftpd.passwd" >"$WORK/pureftpd.tmp"
    mv "$WORK/pureftpd.tmp" "$WORK/pureftpd.passwd"
    LD_LIBRARY_PATH=$REF_LIBS "$PURE_PW" mkdb "$WORK/pureftpd.pdb" -f "$WORK/pureftpd.passwd" ||
        die "pure-pw mkdb failed"
}

# proftpd: anonymous as nobody, uploads wherever nobody may write (the upload directory).
write_proftpd_conf() {
    cat >"$WORK/proftpd.conf" <<EOF
# Generated by benches/compare.sh: anonymous download (and upload into /upload) on loopback.
ServerName "bench"
ServerType standalone
Port $PRO_PORT
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
Umask 022
PassivePorts $PRO_PASV_MIN $PRO_PASV_MAX
MaxInstances 20000
ScoreboardFile $WORK/proftpd.scoreboard
PidFile $WORK/proftpd.pid
DelayTable none
WtmpLog off
UseReverseDNS off
RequireValidShell off
TransferLog none
SystemLog $WORK/proftpd-system.log
<Anonymous $DATA>
  User nobody
  Group nogroup
  UserAlias anonymous nobody
  AnonRequirePassword off
  MaxClients none
</Anonymous>
EOF
}

write_ref_confs() {
    local r
    for r in "${REFS[@]}"; do
        case $r in
            vsftpd) write_vsftpd_conf ;;
            pure-ftpd) write_pure_db ;;
            proftpd) write_proftpd_conf ;;
        esac
    done
}

# Per server: control port, pid, and the loadgen/curl login.
declare -A PORT=([ringftpd]=$RING_PORT [vsftpd]=$VS_PORT [pure-ftpd]=$PURE_PORT [proftpd]=$PRO_PORT)
declare -A PID=()
declare -A LOGIN=([pure-ftpd]="--user $PURE_USER --pass $PURE_PASS")
declare -A CURL_USER=([pure-ftpd]="$PURE_USER:$PURE_PASS")
SERVERS=(ringftpd "${REFS[@]}")

start_server() { # name
    local name=$1 extra=() more=()
    case $name in
        ringftpd)
            [[ -n ${DATA_PATH:-} ]] && extra+=(--data-path "$DATA_PATH")
            # Newer builds take an anonymous drop box (uploads) and an I/O backend choice; older ones don't.
            if "$RINGFTPD_BIN" --help 2>/dev/null | grep -q -- '--anonymous-upload'; then
                extra+=(--anonymous-upload upload)
            fi
            if [[ -n ${RING_IO:-} ]]; then extra+=(--io "$RING_IO"); fi
            # Every load comes from 127.0.0.1: the per-address caps (on by default in newer
            # builds) would measure themselves, as vsftpd's max_per_ip=0 above says for it.
            if "$RINGFTPD_BIN" --help 2>/dev/null | grep -q -- '--max-connects-per-ip-per-sec'; then
                extra+=(--max-per-ip 0 --max-connects-per-ip-per-sec 0)
            fi
            # A benchmark run as root serves as root (newer builds refuse that without the flag).
            if ((EUID == 0)) && "$RINGFTPD_BIN" --help 2>/dev/null | grep -q -- '--allow-root'; then
                extra+=(--allow-root)
            fi
            if tls_scenarios && "$RINGFTPD_BIN" --help 2>/dev/null | grep -q -- '--tls-cert'; then
                extra+=(--tls-cert "$WORK/tls-cert.pem" --tls-key "$WORK/tls-key.pem")
            fi
            # RING_EXTRA: more ringftpd flags, e.g. RING_EXTRA="--send-budget-kib 1024".
            if [[ -n ${RING_EXTRA:-} ]]; then read -r -a more <<<"$RING_EXTRA"; extra+=("${more[@]}"); fi
            setsid "$RINGFTPD_BIN" --root "$DATA" --listen "127.0.0.1:$RING_PORT" --shards "$SHARDS" \
                --pasv-ports "$RING_PASV" --log-level "$RING_LOG" "${extra[@]}" >>"$WORK/ringftpd.log" 2>&1 &
            ;;
        vsftpd)
            LD_LIBRARY_PATH=$REF_LIBS setsid "$VSFTPD" "$WORK/vsftpd.conf" >>"$WORK/vsftpd.log" 2>&1 &
            ;;
        pure-ftpd)
            # -E: no anonymous; -H: no DNS; -A: chroot everyone; -c/-C: session caps out of the way.
            LD_LIBRARY_PATH=$REF_LIBS setsid "$PURE_FTPD" -S "127.0.0.1,$PURE_PORT" -p "$PURE_PASV" \
                -l "puredb:$WORK/pureftpd.pdb" -E -H -A -c 20000 -C 20000 >>"$WORK/pure-ftpd.log" 2>&1 &
            ;;
        proftpd)
            LD_LIBRARY_PATH=$REF_LIBS setsid "$PROFTPD" -n -c "$WORK/proftpd.conf" >>"$WORK/proftpd.log" 2>&1 &
            ;;
    esac
    PID[$name]=$!
    PIDS+=("${PID[$name]}")
    wait_port "${PORT[$name]}" || die "$name did not start (see $WORK/$name.log)"
}

stop_pid() {
    local pid=$1 p
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# A fresh process before each memory measurement, so freed memory from earlier runs can't hide cost.
restart_servers() {
    local s
    for s in "${SERVERS[@]}"; do
        stop_pid "${PID[$s]}"
        start_server "$s"
    done
}

# Every server must serve the same bytes before anything is timed.
smoke_test() {
    local s port auth
    for s in "${SERVERS[@]}"; do
        port=${PORT[$s]}
        auth=()
        [[ -n ${CURL_USER[$s]:-} ]] && auth=(-u "${CURL_USER[$s]}")
        curl -sS --max-time 10 "${auth[@]}" "ftp://127.0.0.1:$port/small4k" | cmp -s - "$DATA/small4k" ||
            die "curl RETR small4k from $s did not return the file"
        curl -sS --max-time 10 "${auth[@]}" -o "$WORK/list.txt" "ftp://127.0.0.1:$port/dir10k/" ||
            die "curl LIST dir10k on $s failed"
        [[ $(grep -c entry- "$WORK/list.txt") == "$LIST_ENTRIES" ]] ||
            die "curl LIST dir10k on $s did not list $LIST_ENTRIES entries"
    done
    log "curl RETR + LIST ok on ${SERVERS[*]}"
}

IPERF_PID=
start_iperf() {
    if ! command -v iperf3 >/dev/null; then
        log "installing iperf3 with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null 2>&1; } ||
            die "apt-get install iperf3 failed"
    fi
    setsid iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >>"$WORK/iperf3.log" 2>&1 &
    IPERF_PID=$!
    PIDS+=("$IPERF_PID")
    wait_port "$IPERF_PORT" || die "iperf3 -s did not start"
}

# ---------------------------------------------------------------------------------------------
# Runs. Each appends one tagged JSON line to $RESULTS; the readable line goes to the terminal.
LG_TIMEOUT=600
TICK=$(getconf CLK_TCK)
# user + system time of a server and of the session processes it has reaped, in clock ticks.
cpu_ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU time the hypervisor took from this VM (the steal column of /proc/stat), in clock ticks. It
# slows every server at random: a run with a lot of it is worth repeating.
steal_ticks() { awk '/^cpu /{print $9}' /proc/stat; }
json_num() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" | head -1; }

run_lg() { # scenario round label port mode args...
    local sc=$1 round=$2 label=$3 port=$4 mode=$5 out rc=0 pid before after json n login=()
    shift 5
    pid=${PID[$label]:-}
    [[ -n ${LOGIN[$label]:-} ]] && read -r -a login <<<"${LOGIN[$label]}"
    [[ -n $pid ]] && before=$(cpu_ticks "$pid")
    out=$(timeout --kill-after=10 "$LG_TIMEOUT" "$LOADGEN_BIN" "$mode" --addr "127.0.0.1:$port" \
        --label "$label" --scenario "$sc" --round "$round" --sink "$SINK" "${login[@]}" "$@") || rc=$?
    if ((rc != 0 && rc != 2)); then
        log "$sc/$label round $round: loadgen exited $rc"
    fi
    printf '%s\n' "$out" | grep '^{' >>"$RESULTS" || true
    printf '%s\n' "$out" | grep -v '^{' | sed 's/^/  /' >&2 || true
    # Server CPU per unit of work: steadier than rates on shared cores. The reference servers'
    # session processes count once reaped, so give them a moment to exit.
    [[ -n $pid ]] || return 0
    sleep 0.3
    after=$(cpu_ticks "$pid")
    json=$(printf '%s\n' "$out" | grep '^{' | head -1)
    # record mode, JSON field counted, metric name, scale: metric = CPU seconds * scale / count.
    local kind field key scale
    case $mode in
        get | many | put) kind=cpu field=bytes key=cpu_s_per_gb scale=1000000000 ;;
        conn) kind=cpu_session field=sessions key=cpu_us_per_session scale=1000000 ;;
        list) kind=cpu_listing field=count key=cpu_ms_per_listing scale=1000 ;;
        *) return 0 ;;
    esac
    n=$(json_num "$field" <<<"$json")
    [[ -n $n && $n != 0 ]] || return 0
    printf '{"mode":"%s","server":"%s","scenario":"%s (server CPU)","round":%s,"%s":%s}\n' \
        "$kind" "$label" "$sc" "$round" "$key" \
        "$(printf '%.6f' "$(echo "($after - $before) / $TICK * $scale / $n" | bc -l)")" >>"$RESULTS"
    return 0
}

# iperf3 -Z (sendfile) with $1 parallel streams: the loopback ceiling for a download of that width.
run_iperf() { # scenario round streams
    local json gbps
    json=$(timeout 60 iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -Z -t "$IPERF_SECS" -P "$3" -J 2>/dev/null) || true
    gbps=$(printf '%s\n' "$json" | awk '/"sum_received"/ {f=1} f && /"bits_per_second"/ {gsub(/[[:space:],]/, ""); split($0, a, ":"); printf "%.6f", a[2] / 8e9; exit}')
    if [[ -z $gbps ]]; then
        log "iperf3 -P $3 gave no result"
        return
    fi
    printf '{"mode":"iperf","server":"iperf3","scenario":"%s","round":%s,"streams":%s,"gbps":%s}\n' \
        "$1" "$2" "$3" "$gbps" >>"$RESULTS"
    printf '  iperf3 -Z -P %s: %s GB/s\n' "$3" "$gbps" >&2
}

# loadgen pump: blocking sendfile(2) of big.bin to $3 loopback sockets, $4 times each, received by the
# same sink as the FTP runs: the loopback ceiling for this file and this client.
run_pump() { # scenario round streams repeat
    run_lg "$1" "$2" loopback 0 pump --sessions "$3" --file "$DATA/big.bin" --repeat "$4"
}

# Every server once per round, the order rotated each round: interleaved, and none always goes first.
ab() { # scenario round cmd-for-one-server(label port)
    local sc=$1 round=$2 fn=$3 n=${#SERVERS[@]} i s
    for ((i = 0; i < n; i++)); do
        s=${SERVERS[$(((i + round - 1) % n))]}
        "$fn" "$sc" "$round" "$s" "${PORT[$s]}"
    done
}

# Like ab, over the servers this script runs with FTPS: ringftpd and vsftpd (pure-ftpd and
# proftpd are built with TLS in Debian too, but only vsftpd is configured here).
ab_tls() { # scenario round cmd-for-one-server(label port)
    local sc=$1 round=$2 fn=$3 list=() n i s
    for s in "${SERVERS[@]}"; do [[ $s == ringftpd || $s == vsftpd ]] && list+=("$s"); done
    n=${#list[@]}
    for ((i = 0; i < n; i++)); do
        s=${list[$(((i + round - 1) % n))]}
        "$fn" "$sc" "$round" "$s" "${PORT[$s]}"
    done
}

warm() { cat "$@" >/dev/null; }
# Pages of a file missing from the page cache (this VM's cache drops scattered folios of warm
# files; a download reads such windows in first), logged before each round that relies on it.
log_resident() {
    command -v fincore >/dev/null || return 0
    log "$(basename "$1"): $(fincore -nb -o PAGES,SIZE "$1" | awk '{printf "%d of %d pages resident", $1, $2 / 4096}')"
}

s_get1() { run_lg "$1" "$2" "$3" "$4" get --sessions 1 --file big.bin --repeat "$REPEAT1"; }
s_get4() { run_lg "$1" "$2" "$3" "$4" get --sessions 4 --file big.bin --repeat "$REPEAT4"; }
s_many() { run_lg "$1" "$2" "$3" "$4" many --sessions "$MANY_SESSIONS" --files-glob many/f --count "$MANY_COUNT"; }
s_conn() { run_lg "$1" "$2" "$3" "$4" conn --workers "$CONN_WORKERS" --duration "$CONN_SECS" --file small4k; }
s_list() { run_lg "$1" "$2" "$3" "$4" list --dir dir10k --count "$LIST_COUNT"; }
s_mlsd() { run_lg "$1" "$2" "$3" "$4" list --dir dir10k --count "$LIST_COUNT" --mlsd; }
s_nlst() { run_lg "$1" "$2" "$3" "$4" list --dir dir10k --count "$LIST_COUNT" --nlst; }
s_put() {
    # The previous run's files and their writeback must not weigh on this one.
    rm -f "$DATA"/upload/*
    sync
    run_lg "$1" "$2" "$3" "$4" put --sessions "$PUT_SESSIONS" --size "${PUT_MB}M" --dir upload
}
s_idle() {
    # The reference servers fork a process per session: count the whole tree.
    local tree=()
    [[ $3 == ringftpd ]] || tree=(--tree)
    run_lg "$1" "$2" "$3" "$4" idle --sessions "$IDLE_N" --pid "${PID[$3]}" "${tree[@]}"
}
s_cold() { run_lg "$1" "$2" "$3" "$4" cold --file cold.bin --small small4k --count "$COLD_COUNT" --root "$DATA"; }

s_tls1() { run_lg "$1" "$2" "$3" "$4" get --tls --sessions 1 --file big.bin --repeat "$REPEAT1"; }
s_tls8() { run_lg "$1" "$2" "$3" "$4" get --tls --sessions "$TLS_SESSIONS" --file big.bin --repeat 1; }

scenario_on() { [[ " $SCENARIOS " == *" $1 "* ]]; }
tls_scenarios() { scenario_on tls1 || scenario_on tls8; }

# ---------------------------------------------------------------------------------------------
main() {
    local t0=$SECONDS r s load0 steal0
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    steal0=$(steal_ticks)
    prepare_data
    fetch_refs
    write_ref_confs
    for s in "${SERVERS[@]}"; do start_server "$s"; done
    smoke_test
    start_iperf
    log "servers $(for s in "${SERVERS[@]}"; do printf '%s (pid %s) ' "$s" "${PID[$s]}"; done)- shards $SHARDS, data path $DATA_PATH; $ROUNDS rounds; results in $RESULTS"

    if scenario_on get1; then
        warm "$DATA/big.bin"
        for r in $(seq 1 "$ROUNDS"); do
            log_resident "$DATA/big.bin"
            ab "get 1 session x ${BIG_MB} MiB" "$r" s_get1
            run_pump "get 1 session x ${BIG_MB} MiB" "$r" 1 "$REPEAT1"
            run_iperf "get 1 session x ${BIG_MB} MiB" "$r" 1
        done
    fi
    if scenario_on get4; then
        warm "$DATA/big.bin"
        for r in $(seq 1 "$ROUNDS"); do
            log_resident "$DATA/big.bin"
            ab "get 4 sessions x ${BIG_MB} MiB" "$r" s_get4
            run_pump "get 4 sessions x ${BIG_MB} MiB" "$r" 4 "$REPEAT4"
            run_iperf "get 4 sessions x ${BIG_MB} MiB" "$r" 4
        done
    fi
    if scenario_on many; then
        warm "$DATA"/many/*
        for r in $(seq 1 "$ROUNDS"); do ab "many ${MANY_SESSIONS} x ${MANY_COUNT} x 1 MiB" "$r" s_many; done
    fi
    if scenario_on conn; then
        for r in $(seq 1 "$ROUNDS"); do ab "conn ${CONN_WORKERS} workers, 4 KiB RETR" "$r" s_conn; done
    fi
    if scenario_on list; then
        for r in $(seq 1 "$ROUNDS"); do ab "LIST ${LIST_ENTRIES} entries" "$r" s_list; done
    fi
    if scenario_on mlsd; then
        for r in $(seq 1 "$ROUNDS"); do ab "MLSD ${LIST_ENTRIES} entries" "$r" s_mlsd; done
    fi
    if scenario_on nlst; then
        for r in $(seq 1 "$ROUNDS"); do ab "NLST ${LIST_ENTRIES} entries" "$r" s_nlst; done
    fi
    if scenario_on put; then
        for r in $(seq 1 "$ROUNDS"); do
            ab "put ${PUT_SESSIONS} sessions x ${PUT_MB} MiB" "$r" s_put
        done
        rm -f "$DATA"/upload/*
        sync
    fi
    if scenario_on idle; then
        for r in $(seq 1 "$ROUNDS"); do
            restart_servers
            ab "idle ${IDLE_N} sessions" "$r" s_idle
        done
    fi
    if scenario_on idle10k; then
        # vsftpd forks a process per session; 10,000 of them would be a fork bomb on a shared box.
        for r in $(seq 1 "$ROUNDS"); do
            restart_servers
            run_lg "idle ${IDLE_BIG} sessions (ringftpd only)" "$r" ringftpd "$RING_PORT" \
                idle --sessions "$IDLE_BIG" --pid "${PID[ringftpd]}" --connect-threads 16
        done
    fi
    if scenario_on tls1; then
        warm "$DATA/big.bin"
        for r in $(seq 1 "$ROUNDS"); do ab_tls "PROT P get 1 session x ${BIG_MB} MiB" "$r" s_tls1; done
    fi
    if scenario_on tls8; then
        warm "$DATA/big.bin"
        for r in $(seq 1 "$ROUNDS"); do ab_tls "PROT P get ${TLS_SESSIONS} sessions x ${BIG_MB} MiB" "$r" s_tls8; done
    fi
    if scenario_on cold; then
        for r in $(seq 1 "$ROUNDS"); do ab "cold: 4 KiB RETR beside 2 cold ${BIG_MB} MiB pulls" "$r" s_cold; done
    fi

    local table refs_csv versions=() pkg
    table=$WORK/table-$(basename "$RESULTS" .jsonl).md
    refs_csv=$(IFS=,; echo "${REFS[*]}")
    for s in "${REFS[@]}"; do
        case $s in proftpd) pkg=proftpd-core ;; *) pkg=$s ;; esac
        # The version from the .deb's name, e.g. vsftpd_3.0.3-13+b2_amd64.deb -> 3.0.3.
        versions+=("$s $(ls "$REF"/debs/"${pkg}"_*.deb 2>/dev/null | tail -1 | sed 's/.*_\([0-9][0-9.]*\).*_.*/\1/')")
    done
    {
        echo "ringftpd ${RING_REV:-$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')} ($SHARDS shards, $DATA_PATH) vs $(IFS=,; echo "${versions[*]}" | sed 's/,/, /g') vs loopback (sendfile pump, iperf3 -Z); sink $SINK;" \
            "io ${RING_IO:-default};" "$(nproc) CPUs shared by clients and servers; $ROUNDS rounds, QUICK=$QUICK; medians (min–max)." \
            "Load average at start $load0, at end $(cut -d' ' -f1-3 /proc/loadavg)." \
            "Time the hypervisor gave the VM's CPUs to others (steal) during the run: $(echo "($(steal_ticks) - $steal0) / $TICK" | bc) CPU-s in $((SECONDS - t0)) s."
        echo
        if ((${#REFS[@]} > 1)); then
            echo "ringftpd against the best reference server for each metric:"
        else
            echo "ringftpd against ${REFS[0]}:"
        fi
        echo
        "$LOADGEN_BIN" report --results "$RESULTS" --b "$refs_csv" --ceiling loopback,iperf3
        if ((${#REFS[@]} > 1)); then
            echo
            echo "Every server:"
            echo
            "$LOADGEN_BIN" report --results "$RESULTS" --servers "ringftpd,$refs_csv"
        fi
    } | tee "$table"
    log "done in $((SECONDS - t0)) s; table in $table, raw results in $RESULTS"
    if [[ -s $WORK/ringftpd.log ]]; then
        log "ringftpd warnings/errors (last 10 lines of $WORK/ringftpd.log):"
        tail -10 "$WORK/ringftpd.log" >&2
    fi
}

main "$@"
