//! A rustls FTPS client for the tests: a certificate made at test time (rcgen, for "localhost"
//! and 127.0.0.1), a control connection in clear until AUTH TLS and then through rustls, `PROT P`
//! data connections through a tap that records every byte on the wire, and the check that no
//! plaintext piece of a file shows up in that capture.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::TIMEOUT;

/// A certificate and key in a temporary directory, and the certificate for the client to trust.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

pub fn certs() -> Certs {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Certs {
        dir,
        cert,
        key,
        der: made.cert.der().clone(),
    }
}

/// A rustls client configuration trusting `der`; its session cache is shared by every
/// connection made with it (as a real client's is).
pub fn client_config(
    der: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    client_config_with(der, versions, None)
}

/// `client_config` offering only `suite` (when given), so the server must pick that cipher.
pub fn client_config_with(
    der: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suite: Option<rustls::CipherSuite>,
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suite) = suite {
        provider.cipher_suites.retain(|s| s.suite() == suite);
    }
    let provider = Arc::new(provider);
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Records every byte that crosses a socket, both ways.
pub struct Tap {
    pub sock: TcpStream,
    pub seen: Arc<Mutex<Vec<u8>>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.seen.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sock.write(buf)?;
        self.seen.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// Read one reply ("ddd text", or a multi-line one) from `r`; the text of its first line.
pub fn read_reply(r: &mut (impl Read + ?Sized)) -> (u16, String) {
    let mut first = None;
    loop {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match r.read(&mut b) {
                Ok(0) => panic!("connection closed while reading a reply ({line:?})"),
                Ok(_) => line.push(b[0]),
                Err(e) => panic!("reading a reply: {e}"),
            }
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
        let code: u16 = text[..3]
            .parse()
            .unwrap_or_else(|_| panic!("bad reply {text:?}"));
        let done = text.as_bytes()[3] == b' ';
        match (&first, done) {
            (None, true) => return (code, text[4..].to_string()),
            (None, false) => first = Some((code, text[4..].to_string())),
            (Some((c, _)), true) if *c == code && text.as_bytes()[3] == b' ' => {
                return first.unwrap();
            }
            _ => {}
        }
    }
}

/// A control connection, in clear until `auth` and then through rustls.
pub struct Client {
    pub plain: Option<TcpStream>,
    pub tls: Option<StreamOwned<ClientConnection, TcpStream>>,
    pub config: Arc<ClientConfig>,
    pub peer: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        let mut c = Client::open(addr, config);
        assert_eq!(c.reply().0, 220);
        c
    }

    /// A TCP connection to `addr`, nothing read or sent yet.
    pub fn open(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        let sock = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            plain: Some(sock),
            tls: None,
            config,
            peer: addr,
        }
    }

    pub fn stream(&mut self) -> &mut dyn ReadWrite {
        match (&mut self.tls, &mut self.plain) {
            (Some(t), _) => t,
            (None, Some(p)) => p,
            _ => unreachable!(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let s = self.stream();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    pub fn reply(&mut self) -> (u16, String) {
        read_reply(self.stream())
    }

    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line:?} answered {got} {text:?}");
        text
    }

    /// The TLS handshake on the control connection, after a 234.
    pub fn handshake(&mut self) {
        self.try_handshake().expect("control handshake");
    }

    pub fn try_handshake(&mut self) -> io::Result<()> {
        let sock = self.plain.take().expect("still in clear");
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::clone(&self.config), name).unwrap();
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.tls = Some(tls);
        Ok(())
    }

    pub fn auth(&mut self) {
        self.expect("AUTH TLS", 234);
        self.handshake();
    }

    /// AUTH TLS, then alice's login (the test users file's named user); data protection left
    /// as it is.
    pub fn alice_login(&mut self) {
        self.auth();
        self.expect("USER alice", 331);
        self.expect(&format!("PASS {}", super::USER_PASSWORD), 230);
    }

    /// AUTH TLS, anonymous login, PBSZ 0, PROT P.
    pub fn secure_login(&mut self) {
        self.auth();
        self.expect("USER anonymous", 331);
        self.expect("PASS tls@example.com", 230);
        self.expect("PBSZ 0", 200);
        self.expect("PROT P", 200);
    }

    pub fn epsv(&mut self) -> SocketAddr {
        let text = self.expect("EPSV", 229);
        let port = super::parse_epsv(&text).unwrap();
        SocketAddr::new(self.peer.ip(), port)
    }

    /// A data command over a fresh EPSV connection: after the 150 the data connection's TLS
    /// handshake with `config` (the control connection's, so it resumes; another one to test
    /// refusals). Returns what was read (the connection must end with close_notify), the final
    /// reply, and every raw byte that crossed the data connection.
    pub fn protected_transfer(
        &mut self,
        line: &str,
        config: &Arc<ClientConfig>,
        upload: Option<&[u8]>,
    ) -> (io::Result<Vec<u8>>, (u16, String), Vec<u8>) {
        let addr = self.epsv();
        let sock = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tap = Tap {
            sock,
            seen: Arc::clone(&seen),
        };
        let (code, text) = self.cmd(line);
        assert_eq!(code, 150, "{line:?}: {code} {text}");
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
        let mut tls = StreamOwned::new(conn, tap);
        let got = match upload {
            None => {
                let mut out = Vec::new();
                tls.read_to_end(&mut out).map(|_| out)
            }
            Some(bytes) => (|| {
                tls.write_all(bytes)?;
                tls.conn.send_close_notify();
                tls.flush()?;
                let mut rest = Vec::new();
                tls.read_to_end(&mut rest)?;
                Ok(rest)
            })(),
        };
        drop(tls);
        let fin = self.reply();
        let raw = seen.lock().unwrap().clone();
        (got, fin, raw)
    }
}

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Whether any of a few 32-byte pieces of `plain` shows up in `wire`.
pub fn leaks(plain: &[u8], wire: &[u8]) -> bool {
    let step = (plain.len() / 16).max(1);
    (0..plain.len().saturating_sub(32)).step_by(step).any(|at| {
        let needle = &plain[at..at + 32];
        wire.windows(32).any(|w| w == needle)
    })
}
