//! FTP load generator: a raw blocking FTP client (RFC 959) driven by std threads, one per session.
//!
//! Run as `cargo bench --bench loadgen -- <mode> [options]`; `benches/README.md` explains each mode
//! and its numbers. Every run prints one JSON line (machine-readable, for `compare.sh`) and one
//! readable line. The client must never be the bottleneck: data is read with `read(2)` into a
//! 256 KiB buffer and dropped, with no per-byte work. It only ever talks to loopback addresses.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Receive/send buffer of one session: large enough that `read(2)` is never the per-byte cost.
const DATA_BUF_BYTES: usize = 256 * 1024;
/// A control line longer than this is a protocol error (ringftpd caps its own at 4096).
const MAX_REPLY_LINE_BYTES: usize = 64 * 1024;
/// A multi-line reply with more lines than this is a protocol error (FEAT/HELP are ~30 lines).
const MAX_REPLY_LINES: usize = 10_000;
/// Hard cap on loop iterations in the duration-bound modes, whatever the duration.
const MAX_LOOP_ITERATIONS: u64 = 10_000_000;
/// Stack of a session thread: sessions keep their buffers on the heap.
const THREAD_STACK_BYTES: usize = 256 * 1024;
/// Cap on the cold passes one background session of `cold` makes over its BIG file.
const MAX_COLD_PASSES: u64 = 1000;

/// `--scenario` and `--round`, added to every record when given.
static TAGS: std::sync::OnceLock<(String, u64)> = std::sync::OnceLock::new();

const USAGE: &str = "\
usage: cargo bench --bench loadgen -- <mode> [options]
modes:
  get   --sessions N --file PATH --repeat K           N sessions each RETR PATH K times
  many  --sessions N --files-glob DIR/PREFIX --count K N sessions x K RETRs of distinct files
  conn  --workers W --duration S --file PATH          connect+login+EPSV+RETR+QUIT loops for S seconds
  list  --dir D --count K [--mlsd|--nlst]             K sequential LIST (or MLSD, NLST) of D
  put   --sessions N --size BYTES [--dir D]           N concurrent STOR of BYTES each
  idle  --sessions K --pid PID [--tree]               K idle logged-in sessions; server RSS/PSS per session
  cold  --file BIG[,BIG2] --small PATH --count K --root LOCALDIR [--no-warm]
                                                      small-RETR latency alone, beside 2 cold BIG pulls,
                                                      then beside 2 warm pulls (control)
  pump  --sessions N --file LOCALPATH --repeat K       the loopback ceiling: blocking sendfile(2) of a
                                                      local file to N sockets, same sink as the FTP modes
  report --results FILE.jsonl [--a ringftpd --b vsftpd[,Y,...] --ceiling loopback[,iperf3]]
                                                      (with several --b labels, each metric is
                                                      compared with the best of them)
         [--servers X,Y,...]                          (one column per server, ratios to the first)
                                                      markdown table of medians per scenario
common: --addr 127.0.0.1:2121 --label NAME --user anonymous --pass bench@ --pasv (PASV, not EPSV)
        --timeout SECS (socket timeout, 60) --max-secs SECS (whole run, 900)
        --sink read|splice|trunc (how data is received: read(2) into a buffer, spliced to /dev/null,
                                  or discarded by the kernel with recv(MSG_TRUNC))
        --tls (explicit FTPS: AUTH TLS, PBSZ 0, PROT P; every data connection resumes the control
               connection's TLS session and is decrypted into the buffer; the certificate is not
               checked, which is only acceptable because the target is always loopback)";

// ---------------------------------------------------------------------------------------------
// Options

/// Flags that take no value.
const FLAGS: &[&str] = &[
    "mlsd", "pasv", "tree", "bench", "no-dele", "no-warm", "tls", "nlst",
];
/// Options that take a value.
const KEYS: &[&str] = &[
    "addr",
    "label",
    "user",
    "pass",
    "timeout",
    "max-secs",
    "sessions",
    "workers",
    "file",
    "files-glob",
    "repeat",
    "count",
    "duration",
    "dir",
    "size",
    "pid",
    "small",
    "root",
    "bg-sessions",
    "fg-sessions",
    "sample",
    "connect-threads",
    "settle-ms",
    "scenario",
    "round",
    "results",
    "a",
    "b",
    "ceiling",
    "sink",
    "servers",
];

