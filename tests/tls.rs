//! FTP over TLS (RFC 4217) end to end: AUTH TLS on the control connection, PBSZ/PROT sequencing,
//! STARTTLS command injection, `PROT P` downloads, listings and uploads through rustls
//! (byte-exact, no plaintext on the wire, close_notify at the end), the data connection's
//! session reuse requirement, the TLS-required policy, and real clients (curl, Python's ftplib).
//!
//! The certificate is made at test time with rcgen (for "localhost" and 127.0.0.1); the test's
//! own client is rustls, trusting exactly that certificate (`common::tls`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::tls::{BOTH, Certs, Client, Tap, certs, client_config, leaks};
use common::tools::{require, run_ok};
use common::{TIMEOUT, TestServer, UsersServer, assert_bytes_eq, pattern};
use ringftpd::config::Config;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

/// A server with TLS configured, and the certificate its clients trust.
struct TlsServer {
    server: TestServer,
    certs: Certs,
}

impl std::ops::Deref for TlsServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

fn with_certs(c: &mut Config, certs: &Certs) {
    c.tls_cert = Some(certs.cert.clone());
    c.tls_key = Some(certs.key.clone());
}

fn tls_server(tweak: impl FnOnce(&mut Config)) -> TlsServer {
    let certs = certs();
    let server = common::start(|c| {
        with_certs(c, &certs);
        tweak(c);
    });
    TlsServer { server, certs }
}

// The control connection

#[test]
fn auth_tls_then_login_pbsz_prot_ccc_quit() {
    let s = tls_server(|_| {});
    let mut c = Client::connect(s.addr, client_config(&s.certs.der, BOTH));
    let feat = {
        c.send(b"FEAT\r\n");
        let mut all = Vec::new();
        let mut b = [0u8; 1];
        while !all.ends_with(b"211 End\r\n") {
            c.plain.as_mut().unwrap().read_exact(&mut b).unwrap();
            all.push(b[0]);
        }
        String::from_utf8(all).unwrap()
    };
    for ext in [" AUTH TLS\r\n", " PBSZ\r\n", " PROT\r\n"] {
        assert!(feat.contains(ext), "{ext:?} missing in {feat}");
    }
    c.auth();
    c.expect("USER anonymous", 331);
    c.expect("PASS a@b", 230);
    c.expect("PBSZ 0", 200);
    c.expect("PROT S", 536);
    c.expect("PROT P", 200);
    c.expect("PROT C", 200);
    c.expect("CCC", 534);
    c.expect("AUTH TLS", 503);
    c.expect("QUIT", 221);
    // The server ends the TLS session cleanly: close_notify, then EOF.
    let mut rest = Vec::new();
    c.tls
        .as_mut()
        .unwrap()
        .read_to_end(&mut rest)
        .expect("close_notify before EOF");
}

#[test]
fn pbsz_and_prot_before_auth_are_503_and_auth_without_a_certificate_is_502() {
    let s = tls_server(|_| {});
    let mut c = s.connect();
    c.expect("PBSZ 0", 503);
    c.expect("PROT P", 503);
    c.expect("CCC", 503);
    let plain = common::server();
    let mut c = plain.connect();
    c.expect("AUTH TLS", 502);
    let feat = c.expect("FEAT", 211);
    assert!(!feat.contains("AUTH"), "{feat}");
}

#[test]
fn commands_pipelined_after_auth_tls_are_never_run() {
    let s = tls_server(|_| {});
    let mut c = Client::connect(s.addr, client_config(&s.certs.der, BOTH));
    // An attacker on the path appends a command to the client's AUTH TLS (CVE-2011-1575).
    c.send(b"AUTH TLS\r\nUSER anonymous\r\nPASS evil@example.com\r\n");
    assert_eq!(c.reply().0, 234);
    c.handshake();
    // Had USER and PASS run, this session would be logged in and PASS would say so.
    c.expect("PASS again@example.com", 503);
    c.expect("PWD", 530);
    c.expect("USER anonymous", 331);
    c.expect("PASS a@b", 230);
}

