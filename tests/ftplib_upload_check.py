#!/usr/bin/env python3
"""Python's ftplib uploading to a running ringftpd as a named user; run by tests/external_upload.rs.

Usage: ftplib_upload_check.py HOST PORT USER PASSWORD ROOT

ROOT is the user's root directory on disk, read here to check what every upload and change
really did. Prints one line per failed check and exits 1 if any failed.
"""

import ftplib
import io
import os
import stat
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


def read(root, name):
    with open(os.path.join(root, name), "rb") as f:
        return f.read()


def temp_files(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [n for n in dirnames + filenames if n.startswith(".ringftpd-tmp.")]
    return found


def wait_no_temp_files(root):
    """The server removes a failed upload's temporary file after replying: poll, bounded."""
    deadline = time.monotonic() + TIMEOUT
    while temp_files(root) and time.monotonic() < deadline:
        time.sleep(0.02)
    return temp_files(root)


def expect_perm(what, code, fn, *args):
    try:
        fn(*args)
        check(False, "%s succeeded, want %s" % (what, code))
    except ftplib.error_perm as e:
        check(str(e).startswith(code), "%s: %s, want %s" % (what, e, code))


def main():
    host, port, user, password, root = sys.argv[1:6]
    port = int(port)

    bad = ftplib.FTP(timeout=TIMEOUT, encoding="utf-8")
    bad.connect(host, port)
    expect_perm("login with a wrong password", "530", bad.login, user, password + "x")
    bad.close()

    ftp = ftplib.FTP(timeout=TIMEOUT, encoding="utf-8")
    ftp.connect(host, port)
    check(ftp.login(user, password).startswith("230"), "login")

    # storbinary: byte-exact, passive then active.
    data = os.urandom(3 << 20) + b"\r\n\r"
    for passive in (True, False):
        ftp.set_pasv(passive)
        name = "bin-%s.dat" % ("pasv" if passive else "port")
        resp = ftp.storbinary("STOR " + name, io.BytesIO(data))
        check(resp.startswith("226"), "storbinary %s: %r" % (name, resp))
        check(read(root, name) == data, "storbinary %s content" % name)
        check(ftp.size(name) == len(data), "SIZE %s" % name)
    ftp.set_pasv(True)

    # storbinary with rest=: the second half resumes the first.
    half = len(data) // 2
    ftp.storbinary("STOR part.dat", io.BytesIO(data[:half]))
    ftp.storbinary("STOR part.dat", io.BytesIO(data[half:]), rest=half)
    check(read(root, "part.dat") == data, "storbinary with rest=%d" % half)

    # storlines sends TYPE A and CRLF line ends; the file gets LF.
    text = "line one\nline two\r\ncafé ünïcödé\n\nlast\n".encode()
    resp = ftp.storlines("STOR text.txt", io.BytesIO(text))
    check(resp.startswith("226"), "storlines: %r" % resp)
    got = read(root, "text.txt")
    check(got == "line one\nline two\ncafé ünïcödé\n\nlast\n".encode(), "storlines content %r" % got)
    ftp.voidcmd("TYPE I")

    # Directories, rename, delete.
    check(ftp.mkd("new dir") == "/new dir", "MKD returns the path")
    check(os.path.isdir(os.path.join(root, "new dir")), "MKD made the directory")
    ftp.cwd("new dir")
    check(ftp.pwd() == "/new dir", "PWD")
    ftp.storbinary("STOR inner.dat", io.BytesIO(b"inner"))
    ftp.cwd("/")
    check(read(root, "new dir/inner.dat") == b"inner", "STOR inside the new directory")
    expect_perm("RMD of a non-empty directory", "550", ftp.rmd, "new dir")
    resp = ftp.rename("bin-pasv.dat", "new dir/moved é.dat")
    check(resp.startswith("250"), "rename: %r" % resp)
    check(not os.path.exists(os.path.join(root, "bin-pasv.dat")), "rename removed the old name")
    check(read(root, "new dir/moved é.dat") == data, "rename kept the content")
    expect_perm("rename of a missing file", "550", ftp.rename, "missing", "x")
    check(ftp.delete("new dir/moved é.dat").startswith("250"), "delete")
    check(ftp.delete("new dir/inner.dat").startswith("250"), "delete inner")
    expect_perm("delete of a missing file", "550", ftp.delete, "new dir/inner.dat")
    check(ftp.rmd("new dir").startswith("250"), "RMD")
    check(not os.path.exists(os.path.join(root, "new dir")), "RMD removed the directory")

    # SITE CHMOD, MFMT and MDTM.
    resp = ftp.sendcmd("SITE CHMOD 600 text.txt")
    check(resp.startswith("200"), "SITE CHMOD: %r" % resp)
    mode = stat.S_IMODE(os.stat(os.path.join(root, "text.txt")).st_mode)
    check(mode == 0o600, "mode after SITE CHMOD 600: %o" % mode)
    expect_perm("SITE CHMOD 4755", "550", ftp.sendcmd, "SITE CHMOD 4755 text.txt")
    resp = ftp.sendcmd("MFMT 20010203040506 text.txt")
    check(resp == "213 Modify=20010203040506; /text.txt", "MFMT: %r" % resp)
    check(ftp.sendcmd("MDTM text.txt") == "213 20010203040506", "MDTM after MFMT")
    check(int(os.stat(os.path.join(root, "text.txt")).st_mtime) == 981173106, "mtime on disk")

    # ABOR of an upload (ftplib sends it as urgent data): the old file stays, no temp file.
    old = read(root, "part.dat")
    conn = ftp.transfercmd("STOR part.dat")
    conn.sendall(b"\xa5" * (1 << 20))
    resp = ftp.abort()
    check(resp[:3] in ("426", "226"), "first reply to ABOR %r" % resp)
    if resp.startswith("426"):
        second = ftp.getmultiline()
        check(second.startswith("226"), "second reply to ABOR %r" % second)
    conn.close()
    left = wait_no_temp_files(root)
    check(not left, "temporary files left after ABOR: %r" % left)
    check(read(root, "part.dat") == old, "ABOR replaced part.dat")
    check(ftp.voidcmd("NOOP").startswith("200"), "NOOP after ABOR")

    check(ftp.quit().startswith("221"), "QUIT")
    print("ftplib uploads: %d passed, %d failed" % (passed, len(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a protocol error or timeout is a failure too, with its reason and place
        import traceback
        where = traceback.extract_tb(e.__traceback__)[1:]
        print("FAIL: exception %s: %s at %s" % (type(e).__name__, e,
              " <- ".join("line %d %r" % (f.lineno, f.line) for f in reversed(where))), flush=True)
        sys.exit(1)
