//! FTP over TLS (RFC 4217) end to end: AUTH TLS on the control connection, PBSZ/PROT sequencing,
//! STARTTLS command injection, `PROT P` downloads, listings and uploads through rustls
//! (byte-exact, no plaintext on the wire, close_notify at the end), the data connection's
//! session reuse requirement, implicit TLS on its own listener, the TLS policy per class of
//! users and per user, HTTP request lines and ALPN (cross-protocol attacks), and real clients
//! (curl and lftp, explicit and implicit; Python's ftplib; suppaftp with rustls).
//!
//! The certificate is made at test time with rcgen (for "localhost" and 127.0.0.1); the test's
//! own client is rustls, trusting exactly that certificate (`common::tls`).

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::tls::{BOTH, Certs, Client, Tap, certs, client_config, leaks};
use common::tools::{require, run_ok};
use common::{TIMEOUT, TestServer, UsersServer, assert_bytes_eq, pattern};
use ringftpd::config::Config;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

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
    c.alice_login();
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
    c.alice_login();
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

// Implicit TLS (its own listener), policy per class of users, cross-protocol defences

/// A server with an implicit TLS listener next to its plain one.
fn implicit_server(tweak: impl FnOnce(&mut Config)) -> TlsServer {
    tls_server(|c| {
        c.implicit_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
        tweak(c);
    })
}

/// A rustls client configuration that offers `alpn` (none when empty).
fn alpn_config(der: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = Arc::unwrap_or_clone(client_config(der, BOTH));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

impl Client {
    /// A connection to an implicit TLS listener: the handshake first, then the 220 through TLS.
    fn connect_implicit(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        Client::try_implicit(addr, config).expect("implicit TLS handshake")
    }

    fn try_implicit(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Client> {
        let mut c = Client::open(addr, config);
        c.try_handshake()?;
        let (code, text) = c.reply();
        assert_eq!(code, 220, "{text}");
        Ok(c)
    }
}

#[test]
fn implicit_tls_greets_through_tls_and_protects_data_by_default() {
    let s = implicit_server(|_| {});
    let config = client_config(&s.certs.der, BOTH);
    let mut c = Client::connect_implicit(s.implicit_addr(), Arc::clone(&config));
    // Already TLS: AUTH is out of sequence.
    let text = c.expect("AUTH TLS", 503);
    assert!(text.contains("Already using TLS"), "{text}");
    c.expect("USER anonymous", 331);
    c.expect("PASS implicit@example.com", 230);
    let body = pattern(61, (1 << 20) + 7);
    s.write_file("implicit.bin", &body);
    // No PBSZ or PROT sent: data connections are protected already.
    let (got, fin, raw) = c.protected_transfer("RETR implicit.bin", &config, None);
    assert_eq!(fin.0, 226, "{fin:?}");
    assert_bytes_eq(&got.unwrap(), &body, "implicit RETR");
    assert!(!leaks(&body, &raw), "plaintext on the data connection");
    // Clients send PBSZ 0 and PROT P anyway; that changes nothing.
    c.expect("PBSZ 0", 200);
    c.expect("PROT P", 200);
    let (got, fin, _) = c.protected_transfer("LIST", &config, None);
    assert_eq!(fin.0, 226);
    assert!(
        String::from_utf8(got.unwrap())
            .unwrap()
            .contains("implicit.bin")
    );
    c.expect("QUIT", 221);
}

#[test]
fn an_implicit_listener_never_speaks_clear() {
    let s = implicit_server(|c| c.login_timeout = std::time::Duration::from_secs(1));
    // Cleartext FTP: no 220 in clear, and the session is closed (a TLS alert at most).
    let mut sock = TcpStream::connect_timeout(&s.implicit_addr(), TIMEOUT).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    sock.write_all(b"USER anonymous\r\nPASS a@b\r\n").unwrap();
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got);
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    // A client that sends nothing: closed by the login timeout, without a byte in clear.
    let started = std::time::Instant::now();
    let mut idle = TcpStream::connect_timeout(&s.implicit_addr(), TIMEOUT).unwrap();
    idle.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    idle.read_to_end(&mut got)
        .expect("closed before the read timeout");
    assert!(
        !got.starts_with(b"220") && !got.starts_with(b"421"),
        "{got:?}"
    );
    assert!(started.elapsed() < TIMEOUT);
    // A client that starts the handshake and stalls in it is closed the same way.
    let mut half = TcpStream::connect_timeout(&s.implicit_addr(), TIMEOUT).unwrap();
    half.set_read_timeout(Some(TIMEOUT)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(client_config(&s.certs.der, BOTH), name).unwrap();
    conn.write_tls(&mut half).unwrap();
    let mut got = Vec::new();
    half.read_to_end(&mut got)
        .expect("closed before the read timeout");
    // The plain listener still greets in clear.
    let mut c = s.connect();
    c.login();
}

#[test]
fn implicit_tls_without_a_certificate_stops_start_up() {
    let root = tempfile::tempdir().unwrap();
    let config = Config {
        root: root.path().to_path_buf(),
        implicit_tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..Config::default()
    };
    let err = config.validate().unwrap_err();
    assert_eq!(err.key, "implicit_tls_listen");
    assert!(err.reason.contains("tls_cert"), "{err}");
    for (tweak, key) in [
        (
            (|c: &mut Config| c.tls_named = ringftpd::config::TlsRequirement::Login)
                as fn(&mut Config),
            "tls_named",
        ),
        (
            |c: &mut Config| c.tls_anonymous = ringftpd::config::TlsRequirement::Data,
            "tls_anonymous",
        ),
    ] {
        let mut c = Config {
            root: root.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut c);
        assert_eq!(c.validate().unwrap_err().key, key);
    }
}

#[test]
fn anonymous_users_stay_in_clear_by_default_and_named_login_policy_refuses_clear_logins() {
    use ringftpd::config::TlsRequirement;
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs);
        c.tls_named = TlsRequirement::Login;
    });
    let mut c = s.connect();
    let text = c.expect("USER alice", 534);
    assert_eq!(
        text,
        "TLS required for login: enable explicit FTP over TLS (AUTH TLS)."
    );
    c.expect("PASS whatever", 503);
    // Anonymous: optional, in clear.
    c.login();
    std::fs::write(s.path("f"), b"clear is fine").unwrap();
    assert_eq!(c.retr("f"), b"clear is fine");
    // Over TLS the named login works, and "login" leaves data in clear allowed.
    let mut c = Client::connect(s.addr, client_config(&certs.der, BOTH));
    c.alice_login();
    std::fs::write(s.home("alice").join("g"), b"data in clear").unwrap();
    let addr = c.epsv();
    let mut data = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    data.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.expect("RETR g", 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(c.reply().0, 226);
    assert_eq!(got, b"data in clear");
}