#[test]
fn bytes_that_are_not_tls_after_auth_close_the_session() {
    let s = tls_server(|_| {});
    let mut c = s.connect();
    c.expect("AUTH TLS", 234);
    c.send_line(b"USER anonymous");
    // A TLS alert (the server's rustls saying what was wrong), then EOF; never a 331.
    let mut rest = Vec::new();
    let _ = c.stream().try_clone().unwrap().read_to_end(&mut rest);
    assert!(rest.is_empty() || rest[0] == 0x15, "{rest:?}");
}

#[test]
fn tls_required_refuses_named_logins_in_clear() {
    let certs = certs();
    let s: UsersServer = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs);
        c.tls_required = true;
    });
    let mut c = s.connect();
    let text = c.expect("USER alice", 534);
    assert!(text.contains("enable explicit FTP over TLS"), "{text}");
    // Anonymous users may stay in clear.
    c.login();
    std::fs::write(s.path("f"), b"x").unwrap();
    assert_eq!(c.retr("f"), b"x");

    let mut c = Client::connect(s.addr, client_config(&certs.der, BOTH));
    c.auth();
    c.expect("USER alice", 331);
    c.expect(&format!("PASS {}", common::USER_PASSWORD), 230);
    c.expect("EPSV", 229);
    let text = c.expect("LIST", 521);
    assert!(text.contains("PROT P"), "{text}");
}

// PROT P data connections

fn protected_download(io_hint: &str, versions: &[&'static rustls::SupportedProtocolVersion]) {
    let s = tls_server(|_| {});
    let body = pattern(11, (3 << 20) + 12345);
    s.write_file("big.bin", &body);
    let config = client_config(&s.certs.der, versions);
    let mut c = Client::connect(s.addr, Arc::clone(&config));
    c.secure_login();
    for _ in 0..2 {
        let (got, fin, raw) = c.protected_transfer("RETR big.bin", &config, None);
        let got = got.expect("the download ends with close_notify");
        assert_eq!(fin.0, 226, "{io_hint}: {fin:?}");
        assert_bytes_eq(&got, &body, "PROT P RETR");
        assert!(!leaks(&body, &raw), "plaintext of the file on the wire");
        assert!(
            raw.len() > body.len(),
            "the wire carried the encrypted file"
        );
    }
    c.expect("REST 1000000", 350);
    let (got, fin, _) = c.protected_transfer("RETR big.bin", &config, None);
    assert_eq!(fin.0, 226);
    assert_bytes_eq(&got.unwrap(), &body[1_000_000..], "PROT P REST + RETR");
    // A listing goes through TLS as well.
    let (got, fin, _) = c.protected_transfer("NLST", &config, None);
    assert_eq!(fin.0, 226);
    assert_eq!(
        String::from_utf8(got.unwrap()).unwrap().trim_end(),
        "big.bin"
    );
    // TYPE A converts under TLS too.
    s.write_file("text.txt", b"one\ntwo\n");
    c.expect("TYPE A", 200);
    let (got, fin, _) = c.protected_transfer("RETR text.txt", &config, None);
    assert_eq!(fin.0, 226);
    assert_eq!(got.unwrap(), b"one\r\ntwo\r\n");
}

#[test]
fn prot_p_download_is_byte_exact_and_encrypted_tls13() {
    protected_download("TLS 1.3", &[&rustls::version::TLS13]);
}

#[test]
fn prot_p_download_is_byte_exact_and_encrypted_tls12() {
    protected_download("TLS 1.2", &[&rustls::version::TLS12]);
}

#[test]
fn the_tap_sees_plaintext_under_prot_c() {
    // The control for the check above: the same capture finds the file when it goes in clear.
    let s = tls_server(|_| {});
    let body = pattern(12, 200_000);
    s.write_file("f.bin", &body);
    let mut c = s.login();
    let addr = c.epsv();
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tap = Tap {
        sock,
        seen: Arc::clone(&seen),
    };
    c.send_line(b"RETR f.bin");
    c.expect_reply(150, "RETR");
    let mut got = Vec::new();
    tap.read_to_end(&mut got).unwrap();
    c.expect_reply(226, "RETR");
    assert!(leaks(&body, &seen.lock().unwrap()));
}

fn protected_upload(versions: &[&'static rustls::SupportedProtocolVersion]) {
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs)
    });
    let config = client_config(&certs.der, versions);
    let mut c = Client::connect(s.addr, Arc::clone(&config));
    c.auth();
    c.expect("USER alice", 331);
    c.expect(&format!("PASS {}", common::USER_PASSWORD), 230);
    c.expect("PBSZ 0", 200);
    c.expect("PROT P", 200);
    let body = pattern(21, (2 << 20) + 777);
    let (got, fin, raw) = c.protected_transfer("STOR up.bin", &config, Some(&body));
    got.expect("the server answers close_notify with close_notify");
    assert_eq!(fin.0, 226, "{fin:?}");
    assert_bytes_eq(
        &std::fs::read(s.home("alice").join("up.bin")).unwrap(),
        &body,
        "PROT P STOR",
    );
    assert!(!leaks(&body, &raw), "plaintext of the upload on the wire");

    // An upload whose data connection ends without close_notify may have been cut short:
    // 451, and the old file stays.
    let addr = c.epsv();
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    assert_eq!(c.cmd("STOR up.bin").0, 150);
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = StreamOwned::new(
        ClientConnection::new(Arc::clone(&config), name).unwrap(),
        sock,
    );
    tls.write_all(&pattern(22, 100_000)).unwrap();
    tls.flush().unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let (code, text) = c.reply();
    assert_eq!(code, 451, "{text}");
    assert!(text.contains("close_notify"), "{text}");
    drop(tls);
    assert_bytes_eq(
        &std::fs::read(s.home("alice").join("up.bin")).unwrap(),
        &body,
        "old file kept",
    );
    common::wait_no_temp_files(&s.home("alice"));
}