struct Opts {
    mode: String,
    vals: HashMap<String, String>,
    flags: Vec<String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut mode = None;
        let mut vals = HashMap::new();
        let mut flags = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                let (key, inline) = match key.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (key, None),
                };
                if FLAGS.contains(&key) {
                    flags.push(key.to_string());
                } else if KEYS.contains(&key) {
                    let v = match inline {
                        Some(v) => v,
                        None => it.next().ok_or(format!("--{key} needs a value"))?.clone(),
                    };
                    vals.insert(key.to_string(), v);
                } else {
                    return Err(format!("unknown option --{key}"));
                }
            } else if mode.is_none() {
                mode = Some(a.clone());
            } else {
                return Err(format!("unexpected argument {a:?}"));
            }
        }
        Ok(Opts {
            mode: mode.unwrap_or_default(),
            vals,
            flags,
        })
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn str(&self, key: &str, default: &str) -> String {
        self.vals
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// A comma-separated list of labels (`--servers a,b`), empty entries dropped.
    fn labels(&self, key: &str, default: &str) -> Vec<String> {
        self.str(key, default)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn req(&self, key: &str) -> Result<String, String> {
        self.vals
            .get(key)
            .cloned()
            .ok_or(format!("{} needs --{key}", self.mode))
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.vals.get(key) {
            None => Ok(default),
            Some(v) => parse_num(v).ok_or(format!("--{key}: bad number {v:?}")),
        }
    }
}

/// Parse "123", "4K"/"4KiB", "1M"/"1MiB", "1G"/"1GiB" (binary multiples); plain for non-integers.
fn parse_num<T: std::str::FromStr>(v: &str) -> Option<T> {
    if let Ok(n) = v.parse() {
        return Some(n);
    }
    let v = v.trim_end_matches("iB").trim_end_matches('B');
    let (digits, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    (n << shift).to_string().parse().ok()
}

/// Settings every session shares.
#[derive(Clone)]
struct Cfg {
    addr: SocketAddr,
    user: String,
    pass: String,
    pasv: bool,
    timeout: Duration,
    deadline: Instant,
    /// `--tls`: explicit FTPS (each session gets a client configuration of its own, see
    /// `tls::client_config`).
    tls: bool,
}

impl Cfg {
    fn from_opts(o: &Opts) -> Result<Cfg, String> {
        let addr_s = o.str("addr", "127.0.0.1:2121");
        let addr: SocketAddr = addr_s
            .parse()
            .map_err(|_| format!("--addr {addr_s:?} is not IP:PORT"))?;
        // This tool loads a server hard; it must never be pointed at another machine.
        if !is_local(addr.ip()) {
            return Err(format!(
                "--addr {addr}: only 127.0.0.1 and ::1 may be targeted"
            ));
        }
        let max_secs: u64 = o.num("max-secs", 900)?;
        Ok(Cfg {
            addr,
            user: o.str("user", "anonymous"),
            pass: o.str("pass", "bench@"),
            pasv: o.flag("pasv"),
            timeout: Duration::from_secs(o.num("timeout", 60)?),
            deadline: Instant::now() + Duration::from_secs(max_secs),
            tls: o.flag("tls"),
        })
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

fn is_local(ip: IpAddr) -> bool {
    ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
}

// ---------------------------------------------------------------------------------------------
// A raw FTP client

#[derive(Debug)]
enum FtpError {
    Io(&'static str, io::Error),
    /// The server answered `cmd` with an unexpected (usually 4yz/5yz) reply.
    Reply {
        cmd: String,
        code: u16,
        text: String,
    },
    Proto(String),
}

impl fmt::Display for FtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FtpError::Io(what, e) => write!(f, "{what}: {e}"),
            FtpError::Reply { cmd, code, text } => write!(f, "{cmd} -> {code} {text}"),
            FtpError::Proto(s) => write!(f, "protocol: {s}"),
        }
    }
}

impl FtpError {
    /// A permanent refusal of the verb itself or of writing (502 not implemented, 550/553 denied,
    /// 500 unknown, 532 need account): what a read-only server answers to STOR.
    fn is_refusal(&self) -> bool {
        matches!(self, FtpError::Reply { code, .. } if matches!(code, 500 | 502 | 504 | 530 | 532 | 550 | 553))
    }
}

type FtpResult<T> = Result<T, FtpError>;

struct Reply {
    code: u16,
    /// The first line's text (after "CODE-" or "CODE ").
    text: String,
}

struct Ftp {
    ctrl: Ctrl,
    /// Control bytes received but not yet consumed as lines.
    rbuf: Vec<u8>,
    peer: SocketAddr,
    pasv: bool,
    timeout: Duration,
    /// After AUTH TLS: the configuration data connections use (PROT P).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The control connection: in clear, or through rustls after AUTH TLS.
enum Ctrl {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Ctrl {
    fn sock(&self) -> &TcpStream {
        match self {
            Ctrl::Plain(s) => s,
            Ctrl::Tls(t) => &t.sock,
        }
    }
}

impl Read for Ctrl {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Ctrl::Plain(s) => s.read(buf),
            Ctrl::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Ctrl {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Ctrl::Plain(s) => s.write(buf),
            Ctrl::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Ctrl::Plain(s) => s.flush(),
            Ctrl::Tls(t) => t.flush(),
        }
    }
}

impl Ftp {
    /// Connect and read the greeting (120 "ready in nnn minutes" may precede 220, RFC 959 4.2).
    fn connect(cfg: &Cfg) -> FtpResult<Ftp> {
        let ctrl = TcpStream::connect_timeout(&cfg.addr, cfg.timeout)
            .map_err(|e| FtpError::Io("connect", e))?;
        ctrl.set_nodelay(true)
            .map_err(|e| FtpError::Io("nodelay", e))?;
        set_timeouts(&ctrl, cfg.timeout)?;
        let mut ftp = Ftp {
            ctrl: Ctrl::Plain(ctrl),
            rbuf: Vec::with_capacity(512),
            peer: cfg.addr,
            pasv: cfg.pasv,
            timeout: cfg.timeout,
            tls: None,
        };
        for _ in 0..3 {
            let r = ftp.read_reply()?;
            match r.code {
                220 => return Ok(ftp),
                120 => continue,
                _ => return Err(reply_err("greeting", r)),
            }
        }
        Err(FtpError::Proto("no 220 greeting".into()))
    }

    /// Connect, (with `--tls`: AUTH TLS,) USER/PASS, (PBSZ 0, PROT P,) TYPE I.
    fn login(cfg: &Cfg) -> FtpResult<Ftp> {
        let mut ftp = Ftp::connect(cfg)?;
        if cfg.tls {
            ftp = ftp.start_tls(&tls::client_config())?;
        }
        let r = ftp.cmd(&format!("USER {}", cfg.user))?;
        match r.code {
            230 => {}
            331 => {
                let r = ftp.cmd(&format!("PASS {}", cfg.pass))?;
                if r.code != 230 && r.code != 202 {
                    return Err(reply_err("PASS", r));
                }
            }
            _ => return Err(reply_err("USER", r)),
        }
        if ftp.tls.is_some() {
            ftp.expect("PBSZ 0", &[200])?;
            ftp.expect("PROT P", &[200])?;
        }
        ftp.expect("TYPE I", &[200])?;
        Ok(ftp)
    }

    /// AUTH TLS and the control connection's handshake.
    fn start_tls(mut self, config: &Arc<rustls::ClientConfig>) -> FtpResult<Ftp> {
        self.expect("AUTH TLS", &[234])?;
        if !self.rbuf.is_empty() {
            return Err(FtpError::Proto(
                "bytes after the 234, before the handshake".into(),
            ));
        }
        let Ftp {
            ctrl,
            rbuf,
            peer,
            pasv,
            timeout,
            ..
        } = self;
        let Ctrl::Plain(sock) = ctrl else {
            return Err(FtpError::Proto("AUTH TLS twice".into()));
        };
        let tls = tls::handshake(config, sock).map_err(|e| FtpError::Io("control handshake", e))?;
        Ok(Ftp {
            ctrl: Ctrl::Tls(Box::new(tls)),
            rbuf,
            peer,
            pasv,
            timeout,
            tls: Some(Arc::clone(config)),
        })
    }

    /// One CRLF- (or LF-) terminated control line, without its terminator.
    fn read_line(&mut self) -> FtpResult<String> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.rbuf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let mut line: Vec<u8> = self.rbuf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            scanned = self.rbuf.len();
            if scanned > MAX_REPLY_LINE_BYTES {
                return Err(FtpError::Proto("reply line too long".into()));
            }
            let mut tmp = [0u8; 1024];
            let n = match self.ctrl.read(&mut tmp) {
                Ok(n) => n,
                // A TLS peer that closes without close_notify: the end of the stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(FtpError::Io("control read", e)),
            };
            if n == 0 {
                return Err(FtpError::Proto("control connection closed".into()));
            }
            self.rbuf.extend_from_slice(&tmp[..n]);
        }
    }

    /// One reply. RFC 959 4.2: a multi-line reply starts "xyz-" and ends at the first line that
    /// starts with the same "xyz" followed by a space; lines in between are free text.
    fn read_reply(&mut self) -> FtpResult<Reply> {
        let first = self.read_line()?;
        let b = first.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
            return Err(FtpError::Proto(format!("bad reply line {first:?}")));
        }
        let code: u16 = first[..3].parse().unwrap_or(0);
        let text = first.get(4..).unwrap_or("").to_string();
        if b.get(3) == Some(&b'-') {
            let end = format!("{} ", &first[..3]);
            for _ in 0..MAX_REPLY_LINES {
                let line = self.read_line()?;
                if line.starts_with(&end) || line == end.trim_end() {
                    return Ok(Reply { code, text });
                }
            }
            return Err(FtpError::Proto("multi-line reply too long".into()));
        }
        Ok(Reply { code, text })
    }

    fn send(&mut self, line: &str) -> FtpResult<()> {
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        self.ctrl
            .write_all(&buf)
            .and_then(|_| self.ctrl.flush())
            .map_err(|e| FtpError::Io("control write", e))
    }

    fn cmd(&mut self, line: &str) -> FtpResult<Reply> {
        self.send(line)?;
        self.read_reply()
    }

    fn expect(&mut self, line: &str, ok: &[u16]) -> FtpResult<Reply> {
        let r = self.cmd(line)?;
        if ok.contains(&r.code) {
            Ok(r)
        } else {
            Err(reply_err(verb(line), r))
        }
    }

    /// EPSV (RFC 2428) or PASV, then connect. The data connection always goes to the control
    /// peer's IP whatever PASV names (so a misconfigured server can't send us elsewhere).
    fn open_data(&mut self) -> FtpResult<TcpStream> {
        let port = if self.pasv {
            let r = self.expect("PASV", &[227])?;
            parse_pasv(&r.text).ok_or_else(|| FtpError::Proto(format!("bad 227: {}", r.text)))?
        } else {
            let r = self.expect("EPSV", &[229])?;
            parse_epsv(&r.text).ok_or_else(|| FtpError::Proto(format!("bad 229: {}", r.text)))?
        };
        let addr = SocketAddr::new(self.peer.ip(), port);
        let s = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| FtpError::Io("data connect", e))?;
        set_timeouts(&s, self.timeout)?;
        Ok(s)
    }

    /// Send a transfer verb on an open data connection; expect a 1yz preliminary reply.
    fn start_transfer(&mut self, line: &str) -> FtpResult<()> {
        let r = self.cmd(line)?;
        if r.code / 100 == 1 {
            Ok(())
        } else {
            Err(reply_err(verb(line), r))
        }
    }

    /// After the data side is done: the 2yz completion (226 or 250).
    fn finish_transfer(&mut self, what: &str) -> FtpResult<()> {
        let r = self.read_reply()?;
        if r.code == 226 || r.code == 250 {
            Ok(())
        } else {
            Err(reply_err(what, r))
        }
    }

    /// RETR `path` (from `rest` if given) into `sink`; returns the bytes received.
    fn retr(&mut self, path: &str, rest: Option<u64>, sink: &mut [u8]) -> FtpResult<u64> {
        if let Some(off) = rest {
            self.expect(&format!("REST {off}"), &[350])?;
        }
        let mut data = self.open_data()?;
        self.start_transfer(&format!("RETR {path}"))?;
        let n = match &self.tls {
            None => {
                let n = drain(&mut data, sink)?;
                // Closed at EOF, before the 226 is read, as curl and lftp do: proftpd half-closes
                // and then waits (TimeoutLinger, 10 s) for the client's close before its 226.
                drop(data);
                n
            }
            Some(config) => tls::drain(config, data, sink)?,
        };
        self.finish_transfer("RETR")?;
        Ok(n)
    }

    /// LIST/NLST/MLSD `path`; returns (bytes, lines) of the listing (lines kept only for NLST).
    fn listing(
        &mut self,
        verb: &str,
        path: &str,
        sink: &mut [u8],
        keep: bool,
    ) -> FtpResult<(u64, u64, Vec<u8>)> {
        self.clear_data_only(verb)?;
        let mut data = self.open_data()?;
        self.start_transfer(&format!("{verb} {path}"))?;
        let mut bytes = 0u64;
        let mut lines = 0u64;
        let mut kept = Vec::new();
        loop {
            let n = match data.read(sink) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FtpError::Io("data read", e)),
            };
            bytes += n as u64;
            lines += sink[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            if keep {
                kept.extend_from_slice(&sink[..n]);
            }
        }
        drop(data);
        self.finish_transfer(verb)?;
        Ok((bytes, lines, kept))
    }

    /// STOR `size` bytes of `src` (repeated) to `path`.
    fn stor(&mut self, path: &str, size: u64, src: &[u8]) -> FtpResult<u64> {
        self.clear_data_only("STOR")?;
        let mut data = self.open_data()?;
        self.start_transfer(&format!("STOR {path}"))?;
        let mut left = size;
        while left > 0 {
            let n = left.min(src.len() as u64) as usize;
            data.write_all(&src[..n])
                .map_err(|e| FtpError::Io("data write", e))?;
            left -= n as u64;
        }
        // FIN tells the server the file is complete; it replies 226 after it has closed its side.
        let _ = data.shutdown(Shutdown::Write);
        drop(data);
        self.finish_transfer("STOR")?;
        Ok(size)
    }

    /// `--tls` covers downloads (RETR) only.
    fn clear_data_only(&self, verb: &str) -> FtpResult<()> {
        match self.tls {
            None => Ok(()),
            Some(_) => Err(FtpError::Proto(format!(
                "--tls: {verb} is not supported, only RETR"
            ))),
        }
    }

    /// SIZE (RFC 3659) in TYPE I.
    fn size(&mut self, path: &str) -> FtpResult<u64> {
        let r = self.expect(&format!("SIZE {path}"), &[213])?;
        r.text
            .trim()
            .parse()
            .map_err(|_| FtpError::Proto(format!("bad 213: {}", r.text)))
    }

    /// QUIT, then wait for the server to close first, so TIME_WAIT lands on the server side
    /// and a long `conn` run does not exhaust this side's ephemeral ports.
    fn quit(mut self) {
        if self.cmd("QUIT").is_err() {
            return;
        }
        let _ = self
            .ctrl
            .sock()
            .set_read_timeout(Some(Duration::from_secs(2)));
        let mut tmp = [0u8; 256];
        for _ in 0..64 {
            match self.ctrl.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

fn set_timeouts(s: &TcpStream, t: Duration) -> FtpResult<()> {
    s.set_read_timeout(Some(t))
        .and_then(|_| s.set_write_timeout(Some(t)))
        .map_err(|e| FtpError::Io("socket timeout", e))
}

fn verb(line: &str) -> &str {
    line.split(' ').next().unwrap_or(line)
}

fn reply_err(cmd: &str, r: Reply) -> FtpError {
    FtpError::Reply {
        cmd: cmd.to_string(),
        code: r.code,
        text: r.text,
    }
}

/// How `drain` disposes of data: `--sink read` (the default), `splice` or `trunc`; see `Sink`.
static SINK: std::sync::OnceLock<Sink> = std::sync::OnceLock::new();

/// The receive side of every transfer. `Read` is what curl does: `read(2)` into a 256 KiB buffer, a
/// kernel-to-user copy of every byte. `Splice` moves the socket's pages into a pipe and on to
/// `/dev/null` without copying, so on a 2-core box the client does not eat the CPU the server needs.
/// `Trunc` is `recv(MSG_TRUNC)`: on TCP the kernel frees the received bytes without copying them
/// anywhere, one syscall per call and no pipe, the cheapest receiver there is, so the server's own
/// cost per byte decides the rate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sink {
    Read,
    Splice,
    Trunc,
}

/// The `--sink` of this run, for the records.
fn sink_name() -> &'static str {
    match SINK.get() {
        Some(Sink::Splice) => "splice",
        Some(Sink::Trunc) => "trunc",
        _ => "read",
    }
}

