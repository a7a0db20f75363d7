//! Integration-test harness: an in-process server on `127.0.0.1:0` over a temporary root, file
//! helpers, and a raw control-connection client whose every read has a timeout, so that a server
//! bug fails a test instead of hanging the suite. Nothing here sleeps to synchronise: every wait
//! is a blocking read or accept bounded by [`TIMEOUT`].

// Each test crate compiles this module on its own and uses a different subset of it.
#![allow(dead_code)]

pub mod daemon;
pub mod tls;
pub mod tools;

use std::fs;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use ringftpd::config::Config;
use ringftpd::server::{self, Server};

/// Upper bound for any single wait on the server (a reply, a data read, an accept).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long `Server::stop` may take before the test process is aborted rather than left hanging.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Replies longer than this are treated as a server bug (a runaway multi-line reply).
const MAX_REPLY_BYTES: usize = 1 << 20;

/// 2001-02-03 04:05:06 UTC: an mtime far enough in the past that `ls -l` shows the year.
pub const OLD_MTIME: u64 = 981_173_106;
pub const OLD_MTIME_VAL: &str = "20010203040506";

/// A running server over its own temporary root; dropping it stops the server.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
}

/// Start a server on `127.0.0.1:0` with two shards over a fresh temporary root; `tweak` may change
/// anything else in the configuration (the root is already set).
pub fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let root = tempfile::tempdir().expect("create the temporary root");
    let mut config = Config {
        root: root.path().to_path_buf(),
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        ..Config::default()
    };
    // .ci/run runs the suites again with RINGFTPD_TEST_IO=epoll, so the fallback backend gets
    // every test the io_uring one does.
    if let Ok(io) = std::env::var("RINGFTPD_TEST_IO") {
        config.io_backend = io
            .parse()
            .unwrap_or_else(|e| panic!("RINGFTPD_TEST_IO={io:?}: {e}"));
    }
    tweak(&mut config);
    let server = server::start(config).expect("server::start");
    let addrs = server.local_addrs();
    assert!(
        !addrs.is_empty(),
        "server::start returned no listening address"
    );
    for a in &addrs {
        assert_ne!(
            a.port(),
            0,
            "local_addrs must report the bound port, not 0: {addrs:?}"
        );
    }
    TestServer {
        server: Some(server),
        addr: addrs[0],
        root,
    }
}

/// A server with the default test configuration.
pub fn server() -> TestServer {
    start(|_| {})
}

impl TestServer {
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.server.as_ref().expect("server running").local_addrs()
    }

    /// The first implicit TLS address (`implicit_tls_listen`), with its real port.
    pub fn implicit_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .expect("server running")
            .implicit_tls_addrs()[0]
    }

    /// Control sessions each shard holds now.
    pub fn sessions_per_shard(&self) -> Vec<usize> {
        self.server
            .as_ref()
            .expect("server running")
            .sessions_per_shard()
    }

    /// Absolute path of `rel` inside the served root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Create (or replace) `rel` with `bytes`, making parent directories; mode 0644.
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        fs::write(&p, bytes).expect("write test file");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// A file of `len` bytes that reads as zeros and takes no disk space (for big transfers whose
    /// content does not matter: ABOR, disconnects, shrinking files).
    pub fn sparse_file(&self, rel: &str, len: u64) -> PathBuf {
        let p = self.write_file(rel, b"");
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len)
            .unwrap();
        p
    }

    /// Create directory `rel` (and parents), mode 0755.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).expect("create test directory");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// Create a symlink `rel` -> `target` (target taken verbatim, may be relative or absolute).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::os::unix::fs::symlink(target, &p).expect("create symlink");
        p
    }

    /// Set the modification time of `rel` to `secs` after the epoch.
    pub fn set_mtime(&self, rel: &str, secs: u64) {
        let f = fs::File::options()
            .write(true)
            .open(self.path(rel))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    /// A control connection that has read the 220 greeting.
    pub fn connect(&self) -> Ctrl {
        Ctrl::connect(self.addr)
    }

    /// A control connection logged in as anonymous.
    pub fn login(&self) -> Ctrl {
        let mut c = self.connect();
        c.login();
        c
    }

    /// `Server::reload` with `config` (new sessions get it); the keys that need a restart.
    pub fn reload(&self, config: Config) -> Result<Vec<&'static str>, String> {
        self.server.as_ref().expect("server running").reload(config)
    }

    /// Stop now (what Drop does), for tests that want to check that stopping works.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(server) = self.server.take() {
            let _watchdog = Watchdog::arm("Server::stop", STOP_TIMEOUT);
            server.stop();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Aborts the whole test process if it is not dropped within its deadline: a hung `join` would