#[test]
fn data_policy_refuses_prot_c_and_clear_transfers_and_takes_prot_p() {
    use ringftpd::config::TlsRequirement;
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs);
        c.tls_named = TlsRequirement::Data;
    });
    let config = client_config(&certs.der, BOTH);
    let mut c = Client::connect(s.addr, Arc::clone(&config));
    c.alice_login();
    c.expect("PBSZ 0", 200);
    let text = c.expect("PROT C", 534);
    assert!(text.contains("PROT P"), "{text}");
    // Never sent PROT P: data connections would be in clear.
    c.expect("EPSV", 229);
    for cmd in ["RETR f", "STOR f", "LIST", "MLSD"] {
        let text = c.expect(cmd, 521);
        assert!(text.contains("PROT P"), "{cmd}: {text}");
    }
    c.expect("PROT P", 200);
    let body = pattern(62, 100_003);
    std::fs::write(s.home("alice").join("f"), &body).unwrap();
    let (got, fin, _) = c.protected_transfer("RETR f", &config, None);
    assert_eq!(fin.0, 226);
    assert_bytes_eq(&got.unwrap(), &body, "RETR under PROT P");
}

#[test]
fn a_reload_gives_new_sessions_the_new_policy() {
    use ringftpd::config::TlsRequirement;
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs);
    });
    let mut before = s.connect();
    before.expect("USER alice", 331);
    let mut config = Config {
        root: s.root.path().to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        users_file: Some(s.homes.path().join("users.toml")),
        tls_named: TlsRequirement::Login,
        ..Config::default()
    };
    if let Ok(io) = std::env::var("RINGFTPD_TEST_IO") {
        config.io_backend = io.parse().unwrap();
    }
    with_certs(&mut config, &certs);
    assert_eq!(s.reload(config), Ok(vec![]));
    // Each shard takes the new configuration when it next wakes: a bounded number of tries.
    let refused = (0..50).any(|_| s.connect().cmd("USER alice").0 == 534);
    assert!(refused, "no new session got the new policy");
    // The session from before keeps its policy.
    before.expect(&format!("PASS {}", common::USER_PASSWORD), 230);
}