/// A thread's pipe (read end, write end) and `/dev/null` for `Sink::Splice`.
type SplicePipe = (std::os::fd::OwnedFd, std::os::fd::OwnedFd, std::fs::File);

thread_local! {
    /// This thread's pipe and `/dev/null` for `Sink::Splice`, made on first use.
    static SPLICE_PIPE: std::cell::OnceCell<Option<SplicePipe>> = const { std::cell::OnceCell::new() };
}

/// Pipe capacity asked for with `F_SETPIPE_SZ` (the default 64 KiB is capped by `pipe-max-size`).
const SINK_PIPE_BYTES: usize = 1 << 20;

fn splice_pipe() -> Option<SplicePipe> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
    // Failure leaves the default size.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(SINK_PIPE_BYTES as i32));
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .ok()?;
    Some((r, w, null))
}

/// Splice everything from `data` to `/dev/null`; `None` if this thread has no pipe (then read).
fn drain_splice(data: &mut TcpStream) -> Option<FtpResult<u64>> {
    use nix::errno::Errno;
    use nix::fcntl::{SpliceFFlags, splice};
    SPLICE_PIPE.with(|cell| {
        let (r, w, null) = cell.get_or_init(splice_pipe).as_ref()?;
        let mut total = 0u64;
        loop {
            let n = match splice(
                &*data,
                None,
                w,
                None,
                SINK_PIPE_BYTES,
                SpliceFFlags::SPLICE_F_MOVE,
            ) {
                Ok(0) => return Some(Ok(total)),
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Some(Err(FtpError::Io("data splice", e.into()))),
            };
            total += n as u64;
            let mut left = n;
            while left > 0 {
                match splice(r, None, null, None, left, SpliceFFlags::SPLICE_F_MOVE) {
                    Ok(0) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        return Some(Err(FtpError::Io("pipe drain", e)));
                    }
                    Ok(m) => left -= m,
                    Err(Errno::EINTR) => {}
                    Err(e) => return Some(Err(FtpError::Io("pipe drain", e.into()))),
                }
            }
        }
    })
}

/// Receive to EOF with `recv(MSG_TRUNC)`: the kernel discards the bytes (TCP never writes `buf`,
/// whose length is only how much one call may take) and returns how many there were.
fn drain_trunc(data: &TcpStream, buf: &mut [u8]) -> FtpResult<u64> {
    use nix::errno::Errno;
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut total = 0u64;
    loop {
        match recv(data.as_raw_fd(), buf, MsgFlags::MSG_TRUNC) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(FtpError::Io("data recv", e.into())),
        }
    }
}

/// Read to EOF, keeping only the count: through `/dev/null` with `--sink splice`, discarded in the
/// kernel with `--sink trunc`, else into `sink`.
fn drain(data: &mut TcpStream, sink: &mut [u8]) -> FtpResult<u64> {
    match SINK.get() {
        Some(Sink::Splice) => {
            if let Some(r) = drain_splice(data) {
                return r;
            }
        }
        Some(Sink::Trunc) => return drain_trunc(data, sink),
        _ => {}
    }
    let mut total = 0u64;
    loop {
        match data.read(sink) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FtpError::Io("data read", e)),
        }
    }
}

/// "Entering Extended Passive Mode (|||6446|)" -> 6446 (RFC 2428 section 3; any delimiter).
fn parse_epsv(text: &str) -> Option<u16> {
    let inner = &text[text.find('(')? + 1..text.rfind(')')?];
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    if parts.len() != 5 {
        return None;
    }
    parts[3].parse().ok()
}

/// "Entering Passive Mode (127,0,0,1,156,64)" -> 40000 (RFC 959 4.1.2; parentheses optional).
fn parse_pasv(text: &str) -> Option<u16> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u16> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    if nums.len() != 6 || nums[4] > 255 || nums[5] > 255 {
        return None;
    }
    Some(nums[4] * 256 + nums[5])
}

/// `--tls`: explicit FTPS with rustls (ring), TLS 1.2 and 1.3.
mod tls {
    use std::io::{self, Read};
    use std::net::TcpStream;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{
        ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned,
    };

    use super::{FtpError, FtpResult};

    /// Accepts any certificate (the benchmark servers use self-signed ones); signatures are still
    /// checked, so the handshake costs what a verifying client's does minus the chain walk.
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// One configuration per FTP session, as each client process has: its session cache is shared
    /// by the control connection and its data connections, so a data connection resumes the
    /// control connection's session (what servers that require reuse, vsftpd's
    /// `require_ssl_reuse` and ringftpd's `tls_require_reuse`, ask for). Sessions sharing one
    /// cache would resume each other's sessions, which both servers rightly refuse.
    pub fn client_config() -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A finished client handshake on `sock`.
    pub fn handshake(
        config: &Arc<ClientConfig>,
        mut sock: TcpStream,
    ) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
        let name = ServerName::try_from("localhost").expect("a valid name");
        let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(StreamOwned::new(conn, sock))
    }

    /// Decrypt a protected download into `sink` until the server's close_notify; the count of
    /// plaintext bytes. A data connection that ends without close_notify is an error.
    pub fn drain(config: &Arc<ClientConfig>, sock: TcpStream, sink: &mut [u8]) -> FtpResult<u64> {
        let mut tls = handshake(config, sock).map_err(|e| FtpError::Io("data handshake", e))?;
        let mut total = 0u64;
        loop {
            match tls.read(sink) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FtpError::Io("data read (TLS)", e)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results

enum Val {
    F(f64),
    I(u64),
    S(String),
    B(bool),
    Null,
}

/// One result record, printed as a JSON line (hand-written to stay std-only).
struct Record {
    fields: Vec<(&'static str, Val)>,
}

impl Record {
    fn new(mode: &str, label: &str) -> Record {
        let mut fields = vec![
            ("mode", Val::S(mode.into())),
            ("server", Val::S(label.into())),
        ];
        // `--scenario`/`--round` tag the record so `report` can group runs.
        if let Some((scenario, round)) = TAGS.get() {
            fields.push(("scenario", Val::S(scenario.clone())));
            fields.push(("round", Val::I(*round)));
        }
        Record { fields }
    }
    fn f(&mut self, k: &'static str, v: f64) -> &mut Self {
        self.fields
            .push((k, if v.is_finite() { Val::F(v) } else { Val::Null }));
        self
    }
    fn i(&mut self, k: &'static str, v: u64) -> &mut Self {
        self.fields.push((k, Val::I(v)));
        self
    }
    fn s(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.fields.push((k, Val::S(v.into())));
        self
    }
    fn b(&mut self, k: &'static str, v: bool) -> &mut Self {
        self.fields.push((k, Val::B(v)));
        self
    }
    fn null(&mut self, k: &'static str) -> &mut Self {
        self.fields.push((k, Val::Null));
        self
    }
    fn json(&self) -> String {
        let mut s = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"{k}\":"));
            match v {
                Val::F(x) => s.push_str(&format!("{x:.6}")),
                Val::I(x) => s.push_str(&x.to_string()),
                Val::B(x) => s.push_str(&x.to_string()),
                Val::Null => s.push_str("null"),
                Val::S(x) => {
                    s.push('"');
                    for c in x.chars() {
                        match c {
                            '"' => s.push_str("\\\""),
                            '\\' => s.push_str("\\\\"),
                            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                            c => s.push(c),
                        }
                    }
                    s.push('"');
                }
            }
        }
        s.push('}');
        s
    }
}

