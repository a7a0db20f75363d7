//! Real FTP clients against the server: curl, lftp and Python's ftplib (`tests/ftplib_check.py`).
//! Each test skips, saying why, when its tool is missing; `.ci/run` installs them so CI runs all.
//! Every client runs under coreutils `timeout` so a stuck transfer fails instead of hanging.

mod common;

use std::path::Path;

use common::tools::{require, run, run_ok, snapshot};
use common::{OLD_MTIME, TestServer};

/// Seconds any one client invocation may take.
fn url(s: &TestServer, path: &str) -> String {
    format!("ftp://{}{path}", s.addr)
}

/// A tree with the awkward cases: nesting, spaces, UTF-8, an empty file, a multi-MiB file.
fn tree() -> TestServer {
    let s = common::server();
    s.write_file("hello.txt", b"Hello from ringftpd\n");
    s.write_file("data/large.bin", &common::pattern(1, 5 << 20));
    s.write_file("data/small.bin", &common::pattern(2, 1000));
    s.write_file("data/empty", b"");
    s.write_file("a/b/c/deep.bin", &common::pattern(3, 70_000));
    s.write_file("dir with space/é.txt", "café\n".as_bytes());
    s.write_file("dir with space/plain name.txt", b"plain\n");
    s.mkdir("emptydir");
    s.write_file("old.bin", &common::pattern(4, 4096));
    s.set_mtime("old.bin", OLD_MTIME);
    s
}

#[track_caller]
fn assert_same_tree(got: &Path, want: &Path) {
    let (g, w) = (snapshot(got), snapshot(want));
    let gk: Vec<&String> = g.keys().collect();
    let wk: Vec<&String> = w.keys().collect();
    assert_eq!(gk, wk, "mirrored tree has different paths");
    for (k, v) in &w {
        match (v, &g[k]) {
            (None, None) => {}
            (Some(want), Some(got)) => common::assert_bytes_eq(got, want, k),
            _ => panic!("{k}: file/directory mismatch"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// curl

fn curl_get(curl: &Path, s: &TestServer, path: &str, extra: &[&str]) -> Vec<u8> {
    let u = url(s, path);
    let mut args = vec!["-sS", "--max-time", "30"];
    args.extend_from_slice(extra);
    args.push(&u);
    run_ok(curl, &args).stdout
}

#[test]
fn curl_passive_download() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    let large = common::pattern(1, 5 << 20);
    // Default: EPSV; then forced PASV.
    common::assert_bytes_eq(
        &curl_get(&curl, &s, "/data/large.bin", &[]),
        &large,
        "curl EPSV",
    );
    common::assert_bytes_eq(
        &curl_get(&curl, &s, "/data/large.bin", &["--disable-epsv"]),
        &large,
        "curl PASV",
    );
    assert_eq!(
        curl_get(&curl, &s, "/hello.txt", &[]),
        b"Hello from ringftpd\n"
    );
    assert_eq!(curl_get(&curl, &s, "/data/empty", &[]), b"");
}

#[test]
fn curl_active_download() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    let large = common::pattern(1, 5 << 20);
    // EPRT first, as curl does by default; then PORT only.
    common::assert_bytes_eq(
        &curl_get(&curl, &s, "/data/large.bin", &["-P", "127.0.0.1"]),
        &large,
        "curl EPRT",
    );
    common::assert_bytes_eq(
        &curl_get(&curl, &s, "/data/large.bin", &["-P", "-", "--disable-eprt"]),
        &large,
        "curl PORT",
    );
}

#[test]
fn curl_directory_listing() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    // curl fetches listings in ASCII mode and turns CRLF into LF on output, hence lines().
    let list = String::from_utf8(curl_get(&curl, &s, "/data/", &[])).unwrap();
    let mut names: Vec<String> = list
        .lines()
        .map(|l| common::parse_list_line(l).expect(l).2)
        .collect();
    names.sort();
    assert_eq!(names, ["empty", "large.bin", "small.bin"], "{list:?}");
    let nlst = String::from_utf8(curl_get(
        &curl,
        &s,
        "/dir%20with%20space/",
        &["--list-only"],
    ))
    .unwrap();
    let mut names: Vec<&str> = nlst.lines().collect();
    names.sort();
    assert_eq!(names, ["plain name.txt", "é.txt"], "{nlst:?}");
}

#[test]
fn curl_cwd_methods() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    let want = common::pattern(3, 70_000);
    for method in ["multicwd", "nocwd", "singlecwd"] {
        let got = curl_get(&curl, &s, "/a/b/c/deep.bin", &["--ftp-method", method]);
        common::assert_bytes_eq(&got, &want, method);
    }
}

#[test]
fn curl_utf8_and_space_names() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    assert_eq!(
        curl_get(&curl, &s, "/dir%20with%20space/%C3%A9.txt", &[]),
        "café\n".as_bytes()
    );
    assert_eq!(
        curl_get(
            &curl,
            &s,
            "/dir%20with%20space/plain%20name.txt",
            &["--ftp-method", "nocwd"]
        ),
        b"plain\n"
    );
}

