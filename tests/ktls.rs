//! Kernel TLS for `PROT P` data connections, end to end with the real binary: the start-up log
//! says whether kTLS is used, downloads, listings and uploads are byte-exact, encrypted on the
//! wire and end with close_notify whichever path they take (an upload cut without one is 451
//! and keeps the old file; a TLS 1.3 KeyUpdate under kernel TLS is 426), and the JSON transfer
//! log names the path (`"tls": "kernel"` or `"rustls"`).
//!
//! Where the kernel has no `tls` module (a kernel without CONFIG_TLS, as on the build host) the
//! same tests check the fallback. `tests/kernel/ktls.sh` runs this binary under a kernel that has
//! kTLS, with `RINGFTPD_EXPECT_KTLS=1`: there every kTLS assertion must hold, so a server that
//! silently stayed in rustls fails. `measure_prot_p_download` (ignored; `ktls.sh` with
//! `KTLS_MEASURE=1`) prints MB/s and server CPU with kTLS on and off.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::tls::{BOTH, Certs, Client, certs, client_config_with, leaks};
use common::{TIMEOUT, assert_bytes_eq, pattern};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde_json::Value;

/// The binary serving `root/` anonymously with TLS and a JSON log, in one temporary directory.
struct Served {
    daemon: Daemon,
    dir: tempfile::TempDir,
    certs: Certs,
}

impl Served {
    /// The binary with `extra` flags; `alice` (read-write, home `alice/`) when `users`.
    fn start(extra: &[&str]) -> Served {
        Served::start_with(extra, false)
    }

