//! The `ringftpd` binary: its flags, its refusals of bad configuration, and a real serve run.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{Ctrl, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_ringftpd");

/// Kills the server process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8(out.stdout).unwrap();
    assert!(
        v.starts_with("ringftpd ") && v.contains(env!("CARGO_PKG_VERSION")),
        "{v:?}"
    );
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--root",
        "--listen",
        "--pasv-ports",
        "--shards",
        "--data-path",
        "--no-pin",
        "--upload-grace-ms",
        "--help",
        "--version",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}: {help}"
        );
    }
}

#[test]
fn bad_flags_and_configuration_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let missing = dir.path().join("missing");
    for args in [
        vec!["--root", root, "--data-path", "zerocopy"],
        vec!["--root", root, "--listen", "not-an-address"],
        vec!["--root", root, "--pasv-ports", "3000"],
        vec![
            "--root",
            root,
            "--pasv-ports",
            "3000-2000",
            "--listen",
            "127.0.0.1:0",
        ],
        vec!["--root", root, "--shards", "0", "--listen", "127.0.0.1:0"],
        vec!["--root", root, "--upload-grace-ms", "60000"],
        vec![
            "--root",
            missing.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        vec!["--no-such-flag"],
    ] {
        // Bad configuration must stop start-up, not leave a server running: bound the wait.
        // --allow-root: as root (CI) a start without --user is refused whatever the rest says.
        let child = Command::new("timeout")
            .args(["10", BIN, "--allow-root"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(!child.status.success(), "{args:?} was accepted");
        assert_ne!(
            child.status.code(),
            Some(124),
            "{args:?}: the server started instead of refusing"
        );
        assert!(
            !child.stderr.is_empty(),
            "{args:?}: refused without saying why"
        );
    }
}

#[test]
fn the_binary_serves_files() {
    let dir = tempfile::tempdir().unwrap();
    let body = common::pattern(42, 2 << 20);
    std::fs::write(dir.path().join("file.bin"), &body).unwrap();
    let child = Command::new(BIN)
        .args([
            "--allow-root",
            "--root",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
        ])
        .args(["--data-path", "copy", "--log-level", "info"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    // The binary logs "serving ROOT on ftp://ADDR/ ..." once listening: that is the readiness
    // signal, and the only way to learn the port chosen for 127.0.0.1:0.
    let stderr = running.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split_once("ftp://").map(|(_, r)| r) {
                let addr = rest.split('/').next().unwrap_or("").to_string();
                if let Ok(a) = addr.parse::<SocketAddr>() {
                    let _ = tx.send(a);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(TIMEOUT)
        .expect("the binary did not report a listening address on stderr");
    let mut c = Ctrl::connect(addr);
    c.login();
    common::assert_bytes_eq(&c.retr("file.bin"), &body, "RETR from the binary");
    c.expect("QUIT", 221);
    drop(running);
}