#[test]
fn prot_p_upload_is_byte_exact_and_needs_close_notify_tls13() {
    protected_upload(&[&rustls::version::TLS13]);
}

#[test]
fn prot_p_upload_is_byte_exact_and_needs_close_notify_tls12() {
    protected_upload(&[&rustls::version::TLS12]);
}

#[test]
fn a_data_connection_that_does_not_resume_is_refused_with_522() {
    let s = tls_server(|_| {});
    s.write_file("f", b"secret");
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let config = client_config(&s.certs.der, versions);
        let mut c = Client::connect(s.addr, Arc::clone(&config));
        c.secure_login();
        // A client with no session to resume (a fresh cache), as a thief on another host is.
        let stranger = client_config(&s.certs.der, versions);
        let (got, (code, text), _) = c.protected_transfer("RETR f", &stranger, None);
        assert_eq!(code, 522, "{text}");
        assert!(text.contains("enable TLS session reuse"), "{text}");
        assert!(
            got.map_or(true, |b| b.is_empty()),
            "no file bytes to a stranger"
        );
        // Another control session's TLS session does not resume here either.
        let other = client_config(&s.certs.der, versions);
        let mut d = Client::connect(s.addr, Arc::clone(&other));
        d.secure_login();
        let (_, (code, _), _) = c.protected_transfer("RETR f", &other, None);
        assert_eq!(code, 522);
        // The session itself still works.
        let (got, fin, _) = c.protected_transfer("RETR f", &config, None);
        assert_eq!((got.unwrap(), fin.0), (b"secret".to_vec(), 226));
    }
}

#[test]
fn reuse_can_be_relaxed() {
    let s = tls_server(|c| c.tls_require_reuse = false);
    s.write_file("f", b"anyone with the port");
    let config = client_config(&s.certs.der, BOTH);
    let mut c = Client::connect(s.addr, Arc::clone(&config));
    c.secure_login();
    let stranger = client_config(&s.certs.der, BOTH);
    let (got, fin, _) = c.protected_transfer("RETR f", &stranger, None);
    assert_eq!(
        (got.unwrap(), fin.0),
        (b"anyone with the port".to_vec(), 226)
    );
}

// Real clients

fn curl_url(s: &TestServer, path: &str) -> String {
    format!("ftp://127.0.0.1:{}{path}", s.addr.port())
}

#[test]
fn curl_ssl_reqd_downloads_with_tls12_and_tls13() {
    let Some(curl) = require("curl") else { return };
    let s = tls_server(|_| {});
    let body = pattern(31, (1 << 20) + 3);
    s.write_file("data.bin", &body);
    for tls in [&["--tlsv1.3"][..], &["--tls-max", "1.2"][..]] {
        let url = curl_url(&s, "/data.bin");
        let mut args = vec!["-sS", "--ssl-reqd", "--cacert"];
        let cert = s.certs.cert.to_str().unwrap();
        args.push(cert);
        args.extend_from_slice(tls);
        args.push(&url);
        let out = run_ok(&curl, &args);
        assert_bytes_eq(&out.stdout, &body, &format!("curl {tls:?}"));
        // A listing, too.
        let url = curl_url(&s, "/");
        let mut args = vec!["-sS", "--ssl-reqd", "-k", "--list-only"];
        args.extend_from_slice(tls);
        args.push(&url);
        let out = run_ok(&curl, &args);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "data.bin");
    }
}