/// otherwise keep CI waiting for its global time limit with no hint of what hung.
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn arm(what: &'static str, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("{what} did not return within {limit:?}; aborting the test process");
                std::process::abort();
            }
        });
        Watchdog { _disarm: tx }
    }
}

/// Deterministic pseudo-random bytes (splitmix64), so byte-exact checks need no stored fixtures.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text with bare LF line ends of varying lengths, and what TYPE A must turn it into.
pub fn lf_text(seed: u64, len: usize) -> (Vec<u8>, Vec<u8>) {
    let noise = pattern(seed, len);
    let lf: Vec<u8> = noise
        .iter()
        .map(|&b| if b % 23 == 0 { b'\n' } else { b'a' + b % 26 })
        .collect();
    let mut crlf = Vec::with_capacity(len + len / 16);
    for &b in &lf {
        if b == b'\n' {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    (lf, crlf)
}

/// First difference between two byte strings, for readable assertion messages on big buffers.
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes, want {}; first difference at offset {first} (got {:?}, want {:?})",
        got.len(),
        want.len(),
        got.get(first..(first + 16).min(got.len())),
        want.get(first..(first + 16).min(want.len())),
    );
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum ReplyError {
    /// The server closed the control connection.
    Eof,
    Io(io::Error),
    /// Not "ddd text" / "ddd-text": the raw line.
    Malformed(Vec<u8>),
}

/// A raw control connection: bytes in, RFC 959 replies out, every read bounded by [`TIMEOUT`].
pub struct Ctrl {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Ctrl {
    /// Connect and read the greeting, which must be 220.
    pub fn connect(addr: SocketAddr) -> Ctrl {
        let mut c = Ctrl::connect_raw(addr);
        let (code, text) = c.read_reply();
        assert_eq!(code, 220, "greeting: {code} {text}");
        c
    }

    /// Connect without reading anything.
    pub fn connect_raw(addr: SocketAddr) -> Ctrl {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to the control port {addr}: {e}"));
        Ctrl::from_stream(s)
    }

    pub fn from_stream(s: TcpStream) -> Ctrl {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        let writer = s.try_clone().unwrap();
        Ctrl {
            reader: BufReader::new(s),
            writer,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }

    pub fn peer_ip(&self) -> IpAddr {
        self.writer.peer_addr().unwrap().ip()
    }

    /// Send `line` followed by CRLF.
    pub fn send_line(&mut self, line: &[u8]) {
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line);
        buf.extend_from_slice(b"\r\n");
        self.send_raw(&buf);
    }

    /// Send bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .expect("write to the control connection");
    }

    /// Read one reply (RFC 959 section 4.2): "ddd text", or "ddd-first" ... "ddd last" for a
    /// multi-line reply. The text is everything after the first "ddd " / "ddd-"; the lines of a
    /// multi-line reply are joined with "\n" (the last line keeps its "ddd " prefix).
    pub fn read_reply(&mut self) -> (u16, String) {
        match self.try_read_reply() {
            Ok(r) => r,
            Err(ReplyError::Eof) => {
                panic!("the server closed the control connection instead of replying")
            }
            Err(ReplyError::Io(e)) if is_timeout(&e) => panic!("no reply within {TIMEOUT:?}"),
            Err(ReplyError::Io(e)) => panic!("reading a reply: {e}"),
            Err(ReplyError::Malformed(l)) => {
                panic!("malformed reply line {:?}", String::from_utf8_lossy(&l))
            }
        }
    }

    pub fn try_read_reply(&mut self) -> Result<(u16, String), ReplyError> {
        let (code, text) = self.try_read_reply_bytes()?;
        Ok((code, String::from_utf8_lossy(&text).into_owned()))
    }

    /// Like [`Ctrl::read_reply`], with the text as the bytes sent (names need not be UTF-8;
    /// Telnet's doubled 0xFF is left as it came).
    pub fn read_reply_bytes(&mut self) -> (u16, Vec<u8>) {
        self.try_read_reply_bytes()
            .unwrap_or_else(|e| panic!("reading a reply: {e:?}"))
    }

    pub fn try_read_reply_bytes(&mut self) -> Result<(u16, Vec<u8>), ReplyError> {
        let first = self.read_line()?;
        let code = reply_code(&first).ok_or_else(|| ReplyError::Malformed(first.clone()))?;
        let mut text = first[4..].to_vec();
        if first[3] == b'-' {
            loop {
                let line = self.read_line()?;
                text.push(b'\n');
                text.extend_from_slice(&line);
                if text.len() > MAX_REPLY_BYTES {
                    return Err(ReplyError::Malformed(
                        b"multi-line reply over 1 MiB".to_vec(),
                    ));
                }
                if line.len() >= 4 && line[..3] == first[..3] && line[3] == b' ' {
                    break;
                }
            }
        }
        Ok((code, text))
    }

    /// One reply line without its CRLF; a line ending in a bare LF is malformed (RFC 959 uses CRLF).
    fn read_line(&mut self) -> Result<Vec<u8>, ReplyError> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY_BYTES as u64)
            .read_until(b'\n', &mut line)
            .map_err(ReplyError::Io)?;
        if n == 0 {
            return Err(ReplyError::Eof);
        }
        if !line.ends_with(b"\r\n") {
            return Err(ReplyError::Malformed(line));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    /// Send `line` and read its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send_line(line.as_bytes());
        self.read_reply()
    }

    /// Send `line`, read its reply and check the code; returns the text.
    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line:?} answered {got} {text:?}, want {code}");
        text
    }

    /// Read one reply and check its code; returns the text.
    #[track_caller]
    pub fn expect_reply(&mut self, code: u16, context: &str) -> String {
        let (got, text) = self.read_reply();
        assert_eq!(got, code, "{context}: got {got} {text:?}, want {code}");
        text
    }

    pub fn login(&mut self) {
        self.expect("USER anonymous", 331);
        self.expect("PASS test@example.com", 230);
    }

    /// PASV; the advertised address.
    pub fn pasv(&mut self) -> SocketAddr {
        let text = self.expect("PASV", 227);
        SocketAddr::V4(parse_pasv(&text).unwrap_or_else(|| panic!("bad 227 text {text:?}")))
    }

    /// EPSV; the control peer's address with the advertised port (RFC 2428 section 3).
    pub fn epsv(&mut self) -> SocketAddr {
        let text = self.expect("EPSV", 229);
        let port = parse_epsv(&text).unwrap_or_else(|| panic!("bad 229 text {text:?}"));
        SocketAddr::new(self.peer_ip(), port)
    }

    /// Run a data command over a fresh EPSV connection. `Ok(data)` after 150 ... 226;
    /// `Err((code, text))` for any other final reply (the preliminary reply, or what followed 150).
    pub fn transfer(&mut self, line: &[u8]) -> Result<Vec<u8>, (u16, String)> {
        let addr = self.epsv();
        let data = data_connect(addr);
        self.transfer_on(data, line)
    }

    /// Like [`Ctrl::transfer`] on an already connected data socket.
    pub fn transfer_on(
        &mut self,
        mut data: TcpStream,
        line: &[u8],
    ) -> Result<Vec<u8>, (u16, String)> {
        self.send_line(line);
        let (code, text) = self.read_reply();
        if code != 150 && code != 125 {
            return Err((code, text));
        }
        let bytes = read_all(&mut data);
        drop(data);
        let (code, text) = self.read_reply();
        if code == 226 {
            Ok(bytes)
        } else {
            Err((code, text))
        }
    }

    /// RETR `path` over EPSV; panics unless it succeeds.
    #[track_caller]
    pub fn retr(&mut self, path: &str) -> Vec<u8> {
        let line = format!("RETR {path}");
        self.transfer(line.as_bytes())
            .unwrap_or_else(|(c, t)| panic!("{line:?} failed: {c} {t:?}"))
    }

    /// A listing command (LIST/NLST/MLSD with its argument) over EPSV, as text.
    #[track_caller]
    pub fn listing(&mut self, line: &str) -> String {
        let bytes = self
            .transfer(line.as_bytes())
            .unwrap_or_else(|(c, t)| panic!("{line:?} failed: {c} {t:?}"));
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{line:?}: listing is not UTF-8: {e}"))
    }

    /// The server must close the control connection: EOF (or a reset) within [`TIMEOUT`],
    /// with no further reply bytes.
    #[track_caller]
    pub fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) if is_timeout(&e) => {
                panic!("the control connection is still open after {TIMEOUT:?}")
            }
            Err(e) => panic!("waiting for the control connection to close: {e}"),
        }
        assert!(
            rest.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Half-close: no more commands will come.
    pub fn shutdown_write(&self) {
        self.writer.shutdown(Shutdown::Write).unwrap();
    }
}

