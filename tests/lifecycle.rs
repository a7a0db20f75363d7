//! The binary as a service: SIGTERM drains (listeners closed, idle sessions told 421, running
//! transfers finish within the grace, the rest closed, exit 0), a second signal stops at once,
//! SIGHUP reloads the config and users file without dropping anyone, and the service manager
//! hears READY/RELOADING/STOPPING on `$NOTIFY_SOCKET`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{
    Ctrl, TIMEOUT, UserSpec, assert_bytes_eq, data_connect, free_port_range, pattern, read_all,
    temp_files_under, write_users_file,
};
use nix::sys::signal::Signal;

fn pasv_range() -> String {
    let (lo, hi) = free_port_range(21000, 8);
    format!("{lo}-{hi}")
}

/// Flags every test server gets: loopback, two shards, a passive range of its own.
fn base_args(root: &Path, ports: &str) -> Vec<String> {
    [
        "--root",
        root.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--pasv-ports",
        ports,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(args: &[String], env: &[(&str, &str)]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::spawn(&args, env)
}

/// Until connecting is refused (the listeners are closed), within [`TIMEOUT`].
fn wait_refused(d: &Daemon) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&d.addr, TIMEOUT) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connect during shutdown: {e}"),
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "new connections were still accepted {TIMEOUT:?} after SIGTERM"
        );
        // The shards close their listeners when the control thread's message reaches them; poll.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start RETR of `path` and read `first` bytes of it, leaving the rest in flight.
fn retr_in_flight(c: &mut Ctrl, path: &str, first: usize) -> (TcpStream, Vec<u8>) {
    let addr = c.epsv();
    let mut data = data_connect(addr);
    c.send_line(format!("RETR {path}").as_bytes());
    let (code, text) = c.read_reply();
    assert_eq!(code, 150, "{text}");
    let mut got = vec![0u8; first];
    data.read_exact(&mut got).unwrap();
    (data, got)
}

#[test]
fn sigterm_lets_a_download_finish_refuses_new_sessions_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(3, 48 << 20);
    std::fs::write(dir.path().join("big.bin"), &body).unwrap();
    let mut args = base_args(dir.path(), &pasv_range());
    args.extend(["--shutdown-grace-secs".into(), "30".into()]);
    let mut d = spawn(&args, &[]);

    let mut busy = Ctrl::connect(d.addr);
    busy.login();
    let (mut data, mut got) = retr_in_flight(&mut busy, "big.bin", 1 << 20);
    let mut idle = Ctrl::connect(d.addr);
    idle.login();

    d.signal(Signal::SIGTERM);
    let (code, text) = idle.read_reply();
    assert_eq!(code, 421, "an idle session must be told 421: {text}");
    idle.assert_closed();
    wait_refused(&d);
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the server exited with a download in flight"
    );

    got.extend(read_all(&mut data));
    drop(data);
    assert_bytes_eq(&got, &body, "the download that was running at SIGTERM");
    let (code, text) = busy.read_reply();
    assert_eq!(code, 226, "{text}");
    let status = d
        .wait_exit(TIMEOUT)
        .expect("the server did not exit after draining");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sigterm_past_the_grace_discards_an_upload_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("alice");
    std::fs::create_dir(&home).unwrap();
    let old = pattern(9, 100_000);
    std::fs::write(home.join("keep.bin"), &old).unwrap();
    let users = dir.path().join("users.toml");
    write_users_file(
        &users,
        &[UserSpec {
            name: "alice",
            root: &home,
            extra: "access = \"read-write\"",
        }],
    );
    let anon = dir.path().join("pub");
    std::fs::create_dir(&anon).unwrap();
    let mut args = base_args(&anon, &pasv_range());
    args.extend([
        "--users".into(),
        users.to_str().unwrap().into(),
        "--shutdown-grace-secs".into(),
        "1".into(),
    ]);
    let mut d = spawn(&args, &[]);
    let mut c = Ctrl::connect(d.addr);
    c.login_as("alice", common::USER_PASSWORD);
    let addr = c.epsv();
    let mut data = data_connect(addr);
    c.send_line(b"STOR keep.bin");
    let (code, text) = c.read_reply();
    assert_eq!(code, 150, "{text}");
    data.write_all(&pattern(10, 1 << 20)).unwrap();

    let signalled = Instant::now();
    d.signal(Signal::SIGTERM);
    let status = d
        .wait_exit(TIMEOUT)
        .expect("the server did not exit after the grace");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(900),
        "the upload was cut before the grace ran out"
    );
    assert_eq!(std::fs::read(home.join("keep.bin")).unwrap(), old);
    assert_eq!(temp_files_under(&home), Vec::<String>::new());
    drop(data);
}