#[test]
fn http_request_lines_close_the_session_without_a_reply() {
    let s = implicit_server(|_| {});
    for request in [
        &b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"[..],
        b"POST /form HTTP/1.1\r\nContent-Length: 17\r\n\r\nUSER anonymous\r\n",
        b"PUT /x HTTP/1.0\r\n\r\n",
        b"CONNECT example.org:443 HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"BREW /pot HTTP/1.1\r\n\r\n",
    ] {
        let mut c = s.connect();
        c.send_raw(request);
        c.assert_closed();
    }
    // After login, too, and commands pipelined behind it never run.
    let mut c = s.connect();
    c.login();
    c.send_raw(b"HEAD /index.html HTTP/1.1\r\nMKD nope\r\n");
    c.assert_closed();
    // Through TLS on the implicit listener.
    let mut t = Client::connect_implicit(s.implicit_addr(), client_config(&s.certs.der, BOTH));
    t.send(b"GET / HTTP/1.1\r\n\r\n");
    let mut rest = Vec::new();
    let _ = t.stream().read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // FTP lines that merely contain such words are commands as before.
    let mut c = s.connect();
    c.login();
    c.expect("SIZE GET", 550);
    c.expect("get", 500);
    c.expect("NOOP", 200);
}

#[test]
fn alpn_ftp_or_none_is_served_and_http_only_alpn_is_refused() {
    let s = implicit_server(|_| {});
    let der = &s.certs.der;
    // No ALPN (curl, lftp, FileZilla, ftplib): served, explicit and implicit.
    let mut c = Client::connect(s.addr, alpn_config(der, &[]));
    c.auth();
    c.expect("NOOP", 200);
    assert_eq!(c.tls.as_ref().unwrap().conn.alpn_protocol(), None);
    let mut c = Client::connect_implicit(s.implicit_addr(), alpn_config(der, &[]));
    c.expect("NOOP", 200);
    // "ftp" offered (alone or among others): served, and "ftp" is what is agreed.
    for offer in [&[&b"ftp"[..]][..], &[b"h2", b"ftp"]] {
        let mut c = Client::connect_implicit(s.implicit_addr(), alpn_config(der, offer));
        assert_eq!(
            c.tls.as_ref().unwrap().conn.alpn_protocol(),
            Some(&b"ftp"[..])
        );
        c.expect("NOOP", 200);
    }
    // Only HTTP protocols (a browser led here, the ALPACA attack): the handshake fails.
    for offer in [&[&b"h2"[..], b"http/1.1"][..], &[b"http/1.1"]] {
        assert!(Client::try_implicit(s.implicit_addr(), alpn_config(der, offer)).is_err());
        let mut c = Client::connect(s.addr, alpn_config(der, offer));
        c.expect("AUTH TLS", 234);
        assert!(c.try_handshake().is_err(), "{offer:?} on AUTH TLS");
    }
}

#[test]
fn curl_implicit_ftps_downloads_and_uploads_with_tls12_and_tls13() {
    let Some(curl) = require("curl") else { return };
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs);
        c.implicit_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    run_curl_implicit(&curl, &s, &certs);
}