fn reply_code(line: &[u8]) -> Option<u16> {
    if line.len() < 4
        || !line[..3].iter().all(u8::is_ascii_digit)
        || !(line[3] == b' ' || line[3] == b'-')
    {
        return None;
    }
    if !(b'1'..=b'5').contains(&line[0]) {
        return None;
    }
    Some(
        line[..3]
            .iter()
            .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')),
    )
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The address in "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)".
pub fn parse_pasv(text: &str) -> Option<SocketAddrV4> {
    let inner = text.split_once('(')?.1.split_once(')')?.0;
    let nums: Vec<u8> = inner
        .split(',')
        .map(|s| s.trim().parse().ok())
        .collect::<Option<_>>()?;
    let [h1, h2, h3, h4, p1, p2] = nums.as_slice() else {
        return None;
    };
    Some(SocketAddrV4::new(
        [*h1, *h2, *h3, *h4].into(),
        u16::from_be_bytes([*p1, *p2]),
    ))
}

/// The port in "229 Entering Extended Passive Mode (|||port|)".
pub fn parse_epsv(text: &str) -> Option<u16> {
    let inner = text.split_once("(|||")?.1.split_once("|)")?.0;
    inner.parse().ok()
}

/// PORT argument for an IPv4 address.
pub fn port_arg(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        panic!("PORT needs IPv4, got {addr}")
    };
    let [h1, h2, h3, h4] = v4.ip().octets();
    let [p1, p2] = v4.port().to_be_bytes();
    format!("{h1},{h2},{h3},{h4},{p1},{p2}")
}

