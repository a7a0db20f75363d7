#!/usr/bin/env bash
# Kernel TLS under a kernel that has it: builds tests/ktls.rs on the host, then runs that test
# binary in Debian's 6.1 kernel under QEMU (run-in-kernel.sh, which loads tls and the AEAD
# modules at boot) with RINGFTPD_EXPECT_KTLS=1, so the tests fail unless the server announced
# kTLS and logged every PROT P transfer as "tls": "kernel" (byte-exact, encrypted on the wire,
# ended by close_notify, TLS 1.2 and 1.3, downloads on the configured zero-copy data path,
# uploads through TLS_RX), on the io_uring and the epoll backend.
#
# `bash tests/kernel/ktls.sh`, as root. Exit 0 when the tests pass, or with a "skipped" line when
# no guest can run here (not root, QEMU missing or unable to start, no kernel package, the guest
# wrote no status); the tests' own status otherwise (124 when the guest timed out).
# KTLS_MEASURE=1 also runs measure_prot_p_download (MB/s and server CPU for a KTLS_MEASURE_MIB
# (64) MiB download with kTLS on, off, and in clear; emulated numbers).
# KMX_* settings pass through to run-in-kernel.sh (KMX_TIMEOUT defaults to 840 s here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ((EUID != 0)); then
    echo "ktls.sh: skipped: the QEMU guest needs root"
    exit 0
fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-system-x86 >/dev/null 2>&1 || true
    if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
        echo "ktls.sh: skipped: no qemu-system-x86_64 (and apt-get could not install it)"
        exit 0
    fi
fi
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    source "$HOME/.cargo/env"
fi

# Build on the host (the guest only runs binaries): the test binary and the ringftpd binary it
# starts (its path is compiled into the test).
built=$(cargo test --locked --no-run --test ktls 2>&1) || { echo "$built" >&2; exit 1; }
bin=$(sed -n 's/.*Executable tests\/ktls\.rs (\(.*\))$/\1/p' <<<"$built" | tail -1)
[[ -x $bin ]] || { echo "ktls.sh: no test binary in the cargo output:" >&2; echo "$built" >&2; exit 1; }

args=(--test-threads=1 --nocapture)
[[ ${KTLS_MEASURE:-} == 1 ]] && args+=(--include-ignored)
export KMX_TIMEOUT=${KMX_TIMEOUT:-840}
status=0
# One boot, both backends: io_uring first, then the epoll fallback (the same session code).
# shellcheck disable=SC2016
bash tests/kernel/run-in-kernel.sh env RINGFTPD_EXPECT_KTLS=1 \
    KTLS_MEASURE_MIB="${KTLS_MEASURE_MIB:-64}" bash -c \
    'set -e; uname -r; "$0" "$@"; echo "epoll backend:"; RINGFTPD_TEST_IO=epoll "$0" "$@"' \
    "$bin" "${args[@]}" || status=$?
case $status in
0) echo "ktls.sh: kTLS tests passed under ${KMX_KVER:-6.1.0-57-amd64}" ;;
125) echo "ktls.sh: skipped: the guest did not run (QEMU could not start or wrote no status)" ;;
124) echo "ktls.sh: the guest timed out after ${KMX_TIMEOUT} s" >&2 ;;
*) echo "ktls.sh: kTLS tests failed in the guest (status $status)" >&2 ;;
esac
((status == 125)) && exit 0
exit "$status"