fn run_curl_implicit(curl: &Path, s: &UsersServer, certs: &Certs) {
    let body = pattern(63, (1 << 20) + 5);
    std::fs::write(s.home("alice").join("down.bin"), &body).unwrap();
    let local = certs.dir.path().join("curl-up.bin");
    let up_body = pattern(64, (1 << 20) + 77);
    std::fs::write(&local, &up_body).unwrap();
    let user = format!("alice:{}", common::USER_PASSWORD);
    let port = s.implicit_addr().port();
    let ca = certs.cert.to_str().unwrap();
    for (tls, name) in [
        (&["--tlsv1.3"][..], "up13.bin"),
        (&["--tls-max", "1.2"][..], "up12.bin"),
    ] {
        let url = format!("ftps://127.0.0.1:{port}/down.bin");
        let mut args = vec!["-sS", "--cacert", ca, "--user", &user];
        args.extend_from_slice(tls);
        args.push(&url);
        let out = run_ok(curl, &args);
        assert_bytes_eq(&out.stdout, &body, &format!("curl ftps:// {tls:?}"));
        let url = format!("ftps://127.0.0.1:{port}/{name}");
        let mut args = vec!["-sS", "--cacert", ca, "--user", &user, "-T"];
        args.push(local.to_str().unwrap());
        args.extend_from_slice(tls);
        args.push(&url);
        run_ok(curl, &args);
        assert_bytes_eq(
            &std::fs::read(s.home("alice").join(name)).unwrap(),
            &up_body,
            name,
        );
    }
}

/// lftp (GnuTLS) `mirror` both ways over `url`: a small tree down, another up, byte-exact. The
/// download side's listings and files add tickets to the session cache that the control
/// connection's session must outlive (GnuTLS resumes that one on every data connection).
fn lftp_mirrors(lftp: &Path, s: &UsersServer, certs: &Certs, url: &str, tag: &str) {
    let home = s.home("alice");
    let tree = home.join(format!("tree-{tag}"));
    for (i, rel) in [
        "a.bin",
        "d/b.bin",
        "d/e/c.txt",
        "d/e/empty",
        "f/g.bin",
        "h.bin",
    ]
    .iter()
    .enumerate()
    {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = [70_001, 3, 200_000, 0, 1 << 16, 9][i];
        std::fs::write(&p, pattern(70 + i as u64, len)).unwrap();
    }
    let up = certs.dir.path().join(format!("up-{tag}"));
    for (i, rel) in ["x.bin", "y/z.bin", "y/w/v.txt"].iter().enumerate() {
        let p = up.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, pattern(80 + i as u64, [123_457, 1, 65_536][i])).unwrap();
    }
    let down = certs.dir.path().join(format!("down-{tag}"));
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20; \
         set ftp:ssl-force true; set ftp:ssl-protect-data true; \
         set ssl:ca-file {ca}; set ssl:check-hostname no; \
         open -u alice,{pw} {url}; \
         mirror tree-{tag} {down}; mirror -R {up} uploaded-{tag}",
        ca = certs.cert.display(),
        pw = common::USER_PASSWORD,
        down = down.display(),
        up = up.display(),
    );
    run_ok(lftp, &["-c", &script]);
    assert_eq!(
        common::tools::snapshot(&down),
        common::tools::snapshot(&tree),
        "lftp mirror over {url}"
    );
    assert_eq!(
        common::tools::snapshot(&home.join(format!("uploaded-{tag}"))),
        common::tools::snapshot(&up),
        "lftp mirror -R over {url}"
    );
}

#[test]
fn lftp_mirrors_both_ways_over_implicit_and_explicit_tls() {
    let Some(lftp) = require("lftp") else { return };
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs);
        c.implicit_tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    });
    let implicit = format!("ftps://127.0.0.1:{}", s.implicit_addr().port());
    lftp_mirrors(&lftp, &s, &certs, &implicit, "implicit");
    let explicit = format!("ftp://127.0.0.1:{}", s.addr.port());
    lftp_mirrors(&lftp, &s, &certs, &explicit, "explicit");
}

