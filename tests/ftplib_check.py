#!/usr/bin/env python3
"""Python's ftplib against a running ringftpd; run by tests/external.rs.

Usage: ftplib_check.py HOST PORT ROOT

ROOT is the directory the server serves, read here to know what every reply and transfer must
contain. Prints one line per failed check and exits 1 if any failed.
"""

import ftplib
import io
import os
import socket
import sys
import time

TIMEOUT = 10
failures = []
passed = 0


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what, flush=True)


def regular_files(root):
    return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n)))


def retr_bytes(ftp, name):
    chunks = []
    ftp.retrbinary("RETR " + name, chunks.append)
    return b"".join(chunks)


def main():
    host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ftp = ftplib.FTP(timeout=TIMEOUT, encoding="utf-8")
    welcome = ftp.connect(host, port)
    check(welcome.startswith("220"), "greeting %r" % welcome)
    resp = ftp.login()  # anonymous
    check(resp.startswith("230"), "login %r" % resp)
    check(ftp.pwd() == "/", "PWD")
    check(ftp.sendcmd("SYST") == "215 UNIX Type: L8", "SYST")

    # NLST: exactly the entries of the root.
    names = sorted(ftp.nlst())
    check(names == sorted(os.listdir(root)), "NLST %r vs %r" % (names, sorted(os.listdir(root))))

    # MLSD facts agree with the file system.
    seen = set()
    for name, facts in ftp.mlsd():
        if facts.get("type") in ("cdir", "pdir"):
            continue
        seen.add(name)
        path = os.path.join(root, name)
        if os.path.isdir(path):
            check(facts.get("type") == "dir", "MLSD type of %s: %r" % (name, facts))
        else:
            check(facts.get("type") == "file", "MLSD type of %s: %r" % (name, facts))
            check(facts.get("size") == str(os.path.getsize(path)), "MLSD size of %s: %r" % (name, facts))
            mtime = time.strftime("%Y%m%d%H%M%S", time.gmtime(os.path.getmtime(path)))
            check(facts.get("modify") == mtime, "MLSD modify of %s: %r vs %s" % (name, facts, mtime))
    check(seen == set(os.listdir(root)), "MLSD names %r" % sorted(seen))

    # LIST through ftplib.dir.
    lines = []
    ftp.dir(lines.append)
    check(len(lines) == len(os.listdir(root)), "LIST line count %r" % lines)

    # Every regular file byte-exact in binary, passive then active; SIZE agrees.
    for passive in (True, False):
        ftp.set_pasv(passive)
        for name in regular_files(root):
            if name == "big.bin":
                continue
            with open(os.path.join(root, name), "rb") as f:
                want = f.read()
            got = retr_bytes(ftp, name)
            check(got == want, "RETR %s (passive=%s): %d bytes, want %d" % (name, passive, len(got), len(want)))
    ftp.set_pasv(True)
    for name in regular_files(root):
        check(ftp.size(name) == os.path.getsize(os.path.join(root, name)), "SIZE " + name)

    # Nested directory with UTF-8 and spaces.
    ftp.cwd("dir with space")
    check(ftp.pwd() == "/dir with space", "PWD after CWD")
    with open(os.path.join(root, "dir with space", "é.txt"), "rb") as f:
        check(retr_bytes(ftp, "é.txt") == f.read(), "RETR é.txt")
    ftp.cwd("..")

    # ASCII: retrlines (which sends TYPE A) and the raw bytes, which must have CRLF line ends.
    with open(os.path.join(root, "text.txt"), "rb") as f:
        text = f.read()
    got_lines = []
    ftp.retrlines("RETR text.txt", got_lines.append)
    check(got_lines == text.decode().split("\n"), "retrlines %r" % got_lines)
    ftp.voidcmd("TYPE A")
    conn = ftp.transfercmd("RETR text.txt")
    raw = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        raw += chunk
    conn.close()
    ftp.voidresp()
    check(raw == text.replace(b"\n", b"\r\n"), "TYPE A bytes %r" % raw)
    ftp.voidcmd("TYPE I")

    # Errors.
    try:
        retr_bytes(ftp, "no-such-file")
        check(False, "RETR of a missing file succeeded")
    except ftplib.error_perm as e:
        check(str(e).startswith("550"), "RETR missing: %s" % e)
    try:
        ftp.mkd("newdir")
        check(False, "MKD succeeded")
    except ftplib.error_perm as e:
        check(str(e).startswith("550"), "MKD: %s" % e)
    try:
        ftp.storbinary("STOR up.txt", io.BytesIO(b"x"))
        check(False, "STOR succeeded")
    except ftplib.error_perm as e:
        check(str(e).startswith("550"), "STOR: %s" % e)

    # abort(): ftplib sends ABOR with MSG_OOB (the final LF is TCP urgent data).
    conn = ftp.transfercmd("RETR big.bin")
    got = 0
    while got < 256 * 1024:
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    resp = ftp.abort()
    check(resp[:3] in ("426", "226"), "first reply to ABOR %r" % resp)
    if resp.startswith("426"):
        second = ftp.getmultiline()
        check(second.startswith("226"), "second reply to ABOR %r" % second)
    total = got
    conn.settimeout(TIMEOUT)
    try:
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    except (ConnectionResetError, socket.timeout) as e:
        check(not isinstance(e, socket.timeout), "data connection left open after ABOR")
    conn.close()
    check(total < 64 << 20, "whole file arrived despite ABOR")
    check(ftp.voidcmd("NOOP").startswith("200"), "NOOP after ABOR")
    with open(os.path.join(root, "hello.txt"), "rb") as f:
        check(retr_bytes(ftp, "hello.txt") == f.read(), "RETR after ABOR")

    check(ftp.quit().startswith("221"), "QUIT")
    print("ftplib: %d passed, %d failed" % (passed, len(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a protocol error or timeout is a failure too, with its reason
        print("FAIL: exception %s: %s" % (type(e).__name__, e), flush=True)
        sys.exit(1)