/// EPRT argument (RFC 2428) for any address.
pub fn eprt_arg(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("|1|{}|{}|", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("|2|{}|{}|", a.ip(), a.port()),
    }
}

/// Connect a data socket with read/write timeouts.
pub fn data_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("data connection to {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Read a data connection to EOF; each read may wait up to [`TIMEOUT`].
#[track_caller]
pub fn read_all(data: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match data.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                panic!(
                    "data connection stalled: no byte and no EOF for {TIMEOUT:?} after {} bytes",
                    out.len()
                )
            }
            Err(e) => panic!("reading the data connection after {} bytes: {e}", out.len()),
        }
    }
}

/// Drain a data connection that the server is expected to close or reset; returns the byte count.
/// Panics if it stays open without data for [`TIMEOUT`].
#[track_caller]
pub fn drain(data: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match data.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return total;
            }
            Err(e) if is_timeout(&e) => panic!(
                "the server left the data connection open for {TIMEOUT:?} after {total} bytes"
            ),
            Err(e) => panic!("draining the data connection after {total} bytes: {e}"),
        }
    }
}

/// Accept one connection on `listener` within [`TIMEOUT`] (poll, so a missing connect fails the
/// test instead of blocking forever).
#[track_caller]
pub fn accept_within(listener: &TcpListener) -> TcpStream {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let timeout = PollTimeout::try_from(TIMEOUT).unwrap();
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, timeout).expect("poll the active-mode listener");
    assert!(
        ready > 0,
        "the server did not connect to the active-mode listener within {TIMEOUT:?}"
    );
    let (s, _) = listener
        .accept()
        .expect("accept the server's data connection");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Whether this machine can bind IPv6 loopback (containers often have no `::1`).