#[test]
fn curl_ssl_reqd_upload() {
    let Some(curl) = require("curl") else { return };
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs)
    });
    let body = pattern(32, (1 << 20) + 99);
    let local = certs.dir.path().join("local.bin");
    std::fs::write(&local, &body).unwrap();
    for (tls, name) in [("--tlsv1.3", "up13.bin"), ("--tlsv1.2", "up12.bin")] {
        let url = curl_url(&s, &format!("/{name}"));
        let user = format!("alice:{}", common::USER_PASSWORD);
        let mut args = vec!["-sS", "--ssl-reqd", "-k", "--user", &user, "-T"];
        args.push(local.to_str().unwrap());
        if tls == "--tlsv1.2" {
            args.extend_from_slice(&["--tls-max", "1.2"]);
        } else {
            args.push(tls);
        }
        args.push(&url);
        run_ok(&curl, &args);
        assert_bytes_eq(
            &std::fs::read(s.home("alice").join(name)).unwrap(),
            &body,
            name,
        );
    }
}

const FTPLIB_CHECK: &str = r#"
import ftplib, ssl, sys

class ReusingFTP_TLS(ftplib.FTP_TLS):
    """Data connections resume the control connection's TLS session."""
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

port, cafile, mode, local, remote = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
cls = ReusingFTP_TLS if mode != "plain" else ftplib.FTP_TLS
ftp = cls(context=ctx, timeout=20)
ftp.connect("127.0.0.1", int(port))
ftp.login(sys.argv[6], sys.argv[7])
ftp.prot_p()
try:
    if mode == "put":
        with open(local, "rb") as f:
            ftp.storbinary("STOR " + remote, f)
    else:
        with open(local, "wb") as f:
            ftp.retrbinary("RETR " + remote, f.write)
        with open(local, "wb") as f:
            ftp.retrbinary("RETR " + remote, f.write)
    print("ok")
except ftplib.error_perm as e:
    print("refused", e)
except (ssl.SSLError, OSError) as e:
    # The data connection failed: the final reply says why.
    try:
        ftp.voidresp()
    except ftplib.error_perm as e:
        print("refused", e)
ftp.quit()
"#;

#[test]
fn python_ftplib_with_session_reuse_downloads_and_uploads() {
    let Some(python) = require("python3") else {
        return;
    };
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs)
    });
    let script = certs.dir.path().join("check.py");
    std::fs::write(&script, FTPLIB_CHECK).unwrap();
    let body = pattern(41, (2 << 20) + 5);
    std::fs::write(s.home("alice").join("down.bin"), &body).unwrap();
    let local = certs.dir.path().join("got.bin");
    let port = s.addr.port().to_string();
    let ca = certs.cert.to_str().unwrap();
    let args = |mode: &'static str, local: &Path, remote: &'static str| -> Vec<String> {
        vec![
            script.to_str().unwrap().into(),
            port.clone(),
            ca.into(),
            mode.into(),
            local.to_str().unwrap().into(),
            remote.into(),
            "alice".into(),
            common::USER_PASSWORD.into(),
        ]
    };
    let call = |v: Vec<String>| {
        let a: Vec<&str> = v.iter().map(String::as_str).collect();
        String::from_utf8(run_ok(&python, &a).stdout).unwrap()
    };
    assert_eq!(call(args("get", &local, "down.bin")).trim(), "ok");
    assert_bytes_eq(&std::fs::read(&local).unwrap(), &body, "ftplib PROT P RETR");
    let up = certs.dir.path().join("up.bin");
    let up_body = pattern(42, (1 << 20) + 17);
    std::fs::write(&up, &up_body).unwrap();
    assert_eq!(call(args("put", &up, "up.bin")).trim(), "ok");
    assert_bytes_eq(
        &std::fs::read(s.home("alice").join("up.bin")).unwrap(),
        &up_body,
        "ftplib PROT P STOR",
    );
    // Plain FTP_TLS does not resume the session on its data connections: refused by default.
    let out = call(args("plain", &local, "down.bin"));
    assert!(out.starts_with("refused 522"), "{out}");
}

