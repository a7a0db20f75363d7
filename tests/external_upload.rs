//! Real FTP clients uploading as a named user: lftp (`mirror -R` of a few hundred files and back),
//! curl (`-T` with `--ftp-create-dirs`, resume, append, quote commands), Python's ftplib
//! (`tests/ftplib_upload_check.py`), and the `ringftpd hash-password` line they log in with.
//! Each test skips, saying why, when its tool is missing; `.ci/run` installs them so CI runs all.
//! Every client runs under coreutils `timeout` so a stuck transfer fails instead of hanging.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::tools::{require, run, run_ok, snapshot};
use common::{Ctrl, USER_PASSWORD, UsersServer, Watchdog};

/// Seconds any one client invocation may take.
const BIN: &str = env!("CARGO_BIN_EXE_ringftpd");

/// A server with one read-write user, alice.
fn alice() -> UsersServer {
    common::start_with_users(&[("alice", "access = \"read-write\"")], |_| {})
}

#[track_caller]
fn assert_same_tree(got: &Path, want: &Path, what: &str) {
    let (g, w) = (snapshot(got), snapshot(want));
    let missing: Vec<&String> = w.keys().filter(|k| !g.contains_key(*k)).collect();
    let extra: Vec<&String> = g.keys().filter(|k| !w.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} paths missing {missing:?}, {} extra {extra:?}",
        missing.len(),
        extra.len()
    );
    for (k, v) in &w {
        match (v, &g[k]) {
            (None, None) => {}
            (Some(want), Some(got)) => common::assert_bytes_eq(got, want, &format!("{what}: {k}")),
            _ => panic!("{what}: {k}: file/directory mismatch"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lftp

/// Directories of the mirrored tree: nesting, spaces and UTF-8 in names.
const TREE_DIRS: &[&str] = &[
    "",
    "alpha",
    "alpha/beta",
    "alpha/beta/gamma deep",
    "dir with space",
    "dir with space/ünïcødé",
    "日本語",
    "a/b/c/d/e",
];

/// About 300 files of 0 to 300 KB plus three of several MiB (about 22 MiB in all), and an empty
/// directory. Sizes and contents are deterministic.
fn write_source_tree(root: &Path) -> usize {
    let mut total = 0;
    for d in TREE_DIRS {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::create_dir_all(root.join("empty dir")).unwrap();
    for i in 0..300usize {
        let dir = TREE_DIRS[i % TREE_DIRS.len()];
        let name = match i % 4 {
            0 => format!("file{i}.bin"),
            1 => format!("name with spaces {i}.dat"),
            2 => format!("café-{i}.txt"),
            _ => format!("ファイル{i}"),
        };
        let len = if i % 25 == 0 {
            0
        } else if i % 10 == 0 {
            i * 7919 % 300_001
        } else {
            i * 104_729 % 20_000
        };
        fs::write(root.join(dir).join(name), common::pattern(i as u64, len)).unwrap();
        total += len;
    }
    for (name, len) in [
        ("big one.bin", 3 << 20),
        ("alpha/big two.bin", (5 << 20) + 1),
        ("日本語/big three.bin", (7 << 20) - 1),
    ] {
        fs::write(root.join(name), common::pattern(len as u64, len)).unwrap();
        total += len;
    }
    total
}

#[test]
fn lftp_mirror_upload_and_back() {
    let Some(lftp) = require("lftp") else { return };
    let s = alice();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let back = work.path().join("back");
    fs::create_dir(&src).unwrap();
    let total = write_source_tree(&src);
    assert!(total < 40 << 20, "the tree is {total} bytes");
    let files = snapshot(&src).values().filter(|v| v.is_some()).count();
    assert!(files > 300, "{files} files");

    let script = |body: String| {
        format!(
            "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 20; \
             set net:reconnect-interval-base 1; set cmd:fail-exit yes; \
             open -u alice,{USER_PASSWORD} ftp://{}; {body}",
            s.addr
        )
    };
    // Four transfers at a time, over as many sessions.
    run_ok(
        &lftp,
        &[
            "-c",
            &script(format!("mirror -R --parallel=4 '{}' /", src.display())),
        ],
    );
    assert_same_tree(&s.home("alice"), &src, "alice's root after mirror -R");
    run_ok(
        &lftp,
        &[
            "-c",
            &script(format!("mirror --parallel=4 / '{}'", back.display())),
        ],
    );
    assert_same_tree(&back, &src, "mirrored back");
}

#[test]
fn lftp_put_in_active_mode_then_mv_and_rm() {
    let Some(lftp) = require("lftp") else { return };
    let s = alice();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("active.bin");
    let body = common::pattern(21, (2 << 20) + 7);
    fs::write(&local, &body).unwrap();
    let script = format!(
        "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; \
         set ftp:passive-mode off; open -u alice,{USER_PASSWORD} ftp://{}; \
         mkdir sub; put '{}' -o 'sub/act ive.bin'; mv 'sub/act ive.bin' 'sub/moved.bin'",
        s.addr,
        local.display()
    );
    run_ok(&lftp, &["-c", &script]);
    let home = s.home("alice");
    assert!(!home.join("sub/act ive.bin").exists());
    common::assert_bytes_eq(
        &fs::read(home.join("sub/moved.bin")).unwrap(),
        &body,
        "lftp put in active mode",
    );
    let script = format!(
        "set ftp:ssl-allow no; set net:max-retries 1; set cmd:fail-exit yes; \
         open -u alice,{USER_PASSWORD} ftp://{}; rm sub/moved.bin; rmdir sub",
        s.addr
    );
    run_ok(&lftp, &["-c", &script]);
    assert!(!home.join("sub").exists());
}

// ---------------------------------------------------------------------------------------------
// curl

fn curl_url(s: &UsersServer, path: &str) -> String {
    format!("ftp://alice:{USER_PASSWORD}@{}{path}", s.addr)
}

#[test]
fn curl_upload_rename_delete() {
    let Some(curl) = require("curl") else { return };
    let s = alice();
    let home = s.home("alice");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("up.bin");
    let body = common::pattern(22, (2 << 20) + 3);
    fs::write(&local, &body).unwrap();
    let local = local.to_str().unwrap();
    let base = ["-sS", "--max-time", "30"];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let go = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(&curl, &args)
    };

    // Missing directories are made on the way (MKD), in passive and in active mode.
    go(with(&[
        "--ftp-create-dirs",
        "-T",
        local,
        &curl_url(&s, "/new/dir/name.bin"),
    ]));
    common::assert_bytes_eq(
        &fs::read(home.join("new/dir/name.bin")).unwrap(),
        &body,
        "curl -T",
    );
    go(with(&[
        "--ftp-create-dirs",
        "-P",
        "127.0.0.1",
        "-T",
        local,
        &curl_url(&s, "/new/other%20dir/with%20space%20%C3%A9.bin"),
    ]));
    common::assert_bytes_eq(
        &fs::read(home.join("new/other dir/with space é.bin")).unwrap(),
        &body,
        "curl -T -P (active)",
    );

    // Rename, then delete, with commands sent after a listing of the directory.
    go(with(&[
        &curl_url(&s, "/new/dir/"),
        "-Q",
        "-RNFR name.bin",
        "-Q",
        "-RNTO renamed.bin",
    ]));
    assert!(!home.join("new/dir/name.bin").exists());
    common::assert_bytes_eq(
        &fs::read(home.join("new/dir/renamed.bin")).unwrap(),
        &body,
        "after RNFR/RNTO",
    );
    go(with(&[
        &curl_url(&s, "/new/dir/"),
        "-Q",
        "-DELE renamed.bin",
    ]));
    assert!(!home.join("new/dir/renamed.bin").exists());

    // Resume: the server has the first part; curl asks SIZE and sends the rest.
    fs::write(home.join("new/resume.bin"), &body[..700_000]).unwrap();
    go(with(&[
        "-C",
        "-",
        "-T",
        local,
        &curl_url(&s, "/new/resume.bin"),
    ]));
    common::assert_bytes_eq(
        &fs::read(home.join("new/resume.bin")).unwrap(),
        &body,
        "curl -C - -T",
    );
    // Append.
    fs::write(home.join("new/app.bin"), b"head:").unwrap();
    go(with(&[
        "--append",
        "-T",
        local,
        &curl_url(&s, "/new/app.bin"),
    ]));
    let mut want = b"head:".to_vec();
    want.extend_from_slice(&body);
    common::assert_bytes_eq(
        &fs::read(home.join("new/app.bin")).unwrap(),
        &want,
        "curl --append",
    );

    // A wrong password: 67 = CURLE_LOGIN_DENIED, nothing stored.
    let out = run(
        &curl,
        &[
            "-sS",
            "--max-time",
            "30",
            "-T",
            local,
            &format!("ftp://alice:wrong@{}/denied.bin", s.addr),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(67),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!home.join("denied.bin").exists());
    assert!(common::temp_files_under(&home).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Python ftplib

#[test]
fn python_ftplib_uploads() {
    let Some(python) = require("python3") else {
        return;
    };
    let s = alice();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ftplib_upload_check.py");
    let port = s.addr.port().to_string();
    let home = s.home("alice");
    let out = run(
        &python,
        &[
            script.to_str().unwrap(),
            "127.0.0.1",
            &port,
            "alice",
            USER_PASSWORD,
            home.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "ftplib_upload_check.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

// ---------------------------------------------------------------------------------------------
// ringftpd hash-password

/// Run `ringftpd hash-password` with `input` on stdin (not a terminal, so no prompt).
fn hash_password(input: &[u8]) -> Output {
    let _watchdog = Watchdog::arm("ringftpd hash-password", Duration::from_secs(60));
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringftpd hash-password");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn hash_password_line_logs_in() {
    let password = "correct horse battery staple ünïcödé";
    let out = hash_password(format!("{password}\n").as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("one line expected: {stdout:?}"));
    assert!(!line.contains('\n'), "one line expected: {stdout:?}");
    assert!(
        line.starts_with("password = \"$argon2id$") && line.ends_with('"'),
        "{line:?}"
    );
    assert!(!line.contains(password));
    // A fresh salt every time.
    let again = hash_password(format!("{password}\n").as_bytes());
    assert_ne!(String::from_utf8(again.stdout).unwrap(), stdout);
    // An empty password is refused.
    let empty = hash_password(b"\n");
    assert!(!empty.status.success());
    assert!(empty.stdout.is_empty());

    // The line goes into a users file as printed.
    let homes = tempfile::tempdir().unwrap();
    let root = homes.path().join("zoe");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("hello.txt"), b"hello zoe\n").unwrap();
    let users = homes.path().join("users.toml");
    fs::write(
        &users,
        format!(
            "[[user]]\nname = \"zoe\"\n{line}\nroot = '{}'\naccess = \"read-only\"\n",
            root.display()
        ),
    )
    .unwrap();
    let s = common::start(|c| c.users_file = Some(users));
    let mut c = Ctrl::connect(s.addr);
    c.login_as("zoe", password);
    assert_eq!(c.retr("hello.txt"), b"hello zoe\n");
    let mut c = Ctrl::connect(s.addr);
    c.expect("USER zoe", 331);
    c.expect("PASS correct horse battery staple", 530);
}