pub fn ipv6_loopback_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// One `ls -l` line split into (type-and-permissions, size, name). The name is everything after
/// the single space that follows the eighth column, so it may contain spaces.
pub fn parse_list_line(line: &str) -> Option<(String, u64, String)> {
    let mut rest = line;
    let mut cols = Vec::new();
    for _ in 0..8 {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ')?;
        cols.push(&rest[..end]);
        rest = &rest[end..];
    }
    let name = rest.strip_prefix(' ')?;
    Some((cols[0].to_string(), cols[4].parse().ok()?, name.to_string()))
}

/// One MLSD/MLST facts line: lower-cased fact names to values, and the name after the space.
pub fn parse_facts(line: &str) -> Option<(std::collections::BTreeMap<String, String>, String)> {
    let (facts, name) = line.split_once(' ')?;
    let mut map = std::collections::BTreeMap::new();
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (k, v) = fact.split_once('=')?;
        map.insert(k.to_ascii_lowercase(), v.to_string());
    }
    Some((map, name.to_string()))
}

/// Lines of a data-connection listing, which must all end in CRLF.
#[track_caller]
pub fn crlf_lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    assert!(
        text.ends_with("\r\n"),
        "listing does not end in CRLF: {text:?}"
    );
    let lines: Vec<&str> = text[..text.len() - 2].split("\r\n").collect();
    for l in &lines {
        assert!(
            !l.contains('\n') && !l.contains('\r'),
            "listing line with a bare LF or CR: {l:?}"
        );
    }
    lines
}

/// A run of `n` consecutive ports below the ephemeral range that are free right now (other
/// programs on the machine may hold passive ranges of their own), starting near `base`.
pub fn free_port_range(base: u16, n: u16) -> (u16, u16) {
    let start = base + (std::process::id() % 500) as u16 * 10;
    for lo in (start..30_000)
        .step_by(usize::from(n) + 1)
        .chain((base..start).step_by(usize::from(n) + 1))
    {
        let hi = lo + n - 1;
        let all_free = (lo..=hi).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return (lo, hi);
        }
    }
    panic!("no {n} free consecutive ports between {base} and 30000");
}

// ---------------------------------------------------------------------------------------------
// Named users and uploads

/// The password of every named test user.
pub const USER_PASSWORD: &str = "pw";

/// Prefix of the server's hidden temporary upload files (`.ringftpd-tmp.<random>.<name>`).
pub const TEMP_PREFIX: &str = ".ringftpd-tmp.";

/// The argon2 PHC string of [`USER_PASSWORD`], hashed once per test binary: argon2 takes tens of
/// milliseconds in a debug build, and every users file of a binary can share the one hash.
pub fn user_password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| ringftpd::auth::hash_password(USER_PASSWORD.as_bytes()))
}

/// One `[[user]]` table: `extra` holds its `access` / `download` / `upload` lines.
pub struct UserSpec<'a> {
    pub name: &'a str,
    pub root: &'a Path,
    pub extra: &'a str,
}

