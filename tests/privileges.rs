//! Started as root, the real binary binds its listener, switches to `--user nobody` (every
//! thread: uid, gid and groups), sets no_new_privs, confines itself with Landlock, and still
//! serves: an anonymous download, a named user's upload (owned by nobody on disk), the xferlog
//! and a SIGHUP reload (config and users files re-read) all work inside the confinement. A start
//! as root without `--user` and without `--allow-root` is refused before anything is bound.
//!
//! What Landlock denies is tested in `privileges::tests` (a confined thread: writes outside
//! the rules fail with EACCES even as root); here only that the binary confines itself and
//! keeps working. Everything here needs root (CI runs as root) and skips without it.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::daemon::{BIN, Daemon};
use common::{Ctrl, USER_PASSWORD, UserSpec, write_users_file};
use nix::sys::signal::Signal;
use nix::unistd::{Uid, User};

fn is_root() -> bool {
    if Uid::effective().is_root() {
        return true;
    }
    eprintln!("skipped: the privilege drop needs root (CI runs as root)");
    false
}

fn open_to_all(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `Key:` fields of /proc/PID/task/TID/status for every thread of `pid`.
fn thread_status(pid: u32, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with(key)) {
            out.push(
                line[key.len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    out
}

#[test]
fn started_as_root_it_serves_as_the_user_confined() {
    if !is_root() {
        return;
    }
    let nobody = User::from_name("nobody").unwrap().expect("a nobody user");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    open_to_all(d);
    for sub in ["pub", "alice", "log", "etc", "tls"] {
        fs::create_dir(d.join(sub)).unwrap();
        open_to_all(&d.join(sub));
    }
    fs::write(d.join("pub/hello.txt"), b"hello\n").unwrap();
    // What nobody writes to must be nobody's.
    for sub in ["alice", "log"] {
        nix::unistd::chown(&d.join(sub), Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let users = d.join("etc/users.toml");
    write_users_file(
        &users,
        &[UserSpec {
            name: "alice",
            root: &d.join("alice"),
            extra: "access = \"read-write\"",
        }],
    );
    let conf = d.join("etc/ringftpd.toml");
    fs::write(&conf, "banner = \"before\"\n").unwrap();
    let xferlog = d.join("log/xferlog");
    // A certificate and key, which SIGHUP loads again from inside the confinement.
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (d.join("tls/cert.pem"), d.join("tls/key.pem"));
    fs::write(&cert, made.cert.pem()).unwrap();
    fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    for f in [&cert, &key] {
        nix::unistd::chown(f, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let anon_root = d.join("pub");
    let args = [
        "--user",
        "nobody",
        "--config",
        conf.to_str().unwrap(),
        "--root",
        anon_root.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
        "--xferlog",
        xferlog.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--no-pin",
    ];
    let mut daemon = Daemon::spawn(&args, &[]);
    let pid = daemon.child.id();
    let seen = daemon.seen.join("\n");
    assert!(seen.contains("serving as user nobody"), "{seen}");

    // Every thread: real, effective, saved and filesystem ids are nobody's; its groups only.
    let uid = nobody.uid.to_string();
    let gid = nobody.gid.to_string();
    let uids = thread_status(pid, "Uid:");
    assert!(uids.len() >= 4, "threads: {uids:?}");
    for line in uids {
        assert_eq!(line, [uid.as_str(); 4].join(" "));
    }
    for line in thread_status(pid, "Gid:") {
        assert_eq!(line, [gid.as_str(); 4].join(" "));
    }
    let name = std::ffi::CString::new("nobody").unwrap();
    let mut want_groups: Vec<String> = nix::unistd::getgrouplist(&name, nobody.gid)
        .unwrap()
        .iter()
        .map(|g| g.to_string())
        .collect();
    want_groups.sort();
    want_groups.dedup();
    for line in thread_status(pid, "Groups:") {
        let mut got: Vec<String> = line.split_whitespace().map(String::from).collect();
        got.sort();
        assert_eq!(got, want_groups, "supplementary groups");
    }
    for line in thread_status(pid, "NoNewPrivs:") {
        assert_eq!(line, "1");
    }

    // Landlock, where the kernel has it: the binary says so with the number of rules.
    let landlock = daemon
        .seen
        .iter()
        .find(|l| l.contains("landlock:"))
        .cloned();
    let confined = match &landlock {
        Some(l) if l.contains("restricted to") => true,
        Some(l) => {
            eprintln!("not confined here: {l}");
            false
        }
        None => panic!("no landlock line: {seen}"),
    };

    // It serves: an anonymous download, and an upload by a read-write user.
    let mut anon = Ctrl::connect(daemon.addr);
    anon.login();
    assert_eq!(anon.retr("hello.txt"), b"hello\n");
    let mut alice = Ctrl::connect(daemon.addr);
    alice.login_as("alice", USER_PASSWORD);
    alice.expect("MKD reports", 257);
    alice.stor("STOR reports/q1.txt", b"numbers\n");
    alice.expect("RNFR reports/q1.txt", 350);
    alice.expect("RNTO q1.txt", 250);
    let stored = d.join("alice/q1.txt");
    assert_eq!(fs::read(&stored).unwrap(), b"numbers\n");
    assert_eq!(fs::metadata(&stored).unwrap().uid(), nobody.uid.as_raw());
    // Anonymous users are read-only: the gate refuses (and Landlock would too).
    anon.expect("STOR nope.txt", 550);

    // A reload re-reads the config and users files, the certificate and the key from inside
    // the confinement.
    fs::write(&conf, "banner = \"after\"\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_line(|l| l.contains("configuration reloaded") || l.contains("reload refused"));
    let last = daemon.seen.last().cloned().unwrap_or_default();
    assert!(last.contains("configuration reloaded"), "{last}");
    let mut after = Ctrl::connect_raw(daemon.addr);
    let (code, text) = after.read_reply();
    assert_eq!((code, text.contains("after")), (220, true), "{text}");

    // Landlock can only tighten: a user added by a reload whose root lies outside the paths
    // allowed at start-up is named in a warning.
    let bob_root = d.join("bob");
    fs::create_dir(&bob_root).unwrap();
    open_to_all(&bob_root);
    fs::write(bob_root.join("b.txt"), b"bob\n").unwrap();
    write_users_file(
        &users,
        &[
            UserSpec {
                name: "alice",
                root: &d.join("alice"),
                extra: "access = \"read-write\"",
            },
            UserSpec {
                name: "bob",
                root: &bob_root,
                extra: "access = \"read-only\"",
            },
        ],
    );
    daemon.signal(Signal::SIGHUP);
    daemon.wait_line(|l| l.contains("configuration reloaded") || l.contains("reload refused"));
    let warned = daemon
        .seen
        .iter()
        .any(|l| l.contains("landlock:") && l.contains(bob_root.to_str().unwrap()));
    assert_eq!(warned, confined, "{:?}", daemon.seen);
    if confined {
        // Bob's root cannot be opened in the confinement: his login fails (with the usual 530;
        // the log says why).
        let mut bob = Ctrl::connect(daemon.addr);
        bob.expect("USER bob", 331);
        bob.expect(&format!("PASS {USER_PASSWORD}"), 530);
        daemon.wait_line(|l| l.contains("of user \"bob\""));
    }

    // The transfer log is written as nobody, in the log directory.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let text = fs::read_to_string(&xferlog).unwrap_or_default();
        if text.contains("hello.txt") && text.contains("q1.txt") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "xferlog: {text:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(fs::metadata(&xferlog).unwrap().uid(), nobody.uid.as_raw());
    eprintln!("confined by Landlock: {confined} ({landlock:?})");
}

#[test]
fn root_without_a_user_is_refused() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args([
            "20",
            BIN,
            "--root",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--user") && stderr.contains("--allow-root"),
        "{stderr}"
    );
    // --check-config is not a start: it checks the file, not who runs it.
    let out = Command::new("timeout")
        .args([
            "20",
            BIN,
            "--root",
            dir.path().to_str().unwrap(),
            "--check-config",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A user that does not exist is a configuration error.
    let out = Command::new("timeout")
        .args([
            "20",
            BIN,
            "--root",
            dir.path().to_str().unwrap(),
            "--user",
            "no-such-user-here",
            "--check-config",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
}