    fn start_with(extra: &[&str], users: bool) -> Served {
        let certs = certs();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let users_file = dir.path().join("users.toml");
        if users {
            let home = dir.path().join("alice");
            fs::create_dir(&home).unwrap();
            common::write_users_file(
                &users_file,
                &[common::UserSpec {
                    name: "alice",
                    root: &home,
                    extra: "access = \"read-write\"",
                }],
            );
        }
        let json = dir.path().join("log.json");
        let mut args = vec![
            "--root",
            root.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--no-pin",
            "--tls-cert",
            certs.cert.to_str().unwrap(),
            "--tls-key",
            certs.key.to_str().unwrap(),
            "--json-log",
            json.to_str().unwrap(),
        ];
        if users {
            args.extend_from_slice(&["--users", users_file.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        let daemon = Daemon::spawn(&args, &[]);
        Served { daemon, dir, certs }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The start-up line that says which path `PROT P` data takes.
    fn ktls_line(&self) -> String {
        self.daemon
            .seen
            .iter()
            .find(|l| l.contains("kTLS:"))
            .cloned()
            .unwrap_or_else(|| panic!("no kTLS line at start-up:\n{}", self.daemon.seen.join("\n")))
    }

    /// A logged-in control connection over TLS with `PROT P`.
    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Client {
        self.client_with(versions, None)
    }

    /// `client` offering only `suite`.
    fn client_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        suite: Option<rustls::CipherSuite>,
    ) -> Client {
        let config = client_config_with(&self.certs.der, versions, suite);
        let mut c = Client::connect(self.daemon.addr, config);
        c.secure_login();
        c
    }

    /// The server's log line for the next finished download of `name`: it names the path
    /// (`(kTLS, sendfile)`, `(TLS in user space)`).
    fn sent_line(&mut self, name: &str) -> String {
        let quoted = format!("\"/{name}\"");
        self.daemon
            .wait_line(|l| l.contains(" sent ") && l.contains(&quoted))
    }

    /// alice logged in over TLS with `PROT P`.
    fn alice(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Client {
        let config = client_config_with(&self.certs.der, versions, None);
        let mut c = Client::connect(self.daemon.addr, config);
        c.alice_login();
        c.expect("PBSZ 0", 200);
        c.expect("PROT P", 200);
        c
    }

    /// The JSON transfer records once there are `n`.
    fn transfers(&self, n: usize) -> Vec<Value> {
        let path = self.dir.path().join("log.json");
        let records = |lines: &[String]| -> Vec<Value> {
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["type"] == "transfer")
                .collect()
        };
        let lines = common::wait_lines(&path, "JSON log", |l| records(l).len() >= n);
        records(&lines)
    }
}

/// Whether this kernel has kTLS: `RINGFTPD_EXPECT_KTLS=1` (the VM runner, whose kernel has it)
/// insists; otherwise the test asks the kernel itself, the way the server's probe does.
fn kernel_has_ktls() -> bool {
    match std::env::var("RINGFTPD_EXPECT_KTLS").as_deref() {
        Ok("1") => true,
        _ => ringftpd::sys::ktls::probe().is_ok(),
    }
}

/// `RETR name` under `PROT P`: byte-exact, ended by close_notify (rustls's `read_to_end` fails
/// on an EOF without it), 226, and no 32-byte piece of the file in clear on the wire.
fn download(c: &mut Client, name: &str, body: &[u8], what: &str) {
    let config = Arc::clone(&c.config);
    let (got, fin, raw) = c.protected_transfer(&format!("RETR {name}"), &config, None);
    let got = got.unwrap_or_else(|e| panic!("{what}: the download ends with close_notify: {e}"));
    assert_eq!(fin.0, 226, "{what}: {fin:?}");
    assert_bytes_eq(&got, body, what);
    assert!(
        !leaks(body, &raw),
        "{what}: plaintext of the file on the wire"
    );
    assert!(raw.len() > body.len(), "{what}: the wire carried records");
}

#[test]
fn prot_p_downloads_go_through_ktls_where_the_kernel_has_it() {
    let kernel = kernel_has_ktls();
    let mut s = Served::start(&[]);
    let line = s.ktls_line();
    println!("{line}");
    if kernel {
        assert!(line.contains("kTLS: available"), "{line}");
    } else {
        assert!(
            line.contains("kTLS: unavailable") && line.contains("rustls in user space"),
            "{line}"
        );
    }
    // Odd sizes: the last record is short, and sendfile ends mid-page.
    let big = pattern(61, (1 << 20) + 4321);
    fs::write(s.root().join("big.bin"), &big).unwrap();
    fs::write(s.root().join("small.txt"), b"one\ntwo\n").unwrap();

    for (versions, what) in [
        (&[&rustls::version::TLS13][..], "TLS 1.3"),
        (&[&rustls::version::TLS12][..], "TLS 1.2"),
    ] {
        let mut c = s.client(versions);
        download(&mut c, "big.bin", &big, &format!("{what} RETR"));
        // The same zero-copy path as in clear (sendfile by default), encrypted by the kernel.
        let line = s.sent_line("big.bin");
        let want = if kernel {
            "(kTLS, sendfile)"
        } else {
            "(TLS in user space)"
        };
        assert!(line.contains(want), "{what}: {line}");
        // A second data connection on the same control session (session reuse again).
        c.expect("REST 1000000", 350);
        download(
            &mut c,
            "big.bin",
            &big[1_000_000..],
            &format!("{what} REST+RETR"),
        );
        // A listing goes through the same path (plain writes on the kTLS socket).
        let config = Arc::clone(&c.config);
        let (got, fin, _) = c.protected_transfer("NLST", &config, None);
        assert_eq!(fin.0, 226, "{what} NLST");
        let mut names: Vec<String> = String::from_utf8(got.expect("NLST ends with close_notify"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        names.sort();
        assert_eq!(names, ["big.bin", "small.txt"], "{what} NLST");
        // TYPE A converts line endings on the way (the copy path, then through the kernel).
        c.expect("TYPE A", 200);
        let (got, fin, _) = c.protected_transfer("RETR small.txt", &config, None);
        assert_eq!(fin.0, 226);
        assert_eq!(got.unwrap(), b"one\r\ntwo\r\n", "{what} TYPE A");
        c.expect("QUIT", 221);
    }

    let want = if kernel { "kernel" } else { "rustls" };
    let records = s.transfers(6);
    for r in &records {
        assert_eq!(r["tls"], want, "{r}");
        assert_eq!(r["result"], "ok", "{r}");
    }
}

#[test]
fn every_offloadable_cipher_downloads_byte_exact() {
    // The default test negotiates AES-256-GCM; these are the other AEADs rustls offers, each
    // through the kernel where it offloads them (ChaCha20-Poly1305 needs 5.11 or later).
    use rustls::CipherSuite as S;
    let s = Served::start(&[]);
    let body = pattern(64, 200_003);
    fs::write(s.root().join("f.bin"), &body).unwrap();
    let cases = [
        (&rustls::version::TLS13, S::TLS13_AES_128_GCM_SHA256),
        (&rustls::version::TLS13, S::TLS13_CHACHA20_POLY1305_SHA256),
        (
            &rustls::version::TLS12,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS12,
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (version, suite) in cases {
        let mut c = s.client_with(&[version], Some(suite));
        download(&mut c, "f.bin", &body, &format!("{suite:?}"));
        c.expect("QUIT", 221);
    }
    let want = if kernel_has_ktls() {
        "kernel"
    } else {
        "rustls"
    };
    for r in s.transfers(cases.len()) {
        assert_eq!(r["tls"], want, "{r}");
    }
}

/// A `PROT P` STOR whose data connection `send` drives after the handshake; the final reply.
fn upload_with(
    c: &mut Client,
    name: &str,
    send: impl FnOnce(&mut StreamOwned<ClientConnection, TcpStream>),
) -> (u16, String) {
    let addr = c.epsv();
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(c.cmd(&format!("STOR {name}")).0, 150);
    let server = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(&c.config), server).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    send(&mut tls);
    let fin = c.reply();
    drop(tls);
    fin
}

#[test]
fn prot_p_uploads_go_through_ktls_rx_where_the_kernel_has_it() {
    let kernel = kernel_has_ktls();
    let s = Served::start_with(&[], true);
    let home = s.dir.path().join("alice");
    for (versions, what) in [
        (&[&rustls::version::TLS13][..], "TLS 1.3"),
        (&[&rustls::version::TLS12][..], "TLS 1.2"),
    ] {
        let mut c = s.alice(versions);
        let body = pattern(71, (1 << 20) + 333);
        let config = Arc::clone(&c.config);
        let (got, fin, raw) = c.protected_transfer("STOR up.bin", &config, Some(&body));
        got.unwrap_or_else(|e| panic!("{what}: the server answers close_notify: {e}"));
        assert_eq!(fin.0, 226, "{what}: {fin:?}");
        assert_bytes_eq(&fs::read(home.join("up.bin")).unwrap(), &body, what);
        assert!(
            !leaks(&body, &raw),
            "{what}: plaintext of the upload on the wire"
        );

        // Cut without close_notify: 451, and the old file stays.
        let (code, text) = upload_with(&mut c, "up.bin", |tls| {
            tls.write_all(&pattern(72, 100_000)).unwrap();
            tls.flush().unwrap();
            tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
        });
        assert_eq!(code, 451, "{what}: {text}");
        assert!(text.contains("close_notify"), "{text}");
        assert_bytes_eq(
            &fs::read(home.join("up.bin")).unwrap(),
            &body,
            "old file kept",
        );

        // A record that does not decrypt (forged on the path): 426, and the old file stays.
        let (code, text) = upload_with(&mut c, "up.bin", |tls| {
            tls.write_all(&pattern(74, 50_000)).unwrap();
            tls.flush().unwrap();
            let mut forged = vec![23, 3, 3, 0, 64];
            forged.extend_from_slice(&pattern(75, 64));
            tls.sock.write_all(&forged).unwrap();
        });
        assert_eq!(code, 426, "{what} forged record: {text}");
        assert_bytes_eq(
            &fs::read(home.join("up.bin")).unwrap(),
            &body,
            "old file kept after a forged record",
        );

        if versions[0] == &rustls::version::TLS13 {
            // A KeyUpdate mid-upload: the kernel cannot take the new key, so the upload stops
            // with 426 and the old file stays; rustls takes it in its stride.
            let second = pattern(73, 200_000);
            let (code, text) = upload_with(&mut c, "up.bin", |tls| {
                tls.write_all(&second[..100_000]).unwrap();
                tls.conn.refresh_traffic_keys().unwrap();
                tls.write_all(&second[100_000..]).unwrap();
                tls.conn.send_close_notify();
                // The server may close first (kernel path): what is left to write may fail.
                let _ = tls.flush();
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest);
            });
            let now = fs::read(home.join("up.bin")).unwrap();
            if kernel {
                assert_eq!(code, 426, "{what} KeyUpdate: {text}");
                assert!(text.contains("key update"), "{text}");
                assert_bytes_eq(&now, &body, "old file kept after a KeyUpdate");
            } else {
                assert_eq!(code, 226, "{what} KeyUpdate through rustls: {text}");
                assert_bytes_eq(&now, &second, "KeyUpdate through rustls");
            }
        }
        c.expect("QUIT", 221);
    }
    common::wait_no_temp_files(&home);
    let want = if kernel { "kernel" } else { "rustls" };
    let records = s.transfers(7);
    for r in &records {
        assert_eq!(r["direction"], "in", "{r}");
        assert_eq!(r["tls"], want, "{r}");
    }
}

/// `plain` as the TLS records the client would send, not yet on the wire.
fn sealed(tls: &mut StreamOwned<ClientConnection, TcpStream>, plain: &[u8]) -> Vec<u8> {
    tls.conn.writer().write_all(plain).unwrap();
    let mut records = Vec::new();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut records).unwrap();
    }
    records
}

/// An upload whose record arrives in two halves with a pause between them: the shard waits for
/// the rest without spinning, and the upload completes byte-exact. A kernel TLS socket reports
/// readable while its queue holds part of a record, which under 6.1 made the wait a busy loop
/// (1.46-1.51 CPU-s in 1.5 s, on both backends) until the receive low-water mark was raised
/// past the partial record (`sys::ktls::wait_for_more`).
#[test]
fn a_record_arriving_in_halves_is_waited_for_without_spinning() {
    let s = Served::start_with(&[], true);
    let home = s.dir.path().join("alice");
    let pid = s.daemon.child.id();
    for (versions, what) in [
        (&[&rustls::version::TLS13][..], "TLS 1.3"),
        (&[&rustls::version::TLS12][..], "TLS 1.2"),
    ] {
        let mut c = s.alice(versions);
        let head = pattern(81, 64 << 10);
        let tail = pattern(82, 8 << 10);
        let mut spent = 0.0;
        let (code, text) = upload_with(&mut c, "halves.bin", |tls| {
            tls.write_all(&head).unwrap();
            tls.flush().unwrap();
            // One record, cut in two on the wire, with the pause under test between the halves.
            let record = sealed(tls, &tail);
            let (first, second) = record.split_at(record.len() / 2);
            let before = cpu_seconds(pid);
            tls.sock.write_all(first).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            spent = cpu_seconds(pid) - before;
            tls.sock.write_all(second).unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
            let mut rest = Vec::new();
            let _ = tls.read_to_end(&mut rest);
        });
        assert_eq!(code, 226, "{what}: {text}");
        let mut want = head.clone();
        want.extend_from_slice(&tail);
        assert_bytes_eq(&fs::read(home.join("halves.bin")).unwrap(), &want, what);
        eprintln!("{what}: {spent:.2} CPU-s while half a record waited");
        assert!(
            spent < 0.3,
            "{what}: the server used {spent:.2} CPU-s in 1.5 s waiting for half a record"
        );
        // The client goes away in the middle of a record: the wait ends at its FIN, at once,
        // with 451 (no close_notify).
        let started = Instant::now();
        let (code, text) = upload_with(&mut c, "halves.bin", |tls| {
            tls.write_all(&head).unwrap();
            tls.flush().unwrap();
            let record = sealed(tls, &tail);
            tls.sock.write_all(&record[..record.len() / 2]).unwrap();
            // The FIN comes while the server waits on the half record, not with it.
            std::thread::sleep(Duration::from_millis(500));
            tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
        });
        assert_eq!(code, 451, "{what}, cut mid-record: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: the cut took {:?} to notice",
            started.elapsed()
        );
        c.expect("QUIT", 221);
    }
    let want = if kernel_has_ktls() {
        "kernel"
    } else {
        "rustls"
    };
    for r in &s.transfers(4) {
        assert_eq!(r["tls"], want, "{r}");
    }
}

#[test]
fn every_data_path_and_a_cold_file_under_ktls() {
    // After the hand-off a download takes the configured data path, as in clear: sendfile,
    // splice through a pipe, io_uring SEND from a mapping, or the copy path. A file not in the
    // page cache is read in first (on the sendfile path through a pipe), then goes on the same.
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let kernel = kernel_has_ktls();
    for data_path in ["sendfile", "splice", "mmap", "copy"] {
        let mut s = Served::start(&["--data-path", data_path]);
        // Two read-in windows (1 MiB each), the last one partial.
        let body = pattern(65, (1 << 20) + 54321);
        let path = s.root().join("cold.bin");
        fs::write(&path, &body).unwrap();
        let file = fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        let mut c = s.client(&[&rustls::version::TLS13]);
        download(&mut c, "cold.bin", &body, &format!("{data_path}, warm"));
        let line = s.sent_line("cold.bin");
        if kernel {
            assert!(line.contains(&format!("(kTLS, {data_path})")), "{line}");
        } else {
            assert!(line.contains("(TLS in user space)"), "{line}");
        }
        posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
        download(&mut c, "cold.bin", &body, &format!("{data_path}, cold"));
        // A cold window moves a sendfile transfer onto a pipe until the file is warm again.
        let line = s.sent_line("cold.bin");
        let cold_ok = match (kernel, data_path) {
            (false, _) => line.contains("(TLS in user space)"),
            (true, "sendfile") => {
                line.contains("(kTLS, sendfile)") || line.contains("(kTLS, splice)")
            }
            (true, path) => line.contains(&format!("(kTLS, {path})")),
        };
        assert!(cold_ok, "{data_path}, cold: {line}");
        let want = if kernel { "kernel" } else { "rustls" };
        for r in s.transfers(2) {
            assert_eq!(r["tls"], want, "{data_path}: {r}");
        }
    }
}

#[test]
fn stat_during_a_download_names_the_protection() {
    // Bigger than loopback's socket buffers, so the download is still running at STAT.
    let s = Served::start(&[]);
    let body = pattern(66, 24 << 20);
    fs::write(s.root().join("big.bin"), &body).unwrap();
    let mut c = s.client(&[&rustls::version::TLS13]);
    let addr = c.epsv();
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(c.cmd("RETR big.bin").0, 150);
    let server = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(&c.config), server).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    // The handshake and a first byte: the hand-off (if any) is behind us.
    let mut first = [0u8; 1];
    tls.read_exact(&mut first).unwrap();
    assert_eq!(first[0], body[0]);
    c.send(b"STAT\r\n");
    let mut text = Vec::new();
    let mut b = [0u8; 1];
    while !text.ends_with(b"213 End of status\r\n") {
        c.stream().read_exact(&mut b).unwrap();
        text.push(b[0]);
    }
    let text = String::from_utf8(text).unwrap();
    let want = if kernel_has_ktls() {
        "Data connection protected by kernel TLS, sendfile"
    } else {
        "Data connection protected by TLS in user space"
    };
    assert!(text.contains(want), "{text}");
    // Walk away from the rest: the transfer ends with 426 (226 if it had all gone out).
    drop(tls);
    let (code, fin) = c.reply();
    assert!(code == 426 || code == 226, "{code} {fin}");
}

#[test]
fn ktls_false_keeps_prot_p_in_rustls() {
    let s = Served::start(&["--ktls", "false"]);
    let line = s.ktls_line();
    assert!(line.contains("kTLS: off (ktls = false)"), "{line}");
    let body = pattern(62, 300_001);
    fs::write(s.root().join("f.bin"), &body).unwrap();
    let mut c = s.client(BOTH);
    download(&mut c, "f.bin", &body, "ktls = false");
    let records = s.transfers(1);
    assert_eq!(records[0]["tls"], "rustls", "{}", records[0]);
}

/// Server CPU seconds (user + system) of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks / hz
}

/// One timed download of `path` (the whole file, byte count checked), `PROT P` or in clear.
fn timed_download(
    s: &Served,
    c: &mut Client,
    path: &Path,
    len: usize,
    protected: bool,
) -> (f64, f64) {
    let pid = s.daemon.child.id();
    let config = Arc::clone(&c.config);
    let name = path.file_name().unwrap().to_str().unwrap();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let (got, fin) = if protected {
        let (got, fin, _) = c.protected_transfer(&format!("RETR {name}"), &config, None);
        (got.unwrap().len(), fin)
    } else {
        let addr = c.epsv();
        let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        assert_eq!(c.cmd(&format!("RETR {name}")).0, 150);
        let mut sink = vec![0u8; 1 << 20];
        let mut got = 0;
        loop {
            match sock.read(&mut sink).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        (got, c.reply())
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    assert_eq!(fin.0, 226);
    assert_eq!(got, len);
    (secs, cpu)
}

#[test]
#[ignore = "a measurement: tests/kernel/ktls.sh runs it with KTLS_MEASURE=1"]
fn measure_prot_p_download() {
    let mib: usize = std::env::var("KTLS_MEASURE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let len = mib << 20;
    for (flag, label, prot) in [
        ("true", "kTLS on", "P"),
        ("false", "kTLS off", "P"),
        ("true", "cleartext", "C"),
    ] {
        let s = Served::start(&["--ktls", flag, "--data-timeout-secs", "600"]);
        let path = s.root().join("big.bin");
        fs::write(&path, pattern(63, len)).unwrap();
        let mut c = s.client(&[&rustls::version::TLS13]);
        c.expect(&format!("PROT {prot}"), 200);
        // Once to warm the page cache, then the measured run.
        timed_download(&s, &mut c, &path, len, prot == "P");
        let (secs, cpu) = timed_download(&s, &mut c, &path, len, prot == "P");
        let record = s.transfers(2).pop().unwrap();
        println!(
            "{label}: {mib} MiB PROT {prot} RETR (TLS 1.3 control, data {}) in {secs:.2} s = \
             {:.1} MB/s, server CPU {cpu:.2} s ({:.2} s per GB)",
            record["tls"],
            len as f64 / secs / 1e6,
            cpu / (len as f64 / 1e9),
        );
    }
}
