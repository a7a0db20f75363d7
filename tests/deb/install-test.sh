#!/usr/bin/env bash
# Install test of the Debian package, run as root by .ci/run: build it (debian/build.sh),
# install it with dpkg, check what the maintainer scripts made, run the installed binary with
# the installed config (on a loopback port, as the ringftpd user), download a file from /srv/ftp
# with curl, then purge and check that the package's files are gone and /srv/ftp's content is
# not. Leaves the machine as it found it: everything it adds is removed on any exit.
# Skips (exit 0, "skipping: ...") where it cannot run: not root, no dpkg, a ringftpd package
# already installed, or systemd running (installing would start the real service on port 21).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

skip() {
    echo "install-test: skipping: $*"
    exit 0
}
fail() {
    echo "install-test: FAILED: $*" >&2
    exit 1
}
step() { echo "install-test: $*"; }

[[ "$(id -u)" == 0 ]] || skip "not root (dpkg -i needs root)"
command -v dpkg >/dev/null 2>&1 || skip "dpkg is missing (not a Debian system)"
if dpkg-query -W -f '${db:Status-Status}' ringftpd 2>/dev/null | grep -qv '^not-installed$'; then
    skip "a ringftpd package is already on this machine; the test would purge it"
fi
if [[ -d /run/systemd/system ]]; then
    skip "systemd runs here: installing would start ringftpd.service on port 21"
fi
for tool in curl setpriv timeout cmp; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing"
done

# What the package touches outside its own files: taken before, compared after the cleanup.
snapshot() {
    {
        find /etc/systemd/system /var/lib/systemd -maxdepth 3 -name '*ringftpd*' || true
        find /etc/systemd/system /var/lib/systemd -maxdepth 1 -type d || true
        find /etc/ringftpd /etc/logrotate.d/ringftpd /var/log/ringftpd /usr/sbin/ringftpd \
            /usr/lib/systemd/system/ringftpd.service /usr/share/doc/ringftpd -maxdepth 0 || true
        find /usr/share/man -name 'ringftpd*' || true
        find /srv -maxdepth 1 || true
        getent passwd ringftpd || true
        getent group ringftpd || true
    } 2>/dev/null | sort
}