#[test]
fn curl_range_and_resume() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    let large = common::pattern(1, 5 << 20);
    // REST 100, then curl stops reading after 100 bytes and closes the transfer early.
    let got = curl_get(&curl, &s, "/data/large.bin", &["-r", "100-199"]);
    assert_eq!(got, &large[100..200]);
    let got = curl_get(&curl, &s, "/data/large.bin", &["-r", "3000000-"]);
    common::assert_bytes_eq(&got, &large[3_000_000..], "curl -r 3000000-");
    // Resume into a partial local file.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("partial.bin");
    std::fs::write(&out, &large[..1_234_567]).unwrap();
    let u = url(&s, "/data/large.bin");
    run_ok(
        &curl,
        &[
            "-sS",
            "--max-time",
            "30",
            "-C",
            "-",
            "-o",
            out.to_str().unwrap(),
            &u,
        ],
    );
    common::assert_bytes_eq(&std::fs::read(&out).unwrap(), &large, "curl -C -");
    // The early close above did not hurt the server.
    assert_eq!(
        curl_get(&curl, &s, "/hello.txt", &[]),
        b"Hello from ringftpd\n"
    );
}

#[test]
fn curl_head_uses_size_and_mdtm() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    let head = String::from_utf8(curl_get(&curl, &s, "/old.bin", &["-I"])).unwrap();
    assert!(head.contains("Content-Length: 4096"), "{head:?}");
    assert!(
        head.contains("Last-Modified: Sat, 03 Feb 2001 04:05:06 GMT"),
        "{head:?}"
    );
}

#[test]
fn curl_missing_file_and_refused_upload() {
    let Some(curl) = require("curl") else { return };
    let s = tree();
    let out = run(
        &curl,
        &[
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            &url(&s, "/nope.bin"),
        ],
    );
    // 78 = CURLE_REMOTE_FILE_NOT_FOUND (RETR answered 550).
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.txt");
    std::fs::write(&up, b"upload").unwrap();
    let out = run(
        &curl,
        &[
            "-sS",
            "--max-time",
            "30",
            "-T",
            up.to_str().unwrap(),
            &url(&s, "/up.txt"),
        ],
    );
    assert!(!out.status.success(), "upload must be refused");
    assert!(!s.path("up.txt").exists());
}

// ---------------------------------------------------------------------------------------------
// lftp

fn lftp_script(s: &TestServer, passive: bool, body: &str) -> String {
    format!(
        "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10; set net:reconnect-interval-base 1; \
         set ftp:passive-mode {}; set cmd:fail-exit yes; set xfer:clobber on; \
         open -u anonymous,lftp@example.com ftp://{}; {body}",
        if passive { "on" } else { "off" },
        s.addr
    )
}

fn lftp_mirror(passive: bool) {
    let Some(lftp) = require("lftp") else { return };
    let s = tree();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("mirror");
    let script = lftp_script(&s, passive, &format!("mirror / {}", target.display()));
    run_ok(&lftp, &["-c", &script]);
    assert_same_tree(&target, s.root.path());
}

#[test]
fn lftp_mirror_passive() {
    lftp_mirror(true);
}

#[test]
fn lftp_mirror_active() {
    lftp_mirror(false);
}

#[test]
fn lftp_cat_ls_and_pget() {
    let Some(lftp) = require("lftp") else { return };
    let s = tree();
    let out = run_ok(
        &lftp,
        &["-c", &lftp_script(&s, true, "cat /data/small.bin")],
    );
    assert_eq!(out.stdout, common::pattern(2, 1000));
    let out = run_ok(
        &lftp,
        &["-c", &lftp_script(&s, true, "cls -1 /dir\\ with\\ space/")],
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    let mut names: Vec<&str> = listing
        .lines()
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["plain name.txt", "é.txt"], "{listing:?}");
    // pget splits the file into ranges fetched over parallel sessions with REST.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("large.bin");
    let body = format!("pget -n 4 /data/large.bin -o {}", dest.display());
    run_ok(&lftp, &["-c", &lftp_script(&s, true, &body)]);
    common::assert_bytes_eq(
        &std::fs::read(&dest).unwrap(),
        &common::pattern(1, 5 << 20),
        "lftp pget -n 4",
    );
}

// ---------------------------------------------------------------------------------------------
// Python ftplib

#[test]
fn python_ftplib() {
    let Some(python) = require("python3") else {
        return;
    };
    let s = tree();
    // For the abort check: big enough that the transfer is still running when ABOR goes out.
    s.sparse_file("big.bin", 64 << 20);
    s.write_file(
        "text.txt",
        b"first line\nsecond line\n\nlast line without newline",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ftplib_check.py");
    let port = s.addr.port().to_string();
    let out = run(
        &python,
        &[
            script.to_str().unwrap(),
            "127.0.0.1",
            &port,
            s.root.path().to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "ftplib_check.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