#[test]
fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), pattern(4, 32 << 20)).unwrap();
    let mut args = base_args(dir.path(), &pasv_range());
    args.extend(["--shutdown-grace-secs".into(), "600".into()]);
    let mut d = spawn(&args, &[]);
    let mut c = Ctrl::connect(d.addr);
    c.login();
    let (_data, _) = retr_in_flight(&mut c, "big.bin", 1 << 16);
    d.signal(Signal::SIGTERM);
    wait_refused(&d);
    d.signal(Signal::SIGINT);
    let status = d
        .wait_exit(TIMEOUT)
        .expect("a second signal did not stop the server");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sighup_adds_a_user_keeps_sessions_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let homes: Vec<_> = ["alice", "bob"]
        .iter()
        .map(|n| {
            let p = dir.path().join(n);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("hello.txt"), format!("hello {n}\n")).unwrap();
            p
        })
        .collect();
    let users = dir.path().join("users.toml");
    let spec = |i: usize, name: &'static str| UserSpec {
        name,
        root: &homes[i],
        extra: "access = \"read-only\"",
    };
    write_users_file(&users, &[spec(0, "alice")]);
    let anon = dir.path().join("pub");
    std::fs::create_dir(&anon).unwrap();
    let conf = dir.path().join("ringftpd.toml");
    std::fs::write(&conf, "banner = \"before\"\n").unwrap();
    let mut args = base_args(&anon, &pasv_range());
    args.extend([
        "--users".into(),
        users.to_str().unwrap().into(),
        "--config".into(),
        conf.to_str().unwrap().into(),
        // bob's home is not among the paths Landlock allows from the start (a reload cannot
        // widen the confinement: that is the point of it), so this test runs unconfined.
        "--no-landlock".into(),
    ]);
    let mut d = spawn(&args, &[]);
    let mut alice = Ctrl::connect(d.addr);
    alice.login_as("alice", common::USER_PASSWORD);
    let mut bob = Ctrl::connect(d.addr);
    bob.expect("USER bob", 331);
    bob.expect(&format!("PASS {}", common::USER_PASSWORD), 530);

    write_users_file(&users, &[spec(0, "alice"), spec(1, "bob")]);
    std::fs::write(&conf, "banner = \"after\"\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_line(|l| l.contains("configuration reloaded"));
    let mut bob = Ctrl::connect_raw(d.addr);
    let (code, text) = bob.read_reply();
    assert_eq!((code, text.contains("after")), (220, true), "{text}");
    bob.login_as("bob", common::USER_PASSWORD);
    assert_eq!(bob.retr("hello.txt"), b"hello bob\n");
    // The session from before the reload goes on as it was.
    alice.expect("PWD", 257);
    assert_eq!(alice.retr("hello.txt"), b"hello alice\n");

    // A reload that cannot work is refused with the reason; the settings in force stay.
    std::fs::write(&conf, "banner = \"bad\"\nshardz = 3\n").unwrap();
    d.signal(Signal::SIGHUP);
    let line = d.wait_line(|l| l.contains("reload refused"));
    assert!(line.contains("shardz"), "{line}");
    let mut again = Ctrl::connect_raw(d.addr);
    let (code, text) = again.read_reply();
    assert_eq!((code, text.contains("after")), (220, true), "{text}");
    again.login_as("bob", common::USER_PASSWORD);
    alice.expect("NOOP", 200);
    assert!(d.child.try_wait().unwrap().is_none());
}

#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let recv_until = |want: &str| -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {want} notification: {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    };
    let root = dir.path().join("pub");
    std::fs::create_dir(&root).unwrap();
    let args = base_args(&root, &pasv_range());
    let mut d = spawn(&args, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let ready = recv_until("READY=1");
    assert!(ready.contains("STATUS="), "{ready}");
    let mut c = Ctrl::connect(d.addr);
    c.login();
    d.signal(Signal::SIGHUP);
    let reloading = recv_until("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    recv_until("READY=1");
    d.signal(Signal::SIGTERM);
    recv_until("STOPPING=1");
    assert_eq!(d.wait_exit(TIMEOUT).and_then(|s| s.code()), Some(0));
}
