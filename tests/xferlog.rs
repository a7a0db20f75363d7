//! The transfer and session logs, end to end: the real binary with `--xferlog` and `--json-log`
//! in a temporary directory, real transfers over a raw control connection, and every field of
//! the lines it writes checked. The log thread writes asynchronously, so each check polls the
//! file until the expected lines are there (bounded by [`TIMEOUT`]), never a fixed sleep.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::daemon::Daemon;
use common::{Ctrl, USER_PASSWORD, UserSpec, wait_lines};
use serde_json::Value;

/// Bigger than loopback socket buffers can hold, so its transfer is still running when the
/// test cuts it off.
const BIG: u64 = 64 << 20;

/// A daemon serving `root/` (anonymous) with its logs in the same temporary directory.
struct Logged {
    daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Logged {
    /// Start the binary on 127.0.0.1:0 with two shards, `--xferlog` and `--json-log`.
    /// `prepare` fills the directory first (the root is `root/`) and returns any further flags.
    fn start(prepare: impl FnOnce(&Path) -> Vec<String>) -> Logged {
        let dir = tempfile::tempdir().expect("create the temporary directory");
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        let extra = prepare(dir.path());
        let (xferlog, json) = (dir.path().join("xferlog"), dir.path().join("log.json"));
        let mut args: Vec<String> = [
            "--root",
            root.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--no-pin",
            "--xferlog",
            xferlog.to_str().unwrap(),
            "--json-log",
            json.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::spawn(&args, &[]);
        Logged { daemon, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn connect(&self) -> Ctrl {
        Ctrl::connect(self.daemon.addr)
    }

    fn xferlog(&self) -> PathBuf {
        self.path("xferlog")
    }

    /// The complete xferlog lines once there are at least `n`.
    fn xferlog_lines(&self, n: usize) -> Vec<String> {
        wait_lines(&self.xferlog(), "xferlog", |l| l.len() >= n)
    }

    /// Every JSON object logged for session `id`, once its `"type":"session"` line is there
    /// (it is queued after the session's transfers, so they are all in by then).
    fn session_json(&self, id: u64) -> (Vec<Value>, Value) {
        let path = self.path("log.json");
        let ended = |v: &Value| v["type"] == "session" && v["session"] == id;
        let lines = wait_lines(&path, "JSON log", |lines| {
            lines
                .iter()
                .any(|l| parse_json(l).is_some_and(|v| ended(&v)))
        });
        let objects: Vec<Value> = lines
            .iter()
            .map(|l| parse_json(l).unwrap_or_else(|| panic!("not a JSON object: {l:?}")))
            .filter(|v| v["session"] == id)
            .collect();
        let sessions: Vec<&Value> = objects.iter().filter(|v| v["type"] == "session").collect();
        assert_eq!(
            sessions.len(),
            1,
            "one session line per session: {objects:?}"
        );
        let session = sessions[0].clone();
        let transfers = objects
            .into_iter()
            .filter(|v| v["type"] == "transfer")
            .collect();
        (transfers, session)
    }

    /// The session id in the first record logged for the control connection from `port`.
    fn session_of(&self, port: u16) -> u64 {
        let path = self.path("log.json");
        let from = |v: &Value| v["client_port"] == port;
        let lines = wait_lines(&path, "JSON log", |lines| {
            lines
                .iter()
                .any(|l| parse_json(l).is_some_and(|v| from(&v)))
        });
        lines
            .iter()
            .filter_map(|l| parse_json(l))
            .find(|v| from(v))
            .and_then(|v| v["session"].as_u64())
            .expect("a session id")
    }
}

fn parse_json(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// An xferlog line split into its date (5 words, the day space-padded as in ctime(3)) and the
/// 13 fields after it.
fn xfer_fields(line: &str) -> (&str, Vec<&str>) {
    // "Tue Dec  1 21:14:14 2026": fixed width, 24 bytes.
    assert!(line.len() > 25 && line.as_bytes()[24] == b' ', "{line:?}");
    let (date, rest) = line.split_at(24);
    let fields: Vec<&str> = rest[1..].split(' ').collect();
    assert_eq!(fields.len(), 13, "13 fields after the date: {line:?}");
    (date, fields)
}

/// The date is a ctime(3) date in local time, about now.
fn check_date(date: &str) {
    let parsed = chrono::NaiveDateTime::parse_from_str(date, "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("xferlog date {date:?}: {e}"));
    let now = chrono::Local::now().naive_local();
    let off = (now - parsed).num_seconds().abs();
    assert!(
        off < 300,
        "xferlog date {date:?} is {off}s from now ({now})"
    );
    let day: Vec<&str> = date.split(' ').collect();
    if parsed.format("%d").to_string().starts_with('0') {
        // "Dec  1": the single-digit day is padded with a space, giving an empty word.
        assert_eq!(day[2], "", "{date:?}");
    }
}

/// Read exactly `want` bytes.
fn read_n(data: &mut std::net::TcpStream, want: usize) -> Vec<u8> {
    let mut buf = vec![0; want];
    data.read_exact(&mut buf).expect("read the data connection");
    buf
}

fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn sparse_file(path: &Path, len: u64) {
    write_file(path, b"");
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn local_port(c: &Ctrl) -> u16 {
    c.stream().local_addr().unwrap().port()
}

#[test]
fn anonymous_download_is_logged_by_the_password_given() {
    let body = common::pattern(3, 100_000);
    let s = Logged::start(|d| {
        write_file(&d.join("root/pub/file.bin"), &body);
        vec![]
    });
    let mut c = s.connect();
    let port = local_port(&c);
    c.expect("USER anonymous", 331);
    c.expect("PASS guest@example.org", 230);
    // A listing goes over a data connection too, but is not a file transfer: not logged.
    c.listing("LIST /pub");
    c.expect("CWD /pub", 250);
    // A relative name is logged by its absolute virtual path.
    common::assert_bytes_eq(&c.retr("file.bin"), &body, "anonymous RETR");
    c.expect("QUIT", 221);

    let lines = s.xferlog_lines(1);
    let (date, f) = xfer_fields(&lines[0]);
    check_date(date);
    let secs: u64 = f[0].parse().expect("transfer-time");
    assert!(secs >= 1, "transfer-time is at least 1: {f:?}");
    assert_eq!(f[1], "127.0.0.1", "remote-host");
    assert_eq!(f[2], "100000", "file-size: the bytes sent");
    assert_eq!(f[3], "/pub/file.bin", "filename: the virtual path");
    assert_eq!(f[4], "b", "transfer-type: TYPE I");
    assert_eq!(f[5], "_", "special-action-flag");
    assert_eq!(f[6], "o", "direction: outgoing");
    assert_eq!(f[7], "a", "access-mode: anonymous");
    assert_eq!(
        f[8], "guest@example.org",
        "username: the anonymous password"
    );
    assert_eq!(
        &f[9..],
        ["ftp", "0", "*", "c"],
        "service, auth, user id, complete"
    );

    let id = s.session_of(port);
    let (transfers, session) = s.session_json(id);
    assert_eq!(
        transfers.len(),
        1,
        "one record, and none for LIST: {transfers:?}"
    );
    let t = &transfers[0];
    assert_eq!(t["client_ip"], "127.0.0.1");
    assert_eq!(t["client_port"], port);
    assert_eq!(t["user"], "anonymous");
    assert_eq!(t["anonymous"], true);
    assert_eq!(t["anonymous_password"], "guest@example.org");
    assert_eq!(t["command"], "RETR");
    assert_eq!(t["path"], "/pub/file.bin");
    assert_eq!(t["direction"], "out");
    assert_eq!(t["mode"], "binary");
    assert_eq!(t["bytes"], 100_000);
    assert_eq!(t["result"], "ok");
    assert_eq!(t["reply_code"], 226);
    assert!(t["duration_s"].as_f64().is_some_and(|d| d >= 0.0), "{t}");

    assert_eq!(session["client_ip"], "127.0.0.1");
    assert_eq!(session["client_port"], port);
    assert_eq!(session["user"], "anonymous");
    assert_eq!(session["anonymous"], true);
    assert_eq!(session["bytes_out"], 100_000);
    assert_eq!(session["bytes_in"], 0);
    assert_eq!(session["transfers"], 1);
    assert_eq!(session["result"], "quit");
    assert_eq!(session["reply_code"], 221);
    // Shard index in the top bits: one of the two shards.
    assert!(id >> 48 < 2, "session id {id:#x}");
}

#[test]
fn named_user_upload_with_spaces_in_the_name() {
    let s = Logged::start(|d| {
        let home = d.join("home");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        let users = d.join("users.toml");
        common::write_users_file(
            &users,
            &[UserSpec {
                name: "alice",
                root: &home,
                extra: "access = \"read-write\"",
            }],
        );
        vec!["--users".into(), users.to_str().unwrap().into()]
    });
    let body = common::pattern(5, 70_001);
    let mut c = s.connect();
    let port = local_port(&c);
    c.login_as("alice", USER_PASSWORD);
    c.expect("MKD /in box", 257);
    c.expect("CWD /in box", 250);
    c.stor("STOR my report.txt", &body);
    // STOU: logged by the name the server picked.
    let addr = c.epsv();
    let data = common::data_connect(addr);
    let (first, _) = c
        .upload_on(data, "STOU", b"unique")
        .unwrap_or_else(|(code, text)| panic!("STOU failed: {code} {text:?}"));
    let picked = first
        .strip_prefix("FILE: ")
        .unwrap_or_else(|| panic!("STOU's 150 names the file: {first:?}"))
        .to_string();
    c.expect("QUIT", 221);
    assert_eq!(
        fs::read(s.path("home/in box/my report.txt")).unwrap(),
        body,
        "the upload landed"
    );

    let lines = s.xferlog_lines(2);
    let (date, f) = xfer_fields(&lines[0]);
    check_date(date);
    assert_eq!(f[2], "70001", "file-size: the bytes received");
    assert_eq!(f[3], "/in_box/my_report.txt", "spaces become _");
    assert_eq!(f[4], "b");
    assert_eq!(f[6], "i", "direction: incoming");
    assert_eq!(f[7], "r", "access-mode: real user");
    assert_eq!(f[8], "alice", "username: the login name");
    assert_eq!(f[12], "c");
    let (_, f) = xfer_fields(&lines[1]);
    assert_eq!(f[2], "6");
    assert_eq!(f[3], format!("/in_box/{}", picked.replace(' ', "_")));
    assert_eq!(f[6], "i");

    let id = s.session_of(port);
    let (transfers, session) = s.session_json(id);
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    let t = &transfers[0];
    // The JSON log keeps the exact name.
    assert_eq!(t["path"], "/in box/my report.txt");
    assert_eq!(t["command"], "STOR");
    assert_eq!(t["direction"], "in");
    assert_eq!(t["user"], "alice");
    assert_eq!(t["anonymous"], false);
    assert!(t.get("anonymous_password").is_none(), "{t}");
    assert_eq!(t["bytes"], 70_001);
    assert_eq!(t["result"], "ok");
    assert_eq!(t["reply_code"], 226);
    assert_eq!(transfers[1]["command"], "STOU");
    assert_eq!(transfers[1]["path"], format!("/in box/{picked}"));
    assert_eq!(session["user"], "alice");
    assert_eq!(session["anonymous"], false);
    assert_eq!(session["bytes_in"], 70_007);
    assert_eq!(session["bytes_out"], 0);
    assert_eq!(session["transfers"], 2);
    assert_eq!(session["result"], "quit");
}

#[test]
fn ascii_download_is_type_a() {
    let (lf, crlf) = common::lf_text(9, 5_000);
    let s = Logged::start(|d| {
        write_file(&d.join("root/notes.txt"), &lf);
        vec![]
    });
    let mut c = s.connect();
    let port = local_port(&c);
    c.login();
    c.expect("TYPE A", 200);
    common::assert_bytes_eq(&c.retr("/notes.txt"), &crlf, "TYPE A RETR");
    c.expect("QUIT", 221);

    let lines = s.xferlog_lines(1);
    let (_, f) = xfer_fields(&lines[0]);
    assert_eq!(f[2], crlf.len().to_string(), "the bytes on the wire");
    assert_eq!(f[3], "/notes.txt");
    assert_eq!(f[4], "a", "transfer-type: TYPE A");
    assert_eq!(f[6], "o");
    assert_eq!(f[8], "test@example.com");
    let (transfers, _) = s.session_json(s.session_of(port));
    assert_eq!(transfers[0]["mode"], "ascii");
}

#[test]
fn cut_off_transfers_are_incomplete() {
    let s = Logged::start(|d| {
        sparse_file(&d.join("root/big.iso"), BIG);
        vec![]
    });
    let mut c = s.connect();
    let port = local_port(&c);
    c.login();
    // The client resets the data connection mid-RETR.
    let mut data = common::data_connect(c.epsv());
    c.send_line(b"RETR big.iso");
    c.expect_reply(150, "RETR of the big file");
    read_n(&mut data, 64 << 10);
    drop(data);
    c.expect_reply(426, "after the client reset the data connection");
    // ABOR mid-RETR: 426 for the transfer, 226 for the ABOR.
    let mut data = common::data_connect(c.epsv());
    c.send_line(b"RETR big.iso");
    c.expect_reply(150, "RETR of the big file");
    read_n(&mut data, 64 << 10);
    c.send_line(b"ABOR");
    c.expect_reply(426, "ABOR during a transfer");
    c.expect_reply(226, "ABOR's own reply");
    common::drain(&mut data);
    drop(data);
    // No QUIT: the client just closes the control connection.
    drop(c);

    let lines = s.xferlog_lines(2);
    for line in &lines {
        let (_, f) = xfer_fields(line);
        let size: u64 = f[2].parse().unwrap();
        assert!(
            ((64 << 10)..BIG).contains(&size),
            "bytes sent before the cut: {line}"
        );
        assert_eq!(f[3], "/big.iso");
        assert_eq!(f[12], "i", "completion-status: incomplete: {line}");
    }
    let (transfers, session) = s.session_json(s.session_of(port));
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    let mut total = 0;
    for t in &transfers {
        assert_eq!(t["result"], "incomplete", "{t}");
        assert_eq!(t["reply_code"], 426, "{t}");
        total += t["bytes"].as_u64().unwrap();
    }
    assert_eq!(session["bytes_out"], total);
    assert_eq!(session["transfers"], 2);
    assert_eq!(
        session["result"], "closed",
        "the client closed without QUIT"
    );
}

#[test]
fn sighup_reopens_the_xferlog_after_rotation() {
    let mut s = Logged::start(|d| {
        write_file(&d.join("root/a.txt"), b"first");
        vec![]
    });
    let mut c = s.connect();
    c.login();
    assert_eq!(c.retr("a.txt"), b"first");
    s.xferlog_lines(1);
    // logrotate: rename, then SIGHUP; the server keeps running and opens a fresh file.
    let rotated = s.path("xferlog.1");
    fs::rename(s.xferlog(), &rotated).unwrap();
    s.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    // The new file exists as soon as the control thread has opened it, which is before the log
    // thread switches to it; the reload is logged after the switch.
    s.daemon.wait_line(|l| l.contains("configuration reloaded"));
    assert_eq!(c.retr("a.txt"), b"first");
    c.expect("QUIT", 221);
    let fresh = s.xferlog_lines(1);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(xfer_fields(&fresh[0]).1[3], "/a.txt");
    let old = fs::read_to_string(&rotated).unwrap();
    assert_eq!(
        old.lines().count(),
        1,
        "the rotated file keeps the first line: {old}"
    );
}

/// A RETR whose file cannot be opened is answered 550 and never becomes a transfer.
#[test]
fn a_failed_open_is_not_a_transfer() {
    let s = Logged::start(|d| {
        write_file(&d.join("root/there.txt"), b"x");
        vec![]
    });
    let mut c = s.connect();
    let port = local_port(&c);
    c.login();
    let addr = c.epsv();
    let _data = common::data_connect(addr);
    c.expect("RETR missing.txt", 550);
    assert_eq!(c.retr("there.txt"), b"x");
    c.expect("QUIT", 221);
    let lines = s.xferlog_lines(1);
    assert_eq!(
        xfer_fields(&lines[0]).1[3],
        "/there.txt",
        "no line for the 550"
    );
    let (transfers, _) = s.session_json(s.session_of(port));
    assert_eq!(transfers.len(), 1);
}