#[test]
fn certificate_and_key_problems_stop_start_up_naming_the_key() {
    let a = certs();
    let b = certs();
    let root = tempfile::tempdir().unwrap();
    let base = Config {
        root: root.path().to_path_buf(),
        ..Config::default()
    };
    let mismatched = Config {
        tls_cert: Some(a.cert.clone()),
        tls_key: Some(b.key.clone()),
        ..base.clone()
    };
    assert_eq!(mismatched.validate().unwrap_err().key, "tls_key");
    let unreadable = Config {
        tls_cert: Some(a.dir.path().join("missing.pem")),
        tls_key: Some(a.key.clone()),
        ..base.clone()
    };
    assert_eq!(unreadable.validate().unwrap_err().key, "tls_cert");
    let half = Config {
        tls_cert: Some(a.cert.clone()),
        ..base.clone()
    };
    assert_eq!(half.validate().unwrap_err().key, "tls_key");
    let required = Config {
        tls_required: true,
        ..base.clone()
    };
    assert_eq!(required.validate().unwrap_err().key, "tls_required");
    let good = Config {
        tls_cert: Some(a.cert.clone()),
        tls_key: Some(a.key.clone()),
        ..base
    };
    good.validate().unwrap();
}

#[test]
fn a_reload_gives_new_sessions_the_new_certificate() {
    let s = tls_server(|_| {});
    let old = client_config(&s.certs.der, BOTH);
    let mut before = Client::connect(s.addr, Arc::clone(&old));
    before.secure_login();
    let renewed = certs();
    let mut config = Config {
        root: s.root.path().to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        ..Config::default()
    };
    if let Ok(io) = std::env::var("RINGFTPD_TEST_IO") {
        config.io_backend = io.parse().unwrap();
    }
    with_certs(&mut config, &renewed);
    assert_eq!(s.reload(config), Ok(vec![]));
    // Each shard takes the new configuration from its inbox when it next wakes, so a session
    // that raced it may still get the old certificate: try a bounded number of sessions.
    let trusting_new = client_config(&renewed.der, BOTH);
    let mut after = (0..50)
        .find_map(|_| {
            let mut c = Client::connect(s.addr, Arc::clone(&trusting_new));
            c.expect("AUTH TLS", 234);
            c.try_handshake().ok().map(|()| c)
        })
        .expect("a session after the reload has the new certificate");
    after.expect("USER anonymous", 331);
    after.expect("PASS a@b", 230);
    s.write_file("f", b"still here");
    // The session from before the reload keeps its certificate and its data connections.
    let (got, fin, _) = before.protected_transfer("RETR f", &old, None);
    assert_eq!((got.unwrap(), fin.0), (b"still here".to_vec(), 226));
}

#[test]
fn lftp_gnutls_gets_and_puts_with_ssl_force_and_protect_data() {
    let Some(lftp) = require("lftp") else { return };
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs)
    });
    let body = pattern(51, (1 << 20) + 11);
    std::fs::write(s.home("alice").join("down.bin"), &body).unwrap();
    let local = certs.dir.path().join("lftp-got.bin");
    let up = certs.dir.path().join("lftp-up.bin");
    let up_body = pattern(52, (1 << 20) + 13);
    std::fs::write(&up, &up_body).unwrap();
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20; \
         set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-allow true; \
         set ssl:ca-file {ca}; set ssl:check-hostname no; \
         open -u alice,{pw} ftp://127.0.0.1:{port}; \
         get down.bin -o {local}; put {up} -o up.bin; ls",
        ca = certs.cert.display(),
        pw = common::USER_PASSWORD,
        port = s.addr.port(),
        local = local.display(),
        up = up.display(),
    );
    let out = run_ok(&lftp, &["-c", &script]);
    assert_bytes_eq(&std::fs::read(&local).unwrap(), &body, "lftp PROT P get");
    assert_bytes_eq(
        &std::fs::read(s.home("alice").join("up.bin")).unwrap(),
        &up_body,
        "lftp PROT P put",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("up.bin"));
}