/// Print the JSON line, then the readable line.
fn emit(rec: &Record, human: String) {
    println!("{}", rec.json());
    println!("{human}");
}

/// Nearest-rank percentile of an ascending slice; NaN when empty.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Errors are counted, and the first few printed to stderr (never one per transfer in a flood).
struct ErrLog {
    count: u64,
    shown: Vec<String>,
}

impl ErrLog {
    fn new() -> ErrLog {
        ErrLog {
            count: 0,
            shown: Vec::new(),
        }
    }
    fn add(&mut self, what: &str, e: &FtpError) {
        self.count += 1;
        if self.shown.len() < 5 {
            self.shown.push(format!("{what}: {e}"));
        }
    }
    fn merge(&mut self, other: ErrLog) {
        self.count += other.count;
        for s in other.shown {
            if self.shown.len() < 5 {
                self.shown.push(s);
            }
        }
    }
    fn report(&self) {
        for s in &self.shown {
            eprintln!("loadgen: error: {s}");
        }
        if self.count as usize > self.shown.len() {
            eprintln!("loadgen: ... {} errors in all", self.count);
        }
    }
}

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(name)
        .stack_size(THREAD_STACK_BYTES)
        .spawn(f)
        .expect("spawn session thread")
}

// ---------------------------------------------------------------------------------------------
// Modes

/// What one session thread of `get`/`many`/`put` reports.
struct SessionResult {
    bytes: u64,
    transfers: u64,
    secs: f64,
    errors: ErrLog,
}