/// Write a users file at `path` granting `users`, each with the hash of [`USER_PASSWORD`].
pub fn write_users_file(path: &Path, users: &[UserSpec<'_>]) {
    let mut text = String::new();
    for u in users {
        // TOML literal strings ('...') take temporary paths and these names without escaping.
        text.push_str(&format!(
            "[[user]]\nname = '{}'\npassword = '{}'\nroot = '{}'\n{}\n\n",
            u.name,
            user_password_hash(),
            u.root.display(),
            u.extra
        ));
    }
    fs::write(path, text).expect("write the users file");
}

/// A server with named users. Each user's root is `homes/<name>`, outside the anonymous root
/// (`server.root`), so jail escapes would land somewhere the test can see.
pub struct UsersServer {
    // Declared first so it is dropped first: the server stops before the homes are removed.
    pub server: TestServer,
    pub homes: tempfile::TempDir,
}

/// Start a server whose users file grants `users`: (name, TOML lines such as
/// `access = "read-write"`). Every user gets a fresh empty root `homes/<name>`, mode 0755.
pub fn start_with_users(users: &[(&str, &str)], tweak: impl FnOnce(&mut Config)) -> UsersServer {
    let homes = tempfile::tempdir().expect("create the homes directory");
    let roots: Vec<PathBuf> = users
        .iter()
        .map(|(name, _)| {
            let p = homes.path().join(name);
            fs::create_dir(&p).expect("create a user's root");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            p
        })
        .collect();
    let specs: Vec<UserSpec<'_>> = users
        .iter()
        .zip(&roots)
        .map(|((name, extra), root)| UserSpec { name, root, extra })
        .collect();
    let file = homes.path().join("users.toml");
    write_users_file(&file, &specs);
    let server = start(|c| {
        c.users_file = Some(file);
        tweak(c);
    });
    UsersServer { server, homes }
}

impl UsersServer {
    /// The root directory of user `name`.
    pub fn home(&self, name: &str) -> PathBuf {
        self.homes.path().join(name)
    }

    /// A control connection logged in as the named user `name` (password [`USER_PASSWORD`]).
    pub fn login_as(&self, name: &str) -> Ctrl {
        let mut c = self.server.connect();
        c.login_as(name, USER_PASSWORD);
        c
    }
}

impl std::ops::Deref for UsersServer {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Ctrl {
    /// USER then PASS for a named user; the login must succeed (331, then 230).
    #[track_caller]
    pub fn login_as(&mut self, user: &str, password: &str) {
        self.expect(&format!("USER {user}"), 331);
        self.expect(&format!("PASS {password}"), 230);
    }

    /// Run an upload command (STOR/APPE/STOU ...) over a fresh EPSV connection, sending `bytes`
    /// and then closing the data connection. `Ok((preliminary text, final text))` after 150 ...
    /// 226; `Err((code, text))` for any other reply.
    pub fn upload(&mut self, line: &str, bytes: &[u8]) -> Result<(String, String), (u16, String)> {
        let addr = self.epsv();
        let data = data_connect(addr);
        self.upload_on(data, line, bytes)
    }

    /// Like [`Ctrl::upload`] on an already connected data socket.
    pub fn upload_on(
        &mut self,
        mut data: TcpStream,
        line: &str,
        bytes: &[u8],
    ) -> Result<(String, String), (u16, String)> {
        self.send_line(line.as_bytes());
        let (code, first) = self.read_reply();
        if code != 150 && code != 125 {
            return Err((code, first));
        }
        data.write_all(bytes)
            .unwrap_or_else(|e| panic!("{line:?}: sending {} bytes: {e}", bytes.len()));
        // Closing the data connection (RFC 959 stream mode) is what ends the file.
        drop(data);
        let (code, text) = self.read_reply();
        if code == 226 {
            Ok((first, text))
        } else {
            Err((code, text))
        }
    }

    /// An upload that must succeed; returns the final reply's text.
    #[track_caller]
    pub fn stor(&mut self, line: &str, bytes: &[u8]) -> String {
        self.upload(line, bytes)
            .unwrap_or_else(|(c, t)| panic!("{line:?} failed: {c} {t:?}"))
            .1
    }
}

/// Relative paths of every temporary upload file (name starting with [`TEMP_PREFIX`]) beneath
/// `dir`, at any depth.
pub fn temp_files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(TEMP_PREFIX.as_bytes())
            {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Wait until no temporary upload file is left beneath `dir`. The server removes the temporary
/// file of a failed upload on a helper thread, after it has replied, so this polls (with a
/// deadline of [`TIMEOUT`]) rather than checking once.
#[track_caller]
pub fn wait_no_temp_files(dir: &Path) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let left = temp_files_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "temporary upload files still present after {TIMEOUT:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `path` until its complete lines satisfy `done`, for at most [`TIMEOUT`].
pub fn wait_lines(path: &Path, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        // A line without its newline is still being written.
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        lines.pop();
        if done(&lines) {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} {}: expected lines not there after {TIMEOUT:?}; it holds:\n{text}",
            path.display()
        );
        // The log thread gives no signal to wait on; 10 ms steps keep the poll cheap and bounded.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Permission bits of `path` (lstat, so a symlink is not followed).
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