#[test]
fn suppaftp_rustls_logs_in_protects_data_and_moves_bytes_exactly() {
    use suppaftp::{RustlsConnector, RustlsFtpStream};
    let certs = certs();
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        with_certs(c, &certs)
    });
    let body = pattern(91, (1 << 20) + 9);
    std::fs::write(s.home("alice").join("down.bin"), &body).unwrap();
    let config = client_config(&certs.der, BOTH);
    let plain = RustlsFtpStream::connect_timeout(s.addr, TIMEOUT).unwrap();
    // AUTH TLS, then PBSZ 0 and PROT P (suppaftp sends them in into_secure).
    let mut ftp = plain
        .into_secure(RustlsConnector::from(config), "localhost")
        .expect("AUTH TLS, PBSZ 0, PROT P");
    ftp.login("alice", common::USER_PASSWORD).unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .unwrap();
    let got = ftp.retr_as_buffer("down.bin").unwrap().into_inner();
    assert_bytes_eq(&got, &body, "suppaftp PROT P RETR");
    let up = pattern(92, (1 << 20) + 31);
    let sent = ftp
        .put_file("up.bin", &mut std::io::Cursor::new(&up))
        .unwrap();
    assert_eq!(sent, up.len() as u64);
    assert_bytes_eq(
        &std::fs::read(s.home("alice").join("up.bin")).unwrap(),
        &up,
        "suppaftp PROT P STOR",
    );
    // A second download after the upload (more session reuse).
    let again = ftp.retr_as_buffer("up.bin").unwrap().into_inner();
    assert_bytes_eq(&again, &up, "suppaftp RETR of the upload");
    ftp.quit().unwrap();
}

#[test]
fn a_users_own_tls_requirement_in_the_users_file_adds_to_its_class() {
    let certs = certs();
    let s = common::start_with_users(
        &[
            ("alice", "access = \"read-write\"\ntls = \"login\""),
            ("bob", "access = \"read-write\"\ntls = \"data\""),
            ("carol", "access = \"read-write\""),
        ],
        |c| {
            with_certs(c, &certs);
            // One session per user: a refused login must not hold it.
            c.max_sessions_per_user = 1;
        },
    );
    // The class is optional: USER is taken, the user's own requirement is known only after
    // the password check, and the account is not used in clear.
    let mut c = s.connect();
    c.expect("USER alice", 331);
    let text = c.expect(&format!("PASS {}", common::USER_PASSWORD), 534);
    assert!(text.contains("AUTH TLS"), "{text}");
    c.expect("PWD", 530);
    let mut t = Client::connect(s.addr, client_config(&certs.der, BOTH));
    t.auth();
    t.expect("USER alice", 331);
    t.expect(&format!("PASS {}", common::USER_PASSWORD), 230);
    t.expect("PWD", 257);
    // bob must protect data too; carol may do as she likes.
    let mut t = Client::connect(s.addr, client_config(&certs.der, BOTH));
    t.auth();
    t.expect("USER bob", 331);
    t.expect(&format!("PASS {}", common::USER_PASSWORD), 230);
    t.expect("EPSV", 229);
    t.expect("NLST", 521);
    let mut c = s.connect();
    c.login_as("carol", common::USER_PASSWORD);
    c.expect("NOOP", 200);
}

#[test]
fn the_implicit_listener_shares_the_per_ip_cap_and_refuses_without_clear_bytes() {
    let s = implicit_server(|c| c.max_sessions_per_ip = 1);
    let mut held = Client::connect_implicit(s.implicit_addr(), client_config(&s.certs.der, BOTH));
    held.expect("NOOP", 200);
    // The cap counts both listeners: the plain one says 421 in clear...
    let mut plain = common::Ctrl::connect_raw(s.addr);
    let (code, _) = plain.read_reply();
    assert_eq!(code, 421);
    // ...and the implicit one closes the connection without a byte in clear.
    let mut sock = TcpStream::connect_timeout(&s.implicit_addr(), TIMEOUT).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    held.expect("QUIT", 221);
}

#[test]
fn a_reload_without_a_certificate_is_refused_while_implicit_listeners_run() {
    let s = implicit_server(|_| {});
    let mut config = Config {
        root: s.root.path().to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        ..Config::default()
    };
    if let Ok(io) = std::env::var("RINGFTPD_TEST_IO") {
        config.io_backend = io.parse().unwrap();
    }
    // The listeners stay (they need a restart), so the certificate they need must stay too.
    let err = s.reload(config).unwrap_err();
    assert!(err.contains("implicit_tls_listen"), "{err}");
    let mut c = Client::connect_implicit(s.implicit_addr(), client_config(&s.certs.der, BOTH));
    c.expect("NOOP", 200);
}