/// Run `n` sessions: each logs in, all start together at a barrier, each runs `work`.
/// Returns the wall time from the barrier to the last session's end, and each session's result.
fn run_sessions<F>(cfg: &Cfg, n: usize, work: F) -> (f64, Vec<SessionResult>)
where
    F: Fn(usize, &mut Ftp, &mut [u8], &mut ErrLog) -> (u64, u64) + Send + Sync + 'static,
{
    let barrier = Arc::new(Barrier::new(n + 1));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..n)
        .map(|s| {
            let (cfg, barrier, work) = (cfg.clone(), barrier.clone(), work.clone());
            spawn(format!("session{s}"), move || {
                let mut errors = ErrLog::new();
                let ftp = Ftp::login(&cfg);
                // Everyone reaches the barrier, logged in or not, so a failure cannot hang the run.
                barrier.wait();
                let mut ftp = match ftp {
                    Ok(f) => f,
                    Err(e) => {
                        errors.add("login", &e);
                        return SessionResult {
                            bytes: 0,
                            transfers: 0,
                            secs: 0.0,
                            errors,
                        };
                    }
                };
                let mut sink = vec![0u8; DATA_BUF_BYTES];
                let t0 = Instant::now();
                let (bytes, transfers) = work(s, &mut ftp, &mut sink, &mut errors);
                let secs = t0.elapsed().as_secs_f64();
                ftp.quit();
                SessionResult {
                    bytes,
                    transfers,
                    secs,
                    errors,
                }
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    let mut results = Vec::with_capacity(n);
    for h in handles {
        results.push(h.join().expect("session thread panicked"));
    }
    (t0.elapsed().as_secs_f64(), results)
}

fn mode_get(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let n: usize = o.num("sessions", 4)?;
    let k: u64 = o.num("repeat", 1)?;
    let file = o.req("file")?;
    let expect = {
        let mut f = Ftp::login(cfg).map_err(|e| format!("probe login: {e}"))?;
        let s = f.size(&file).ok();
        f.quit();
        s
    };
    let (wall, results) = {
        let (file, cfg2) = (file.clone(), cfg.clone());
        run_sessions(cfg, n, move |_, ftp, sink, errs| {
            let (mut bytes, mut done) = (0, 0);
            for _ in 0..k {
                if cfg2.expired() {
                    break;
                }
                match ftp.retr(&file, None, sink) {
                    Ok(b) => {
                        bytes += b;
                        if expect.is_some_and(|e| e != b) {
                            errs.add(
                                "RETR",
                                &FtpError::Proto(format!("got {b} bytes, SIZE said {expect:?}")),
                            );
                        } else {
                            done += 1;
                        }
                    }
                    Err(e) => {
                        errs.add("RETR", &e);
                        // A failed transfer may leave the control stream out of step: stop.
                        break;
                    }
                }
            }
            (bytes, done)
        })
    };
    let mut errors = ErrLog::new();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let transfers: u64 = results.iter().map(|r| r.transfers).sum();
    let per = sorted(
        results
            .iter()
            .map(|r| r.bytes as f64 / r.secs.max(1e-9) / 1e6)
            .collect(),
    );
    for r in results {
        errors.merge(r.errors);
    }
    errors.report();
    let gbps = bytes as f64 / wall / 1e9;
    let mut rec = Record::new("get", label);
    // Under --tls every byte is decrypted into the buffer, whatever --sink says.
    rec.s("sink", if cfg.tls { "tls" } else { sink_name() })
        .i("sessions", n as u64)
        .i("repeat", k)
        .s("file", &file)
        .i("file_bytes", expect.unwrap_or(0))
        .i("bytes", bytes)
        .i("transfers", transfers)
        .f("secs", wall)
        .f("gbps", gbps)
        .f("session_mbps_min", pct(&per, 0.0))
        .f("session_mbps_p50", pct(&per, 50.0))
        .f("session_mbps_max", pct(&per, 100.0))
        .i("errors", errors.count);
    emit(
        &rec,
        format!(
            "get [{label}] {n} sessions x {k} RETR {file}: {:.2} GB in {wall:.2} s = {gbps:.3} GB/s; \
             per session MB/s min/p50/max {:.0}/{:.0}/{:.0}; errors {}",
            bytes as f64 / 1e9,
            pct(&per, 0.0),
            pct(&per, 50.0),
            pct(&per, 100.0),
            errors.count
        ),
    );
    Ok(errors.count)
}

/// Split "dir/prefix" into ("dir", "prefix"); a bare prefix lists the current directory.
/// `pump`: the loopback ceiling of a download. A plain blocking `sendfile(2)` of a local file, `--repeat`
/// times per connection, to `--sessions` loopback sockets, received by the same sink as the FTP modes.
/// No FTP: this is what the kernel does with the fewest possible system calls on the sending side.
fn mode_pump(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let n: usize = o.num("sessions", 1)?;
    let k: u64 = o.num("repeat", 1)?;
    let path = std::path::PathBuf::from(o.req("file")?);
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let barrier = Arc::new(Barrier::new(2 * n + 1));
    let senders: Vec<_> = (0..n)
        .map(|s| {
            let listener = listener.try_clone().expect("clone listener");
            let (path, barrier) = (path.clone(), barrier.clone());
            spawn(format!("pump{s}"), move || -> Result<(), String> {
                let accepted = listener.accept().map(|(c, _)| c);
                barrier.wait();
                let sock = accepted.map_err(|e| format!("accept: {e}"))?;
                let file = std::fs::File::open(&path).map_err(|e| format!("open: {e}"))?;
                for _ in 0..k {
                    let mut off: libc::off_t = 0;
                    while (off as u64) < len {
                        let want = (len - off as u64).min(1 << 30) as usize;
                        match nix::sys::sendfile::sendfile(&sock, &file, Some(&mut off), want) {
                            Ok(0) => return Err("sendfile: file shrank".into()),
                            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                            Err(e) => return Err(format!("sendfile: {e}")),
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    let receivers: Vec<_> = (0..n)
        .map(|s| {
            let (barrier, timeout) = (barrier.clone(), cfg.timeout);
            spawn(format!("session{s}"), move || {
                let conn = TcpStream::connect(addr);
                barrier.wait();
                let mut errors = ErrLog::new();
                let t0 = Instant::now();
                let mut sink = vec![0u8; DATA_BUF_BYTES];
                let bytes = match conn {
                    Ok(mut c) => {
                        let _ = c.set_read_timeout(Some(timeout));
                        match drain(&mut c, &mut sink) {
                            Ok(b) => b,
                            Err(e) => {
                                errors.add("drain", &e);
                                0
                            }
                        }
                    }
                    Err(e) => {
                        errors.add("connect", &FtpError::Io("connect", e));
                        0
                    }
                };
                if bytes != k * len {
                    let e = FtpError::Proto(format!("{bytes} bytes, expected {}", k * len));
                    errors.add("length", &e);
                }
                SessionResult {
                    bytes,
                    transfers: k,
                    secs: t0.elapsed().as_secs_f64(),
                    errors,
                }
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    let results: Vec<SessionResult> = receivers
        .into_iter()
        .map(|h| h.join().expect("receiver thread panicked"))
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    let mut errs = ErrLog::new();
    for h in senders {
        if let Err(e) = h.join().expect("pump thread panicked") {
            errs.add("pump", &FtpError::Proto(e));
        }
    }
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    for r in results {
        errs.merge(r.errors);
    }
    errs.report();
    let gbps = bytes as f64 / wall / 1e9;
    let mut rec = Record::new("pump", label);
    rec.i("sessions", n as u64)
        .i("repeat", k)
        .i("bytes", bytes)
        .f("secs", wall)
        .f("gbps", gbps)
        .s("sink", sink_name())
        .i("errors", errs.count);
    emit(
        &rec,
        format!(
            "pump [{label}] {n} x {k} sendfile of {}: {:.2} GB in {wall:.2} s = {gbps:.3} GB/s; errors {}",
            path.display(),
            bytes as f64 / 1e9,
            errs.count
        ),
    );
    Ok(errs.count)
}

fn split_glob(g: &str) -> (String, String) {
    let g = g.trim_end_matches('*');
    match g.rsplit_once('/') {
        Some((d, p)) => (if d.is_empty() { "/".into() } else { d.into() }, p.into()),
        None => (String::new(), g.into()),
    }
}

fn mode_many(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let n: usize = o.num("sessions", 4)?;
    let k: u64 = o.num("count", 100)?;
    let glob = o.req("files-glob")?;
    let (dir, prefix) = split_glob(&glob);
    // NLST once to find the files (servers differ in whether names carry the directory).
    let files: Vec<String> = {
        let mut f = Ftp::login(cfg).map_err(|e| format!("probe login: {e}"))?;
        let mut sink = vec![0u8; DATA_BUF_BYTES];
        let (_, _, raw) = f
            .listing("NLST", &dir, &mut sink, true)
            .map_err(|e| format!("NLST {dir}: {e}"))?;
        f.quit();
        let mut v: Vec<String> = String::from_utf8_lossy(&raw)
            .lines()
            .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
            .filter(|b| b.starts_with(&prefix))
            .map(|b| {
                if dir.is_empty() {
                    b
                } else {
                    format!("{}/{b}", dir.trim_end_matches('/'))
                }
            })
            .collect();
        v.sort();
        v
    };
    if files.is_empty() {
        return Err(format!("no files match {glob:?}"));
    }
    let nfiles = files.len();
    let files = Arc::new(files);
    let (wall, results) = {
        let (files, cfg2) = (files.clone(), cfg.clone());
        run_sessions(cfg, n, move |s, ftp, sink, errs| {
            let (mut bytes, mut done) = (0, 0);
            for i in 0..k {
                if cfg2.expired() {
                    break;
                }
                let path = &files[((s as u64 * k + i) % files.len() as u64) as usize];
                match ftp.retr(path, None, sink) {
                    Ok(b) => {
                        bytes += b;
                        done += 1;
                    }
                    Err(e) => {
                        errs.add("RETR", &e);
                        break;
                    }
                }
            }
            (bytes, done)
        })
    };
    let mut errors = ErrLog::new();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let transfers: u64 = results.iter().map(|r| r.transfers).sum();
    for r in results {
        errors.merge(r.errors);
    }
    errors.report();
    let fps = transfers as f64 / wall;
    let gbps = bytes as f64 / wall / 1e9;
    let mut rec = Record::new("many", label);
    rec.i("sessions", n as u64)
        .i("count", k)
        .i("distinct_files", nfiles as u64)
        .i("transfers", transfers)
        .i("bytes", bytes)
        .f("secs", wall)
        .f("files_per_s", fps)
        .f("gbps", gbps)
        .i("errors", errors.count);
    emit(
        &rec,
        format!(
            "many [{label}] {n} sessions x {k} RETR of {nfiles} files {glob}: {transfers} files in {wall:.2} s = \
             {fps:.0} files/s, {gbps:.3} GB/s; errors {}",
            errors.count
        ),
    );
    Ok(errors.count)
}

fn mode_conn(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let w: usize = o.num("workers", 4)?;
    let secs: f64 = o.num("duration", 5.0)?;
    let file = o.req("file")?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..w)
        .map(|i| {
            let (cfg, file) = (cfg.clone(), file.clone());
            spawn(format!("conn{i}"), move || {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut errs = ErrLog::new();
                let mut sink = vec![0u8; 64 * 1024];
                for _ in 0..MAX_LOOP_ITERATIONS {
                    let now = Instant::now();
                    if now >= end || cfg.expired() {
                        break;
                    }
                    let r = Ftp::login(&cfg).and_then(|mut f| {
                        f.retr(&file, None, &mut sink)?;
                        f.quit();
                        Ok(())
                    });
                    match r {
                        Ok(()) => lat.push(now.elapsed().as_secs_f64() * 1e3),
                        Err(e) => {
                            errs.add("session", &e);
                            // Don't spin on a refusing server.
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                (lat, errs)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = ErrLog::new();
    for h in handles {
        let (l, e) = h.join().expect("conn worker panicked");
        lat.extend(l);
        errors.merge(e);
    }
    let wall = t0.elapsed().as_secs_f64();
    errors.report();
    let lat = sorted(lat);
    let sps = lat.len() as f64 / wall;
    let mut rec = Record::new("conn", label);
    rec.i("workers", w as u64)
        .f("duration", wall)
        .s("file", &file)
        .i("sessions", lat.len() as u64)
        .f("sessions_per_s", sps)
        .f("p50_ms", pct(&lat, 50.0))
        .f("p99_ms", pct(&lat, 99.0))
        .i("errors", errors.count);
    emit(
        &rec,
        format!(
            "conn [{label}] {w} workers, {wall:.1} s: {} sessions = {sps:.0} sessions/s; \
             session latency p50 {:.2} ms p99 {:.2} ms; errors {}",
            lat.len(),
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            errors.count
        ),
    );
    Ok(errors.count)
}

fn mode_list(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let k: u64 = o.num("count", 20)?;
    let dir = o.req("dir")?;
    let verb = if o.flag("mlsd") {
        "MLSD"
    } else if o.flag("nlst") {
        "NLST"
    } else {
        "LIST"
    };
    let mut f = Ftp::login(cfg).map_err(|e| format!("login: {e}"))?;
    let mut sink = vec![0u8; DATA_BUF_BYTES];
    let mut lat = Vec::new();
    let mut errors = ErrLog::new();
    let (mut bytes, mut lines) = (0, 0);
    let mut unsupported = false;
    let t0 = Instant::now();
    for _ in 0..k {
        if cfg.expired() {
            break;
        }
        let t = Instant::now();
        match f.listing(verb, &dir, &mut sink, false) {
            Ok((b, l, _)) => {
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                (bytes, lines) = (b, l);
            }
            Err(e) => {
                unsupported = matches!(
                    e,
                    FtpError::Reply {
                        code: 500 | 502 | 504,
                        ..
                    }
                );
                if !unsupported {
                    errors.add(verb, &e);
                }
                break;
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    f.quit();
    errors.report();
    let lat = sorted(lat);
    let lps = lat.len() as f64 / wall;
    let kind = match verb {
        "MLSD" => "mlsd",
        "NLST" => "nlst",
        _ => "list",
    };
    let mut rec = Record::new(kind, label);
    rec.s("dir", &dir).i("count", lat.len() as u64);
    if unsupported {
        rec.b("unsupported", true).null("listings_per_s");
        emit(
            &rec,
            format!("list [{label}] {verb}: unsupported by server"),
        );
        return Ok(0);
    }
    rec.i("bytes_per_listing", bytes)
        .i("lines_per_listing", lines)
        .f("listings_per_s", lps)
        .f("p50_ms", pct(&lat, 50.0))
        .f("p99_ms", pct(&lat, 99.0))
        .i("errors", errors.count);
    emit(
        &rec,
        format!(
            "list [{label}] {} x {verb} {dir} ({lines} lines, {bytes} bytes): {lps:.1} listings/s; \
             p50 {:.2} ms p99 {:.2} ms; errors {}",
            lat.len(),
            pct(&lat, 50.0),
            pct(&lat, 99.0),
            errors.count
        ),
    );
    Ok(errors.count)
}

fn mode_put(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let n: usize = o.num("sessions", 4)?;
    let size: u64 = o.num("size", 64 << 20)?;
    let dir = o.str("dir", "");
    let dele = !o.flag("no-dele");
    let tag = format!("put-{}", std::process::id());
    let name = move |s: usize| {
        if dir.is_empty() {
            format!("{tag}-{s}.bin")
        } else {
            format!("{}/{tag}-{s}.bin", dir.trim_end_matches('/'))
        }
    };
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (wall, results) = {
        let (refused, name) = (refused.clone(), name.clone());
        run_sessions(cfg, n, move |s, ftp, buf, errs| {
            // Send a non-trivial pattern so compression/dedup anywhere cannot flatter the numbers.
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
            }
            let path = name(s);
            let r = ftp.stor(&path, size, buf);
            let out = match r {
                Ok(b) => (b, 1),
                Err(e) => {
                    if e.is_refusal() {
                        refused.store(true, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        errs.add("STOR", &e);
                    }
                    (0, 0)
                }
            };
            if dele && out.1 == 1 {
                let _ = ftp.cmd(&format!("DELE {path}"));
            }
            out
        })
    };
    let mut errors = ErrLog::new();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let transfers: u64 = results.iter().map(|r| r.transfers).sum();
    for r in results {
        errors.merge(r.errors);
    }
    errors.report();
    let mut rec = Record::new("put", label);
    rec.i("sessions", n as u64).i("size", size);
    if refused.load(std::sync::atomic::Ordering::Relaxed) && transfers == 0 {
        rec.b("unsupported", true).null("gbps");
        emit(
            &rec,
            format!("put [{label}] STOR refused: unsupported by server"),
        );
        return Ok(0);
    }
    let gbps = bytes as f64 / wall / 1e9;
    rec.i("bytes", bytes)
        .i("transfers", transfers)
        .f("secs", wall)
        .f("gbps", gbps)
        .i("errors", errors.count);
    emit(
        &rec,
        format!(
            "put [{label}] {n} sessions x STOR {size} B: {:.2} GB in {wall:.2} s = {gbps:.3} GB/s; errors {}",
            bytes as f64 / 1e9,
            errors.count
        ),
    );
    Ok(errors.count)
}

/// Raise RLIMIT_NOFILE's soft limit (and, as root, the hard one) to at least `want`.
fn raise_nofile(want: u64) -> Result<u64, String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (cur, max) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if cur >= want {
        return Ok(cur);
    }
    if setrlimit(Resource::RLIMIT_NOFILE, want, max.max(want)).is_ok() {
        return Ok(want);
    }
    setrlimit(Resource::RLIMIT_NOFILE, max, max).map_err(|e| format!("setrlimit: {e}"))?;
    Ok(max)
}

/// Memory of a process (and, with `tree`, all its descendants): (VmRSS KiB, Pss KiB, processes).
fn memory_kib(pid: u32, tree: bool) -> Result<(u64, u64, u64), String> {
    let pids = if tree { descendants(pid) } else { vec![pid] };
    let (mut rss, mut pss, mut n) = (0, 0, 0);
    for p in pids {
        let status = match std::fs::read_to_string(format!("/proc/{p}/status")) {
            Ok(s) => s,
            Err(e) if p == pid => return Err(format!("/proc/{p}/status: {e}")),
            Err(_) => continue, // a child that just exited
        };
        rss += kib_field(&status, "VmRSS:");
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            pss += kib_field(&s, "Pss:");
        }
        n += 1;
    }
    Ok((rss, pss, n))
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `pid` and every process below it (vsftpd forks one or two processes per session).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // Fields after the last ')' (the command may contain spaces or parentheses).
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                    parent.push((p, pp));
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent.iter().filter(|&&(_, pp)| pp == cur).map(|&(p, _)| p));
        i += 1;
    }
    out
}

fn mode_idle(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let k: usize = o.num("sessions", 1000)?;
    let pid: u32 = o.req("pid")?.parse().map_err(|_| "--pid: bad pid")?;
    let tree = o.flag("tree");
    let threads: usize = o.num("connect-threads", 8)?;
    let sample: usize = o.num("sample", 200)?;
    let settle = Duration::from_millis(o.num("settle-ms", 1000)?);
    raise_nofile(k as u64 + 256)?;
    // The server at rest first: start-up work (the sweep for stray upload files) allocates and
    // frees memory, and a reading taken during it made the per-session figure negative.
    thread::sleep(settle);
    let before = memory_kib(pid, tree)?;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let cfg = cfg.clone();
            let mine = (k + threads - 1 - t) / threads;
            spawn(format!("idle{t}"), move || {
                let mut held = Vec::with_capacity(mine);
                let mut errs = ErrLog::new();
                for _ in 0..mine {
                    if cfg.expired() {
                        break;
                    }
                    match Ftp::login(&cfg) {
                        Ok(f) => held.push(f),
                        Err(e) => errs.add("login", &e),
                    }
                }
                (held, errs)
            })
        })
        .collect();
    let mut held = Vec::with_capacity(k);
    let mut errors = ErrLog::new();
    for h in handles {
        let (v, e) = h.join().expect("idle thread panicked");
        held.extend(v);
        errors.merge(e);
    }
    let open_secs = t0.elapsed().as_secs_f64();
    thread::sleep(settle);
    let after = memory_kib(pid, tree)?;
    // Liveness: NOOP on an evenly spread sample (every session would take as long as opening).
    let step = (held.len() / sample.max(1)).max(1);
    let (mut checked, mut alive) = (0u64, 0u64);
    for f in held.iter_mut().step_by(step) {
        checked += 1;
        match f.cmd("NOOP") {
            Ok(r) if r.code == 200 => alive += 1,
            Ok(r) => errors.add("NOOP", &reply_err("NOOP", r)),
            Err(e) => errors.add("NOOP", &e),
        }
    }
    let opened = held.len();
    drop(held);
    errors.report();
    let per = |a: u64, b: u64| (a as f64 - b as f64) / opened.max(1) as f64;
    let (rss_per, pss_per) = (per(after.0, before.0), per(after.1, before.1));
    let mut rec = Record::new("idle", label);
    rec.i("sessions", k as u64)
        .i("opened", opened as u64)
        .f("open_secs", open_secs)
        .b("tree", tree)
        .i("processes_after", after.2)
        .i("rss_kib_before", before.0)
        .i("rss_kib_after", after.0)
        .i("pss_kib_before", before.1)
        .i("pss_kib_after", after.1)
        .f("rss_kib_per_session", rss_per)
        .f("pss_kib_per_session", pss_per)
        .i("noop_checked", checked)
        .i("noop_ok", alive)
        .i("errors", errors.count);
    emit(
        &rec,
        format!(
            "idle [{label}] {opened}/{k} sessions open in {open_secs:.1} s; server RSS {} -> {} KiB \
             ({rss_per:.1} KiB/session), PSS {} -> {} KiB ({pss_per:.1} KiB/session), {} process(es); \
             NOOP ok {alive}/{checked}; errors {}",
            before.0, after.0, before.1, after.1, after.2, errors.count
        ),
    );
    Ok(errors.count)
}

/// Drop a local file's pages from the page cache (clean pages only, so flush first).
fn drop_cache(path: &std::path::Path) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = f.sync_data();
    nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .map_err(|e| format!("posix_fadvise {}: {e}", path.display()))
}

/// Latencies (ms) of `k` small RETRs, alternating over the given sessions.
fn small_retrs(
    sessions: &mut [Ftp],
    small: &str,
    k: u64,
    cfg: &Cfg,
    stop_early: Option<&dyn Fn() -> bool>,
    errors: &mut ErrLog,
) -> Vec<f64> {
    let mut sink = vec![0u8; DATA_BUF_BYTES];
    let mut lat = Vec::with_capacity(k as usize);
    let ns = sessions.len().max(1);
    for i in 0..k {
        if cfg.expired() || stop_early.is_some_and(|f| f()) {
            break;
        }
        let t = Instant::now();
        match sessions[i as usize % ns].retr(small, None, &mut sink) {
            Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                errors.add("small RETR", &e);
                break;
            }
        }
    }
    sorted(lat)
}

/// What one loaded phase of `cold` measured.
struct Loaded {
    /// Small-RETR latencies (ms), ascending.
    lat: Vec<f64>,
    bg_gbps: f64,
    /// Complete passes over a BIG file, all background sessions together.
    passes: u64,
    /// Every background session was still pulling when the foreground finished.
    overlapped: bool,
}

/// Small RETRs on `fg` while `nbg` sessions pull the BIG files; with `cold`, each pass first
/// drops its file from the page cache. With fewer files than sessions, sessions on the same file
/// start at different offsets (REST), so none reads pages another one just brought in.
#[allow(clippy::too_many_arguments)]
fn beside_pulls(
    cfg: &Cfg,
    root: &std::path::Path,
    bigs: &[(String, u64)],
    nbg: usize,
    fg: &mut [Ftp],
    small: &str,
    k: u64,
    cold: bool,
    errors: &mut ErrLog,
) -> Loaded {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let bg_bytes = Arc::new(AtomicU64::new(0));
    let bg_live = Arc::new(AtomicU64::new(nbg as u64));
    let passes = Arc::new(AtomicU64::new(0));
    let per_file = nbg.div_ceil(bigs.len());
    let t_bg = Instant::now();
    let handles: Vec<_> = (0..nbg)
        .map(|i| {
            let (cfg, stop, bg_bytes, bg_live, passes) = (
                cfg.clone(),
                stop.clone(),
                bg_bytes.clone(),
                bg_live.clone(),
                passes.clone(),
            );
            let (file, size) = bigs[i % bigs.len()].clone();
            let offset = size / per_file as u64 * (i / bigs.len()) as u64;
            let local = root.join(file.trim_start_matches('/'));
            spawn(format!("pull{i}"), move || {
                let mut errs = ErrLog::new();
                let mut sink = vec![0u8; DATA_BUF_BYTES];
                match Ftp::login(&cfg) {
                    Ok(mut f) => {
                        // Passes until the foreground is done; `stop` is checked between reads.
                        let mut pass = || -> FtpResult<()> {
                            if cold {
                                drop_cache(&local).map_err(FtpError::Proto)?;
                            }
                            if offset > 0 {
                                f.expect(&format!("REST {offset}"), &[350])?;
                            }
                            let mut data = f.open_data()?;
                            f.start_transfer(&format!("RETR {file}"))?;
                            loop {
                                if stop.load(Ordering::Relaxed) || cfg.expired() {
                                    return Ok(());
                                }
                                match data.read(&mut sink) {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        bg_bytes.fetch_add(n as u64, Ordering::Relaxed);
                                    }
                                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                    Err(e) => return Err(FtpError::Io("data read", e)),
                                }
                            }
                            drop(data);
                            f.finish_transfer("RETR")
                        };
                        for _ in 0..MAX_COLD_PASSES {
                            if stop.load(Ordering::Relaxed) || cfg.expired() {
                                break;
                            }
                            if let Err(e) = pass() {
                                errs.add("background RETR", &e);
                                break;
                            }
                            passes.fetch_add(1, Ordering::Relaxed);
                        }
                        // Stopped mid-transfer: just drop the session (the server sees a reset).
                        if !stop.load(Ordering::Relaxed) {
                            f.quit();
                        }
                    }
                    Err(e) => errs.add("background login", &e),
                }
                bg_live.fetch_sub(1, Ordering::Relaxed);
                errs
            })
        })
        .collect();
    // Let the pulls get going before sampling.
    thread::sleep(Duration::from_millis(50));
    let bg_done = || bg_live.load(Ordering::Relaxed) == 0;
    let lat = small_retrs(fg, small, k, cfg, Some(&bg_done), errors);
    let overlapped = bg_live.load(Ordering::Relaxed) as usize == nbg;
    stop.store(true, Ordering::Relaxed);
    let bg_secs = t_bg.elapsed().as_secs_f64();
    for h in handles {
        errors.merge(h.join().expect("background thread panicked"));
    }
    Loaded {
        lat,
        bg_gbps: bg_bytes.load(Ordering::Relaxed) as f64 / bg_secs / 1e9,
        passes: passes.load(Ordering::Relaxed),
        overlapped,
    }
}

/// Read a local file once so its pages are cached (the warm control phase of `cold`).
fn warm_cache(path: &std::path::Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..(1u64 << 24) {
        match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(())
}

fn mode_cold(o: &Opts, cfg: &Cfg, label: &str) -> Result<u64, String> {
    let small = o.req("small")?;
    let k: u64 = o.num("count", 200)?;
    let root = std::path::PathBuf::from(o.req("root")?);
    let nbg: usize = o.num("bg-sessions", 2)?;
    let nfg: usize = o.num("fg-sessions", 2)?;
    let with_warm = !o.flag("no-warm");
    let mut bigs: Vec<(String, u64)> = Vec::new();
    for b in o.req("file")?.split(',') {
        let local = root.join(b.trim_start_matches('/'));
        let size = std::fs::metadata(&local)
            .map_err(|e| format!("{}: {e} (is --root the server's root?)", local.display()))?
            .len();
        bigs.push((b.to_string(), size));
    }
    let mut errors = ErrLog::new();
    let mut fg: Vec<Ftp> = (0..nfg.max(1))
        .map(|_| Ftp::login(cfg))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("login: {e}"))?;
    // Warm the small file and the sessions, then measure it alone.
    small_retrs(&mut fg, &small, 10, cfg, None, &mut errors);
    let alone = small_retrs(&mut fg, &small, k, cfg, None, &mut errors);
    let cold = beside_pulls(
        cfg,
        &root,
        &bigs,
        nbg,
        &mut fg,
        &small,
        k,
        true,
        &mut errors,
    );
    // Control: the same pulls from the page cache, to tell "a busy neighbour" from "a cold one".
    let warm = if with_warm {
        for (b, _) in &bigs {
            warm_cache(&root.join(b.trim_start_matches('/')))?;
        }
        Some(beside_pulls(
            cfg,
            &root,
            &bigs,
            nbg,
            &mut fg,
            &small,
            k,
            false,
            &mut errors,
        ))
    } else {
        None
    };
    for f in fg {
        f.quit();
    }
    errors.report();
    let (a50, a99) = (pct(&alone, 50.0), pct(&alone, 99.0));
    let (l50, l99) = (pct(&cold.lat, 50.0), pct(&cold.lat, 99.0));
    let mut rec = Record::new("cold", label);
    rec.s("small", &small)
        .s(
            "big",
            &bigs
                .iter()
                .map(|b| b.0.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
        .i("count", k)
        .i("alone_n", alone.len() as u64)
        .f("alone_p50_ms", a50)
        .f("alone_p99_ms", a99)
        .i("loaded_n", cold.lat.len() as u64)
        .f("loaded_p50_ms", l50)
        .f("loaded_p99_ms", l99)
        .f("ratio_p50", l50 / a50)
        .f("ratio_p99", l99 / a99)
        .f("bg_gbps", cold.bg_gbps)
        .i("bg_passes", cold.passes)
        .b("bg_overlapped_all", cold.overlapped);
    let mut warm_text = String::new();
    if let Some(w) = &warm {
        let (w50, w99) = (pct(&w.lat, 50.0), pct(&w.lat, 99.0));
        rec.i("warm_n", w.lat.len() as u64)
            .f("warm_p50_ms", w50)
            .f("warm_p99_ms", w99)
            .f("warm_bg_gbps", w.bg_gbps)
            .b("warm_overlapped_all", w.overlapped);
        warm_text = format!(
            "; beside {nbg} warm pulls ({:.2} GB/s) p50 {w50:.2} ms p99 {w99:.2} ms (n={}{})",
            w.bg_gbps,
            w.lat.len(),
            if w.overlapped {
                ""
            } else {
                ", a pull ended early"
            },
        );
    }
    rec.i("errors", errors.count);
    emit(
        &rec,
        format!(
            "cold [{label}] {small} alone p50 {a50:.2} ms p99 {a99:.2} ms (n={}); beside {nbg} cold pulls \
             ({:.2} GB/s) p50 {l50:.2} ms p99 {l99:.2} ms (n={}{}); ratio p50 x{:.2} p99 x{:.2}{warm_text}; errors {}",
            alone.len(),
            cold.bg_gbps,
            cold.lat.len(),
            if cold.overlapped {
                ""
            } else {
                ", a pull ended early"
            },
            l50 / a50,
            l99 / a99,
            errors.count
        ),
    );
    Ok(errors.count)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    // `cargo bench` with no mode, or `cargo test --benches`: nothing to load, so just say how.
    if opts.mode.is_empty() {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if opts.mode == "report" {
        return match report::run(&opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(sc) = opts.vals.get("scenario") {
        let round = opts.num("round", 0).unwrap_or(0);
        let _ = TAGS.set((sc.clone(), round));
    }
    let cfg = match Cfg::from_opts(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(64);
        }
    };
    let sink = match opts.str("sink", "read").as_str() {
        "read" => Sink::Read,
        "splice" => Sink::Splice,
        "trunc" => Sink::Trunc,
        s => {
            eprintln!("loadgen: --sink {s:?}: read, splice or trunc");
            return ExitCode::from(64);
        }
    };
    let _ = SINK.set(sink);
    let label = opts.str("label", "server");
    let r = match opts.mode.as_str() {
        "get" => mode_get(&opts, &cfg, &label),
        "many" => mode_many(&opts, &cfg, &label),
        "conn" => mode_conn(&opts, &cfg, &label),
        "list" => mode_list(&opts, &cfg, &label),
        "put" => mode_put(&opts, &cfg, &label),
        "idle" => mode_idle(&opts, &cfg, &label),
        "cold" => mode_cold(&opts, &cfg, &label),
        "pump" => mode_pump(&opts, &cfg, &label),
        m => Err(format!("unknown mode {m:?}\n{USAGE}")),
    };
    match r {
        Ok(0) => ExitCode::SUCCESS,
        // The run finished and printed its record, but some operations failed.
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `report`: read the JSON lines of many runs, print one markdown table of medians and ratios.
mod report {
    use super::{Opts, sorted};
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq)]
    pub enum J {
        S(String),
        N(f64),
        B(bool),
        Null,
    }

    /// Parse one flat JSON object (what `Record::json` and compare.sh write): string, number,
    /// bool or null values only. Anything else is a parse error.
    pub fn parse_flat(line: &str) -> Option<BTreeMap<String, J>> {
        let b = line.trim().as_bytes();
        let mut i = 0;
        let mut out = BTreeMap::new();
        let ws = |i: &mut usize| {
            while *i < b.len() && b[*i].is_ascii_whitespace() {
                *i += 1;
            }
        };
        let string = |i: &mut usize| -> Option<String> {
            if b.get(*i) != Some(&b'"') {
                return None;
            }
            *i += 1;
            let mut s = Vec::new();
            while *i < b.len() {
                match b[*i] {
                    b'"' => {
                        *i += 1;
                        return String::from_utf8(s).ok();
                    }
                    b'\\' => {
                        let c = *b.get(*i + 1)?;
                        *i += 2;
                        match c {
                            b'n' => s.push(b'\n'),
                            b't' => s.push(b'\t'),
                            b'u' => {
                                let hex = std::str::from_utf8(b.get(*i..*i + 4)?).ok()?;
                                let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                                s.extend_from_slice(ch.to_string().as_bytes());
                                *i += 4;
                            }
                            c => s.push(c),
                        }
                    }
                    c => {
                        s.push(c);
                        *i += 1;
                    }
                }
            }
            None
        };
        ws(&mut i);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i += 1;
        loop {
            ws(&mut i);
            if b.get(i) == Some(&b'}') {
                return Some(out);
            }
            let k = string(&mut i)?;
            ws(&mut i);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
            ws(&mut i);
            let v = match *b.get(i)? {
                b'"' => J::S(string(&mut i)?),
                b't' if b[i..].starts_with(b"true") => {
                    i += 4;
                    J::B(true)
                }
                b'f' if b[i..].starts_with(b"false") => {
                    i += 5;
                    J::B(false)
                }
                b'n' if b[i..].starts_with(b"null") => {
                    i += 4;
                    J::Null
                }
                _ => {
                    let start = i;
                    while i < b.len()
                        && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    {
                        i += 1;
                    }
                    J::N(std::str::from_utf8(&b[start..i]).ok()?.parse().ok()?)
                }
            };
            out.insert(k, v);
            ws(&mut i);
            match b.get(i)? {
                b',' => i += 1,
                b'}' => return Some(out),
                _ => return None,
            }
        }
    }

    /// The metrics shown for each mode: (field, label, lower is better).
    fn metrics(mode: &str) -> &'static [(&'static str, &'static str, bool)] {
        match mode {
            "get" | "put" | "iperf" | "pump" => &[("gbps", "GB/s", false)],
            "cpu" => &[("cpu_s_per_gb", "server CPU s/GB", true)],
            "cpu_session" => &[("cpu_us_per_session", "server CPU us/session", true)],
            "cpu_listing" => &[("cpu_ms_per_listing", "server CPU ms/listing", true)],
            "many" => &[("files_per_s", "files/s", false), ("gbps", "GB/s", false)],
            "conn" => &[
                ("sessions_per_s", "sessions/s", false),
                ("p50_ms", "session p50 ms", true),
                ("p99_ms", "session p99 ms", true),
            ],
            "list" | "mlsd" | "nlst" => &[
                ("listings_per_s", "listings/s", false),
                ("p50_ms", "p50 ms", true),
                ("p99_ms", "p99 ms", true),
            ],
            "idle" => &[
                ("pss_kib_per_session", "PSS KiB/session", true),
                ("rss_kib_per_session", "RSS KiB/session", true),
            ],
            "cold" => &[
                ("alone_p50_ms", "small RETR p50 ms, idle", true),
                ("loaded_p50_ms", "small RETR p50 ms, cold pulls", true),
                ("loaded_p99_ms", "small RETR p99 ms, cold pulls", true),
                ("ratio_p99", "p99 loaded / idle", true),
                ("bg_gbps", "cold pulls GB/s", false),
                (
                    "warm_p50_ms",
                    "small RETR p50 ms, warm pulls (control)",
                    true,
                ),
                (
                    "warm_p99_ms",
                    "small RETR p99 ms, warm pulls (control)",
                    true,
                ),
            ],
            _ => &[],
        }
    }

    /// Median and spread of a server's values for one metric, or why there are none.
    enum Cell {
        Vals(Vec<f64>),
        Unsupported,
        Missing,
    }

    impl Cell {
        fn median(&self) -> Option<f64> {
            match self {
                Cell::Vals(v) if !v.is_empty() => Some(median(v)),
                _ => None,
            }
        }
        fn show(&self) -> String {
            match self {
                Cell::Vals(v) if !v.is_empty() => {
                    let m = median(v);
                    if v.len() == 1 {
                        fmt(m)
                    } else {
                        format!("{} ({}–{})", fmt(m), fmt(v[0]), fmt(v[v.len() - 1]))
                    }
                }
                Cell::Unsupported => "unsupported".into(),
                _ => "–".into(),
            }
        }
    }

    /// The median of an ascending, non-empty slice (mean of the middle two for an even count).
    fn median(v: &[f64]) -> f64 {
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    fn fmt(x: f64) -> String {
        let a = x.abs();
        if a >= 1000.0 {
            format!("{x:.0}")
        } else if a >= 100.0 {
            format!("{x:.1}")
        } else if a >= 1.0 {
            format!("{x:.2}")
        } else {
            format!("{x:.3}")
        }
    }

    fn ratio(a: Option<f64>, b: Option<f64>) -> String {
        match (a, b) {
            (Some(a), Some(b)) if b != 0.0 => format!("×{:.2}", a / b),
            _ => "–".into(),
        }
    }

    /// `--servers X,Y,...`: one column per server with its ratio to the first (e.g. data paths).
    fn run_servers(o: &Opts, servers: &[String]) -> Result<(), String> {
        let path = o.req("results")?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let mut order: Vec<String> = Vec::new();
        let mut modes: BTreeMap<String, String> = BTreeMap::new();
        let mut vals: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let Some(r) = parse_flat(line) else { continue };
            let (Some(J::S(sc)), Some(J::S(srv)), Some(J::S(mode))) =
                (r.get("scenario"), r.get("server"), r.get("mode"))
            else {
                continue;
            };
            if !servers.contains(srv) {
                continue;
            }
            if !order.contains(sc) {
                order.push(sc.clone());
            }
            modes.entry(sc.clone()).or_insert_with(|| mode.clone());
            for &(key, _, _) in metrics(mode) {
                if let Some(J::N(x)) = r.get(key) {
                    vals.entry((sc.clone(), srv.clone(), key.to_string()))
                        .or_default()
                        .push(*x);
                }
            }
        }
        let mut head = String::from("| scenario | metric |");
        for (i, srv) in servers.iter().enumerate() {
            if i == 0 {
                head.push_str(&format!(" {srv} median (min–max) |"));
            } else {
                head.push_str(&format!(" {srv} | ÷ {} |", servers[0]));
            }
        }
        println!("{head}");
        println!("|---|---|{}", "---|".repeat(2 * servers.len() - 1));
        for sc in &order {
            let Some(mode) = modes.get(sc) else { continue };
            for &(key, label, lower) in metrics(mode) {
                let cell = |srv: &String| {
                    let v = sorted(
                        vals.get(&(sc.clone(), srv.clone(), key.to_string()))
                            .cloned()
                            .unwrap_or_default(),
                    );
                    Cell::Vals(v)
                };
                let first = cell(&servers[0]);
                let lower = if lower { " (lower is better)" } else { "" };
                let mut row = format!("| {sc} | {label}{lower} | {} |", first.show());
                for srv in &servers[1..] {
                    let c = cell(srv);
                    row.push_str(&format!(
                        " {} | {} |",
                        c.show(),
                        ratio(c.median(), first.median())
                    ));
                }
                println!("{row}");
            }
        }
        Ok(())
    }

    pub fn run(o: &Opts) -> Result<(), String> {
        if o.vals.contains_key("servers") {
            let servers = o.labels("servers", "");
            if servers.is_empty() {
                return Err("--servers needs at least one label".into());
            }
            return run_servers(o, &servers);
        }
        let path = o.req("results")?;
        let a = o.str("a", "ringftpd");
        // `--b X,Y,...`: every metric is compared with whichever of them did best.
        let refs = o.labels("b", "vsftpd");
        if refs.is_empty() {
            return Err("--b needs at least one label".into());
        }
        let b = if refs.len() == 1 {
            refs[0].clone()
        } else {
            "best reference".to_string()
        };
        // One column pair per ceiling label, e.g. `--ceiling loopback,iperf3`.
        let ceilings = o.labels("ceiling", "loopback");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        // scenario -> (first-seen order, mode per server, records per server)
        let mut order: Vec<String> = Vec::new();
        let mut recs: BTreeMap<(String, String), Vec<BTreeMap<String, J>>> = BTreeMap::new();
        let mut modes: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let Some(r) = parse_flat(line) else {
                eprintln!("loadgen: report: skipping unparsable line {line:?}");
                continue;
            };
            let (Some(J::S(sc)), Some(J::S(srv)), Some(J::S(mode))) =
                (r.get("scenario"), r.get("server"), r.get("mode"))
            else {
                continue;
            };
            if !order.contains(sc) {
                order.push(sc.clone());
            }
            if !ceilings.contains(srv) {
                modes.entry(sc.clone()).or_insert_with(|| mode.clone());
            }
            recs.entry((sc.clone(), srv.clone())).or_default().push(r);
        }
        let cell = |sc: &str, srv: &str, key: &str| -> Cell {
            let Some(rs) = recs.get(&(sc.to_string(), srv.to_string())) else {
                return Cell::Missing;
            };
            if rs.iter().any(|r| r.get("unsupported") == Some(&J::B(true))) {
                return Cell::Unsupported;
            }
            Cell::Vals(sorted(
                rs.iter()
                    .filter_map(|r| match r.get(key) {
                        Some(J::N(x)) => Some(*x),
                        _ => None,
                    })
                    .collect(),
            ))
        };
        let errors = |sc: &str, srv: &str| -> String {
            recs.get(&(sc.to_string(), srv.to_string()))
                .map(|rs| {
                    rs.iter()
                        .map(|r| match r.get("errors") {
                            Some(J::N(x)) => *x as u64,
                            _ => 0,
                        })
                        .sum::<u64>()
                        .to_string()
                })
                .unwrap_or_else(|| "–".into())
        };
        let mut head = format!(
            "| scenario | metric | {a} median (min–max) | {b} median (min–max) | {a} ÷ {b} |"
        );
        for c in &ceilings {
            head.push_str(&format!(" {c} ceiling | {a} ÷ {c} |"));
        }
        println!("{head} runs {a}/{b} | errors {a}/{b} |");
        println!(
            "|---|---|---|---|---|{}---|---|",
            "---|---|".repeat(ceilings.len())
        );
        for sc in &order {
            let Some(mode) = modes.get(sc) else { continue };
            let runs = |srv: &str| {
                recs.get(&(sc.clone(), srv.to_string()))
                    .map_or(0, |v| v.len())
                    .to_string()
            };
            for &(key, label, lower) in metrics(mode) {
                let ca = cell(sc, &a, key);
                // The reference with the best median for this metric (the first if none has one).
                let best = refs
                    .iter()
                    .filter_map(|r| cell(sc, r, key).median().map(|m| (r, m)))
                    .reduce(|x, y| {
                        let y_better = if lower { y.1 < x.1 } else { y.1 > x.1 };
                        if y_better { y } else { x }
                    })
                    .map_or(&refs[0], |(r, _)| r);
                let cb = cell(sc, best, key);
                let shown_b = if refs.len() > 1 && cb.median().is_some() {
                    format!("{} {best}", cb.show())
                } else {
                    cb.show()
                };
                let label = if lower {
                    format!("{label} (lower is better)")
                } else {
                    label.to_string()
                };
                let mut row = format!(
                    "| {sc} | {label} | {} | {} | {} |",
                    ca.show(),
                    shown_b,
                    ratio(ca.median(), cb.median()),
                );
                for c in &ceilings {
                    let cc = cell(sc, c, key);
                    if matches!(&cc, Cell::Vals(v) if !v.is_empty()) {
                        row.push_str(&format!(
                            " {} | {} |",
                            cc.show(),
                            ratio(ca.median(), cc.median())
                        ));
                    } else {
                        row.push_str(" – | – |");
                    }
                }
                println!(
                    "{row} {}/{} | {}/{} |",
                    runs(&a),
                    runs(best),
                    errors(sc, &a),
                    errors(sc, best),
                );
            }
        }
        Ok(())
    }
}