stop_server() {
    [[ -n "$server_pid" ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    # ringftpd does not drain on SIGTERM yet (the default action ends it); bounded either way.
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        echo "install-test: the server did not stop on SIGTERM within 10 s; killing it" >&2
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

cleanup() {
    local rc=$?
    set +e
    stop_server
    rm -f "/srv/ftp/$name" "/srv/ftp/$keep"
    if ((installed)); then
        timeout 300 dpkg --purge ringftpd >/dev/null 2>&1 || echo "install-test: dpkg --purge failed" >&2
    fi
    # The package keeps its system user on purge (Debian practice); the test made it, so it goes.
    if ((!had_user)) && getent passwd ringftpd >/dev/null; then
        userdel ringftpd
    fi
    if ((!had_group)) && getent group ringftpd >/dev/null; then
        groupdel ringftpd
    fi
    if ((!had_srv_ftp)) && [[ -d /srv/ftp ]]; then
        rmdir /srv/ftp || echo "install-test: /srv/ftp is not empty; left in place" >&2
    fi
    snapshot >"$tmp/after"
    if [[ -f "$tmp/before" ]] && ! diff -u "$tmp/before" "$tmp/after" >&2; then
        echo "install-test: the machine differs from before the test (above)" >&2
        rc=1
    fi
    rm -rf "$tmp"
    exit "$rc"
}

tmp="$(mktemp -d /tmp/ringftpd-install-test.XXXXXX)"
had_user=0
getent passwd ringftpd >/dev/null && had_user=1
had_group=0
getent group ringftpd >/dev/null && had_group=1
had_srv_ftp=0
[[ -e /srv/ftp ]] && had_srv_ftp=1
installed=0
server_pid=""
name="ringftpd-install-test-$$.bin"
keep="ringftpd-install-test-$$.keep"

trap cleanup EXIT
snapshot >"$tmp/before"

step "building the package"
start=$SECONDS
timeout --kill-after=30 1500 bash debian/build.sh >"$tmp/build.out" 2>"$tmp/build.err" ||
    { tail -n 50 "$tmp/build.err" >&2; fail "debian/build.sh"; }
deb="$(tail -n 1 "$tmp/build.out")"
[[ -f "$deb" ]] || fail "debian/build.sh printed no package path"
step "built $deb in $((SECONDS - start)) s"

step "installing"
start=$SECONDS
installed=1
if ! timeout 300 dpkg -i "$deb" >"$tmp/dpkg.out" 2>&1; then
    cat "$tmp/dpkg.out" >&2
    step "dpkg -i failed; trying apt-get install -f for missing dependencies"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -f -y -qq >&2 ||
        fail "apt-get install -f"
fi
[[ "$(dpkg-query -W -f '${db:Status-Status}' ringftpd)" == installed ]] ||
    fail "ringftpd is not installed after dpkg -i"
step "installed in $((SECONDS - start)) s"

step "checking what the package made"
run_as=(setpriv --reuid=ringftpd --regid=ringftpd --clear-groups --)
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd ringftpd) || fail "no ringftpd user"
((uid < 1000)) || fail "ringftpd is not a system user (uid $uid)"
[[ "$shell" == /usr/sbin/nologin || "$shell" == /bin/false ]] || fail "ringftpd has the login shell $shell"
[[ "$home" == /nonexistent && ! -e /nonexistent ]] || fail "ringftpd's home is $home"
getent group ringftpd >/dev/null || fail "no ringftpd group"
[[ -x /usr/sbin/ringftpd ]] || fail "/usr/sbin/ringftpd missing"
conffiles="$(dpkg-query -W -f '${Conffiles}' ringftpd)"
for f in /etc/ringftpd/ringftpd.toml /etc/logrotate.d/ringftpd; do
    [[ -f "$f" ]] || fail "$f missing"
    grep -q "^ $f " <<<"$conffiles" || fail "$f is not a conffile"
done
cmp -s /etc/ringftpd/ringftpd.toml tuning/ringftpd.toml || fail "the installed config is not tuning/ringftpd.toml"
[[ -f /usr/lib/systemd/system/ringftpd.service ]] || fail "the systemd unit is missing"
if command -v systemd-analyze >/dev/null 2>&1; then
    # Works without systemd running. Unknown settings are only warnings (exit 0), so any output
    # at all is a failure.
    timeout 60 systemd-analyze verify /usr/lib/systemd/system/ringftpd.service >"$tmp/verify" 2>&1 ||
        true
    [[ ! -s "$tmp/verify" ]] || { cat "$tmp/verify" >&2; fail "systemd-analyze verify ringftpd.service"; }
fi
# Enabled by deb-systemd-helper even without systemd running (a symlink, started at next boot).
[[ -L /etc/systemd/system/multi-user.target.wants/ringftpd.service ]] ||
    fail "ringftpd.service is not enabled"
for page in man8/ringftpd.8.gz man8/ringftpd-hash-password.8.gz man5/ringftpd.toml.5.gz; do
    dpkg -L ringftpd | grep -qx "/usr/share/man/$page" || fail "the package has no $page"
    if [[ -f "/usr/share/man/$page" ]]; then
        gzip -t "/usr/share/man/$page" || fail "$page is not gzip"
    else
        # Minimal images drop man pages at install (dpkg path-exclude); the package has them.
        step "note: /usr/share/man/$page not on disk (dpkg path-exclude?)"
    fi
done
if command -v man >/dev/null 2>&1 && [[ -f /usr/share/man/man5/ringftpd.toml.5.gz ]]; then
    MANWIDTH=100 man ringftpd.toml 2>/dev/null | grep -q shutdown_grace_secs ||
        fail "man ringftpd.toml does not render the keys"
    MANWIDTH=100 man 8 ringftpd 2>/dev/null | grep -q -- --check-config ||
        fail "man ringftpd does not render the flags"
fi
[[ "$(stat -c '%U:%G %a' /var/log/ringftpd)" == "ringftpd:adm 750" ]] ||
    fail "/var/log/ringftpd is $(stat -c '%U:%G %a' /var/log/ringftpd), not ringftpd:adm 750"
[[ "$(stat -c '%U %a' /srv/ftp)" == "root 755" ]] || ((had_srv_ftp)) ||
    fail "/srv/ftp is $(stat -c '%U %a' /srv/ftp), not root 755"
if command -v logrotate >/dev/null 2>&1; then
    # -d: parse and plan only; nothing is rotated and no script runs.
    timeout 30 logrotate -d -s "$tmp/logrotate.state" /etc/logrotate.d/ringftpd >"$tmp/lr.out" 2>&1 ||
        { cat "$tmp/lr.out" >&2; fail "logrotate rejects /etc/logrotate.d/ringftpd"; }
    ! grep -qi '^error' "$tmp/lr.out" || { cat "$tmp/lr.out" >&2; fail "logrotate: errors"; }
    # A real rotation with the installed rules, its postrotate swapped for a marker (the real one
    # would SIGHUP every ringftpd on the machine): rotated as ringftpd, new file ringftpd:adm.
    sed '/^[[:space:]]*postrotate$/,/^[[:space:]]*endscript$/c\	postrotate\n\t\ttouch '"$tmp"'/postrotate-ran\n\tendscript' \
        /etc/logrotate.d/ringftpd >"$tmp/logrotate.conf"
    "${run_as[@]}" sh -c 'echo "a transfer" >/var/log/ringftpd/xferlog'
    timeout 30 logrotate -f -s "$tmp/logrotate.state" "$tmp/logrotate.conf" >"$tmp/lr.out" 2>&1 ||
        { cat "$tmp/lr.out" >&2; fail "logrotate could not rotate /var/log/ringftpd/xferlog"; }
    [[ -f /var/log/ringftpd/xferlog.1 && -f "$tmp/postrotate-ran" ]] ||
        { cat "$tmp/lr.out" >&2; fail "logrotate did not rotate xferlog and run postrotate"; }
    [[ "$(stat -c '%U:%G %a' /var/log/ringftpd/xferlog)" == "ringftpd:adm 640" ]] ||
        fail "the new xferlog is $(stat -c '%U:%G %a' /var/log/ringftpd/xferlog)"
    rm -f /var/log/ringftpd/xferlog /var/log/ringftpd/xferlog.1
fi

step "checking the installed config"
timeout 30 /usr/sbin/ringftpd --config /etc/ringftpd/ringftpd.toml --check-config ||
    fail "--check-config as root"
timeout 30 "${run_as[@]}" /usr/sbin/ringftpd --config /etc/ringftpd/ringftpd.toml --check-config ||
    fail "--check-config as the ringftpd user"

step "serving /srv/ftp as the ringftpd user on loopback"
head -c 3000000 /dev/urandom >"/srv/ftp/$name"
chmod 0644 "/srv/ftp/$name"
echo "operator's file" >"/srv/ftp/$keep"
# Passive ports: a random slice of a range outside the test suites' usual ports.
pasv_lo=$((41000 + RANDOM % 7000))
(
    cd /
    exec "${run_as[@]}" /usr/sbin/ringftpd --config /etc/ringftpd/ringftpd.toml \
        --listen 127.0.0.1:0 --pasv-ports "$pasv_lo-$((pasv_lo + 199))"
) 2>"$tmp/server.log" &
server_pid=$!
# The kernel picks the control port; the server logs the address it serves on.
addr=""
for _ in $(seq 100); do
    addr="$(sed -n 's|.* on ftp://\(127\.0\.0\.1:[0-9]*\)/.*|\1|p' "$tmp/server.log" | head -n 1)"
    [[ -n "$addr" ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
[[ -n "$addr" ]] || { cat "$tmp/server.log" >&2; fail "the server did not start"; }
[[ "$(ps -o user= -p "$server_pid")" == ringftpd ]] || fail "the server does not run as ringftpd"
timeout 60 curl -sS --max-time 50 -o "$tmp/got" "ftp://$addr/$name" || fail "curl download"
cmp "/srv/ftp/$name" "$tmp/got" || fail "the downloaded file differs"
timeout 30 curl -sS --max-time 20 --list-only "ftp://$addr/" >"$tmp/list" || fail "curl listing"
tr -d '\r' <"$tmp/list" | grep -qx "$name" || fail "the listing does not show $name"
step "downloaded $(stat -c %s "$tmp/got") bytes from ftp://$addr/ intact"
stop_server
rm -f "/srv/ftp/$name"

step "purging"
timeout 300 dpkg --purge ringftpd >"$tmp/purge.out" 2>&1 || { cat "$tmp/purge.out" >&2; fail "dpkg --purge"; }
installed=0
for f in /var/log/ringftpd /etc/ringftpd /etc/logrotate.d/ringftpd /usr/sbin/ringftpd \
    /usr/lib/systemd/system/ringftpd.service /etc/systemd/system/multi-user.target.wants/ringftpd.service \
    /etc/systemd/system/ringftpd.service /usr/share/man/man8/ringftpd.8.gz; do
    [[ ! -e "$f" && ! -L "$f" ]] || fail "$f is still there after purge"
done
[[ -f "/srv/ftp/$keep" ]] || fail "purge removed content of /srv/ftp"
step "passed"
