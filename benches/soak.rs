//! Soak test: the real `ringftpd` binary under random mixed sessions for a bounded time, then
//! checks that it is still whole.
//!
//! Run as `cargo bench --bench soak -- --duration 60 --workers 32 [--seed N]`; `benches/README.md`
//! lists what each scenario does and what is checked afterwards. The tool starts the server itself
//! (on `127.0.0.1:0`, with a temporary root and users file), measures its fds and RSS after a
//! warm-up, lets W worker threads run random scenarios (good and wrong logins, listings,
//! downloads and uploads checked byte for byte, ABOR, clients vanishing mid-transfer, garbage
//! lines) and then checks: the server answers, fds and RSS are back near the baseline, every file
//! on disk is what the last completed upload put there (no partial upload replaced one), no
//! temporary upload file is left, and SIGTERM stops it with exit status 0. It prints a readable
//! summary and one JSON line, and exits 1 when any check failed.
//!
//! Every session comes from a fresh loopback source address (127.W.x.y for worker W), so per-IP
//! session caps, per-IP failure delays and bans never throttle the soak by its own single address,
//! and a wrong password costs the one-second first-failure delay only. Every socket operation has a
//! timeout: a server that stops answering is a failure recorded with its scenario, not a hang.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Receive and send buffer of one worker (the compare buffer is the same size).
const BUF_BYTES: usize = 256 * 1024;
/// Largest random upload.
const MAX_UPLOAD_BYTES: u64 = 8 << 20;
/// The big anonymous file that ABOR and vanish scenarios start to download: far more than the
/// loopback socket buffers (a few MiB with autotuning), so a transfer stopped after at most
/// `MAX_PREFIX_BYTES` is still running when ABOR or the vanish arrives.
const DEFAULT_BIG_MIB: u64 = 64;
/// How much of a download the ABOR and vanish scenarios read before they stop.
const MAX_PREFIX_BYTES: u64 = 4 << 20;
/// A control reply line longer than this is a protocol error (ringftpd caps its own input at 4096).
const MAX_REPLY_LINE_BYTES: usize = 64 * 1024;
/// A multi-line reply with more lines than this is a protocol error (FEAT/HELP are ~30 lines).
const MAX_REPLY_LINES: usize = 10_000;
/// Hard cap on scenarios per worker, whatever the duration.
const DEFAULT_MAX_ITERATIONS: u64 = 1_000_000;
/// After the run, fds may exceed the baseline by this much. Closing is asynchronous in the
/// server (cancel, then close, completions reaped on a later loop turn), and a shard's splice pipe
/// pool (2 fds a pipe) may hold a few more pipes than after the warm-up. A leak of one fd per
/// session, per failed login or per vanished client would exceed it within seconds.
const FD_SLACK: u64 = 16;
/// After the run, VmRSS may exceed the baseline by this much. Each of 32 concurrent uploads holds
/// two 256 KiB buffers (16 MiB at once), listings and the allocator's per-thread caches keep freed
/// pages for a while, and the failure-delay map gains an entry per address that failed a login.
/// A leak of even 1 KiB per session would exceed it over a 120 s run of tens of thousands of sessions.
const RSS_SLACK_KIB: u64 = 20 * 1024;
/// How long to wait for the server to report zero sessions after the workers stopped.
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// How long fds may take to fall back within the slack once the sessions are gone.
const FD_SETTLE_WAIT: Duration = Duration::from_secs(10);
/// How long discarded uploads' temporary files may take to disappear.
const TEMP_WAIT: Duration = Duration::from_secs(5);
/// The server's shutdown grace; SIGTERM must end it within this plus `EXIT_MARGIN`.
const SHUTDOWN_GRACE_SECS: u64 = 5;
const EXIT_MARGIN: Duration = Duration::from_secs(5);
/// Error messages kept per run, for the summary.
const MAX_SAMPLES: usize = 40;
/// Named users: `soak` uploads; `victim` only ever sees wrong passwords, so per-account throttling
/// (issue 10) slows neither `soak` nor anonymous logins.
const USER: &str = "soak";
const PASS: &str = "soak-pass-7d1e";
const VICTIM: &str = "victim";
/// Files each worker stores into (f0..), renames into (rn0..) and starts-and-abandons (v0..).
const STOR_NAMES: u64 = 6;
const RENAME_NAMES: u64 = 3;
const VANISH_NEW_NAMES: u64 = 3;
/// Workers are numbered into the second octet of 127.X.y.z.
const MAX_WORKERS: usize = 200;
const TEMP_PREFIX: &str = ".ringftpd-tmp.";

const USAGE: &str = "\
usage: cargo bench --bench soak -- [--duration SECS] [--workers W] [--seed N]
  --duration SECS      soak time after the warm-up (60)
  --workers W          client threads, each running one session at a time (32, at most 200)
  --seed N             PRNG seed (default: from the clock; printed, so a run can be repeated)
  --bin PATH           ringftpd binary (default: the release build cargo bench made)
  --timeout SECS       per socket operation (30); longer is a hang
  --max-iterations N   hard cap on scenarios per worker (1000000)
  --big-mib N          size of the big download (64)
  --shards N, --io X   passed to ringftpd
  --keep               keep the temporary root";

// ---------------------------------------------------------------------------------------------
// Options

struct Opts {
    duration: Duration,
    workers: usize,
    seed: u64,
    bin: PathBuf,
    timeout: Duration,
    max_iterations: u64,
    big_bytes: u64,
    shards: Option<String>,
    io: Option<String>,
    keep: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let clock_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut o = Opts {
            duration: Duration::from_secs(60),
            workers: 32,
            seed: clock_seed % 1_000_000_007,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_ringftpd")),
            timeout: Duration::from_secs(30),
            max_iterations: DEFAULT_MAX_ITERATIONS,
            big_bytes: DEFAULT_BIG_MIB << 20,
            shards: None,
            io: None,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            // `cargo bench` appends --bench to a harness = false target's arguments.
            if a == "--bench" {
                continue;
            }
            if a == "--keep" {
                o.keep = true;
                continue;
            }
            let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
            let num = || -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|_| format!("{a} {v:?}: not a number"))
            };
            match a.as_str() {
                "--duration" => o.duration = Duration::from_secs(num()?),
                "--workers" => o.workers = num()? as usize,
                "--seed" => o.seed = num()?,
                "--bin" => o.bin = PathBuf::from(v),
                "--timeout" => o.timeout = Duration::from_secs(num()?.max(1)),
                "--max-iterations" => o.max_iterations = num()?,
                "--big-mib" => o.big_bytes = num()?.max(16) << 20,
                "--shards" => o.shards = Some(v.clone()),
                "--io" => o.io = Some(v.clone()),
                _ => return Err(format!("unknown option {a:?}")),
            }
        }
        if o.workers == 0 || o.workers > MAX_WORKERS {
            return Err(format!("--workers must be 1..={MAX_WORKERS}"));
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness and file contents

/// splitmix64's finaliser: a good 64-bit mix, used for seeds and for file contents.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*: the scenario picker. Small, seedable, good enough to pick scenarios and sizes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A file's content, by its seed and size: byte i is byte i%8 of `mix(seed ^ k(i/8))`, so any
/// range can be generated or checked without storing the file (REST, partial reads, 8 MiB
/// uploads from 32 workers).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Content {
    seed: u64,
    size: u64,
}

fn fill(seed: u64, off: u64, buf: &mut [u8]) {
    let mut pos = 0;
    while pos < buf.len() {
        let at = off + pos as u64;
        let word = mix(seed ^ (at / 8).wrapping_mul(0xD1B5_4A32_D192_ED03)).to_le_bytes();
        let skip = (at % 8) as usize;
        let n = (8 - skip).min(buf.len() - pos);
        buf[pos..pos + n].copy_from_slice(&word[skip..skip + n]);
        pos += n;
    }
}

/// A random upload size: a third tiny (0..4 KiB, including empty files), a third up to 512 KiB,
/// a third up to `MAX_UPLOAD_BYTES`.
fn random_size(rng: &mut Rng) -> u64 {
    match rng.below(3) {
        0 => rng.below(4097),
        1 => rng.below(512 << 10),
        _ => rng.below(MAX_UPLOAD_BYTES + 1),
    }
}

// ---------------------------------------------------------------------------------------------
// Failures

/// What went wrong in one scenario. `Timeout` is the hang the soak exists to find.
#[derive(Debug)]
enum Fail {
    Timeout(String),
    Closed(String),
    Io(String),
    Reply {
        what: String,
        code: u16,
        text: String,
    },
    Proto(String),
    Content(String),
}

impl Fail {
    fn kind(&self) -> &'static str {
        match self {
            Fail::Timeout(_) => "timeout (hang)",
            Fail::Closed(_) => "closed unexpectedly",
            Fail::Io(_) => "io error",
            Fail::Reply { .. } => "unexpected reply",
            Fail::Proto(_) => "protocol error",
            Fail::Content(_) => "wrong content",
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Timeout(s) => write!(f, "timeout: {s}"),
            Fail::Closed(s) => write!(f, "closed: {s}"),
            Fail::Io(s) => write!(f, "io: {s}"),
            Fail::Reply { what, code, text } => write!(f, "{what}: {code} {text}"),
            Fail::Proto(s) => write!(f, "protocol: {s}"),
            Fail::Content(s) => write!(f, "content: {s}"),
        }
    }
}

fn io_fail(what: &str, e: io::Error) -> Fail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::Timeout(what.to_string()),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionAborted => Fail::Closed(format!("{what}: {e}")),
        _ => Fail::Io(format!("{what}: {e}")),
    }
}

type Res<T> = Result<T, Fail>;

// ---------------------------------------------------------------------------------------------
// A raw FTP client (RFC 959), blocking, every operation under a timeout

struct Reply {
    code: u16,
    text: String,
}

/// Connect from `src` (a loopback address of our choosing) to `to`.
fn connect_from(src: Ipv4Addr, to: SocketAddr, timeout: Duration) -> Res<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| io_fail("socket", e))?;
    s.bind(&SocketAddr::from((src, 0)).into())
        .map_err(|e| io_fail("bind", e))?;
    s.connect_timeout(&to.into(), timeout)
        .map_err(|e| io_fail("connect", e))?;
    let s: TcpStream = s.into();
    s.set_nodelay(true).map_err(|e| io_fail("nodelay", e))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| io_fail("socket timeout", e))?;
    Ok(s)
}

struct Client {
    ctrl: TcpStream,
    rbuf: Vec<u8>,
    src: Ipv4Addr,
    server: SocketAddr,
    timeout: Duration,
}

impl Client {
    /// Connect and read the greeting (120 may precede 220, RFC 959 section 4.2).
    fn connect(server: SocketAddr, src: Ipv4Addr, timeout: Duration) -> Res<Client> {
        let ctrl = connect_from(src, server, timeout)?;
        let mut c = Client {
            ctrl,
            rbuf: Vec::with_capacity(512),
            src,
            server,
            timeout,
        };
        for _ in 0..3 {
            let r = c.reply()?;
            match r.code {
                220 => return Ok(c),
                120 => continue,
                _ => return Err(reply_fail("greeting", r)),
            }
        }
        Err(Fail::Proto("no 220 greeting".into()))
    }

    fn read_line(&mut self) -> Res<String> {
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
                return Err(Fail::Proto("reply line too long".into()));
            }
            let mut tmp = [0u8; 2048];
            let n = self
                .ctrl
                .read(&mut tmp)
                .map_err(|e| io_fail("control read", e))?;
            if n == 0 {
                return Err(Fail::Closed(
                    "control connection closed by the server".into(),
                ));
            }
            self.rbuf.extend_from_slice(&tmp[..n]);
        }
    }

    /// One reply; a multi-line one ends at the first line starting with its code and a space.
    fn reply(&mut self) -> Res<Reply> {
        let first = self.read_line()?;
        let b = first.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
            return Err(Fail::Proto(format!("bad reply line {first:?}")));
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
            return Err(Fail::Proto("multi-line reply too long".into()));
        }
        Ok(Reply { code, text })
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Res<()> {
        self.ctrl
            .write_all(bytes)
            .map_err(|e| io_fail("control write", e))
    }

    fn cmd(&mut self, line: &str) -> Res<Reply> {
        self.send_raw(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    fn expect(&mut self, line: &str, ok: &[u16]) -> Res<Reply> {
        let r = self.cmd(line)?;
        if ok.contains(&r.code) {
            Ok(r)
        } else {
            Err(reply_fail(line, r))
        }
    }

    fn login(&mut self, user: &str, pass: &str) -> Res<()> {
        let r = self.cmd(&format!("USER {user}"))?;
        match r.code {
            230 => {}
            331 => {
                self.expect(&format!("PASS {pass}"), &[230])?;
            }
            _ => return Err(reply_fail("USER", r)),
        }
        self.expect("TYPE I", &[200])?;
        Ok(())
    }

    /// EPSV or PASV (at random), then connect from our own source address: the server accepts
    /// data connections only from the control connection's peer (RFC 2577).
    fn data(&mut self, rng: &mut Rng) -> Res<TcpStream> {
        let port = if rng.chance(50) {
            let r = self.expect("EPSV", &[229])?;
            parse_epsv(&r.text).ok_or_else(|| Fail::Proto(format!("bad 229: {}", r.text)))?
        } else {
            let r = self.expect("PASV", &[227])?;
            parse_pasv(&r.text).ok_or_else(|| Fail::Proto(format!("bad 227: {}", r.text)))?
        };
        connect_from(
            self.src,
            SocketAddr::new(self.server.ip(), port),
            self.timeout,
        )
    }

    /// A transfer verb on an open data connection: expect a 1yz preliminary reply.
    fn start(&mut self, line: &str) -> Res<()> {
        let r = self.cmd(line)?;
        if r.code / 100 == 1 {
            Ok(())
        } else {
            Err(reply_fail(line, r))
        }
    }

    /// QUIT: 221, then the server closes (nothing more may arrive).
    fn quit(mut self) -> Res<()> {
        self.expect("QUIT", &[221])?;
        let mut tmp = [0u8; 256];
        match self.ctrl.read(&mut tmp) {
            Ok(0) => Ok(()),
            Ok(n) => Err(Fail::Proto(format!("{n} bytes after 221"))),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(io_fail("waiting for close after QUIT", e)),
        }
    }
}

fn reply_fail(what: &str, r: Reply) -> Fail {
    // Keep the verb only: arguments are random names and sizes.
    let what = what.split(' ').next().unwrap_or(what).to_string();
    Fail::Reply {
        what,
        code: r.code,
        text: r.text,
    }
}

fn parse_epsv(text: &str) -> Option<u16> {
    let start = text.find("(|||")? + 4;
    let end = start + text[start..].find('|')?;
    text[start..end].parse().ok()
}

fn parse_pasv(text: &str) -> Option<u16> {
    let start = text.find('(')? + 1;
    let end = start + text[start..].find(')')?;
    let nums: Vec<u16> = text[start..end]
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    if nums.len() != 6 || nums[4] > 255 || nums[5] > 255 {
        return None;
    }
    Some(nums[4] * 256 + nums[5])
}

/// How a client vanishes: a reset (SO_LINGER 0, as when the kernel tears a connection down), or
/// plain closes in either order (a killed process's fds are closed by the kernel, which sends FIN).
#[derive(Clone, Copy)]
enum Vanish {
    Reset,
    ControlFirst,
    DataFirst,
}

impl Vanish {
    fn pick(rng: &mut Rng) -> Vanish {
        match rng.below(3) {
            0 => Vanish::Reset,
            1 => Vanish::ControlFirst,
            _ => Vanish::DataFirst,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Vanish::Reset => "reset",
            Vanish::ControlFirst => "close control then data",
            Vanish::DataFirst => "close data then control",
        }
    }

    fn apply(self, ctrl: TcpStream, data: TcpStream) {
        match self {
            Vanish::Reset => {
                let _ = SockRef::from(&data).set_linger(Some(Duration::ZERO));
                let _ = SockRef::from(&ctrl).set_linger(Some(Duration::ZERO));
                drop(data);
                drop(ctrl);
            }
            Vanish::ControlFirst => {
                drop(ctrl);
                drop(data);
            }
            Vanish::DataFirst => {
                drop(data);
                drop(ctrl);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Sc {
    Browse,
    Upload,
    WrongLogin,
    AborRetr,
    VanishRetr,
    VanishStor,
    AborStor,
    Garbage,
    PasvQuit,
    RenameDelete,
}

/// Scenarios and their weights.
const SCENARIOS: &[(Sc, u64)] = &[
    (Sc::Browse, 14),
    (Sc::Upload, 14),
    (Sc::WrongLogin, 8),
    (Sc::AborRetr, 8),
    (Sc::VanishRetr, 7),
    (Sc::VanishStor, 9),
    (Sc::AborStor, 5),
    (Sc::Garbage, 10),
    (Sc::PasvQuit, 6),
    (Sc::RenameDelete, 6),
];

impl Sc {
    fn name(self) -> &'static str {
        match self {
            Sc::Browse => "anon list + retr",
            Sc::Upload => "stor + retr back",
            Sc::WrongLogin => "wrong password",
            Sc::AborRetr => "abor mid-retr",
            Sc::VanishRetr => "vanish mid-retr",
            Sc::VanishStor => "vanish mid-stor",
            Sc::AborStor => "abor mid-stor",
            Sc::Garbage => "garbage lines",
            Sc::PasvQuit => "pasv, no transfer",
            Sc::RenameDelete => "rename + delete",
        }
    }

    fn pick(rng: &mut Rng) -> Sc {
        let total: u64 = SCENARIOS.iter().map(|s| s.1).sum();
        let mut x = rng.below(total);
        for &(sc, w) in SCENARIOS {
            if x < w {
                return sc;
            }
            x -= w;
        }
        Sc::Browse
    }
}

/// What every worker knows: the server, the anonymous files and their contents.
struct Ctx {
    server: SocketAddr,
    timeout: Duration,
    /// Anonymous root files: name (at "/") and content. The last one is the big file.
    anon: Vec<(String, Content)>,
    big: (String, Content),
}

/// Per-worker tallies, merged at the end.
#[derive(Default)]
struct Stats {
    runs: BTreeMap<Sc, u64>,
    failed: BTreeMap<Sc, u64>,
    /// "scenario: kind" -> count.
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    /// Outcomes that are allowed but worth knowing (server closed after garbage, 421 on a
    /// wrong login, which vanish variant ran).
    notes: BTreeMap<String, u64>,
    sessions: u64,
    bytes_down: u64,
    bytes_up: u64,
}

impl Stats {
    fn note(&mut self, what: impl Into<String>) {
        *self.notes.entry(what.into()).or_default() += 1;
    }

    fn merge(&mut self, o: Stats) {
        for (k, v) in o.runs {
            *self.runs.entry(k).or_default() += v;
        }
        for (k, v) in o.failed {
            *self.failed.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.notes {
            *self.notes.entry(k).or_default() += v;
        }
        for s in o.samples {
            if self.samples.len() < MAX_SAMPLES {
                self.samples.push(s);
            }
        }
        self.sessions += o.sessions;
        self.bytes_down += o.bytes_down;
        self.bytes_up += o.bytes_up;
    }
}

/// The states a worker's file may be in: normally one; after an upload whose outcome the client
/// could not see (an error after the data was sent), the old state or the new full content. A
/// partial upload is never one of them. `None` = absent.
type Expect = Vec<Option<Content>>;

struct Worker {
    id: usize,
    rng: Rng,
    ip_seq: u32,
    ctx: Arc<Ctx>,
    /// Path ("/wNN/name") -> acceptable states; a name not here must not exist.
    files: BTreeMap<String, Expect>,
    /// Uploads that were started and abandoned (vanish, ABOR) per path, to name a partial one
    /// if it shows up on disk.
    abandoned: HashMap<String, Vec<Content>>,
    stats: Stats,
    buf: Vec<u8>,
    want: Vec<u8>,
}

impl Worker {
    fn new(id: usize, seed: u64, ctx: Arc<Ctx>) -> Worker {
        Worker {
            id,
            rng: Rng::new(seed ^ mix(id as u64 + 1)),
            ip_seq: 0,
            ctx,
            files: BTreeMap::new(),
            abandoned: HashMap::new(),
            stats: Stats::default(),
            buf: vec![0; BUF_BYTES],
            want: vec![0; BUF_BYTES],
        }
    }

    /// A fresh source address for each session: 127.(10+id).x.y, cycling through 65,024.
    fn next_ip(&mut self) -> Ipv4Addr {
        self.ip_seq = (self.ip_seq + 1) % (254 * 256);
        let n = self.ip_seq;
        Ipv4Addr::new(
            127,
            10 + self.id as u8,
            (n / 254) as u8,
            (n % 254 + 1) as u8,
        )
    }

    fn connect(&mut self) -> Res<Client> {
        let ip = self.next_ip();
        self.stats.sessions += 1;
        Client::connect(self.ctx.server, ip, self.ctx.timeout)
    }

    fn dir(&self) -> String {
        format!("/w{:02}", self.id)
    }

    fn run(&mut self, sc: Sc) {
        *self.stats.runs.entry(sc).or_default() += 1;
        let r = match sc {
            Sc::Browse => self.browse(),
            Sc::Upload => self.upload(),
            Sc::WrongLogin => self.wrong_login(),
            Sc::AborRetr => self.abor_retr(),
            Sc::VanishRetr => self.vanish_retr(),
            Sc::VanishStor => self.vanish_stor(),
            Sc::AborStor => self.abor_stor(),
            Sc::Garbage => self.garbage(),
            Sc::PasvQuit => self.pasv_quit(),
            Sc::RenameDelete => self.rename_delete(),
        };
        if let Err(e) = r {
            *self.stats.failed.entry(sc).or_default() += 1;
            *self
                .stats
                .errors
                .entry(format!("{}: {}", sc.name(), e.kind()))
                .or_default() += 1;
            if self.stats.samples.len() < MAX_SAMPLES {
                self.stats
                    .samples
                    .push(format!("worker {} {}: {e}", self.id, sc.name()));
            }
        }
    }

    /// RETR `path` (from `rest`) on an open session and check every byte against `c`.
    fn retr_check(&mut self, cl: &mut Client, path: &str, c: Content, rest: u64) -> Res<()> {
        if rest > 0 {
            cl.expect(&format!("REST {rest}"), &[350])?;
        }
        let mut data = cl.data(&mut self.rng)?;
        cl.start(&format!("RETR {path}"))?;
        let mut off = rest;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_fail("data read", e)),
            };
            if off + n as u64 > c.size {
                return Err(Fail::Content(format!(
                    "RETR {path}: more than its {} bytes",
                    c.size
                )));
            }
            fill(c.seed, off, &mut self.want[..n]);
            if self.buf[..n] != self.want[..n] {
                return Err(Fail::Content(format!(
                    "RETR {path}: bytes differ near offset {off}"
                )));
            }
            off += n as u64;
            self.stats.bytes_down += n as u64;
        }
        drop(data);
        let r = cl.reply()?;
        if r.code != 226 {
            return Err(reply_fail("RETR", r));
        }
        if off != c.size {
            return Err(Fail::Content(format!(
                "RETR {path}: {off} of {} bytes and 226",
                c.size
            )));
        }
        Ok(())
    }

    /// Read up to `limit` bytes of a running download, checking them; returns how many arrived.
    fn read_prefix(&mut self, data: &mut TcpStream, c: Content, rest: u64, limit: u64) -> Res<u64> {
        let mut got = 0u64;
        while got < limit {
            let want = (limit - got).min(BUF_BYTES as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_fail("data read", e)),
            };
            fill(c.seed, rest + got, &mut self.want[..n]);
            if self.buf[..n] != self.want[..n] {
                return Err(Fail::Content(format!(
                    "prefix differs near offset {}",
                    rest + got
                )));
            }
            got += n as u64;
        }
        self.stats.bytes_down += got;
        Ok(got)
    }

    /// Send `n` bytes of `c` on a data connection.
    fn send_content(&mut self, data: &mut TcpStream, c: Content, n: u64) -> Res<()> {
        let mut off = 0u64;
        while off < n {
            let k = (n - off).min(BUF_BYTES as u64) as usize;
            fill(c.seed, off, &mut self.buf[..k]);
            data.write_all(&self.buf[..k])
                .map_err(|e| io_fail("data write", e))?;
            off += k as u64;
            self.stats.bytes_up += k as u64;
        }
        Ok(())
    }

    /// STOR the whole of `c` to `path` and record the outcome in `files`: the new content on
    /// 226; on any error after the upload may have been taken, the old state or the new content.
    fn stor(&mut self, cl: &mut Client, path: &str, c: Content) -> Res<()> {
        let mut data = cl.data(&mut self.rng)?;
        cl.start(&format!("STOR {path}"))?;
        let old = self.files.get(path).cloned().unwrap_or_else(|| vec![None]);
        let mut maybe = old.clone();
        maybe.push(Some(c));
        self.files.insert(path.to_string(), maybe);
        if let Err(e) = self.send_content(&mut data, c, c.size) {
            // A reset, so the server cannot take the part it got for a complete file.
            let _ = SockRef::from(&data).set_linger(Some(Duration::ZERO));
            return Err(e);
        }
        // FIN says the file is complete; the 226 comes after the server closed its side.
        let _ = data.shutdown(Shutdown::Write);
        drop(data);
        let r = cl.reply()?;
        if r.code != 226 {
            // Refused outright (e.g. 452, 426): the old file stands.
            self.files.insert(path.to_string(), old);
            return Err(reply_fail("STOR", r));
        }
        self.files.insert(path.to_string(), vec![Some(c)]);
        Ok(())
    }

    /// The one content `path` must have, if it is known for sure.
    fn known(&self, path: &str) -> Option<Option<Content>> {
        match self.files.get(path) {
            None => Some(None),
            Some(v) if v.len() == 1 => Some(v[0]),
            Some(_) => None,
        }
    }

    fn pick_anon(&mut self) -> (String, Content) {
        let n = self.ctx.anon.len() as u64;
        self.ctx.anon[self.rng.below(n) as usize].clone()
    }

    // --- the scenarios ---

    /// Anonymous login, one of LIST/NLST/MLSD of the root (every name must be there), one to
    /// three RETRs (some with REST) checked byte for byte, QUIT.
    fn browse(&mut self) -> Res<()> {
        let mut cl = self.connect()?;
        cl.login("anonymous", "soak@example.org")?;
        let verb = ["LIST", "NLST", "MLSD"][self.rng.below(3) as usize];
        let mut data = cl.data(&mut self.rng)?;
        cl.start(&format!("{verb} /"))?;
        let mut listing = Vec::new();
        data.read_to_end(&mut listing)
            .map_err(|e| io_fail("listing read", e))?;
        drop(data);
        let r = cl.reply()?;
        if r.code != 226 {
            return Err(reply_fail(verb, r));
        }
        self.stats.bytes_down += listing.len() as u64;
        let text = String::from_utf8_lossy(&listing);
        let names: Vec<&str> = text
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| match verb {
                "MLSD" => l.split_once("; ").map(|(_, n)| n).unwrap_or(l),
                "LIST" => l.rsplit(' ').next().unwrap_or(l),
                _ => l.rsplit('/').next().unwrap_or(l),
            })
            .collect();
        for (name, _) in &self.ctx.anon {
            if !names.contains(&name.as_str()) {
                return Err(Fail::Content(format!("{verb} / lacks {name}")));
            }
        }
        for _ in 0..1 + self.rng.below(3) {
            let (name, c) = self.pick_anon();
            let rest = if c.size > 0 && self.rng.chance(25) {
                self.rng.below(c.size)
            } else {
                0
            };
            // The big file costs 64 MiB of loopback per pull; fetch it whole only sometimes.
            if name == self.ctx.big.0 && self.rng.chance(80) {
                continue;
            }
            self.retr_check(&mut cl, &format!("/{name}"), c, rest)?;
        }
        cl.quit()
    }

    /// Named login, STOR of a random size to one of this worker's names, RETR it back, QUIT.
    fn upload(&mut self) -> Res<()> {
        let path = format!("{}/f{}", self.dir(), self.rng.below(STOR_NAMES));
        let c = Content {
            seed: self.rng.next(),
            size: random_size(&mut self.rng),
        };
        let mut cl = self.connect()?;
        cl.login(USER, PASS)?;
        self.stor(&mut cl, &path, c)?;
        if self.rng.chance(30) {
            let r = cl.expect(&format!("SIZE {path}"), &[213])?;
            if r.text.trim() != c.size.to_string() {
                return Err(Fail::Content(format!(
                    "SIZE {path} = {} not {}",
                    r.text, c.size
                )));
            }
        }
        self.retr_check(&mut cl, &path, c, 0)?;
        cl.quit()
    }

    /// USER victim (or an unknown name), PASS wrong: 530 after the failure delay (421 is
    /// allowed: a full password queue answers so). Then QUIT or vanish.
    ///
    /// An account that has failed lets one check through a second, from any address, in no
    /// particular order: with every worker guessing at one account, some guesses would wait
    /// past the soak's read timeout by design. So only worker 0 guesses at `victim`, and the
    /// unknown names are each worker's own.
    fn wrong_login(&mut self) -> Res<()> {
        let user = if self.id == 0 && self.rng.chance(50) {
            VICTIM.to_string()
        } else {
            format!("ghost{}-{}", self.id, self.rng.below(1000))
        };
        let mut cl = self.connect()?;
        cl.expect(&format!("USER {user}"), &[331])?;
        if self.rng.chance(20) {
            // Gone while the password check (a helper thread) or the failure delay runs: its
            // answer must find the session closed and change nothing.
            cl.send_raw(format!("PASS wrong-{}\r\n", self.rng.next()).as_bytes())?;
            self.stats.note("wrong password: vanish before the 530");
            return Ok(());
        }
        let r = cl.cmd(&format!("PASS wrong-{}", self.rng.next()))?;
        match r.code {
            530 => {}
            421 => {
                self.stats.note("wrong password: 421 instead of 530");
                return Ok(());
            }
            _ => return Err(reply_fail("PASS (wrong)", r)),
        }
        // Still not logged in: a command that needs a login is refused.
        if self.rng.chance(30) {
            cl.expect("PWD", &[530])?;
        }
        if self.rng.chance(50) {
            cl.quit()
        } else {
            Ok(())
        }
    }

    /// RETR of the big file, read a little, then ABOR (sometimes as Telnet IP + Synch with the
    /// DM as urgent data, RFC 959 section 4.1.3): 426 then 226. The session goes on: NOOP and a
    /// checked RETR.
    fn abor_retr(&mut self) -> Res<()> {
        let (name, big) = self.ctx.big.clone();
        let mut cl = self.connect()?;
        cl.login("anonymous", "soak@example.org")?;
        let rest = if self.rng.chance(30) {
            self.rng.below(big.size / 2)
        } else {
            0
        };
        if rest > 0 {
            cl.expect(&format!("REST {rest}"), &[350])?;
        }
        let mut data = cl.data(&mut self.rng)?;
        cl.start(&format!("RETR /{name}"))?;
        let limit = self.rng.below(MAX_PREFIX_BYTES);
        self.read_prefix(&mut data, big, rest, limit)?;
        if self.rng.chance(30) {
            self.stats.note("abor: sent as IAC IP, urgent IAC DM");
            cl.send_raw(b"\xff\xf4\xff")?;
            SockRef::from(&cl.ctrl)
                .send_out_of_band(b"\xf2")
                .map_err(|e| io_fail("urgent send", e))?;
        }
        cl.send_raw(b"ABOR\r\n")?;
        let r = cl.reply()?;
        match r.code {
            426 => {
                let r2 = cl.reply()?;
                if r2.code != 226 && r2.code != 225 {
                    return Err(reply_fail("ABOR (after 426)", r2));
                }
            }
            // The transfer ended on its own first (it should not have: we stopped reading).
            226 => {
                self.stats.note("abor: transfer completed before ABOR");
                let r2 = cl.reply()?;
                if r2.code != 225 && r2.code != 226 {
                    return Err(reply_fail("ABOR (after 226)", r2));
                }
            }
            _ => return Err(reply_fail("ABOR", r)),
        }
        drop(data);
        cl.expect("NOOP", &[200])?;
        let (name, c) = self.pick_anon();
        if name != self.ctx.big.0 {
            self.retr_check(&mut cl, &format!("/{name}"), c, 0)?;
        }
        cl.quit()
    }

    /// Start a download, read a little, vanish (reset, or closes in either order).
    fn vanish_retr(&mut self) -> Res<()> {
        let (name, c) = if self.rng.chance(70) {
            self.ctx.big.clone()
        } else {
            self.pick_anon()
        };
        let mut cl = self.connect()?;
        cl.login("anonymous", "soak@example.org")?;
        let mut data = cl.data(&mut self.rng)?;
        cl.start(&format!("RETR /{name}"))?;
        let limit = self.rng.below(MAX_PREFIX_BYTES.min(c.size + 1));
        self.read_prefix(&mut data, c, 0, limit)?;
        let how = Vanish::pick(&mut self.rng);
        self.stats.note(format!("vanish mid-retr: {}", how.name()));
        how.apply(cl.ctrl, data);
        Ok(())
    }

    /// Start an upload over an existing file (or a new name), send part of it, vanish. The old
    /// content must survive (a new name must stay absent); half the time a new session checks
    /// at once, and the final disk check covers the rest.
    fn vanish_stor(&mut self) -> Res<()> {
        let existing: Vec<String> = self
            .files
            .iter()
            .filter(|(p, v)| v.len() == 1 && v[0].is_some() && p.contains("/f"))
            .map(|(p, _)| p.clone())
            .collect();
        let path = if !existing.is_empty() && self.rng.chance(75) {
            existing[self.rng.below(existing.len() as u64) as usize].clone()
        } else {
            format!("{}/v{}", self.dir(), self.rng.below(VANISH_NEW_NAMES))
        };
        let c = Content {
            seed: self.rng.next(),
            size: 1 + self.rng.below(MAX_UPLOAD_BYTES),
        };
        // Strictly less than the whole file: a client that sent everything and closed the data
        // connection has completed its upload, whatever it does next.
        let part = self.rng.below(c.size);
        let mut cl = self.connect()?;
        cl.login(USER, PASS)?;
        let mut data = cl.data(&mut self.rng)?;
        cl.start(&format!("STOR {path}"))?;
        self.abandoned.entry(path.clone()).or_default().push(c);
        self.send_content(&mut data, c, part)?;
        let how = Vanish::pick(&mut self.rng);
        self.stats.note(format!("vanish mid-stor: {}", how.name()));
        how.apply(cl.ctrl, data);
        if self.rng.chance(50) {
            self.check_path(&path)?;
        }
        Ok(())
    }

    /// A new session checks that `path` has its one expected state (content, or absent).
    fn check_path(&mut self, path: &str) -> Res<()> {
        let Some(expect) = self.known(path) else {
            return Ok(());
        };
        let mut cl = self.connect()?;
        cl.login(USER, PASS)?;
        match expect {
            Some(c) => self.retr_check(&mut cl, path, c, 0)?,
            None => {
                cl.expect(&format!("SIZE {path}"), &[550])?;
            }
        }
        cl.quit()
    }

    /// Start an upload over an existing file, send part of it, ABOR: 426 then 226, and the old
    /// content is still there (checked with RETR on the same session).
    fn abor_stor(&mut self) -> Res<()> {
        let existing: Vec<(String, Content)> = self
            .files
            .iter()
            .filter(|(p, _)| p.contains("/f"))
            .filter_map(|(p, v)| match v.as_slice() {
                [Some(c)] => Some((p.clone(), *c)),
                _ => None,
            })
            .collect();
        if existing.is_empty() {
            return self.upload();
        }
        let (path, old) = existing[self.rng.below(existing.len() as u64) as usize].clone();
        let c = Content {
            seed: self.rng.next(),
            size: 1 + self.rng.below(MAX_UPLOAD_BYTES),
        };
        let part = self.rng.below(c.size);
        let mut cl = self.connect()?;
        cl.login(USER, PASS)?;
        let mut data = cl.data(&mut self.rng)?;
        cl.start(&format!("STOR {path}"))?;
        self.abandoned.entry(path.clone()).or_default().push(c);
        self.send_content(&mut data, c, part)?;
        cl.send_raw(b"ABOR\r\n")?;
        let r = cl.reply()?;
        match r.code {
            426 | 451 => {
                let r2 = cl.reply()?;
                if r2.code != 226 && r2.code != 225 {
                    return Err(reply_fail("ABOR (after 426)", r2));
                }
            }
            _ => return Err(reply_fail("ABOR mid-STOR", r)),
        }
        drop(data);
        self.retr_check(&mut cl, &path, old, 0)?;
        cl.quit()
    }

    /// Lines no server should take as commands: random bytes, lines over 4096 bytes, NUL, bare
    /// CR, empty lines, unknown verbs and bad arguments, sent in one burst with a NOOP after them
    /// (before or after an anonymous login). Each must get a 4xx/5xx reply, the NOOP a 200 (a line
    /// ended by a bare LF is a line, so "NOOP\n" gets one too); the server may also close. Some
    /// runs end with half a line and vanish.
    fn garbage(&mut self) -> Res<()> {
        let mut cl = self.connect()?;
        let logged_in = self.rng.chance(50);
        if logged_in {
            cl.login("anonymous", "soak@example.org")?;
        }
        let mut burst = Vec::new();
        let mut expect_ok = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let (line, ok) = self.garbage_line(logged_in);
            burst.extend_from_slice(&line);
            expect_ok.push(ok);
        }
        if self.rng.chance(15) {
            // Half a line, then gone: the server must drop the partial line with the session.
            burst.extend_from_slice(b"RETR /half-a-li");
            cl.send_raw(&burst)?;
            self.stats.note("garbage: half a line, then vanish");
            return Ok(());
        }
        burst.extend_from_slice(b"NOOP\r\n");
        expect_ok.push(true);
        cl.send_raw(&burst)?;
        for ok in expect_ok {
            let r = match cl.reply() {
                Ok(r) => r,
                Err(Fail::Closed(_)) => {
                    self.stats.note("garbage: server closed the connection");
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let fine = if ok {
                r.code == 200
            } else {
                (400..600).contains(&r.code)
            };
            if !fine {
                return Err(reply_fail(
                    if ok { "NOOP after garbage" } else { "garbage" },
                    r,
                ));
            }
            if r.code == 421 {
                self.stats.note("garbage: 421 and close");
                return Ok(());
            }
        }
        cl.quit()
    }

    /// One garbage line (with its terminator) and whether it is in fact a valid NOOP.
    fn garbage_line(&mut self, logged_in: bool) -> (Vec<u8>, bool) {
        let r = &mut self.rng;
        match r.below(10) {
            0 | 1 => {
                // Random bytes, but never a newline, and never a letter first (so never a verb).
                let n = 1 + r.below(300) as usize;
                let mut v: Vec<u8> = (0..n)
                    .map(|_| match r.below(256) as u8 {
                        b'\n' | b'\r' => b'#',
                        b => b,
                    })
                    .collect();
                if v[0].is_ascii_alphabetic() || v[0] == 0xff {
                    v[0] = b'%';
                }
                v.extend_from_slice(b"\r\n");
                (v, false)
            }
            2 => {
                // Over the 4096-byte cap, sometimes far over it.
                let n = if r.chance(50) {
                    4097 + r.below(200) as usize
                } else {
                    4096 + r.below(60_000) as usize
                };
                let mut v = b"RETR /".to_vec();
                v.extend((0..n).map(|i| b'a' + (i % 26) as u8));
                v.extend_from_slice(b"\r\n");
                (v, false)
            }
            3 => {
                let n = 4080 + r.below(30) as usize;
                let mut v = vec![b'X'; n];
                v.extend_from_slice(b"\r\n");
                (v, false)
            }
            4 => {
                let v: &[u8] = [
                    &b"RETR a\0b\r\n"[..],
                    b"\0\r\n",
                    b"NO\0OP\r\n",
                    b"CWD \0\r\n",
                ][r.below(4) as usize];
                (v.to_vec(), false)
            }
            5 => {
                let v: &[u8] = [&b"NOOP\rQUIT\r\n"[..], b"NOOP\r\r\n", b"\r\r\n", b"\r\n"]
                    [r.below(4) as usize];
                (v.to_vec(), false)
            }
            6 => (b"NOOP\n".to_vec(), true),
            _ => {
                let mut bad: Vec<&[u8]> = vec![
                    b"XYZZY\r\n",
                    b"FOO bar\r\n",
                    b"HTTP/1.1 200 OK\r\n",
                    b"GET / HTTP/1.1\r\n",
                    b"      \r\n",
                    b"\xff\xfe\xfd\xfc\r\n",
                    b"\xc3\x28\xa0\xa1\r\n",
                ];
                if logged_in {
                    bad.extend_from_slice(&[
                        &b"PORT 1,2,3\r\n"[..],
                        b"PORT 127,0,0,1,0,21\r\n",
                        b"EPRT |9|::1|5000|\r\n",
                        b"TYPE Z\r\n",
                        b"MODE Z\r\n",
                        b"REST abc\r\n",
                        b"REST -1\r\n",
                        b"RETR\r\n",
                        b"RETR /no-such-file\r\n",
                        b"CWD /../../../etc\r\n",
                        b"STOR /x\r\n",
                        b"DELE /s00\r\n",
                        b"RNTO /x\r\n",
                        b"SITE CHMOD 4777 /s00\r\n",
                        b"EPSV 9\r\n",
                        b"MDTM /nope\r\n",
                    ]);
                } else {
                    bad.extend_from_slice(&[&b"RETR /s00\r\n"[..], b"LIST\r\n", b"PASS x\r\n"]);
                }
                (bad[r.below(bad.len() as u64) as usize].to_vec(), false)
            }
        }
    }

    /// PASV or EPSV (one to three times), maybe connect the data socket, no transfer, QUIT; or
    /// vanish with the passive port open.
    fn pasv_quit(&mut self) -> Res<()> {
        let mut cl = self.connect()?;
        cl.login("anonymous", "soak@example.org")?;
        let mut last = None;
        for _ in 0..1 + self.rng.below(3) {
            let port = if self.rng.chance(50) {
                let r = cl.expect("PASV", &[227])?;
                parse_pasv(&r.text)
            } else {
                let r = cl.expect("EPSV", &[229])?;
                parse_epsv(&r.text)
            };
            last = Some(port.ok_or_else(|| Fail::Proto("bad passive reply".into()))?);
        }
        let data = match (last, self.rng.chance(50)) {
            (Some(port), true) => Some(connect_from(
                cl.src,
                SocketAddr::new(cl.server.ip(), port),
                cl.timeout,
            )?),
            _ => None,
        };
        if self.rng.chance(20) {
            self.stats.note("pasv: vanish with the passive port open");
            return Ok(());
        }
        let r = cl.quit();
        drop(data);
        r
    }

    /// STOR a small file, RNFR/RNTO it to another name, SIZE and RETR it there, DELE it half the
    /// time (then SIZE is 550); RNFR of a missing name is 550.
    fn rename_delete(&mut self) -> Res<()> {
        let dir = self.dir();
        let from = format!("{dir}/rs");
        let to = format!("{dir}/rn{}", self.rng.below(RENAME_NAMES));
        let c = Content {
            seed: self.rng.next(),
            size: self.rng.below(64 << 10),
        };
        let mut cl = self.connect()?;
        cl.login(USER, PASS)?;
        self.stor(&mut cl, &from, c)?;
        cl.expect(&format!("RNFR {from}"), &[350])?;
        let old_to = self.files.get(&to).cloned().unwrap_or_else(|| vec![None]);
        // Until the 250, either name may hold the file.
        self.files.insert(from.clone(), vec![Some(c), None]);
        let mut maybe = old_to;
        maybe.push(Some(c));
        self.files.insert(to.clone(), maybe);
        cl.expect(&format!("RNTO {to}"), &[250])?;
        self.files.remove(&from);
        self.files.insert(to.clone(), vec![Some(c)]);
        let r = cl.expect(&format!("SIZE {to}"), &[213])?;
        if r.text.trim() != c.size.to_string() {
            return Err(Fail::Content(format!("SIZE {to} = {}", r.text)));
        }
        self.retr_check(&mut cl, &to, c, 0)?;
        cl.expect(&format!("RNFR {from}"), &[550])?;
        if self.rng.chance(50) {
            self.files.insert(to.clone(), vec![Some(c), None]);
            cl.expect(&format!("DELE {to}"), &[250])?;
            self.files.remove(&to);
            cl.expect(&format!("SIZE {to}"), &[550])?;
        }
        cl.quit()
    }
}

// ---------------------------------------------------------------------------------------------
// The server process

/// The `ringftpd` child: its pid, address, stderr tail and the session count it reports.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<StderrLog>>,
    /// (sessions, transfers) from the last STATUS= datagram; None until one came.
    status: Arc<Mutex<Option<(u64, u64)>>>,
    stop: Arc<AtomicBool>,
    flags: Vec<String>,
}

#[derive(Default)]
struct StderrLog {
    lines: u64,
    tail: VecDeque<String>,
    /// WARN lines other than failed logins.
    warnings: u64,
    failed_logins: u64,
    errors: u64,
    panics: u64,
    samples: Vec<String>,
}

impl StderrLog {
    fn push(&mut self, line: String) {
        self.lines += 1;
        let lower = line.to_ascii_lowercase();
        let bad = if lower.contains("panicked") {
            self.panics += 1;
            true
        } else if line.contains("ERROR") {
            self.errors += 1;
            true
        } else if line.contains("WARN") && line.contains("failed login") {
            // The wrong-password scenario's own doing.
            self.failed_logins += 1;
            false
        } else if line.contains("WARN") {
            self.warnings += 1;
            true
        } else {
            false
        };
        if bad && self.samples.len() < 20 {
            self.samples.push(line.clone());
        }
        self.tail.push_back(line);
        if self.tail.len() > 40 {
            self.tail.pop_front();
        }
    }
}

/// A passive port range below the kernel's ephemeral range (so client sockets never collide with
/// it) whose ports are all free now.
fn free_port_range(len: u16) -> Result<(u16, u16), String> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let first = 10_000u16;
    if low < first + len {
        return Err(format!(
            "ephemeral ports start at {low}: no room below for {len}"
        ));
    }
    let blocks = (low - first) / len;
    let start_block = std::process::id() as u16 % blocks;
    for i in 0..blocks {
        let b = (start_block + i) % blocks;
        let min = first + b * len;
        let max = min + len - 1;
        if (min..=max).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok((min, max));
        }
    }
    Err("no free passive port range".into())
}

/// Flags for limits that would throttle the soak, set generously when this build has them.
/// Issue 10 is adding default caps; the soak's own fresh source addresses already avoid the
/// per-IP ones, but per-user caps would count all of `soak`'s sessions together.
fn generous_flags(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        let Some(flag) = line.split_whitespace().next() else {
            continue;
        };
        let flag = flag.trim_end_matches(',');
        let is_cap = flag.starts_with("--max-per-")
            || (flag.starts_with("--max-") && flag.contains("-per-") && flag != "--max-sessions");
        if !is_cap {
            continue;
        }
        let value = if line.contains("0 = no limit") || line.contains("0 means no limit") {
            "0"
        } else {
            "10000"
        };
        out.push(flag.to_string());
        out.push(value.to_string());
    }
    out
}

fn start_server(o: &Opts, tmp: &Path, anon: &Path, users: &Path) -> Result<Server, String> {
    let help = Command::new(&o.bin)
        .arg("--help")
        .output()
        .map_err(|e| format!("{}: {e}", o.bin.display()))?;
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let (pmin, pmax) = free_port_range(2000)?;
    let mut args: Vec<String> = vec![
        "--root".into(),
        anon.display().to_string(),
        "--users".into(),
        users.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--pasv-ports".into(),
        format!("{pmin}-{pmax}"),
        "--shutdown-grace-secs".into(),
        SHUTDOWN_GRACE_SECS.to_string(),
        "--log-level".into(),
        "info".into(),
    ];
    // The box is shared with compilers; pinning would only make the server fight them.
    if help.contains("--no-pin") {
        args.push("--no-pin".into());
    }
    // Run as root (as here and in CI), the server refuses to serve as root without this.
    if help.contains("--allow-root") && nix::unistd::geteuid().is_root() {
        args.push("--allow-root".into());
    }
    let extra = generous_flags(&help);
    args.extend(extra.iter().cloned());
    if let Some(s) = &o.shards {
        args.extend(["--shards".into(), s.clone()]);
    }
    if let Some(io) = &o.io {
        args.extend(["--io".into(), io.clone()]);
    }

    // The server reports "N session(s), M transfer(s)" over the sd_notify protocol whenever it
    // changes (checked every 250 ms): how the soak knows the sessions have drained.
    let notify_path = tmp.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).map_err(|e| format!("notify socket: {e}"))?;
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("notify socket: {e}"))?;
    let status = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let status = status.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = notify.recv(&mut buf) else {
                    continue;
                };
                let msg = String::from_utf8_lossy(&buf[..n]);
                for line in msg.lines() {
                    if let Some(s) = line.strip_prefix("STATUS=") {
                        if let Some(v) = parse_status(s) {
                            *status.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
                        }
                    }
                }
            }
        });
    }

    let mut child = Command::new(&o.bin)
        .args(&args)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", o.bin.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let log = Arc::new(Mutex::new(StderrLog::default()));
    let (tx, rx) = mpsc::channel::<String>();
    {
        let log = log.clone();
        thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && line.contains("ftp://") {
                    sent = tx.send(line.clone()).is_ok();
                }
                log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let tail: Vec<String> = log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .tail
                .iter()
                .cloned()
                .collect();
            return Err(format!(
                "ringftpd did not report its address; stderr:\n{}",
                tail.join("\n")
            ));
        }
    };
    let addr = line
        .split_once("ftp://")
        .and_then(|(_, r)| r.split('/').next())
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .ok_or_else(|| format!("no address in {line:?}"))?;
    if !addr.ip().is_loopback() {
        let _ = child.kill();
        return Err(format!("server address {addr} is not loopback"));
    }
    Ok(Server {
        child,
        addr,
        stderr: log,
        status,
        stop,
        flags: args,
    })
}

/// "12 session(s), 3 transfer(s)" -> (12, 3).
fn parse_status(s: &str) -> Option<(u64, u64)> {
    let mut it = s.split(", ");
    let sessions = it.next()?.split(' ').next()?.parse().ok()?;
    let transfers = it.next()?.split(' ').next()?.parse().ok()?;
    Some((sessions, transfers))
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sessions(&self) -> Option<(u64, u64)> {
        *self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait (bounded) until the server reports no sessions; the time it took, or None.
    fn drain(&self, max: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < max {
            if let Some((0, _)) = self.sessions() {
                return Some(t0.elapsed());
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// The server's open fds, and how many of each kind (socket, pipe, anon_inode:[io_uring], file).
fn fds(pid: u32) -> (u64, BTreeMap<String, u64>) {
    let mut kinds = BTreeMap::new();
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            n += 1;
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let kind = if let Some(k) = target.strip_prefix("anon_inode:") {
                k.to_string()
            } else if let Some((k, _)) = target.split_once(":[") {
                k.to_string()
            } else {
                "file".to_string()
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    (n, kinds)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Checks after the soak

/// Every file in the workers' directories against what the workers expect; violations as text.
fn check_disk(
    home: &Path,
    workers: &[Worker],
    buf: &mut [u8],
    want: &mut [u8],
) -> (u64, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    for w in workers {
        let dir = home.join(format!("w{:02}", w.id));
        let mut on_disk = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.starts_with(TEMP_PREFIX) {
                        on_disk.push(name);
                    }
                }
            }
            Err(e) => bad.push(format!("{}: {e}", dir.display())),
        }
        for name in &on_disk {
            let vpath = format!("/w{:02}/{name}", w.id);
            let Some(expect) = w.files.get(&vpath) else {
                bad.push(format!("{vpath}: exists but no upload to it completed"));
                continue;
            };
            checked += 1;
            let local = dir.join(name);
            let matched = expect
                .iter()
                .flatten()
                .any(|c| same_content(&local, *c, buf, want));
            if !matched {
                let size = std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
                let partial = w.abandoned.get(&vpath).into_iter().flatten().any(|c| {
                    size < c.size && same_content(&local, Content { size, ..*c }, buf, want)
                });
                bad.push(if partial {
                    format!(
                        "{vpath}: replaced by a partial upload ({size} bytes of an abandoned one)"
                    )
                } else {
                    format!("{vpath}: {size} bytes that match no completed upload")
                });
            }
        }
        for (vpath, expect) in &w.files {
            let name = vpath.rsplit('/').next().unwrap_or("");
            if !expect.contains(&None) && !on_disk.iter().any(|n| n == name) {
                bad.push(format!("{vpath}: missing after a completed upload"));
            }
        }
    }
    (checked, bad)
}

fn same_content(path: &Path, c: Content, buf: &mut [u8], want: &mut [u8]) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if f.metadata().map(|m| m.len()).unwrap_or(u64::MAX) != c.size {
        return false;
    }
    let mut off = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => return off == c.size,
            Ok(n) => n,
            Err(_) => return false,
        };
        fill(c.seed, off, &mut want[..n]);
        if buf[..n] != want[..n] {
            return false;
        }
        off += n as u64;
    }
}

/// Temporary upload files anywhere under `root`.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                out.push(p);
            }
        }
    }
    out
}

/// After the soak: an anonymous login, NOOP and a checked RETR, and a named login with NOOP.
fn still_answers(ctx: &Arc<Ctx>) -> Res<()> {
    let mut w = Worker::new(MAX_WORKERS - 1, 1, ctx.clone());
    let mut cl = w.connect()?;
    cl.login("anonymous", "soak@example.org")?;
    cl.expect("NOOP", &[200])?;
    let (name, c) = ctx.anon[0].clone();
    w.retr_check(&mut cl, &format!("/{name}"), c, 0)?;
    cl.quit()?;
    let mut cl = w.connect()?;
    cl.login(USER, PASS)?;
    cl.expect("NOOP", &[200])?;
    cl.quit()
}

// ---------------------------------------------------------------------------------------------
// Main

fn write_file(path: &Path, c: Content) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let mut buf = vec![0u8; BUF_BYTES];
    let mut off = 0;
    while off < c.size {
        let n = (c.size - off).min(BUF_BYTES as u64) as usize;
        fill(c.seed, off, &mut buf[..n]);
        f.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs bench targets without arguments: only say how to run.
    if args.is_empty() {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let o = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Opts) -> Result<bool, String> {
    let tmp = tempfile::Builder::new()
        .prefix("ringftpd-soak.")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let anon = tmp.path().join("anon");
    let home = tmp.path().join("home");
    let victim = tmp.path().join("victim");
    for d in [&anon, &home, &victim] {
        std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    for w in 0..o.workers {
        let d = home.join(format!("w{w:02}"));
        std::fs::create_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut rng = Rng::new(o.seed);
    let mut files = Vec::new();
    for i in 0..12 {
        files.push((
            format!("s{i:02}"),
            Content {
                seed: rng.next(),
                size: if i == 0 { 0 } else { rng.below(256 << 10) },
            },
        ));
    }
    for i in 0..4 {
        files.push((
            format!("m{i}"),
            Content {
                seed: rng.next(),
                size: (1 << 20) + rng.below(3 << 20),
            },
        ));
    }
    let big = (
        "big.bin".to_string(),
        Content {
            seed: rng.next(),
            size: o.big_bytes,
        },
    );
    files.push(big.clone());
    for (name, c) in &files {
        write_file(&anon.join(name), *c).map_err(|e| format!("{name}: {e}"))?;
    }
    let users = tmp.path().join("users.toml");
    let users_text = format!(
        "[[user]]\nname = \"{USER}\"\n{}\nroot = \"{}\"\naccess = \"read-write\"\n\n\
         [[user]]\nname = \"{VICTIM}\"\n{}\nroot = \"{}\"\naccess = \"read-write\"\n",
        ringftpd::auth::hash_line(PASS.as_bytes()),
        home.display(),
        ringftpd::auth::hash_line(format!("{}-{}", PASS, rng.next()).as_bytes()),
        victim.display(),
    );
    std::fs::write(&users, users_text).map_err(|e| format!("users file: {e}"))?;

    let mut server = start_server(o, tmp.path(), &anon, &users)?;
    let pid = server.pid();
    let (fds_start, _) = fds(pid);
    let rss_start = rss_kib(pid);
    eprintln!(
        "soak: ringftpd pid {pid} on ftp://{}/ ({}), seed {}, {} workers, {} s",
        server.addr,
        server.flags.join(" "),
        o.seed,
        o.workers,
        o.duration.as_secs()
    );
    let ctx = Arc::new(Ctx {
        server: server.addr,
        timeout: o.timeout,
        anon: files,
        big,
    });

    // Warm-up: every worker runs every scenario once, so the baseline includes the allocator's
    // arenas, the pipe pool and the helper threads' first use, not just an idle start.
    let warm = Arc::new(Barrier::new(o.workers + 1));
    let go = Arc::new(Barrier::new(o.workers + 1));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut handles = Vec::new();
    let stop_early = Arc::new(AtomicBool::new(false));
    let iterations = Arc::new(AtomicU64::new(0));
    for id in 0..o.workers {
        let ctx = ctx.clone();
        let warm = warm.clone();
        let go = go.clone();
        let done = done_tx.clone();
        let seed = o.seed;
        let duration = o.duration;
        let max_iter = o.max_iterations;
        let stop_early = stop_early.clone();
        let iterations = iterations.clone();
        let h = thread::Builder::new()
            .name(format!("soak-{id}"))
            .spawn(move || {
                let mut w = Worker::new(id, seed, ctx);
                for &(sc, _) in SCENARIOS {
                    w.run(sc);
                }
                let warm_stats = std::mem::take(&mut w.stats);
                warm.wait();
                go.wait();
                let deadline = Instant::now() + duration;
                let mut n = 0;
                while Instant::now() < deadline
                    && n < max_iter
                    && !stop_early.load(Ordering::Relaxed)
                {
                    let sc = Sc::pick(&mut w.rng);
                    w.run(sc);
                    n += 1;
                }
                iterations.fetch_add(n, Ordering::Relaxed);
                let _ = done.send(());
                (w, warm_stats)
            })
            .map_err(|e| format!("spawn: {e}"))?;
        handles.push(h);
    }
    drop(done_tx);
    warm.wait();
    let warm_drain = server.drain(DRAIN_WAIT);
    thread::sleep(Duration::from_millis(500));
    let (fds_before, kinds_before) = fds(pid);
    let rss_before = rss_kib(pid);
    eprintln!(
        "soak: warm-up done, baseline {fds_before} fds, VmRSS {}; soaking for {} s",
        mib(rss_before),
        o.duration.as_secs()
    );
    let t0 = Instant::now();
    go.wait();

    // Every operation has a timeout, but a scenario is several operations: give the workers the
    // duration plus a generous margin, then report any that has not come back as stuck.
    let hard = o.duration + o.timeout * 8 + Duration::from_secs(30);
    let mut finished = 0;
    while finished < o.workers {
        let left = hard.saturating_sub(t0.elapsed());
        match done_rx.recv_timeout(left) {
            Ok(()) => finished += 1,
            Err(_) => break,
        }
    }
    let soak_secs = t0.elapsed().as_secs_f64();
    stop_early.store(true, Ordering::Relaxed);
    let stuck = o.workers - finished;
    let mut stats = Stats::default();
    let mut warm_stats = Stats::default();
    let mut workers = Vec::new();
    if stuck == 0 {
        for h in handles {
            match h.join() {
                Ok((w, ws)) => {
                    warm_stats.merge(ws);
                    workers.push(w);
                }
                Err(_) => return Err("a worker panicked".into()),
            }
        }
    }
    for w in &mut workers {
        stats.merge(std::mem::take(&mut w.stats));
    }

    let mut violations: Vec<String> = Vec::new();
    if stuck > 0 {
        violations.push(format!(
            "{stuck} worker(s) still stuck {hard:?} after the start"
        ));
    }
    let drain = server.drain(DRAIN_WAIT);
    if drain.is_none() {
        violations.push(format!(
            "sessions did not drain within {DRAIN_WAIT:?} (last status {:?})",
            server.sessions()
        ));
    }
    // Fds are closed a loop turn after the session ends (cancel, then close): wait for them.
    let settle = Instant::now();
    let (mut fds_after, mut kinds_after) = fds(pid);
    while fds_after > fds_before + FD_SLACK && settle.elapsed() < FD_SETTLE_WAIT {
        thread::sleep(Duration::from_millis(200));
        (fds_after, kinds_after) = fds(pid);
    }
    let rss_after = rss_kib(pid);
    if fds_after > fds_before + FD_SLACK {
        violations.push(format!(
            "fds {fds_before} -> {fds_after} (more than +{FD_SLACK}): {kinds_before:?} -> {kinds_after:?}"
        ));
    }
    if rss_after > rss_before + RSS_SLACK_KIB {
        violations.push(format!(
            "VmRSS {} -> {} (more than +{})",
            mib(rss_before),
            mib(rss_after),
            mib(RSS_SLACK_KIB)
        ));
    }
    let answers = still_answers(&ctx);
    if let Err(e) = &answers {
        violations.push(format!("server no longer answers: {e}"));
    }
    let temp_t0 = Instant::now();
    let mut temps = temp_files(tmp.path());
    while !temps.is_empty() && temp_t0.elapsed() < TEMP_WAIT {
        thread::sleep(Duration::from_millis(100));
        temps = temp_files(tmp.path());
    }
    for t in temps.iter().take(10) {
        violations.push(format!("temporary upload file left: {}", t.display()));
    }
    let mut buf = vec![0u8; BUF_BYTES];
    let mut want = vec![0u8; BUF_BYTES];
    let (files_checked, disk_bad) = if stuck == 0 {
        check_disk(&home, &workers, &mut buf, &mut want)
    } else {
        (0, vec![])
    };
    violations.extend(disk_bad.iter().cloned());
    let error_total: u64 =
        stats.errors.values().sum::<u64>() + warm_stats.errors.values().sum::<u64>();
    if error_total > 0 {
        violations.push(format!("{error_total} scenario(s) failed"));
    }

    // SIGTERM: with no sessions left the server stops at once, and must exit 0 within the grace.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let term_t0 = Instant::now();
    let limit = Duration::from_secs(SHUTDOWN_GRACE_SECS) + EXIT_MARGIN;
    let mut exit = None;
    while term_t0.elapsed() < limit {
        if let Ok(Some(st)) = server.child.try_wait() {
            exit = Some(st);
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let term_secs = term_t0.elapsed().as_secs_f64();
    match exit {
        Some(st) if st.success() => {}
        Some(st) => violations.push(format!("after SIGTERM: {st}")),
        None => {
            violations.push(format!("still running {limit:?} after SIGTERM"));
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }
    server.stop.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(100));
    let log = std::mem::take(&mut *server.stderr.lock().unwrap_or_else(|e| e.into_inner()));
    if log.panics > 0 {
        violations.push(format!(
            "{} panic line(s) on the server's stderr",
            log.panics
        ));
    }

    // --- summary ---
    let ok = violations.is_empty();
    println!();
    println!(
        "soak: seed {}, {} workers, {:.0} s (+ warm-up), server {}",
        o.seed,
        o.workers,
        soak_secs,
        server.flags.join(" ")
    );
    println!("{:<20} {:>8} {:>8}", "scenario", "runs", "failed");
    for (sc, n) in &stats.runs {
        println!(
            "{:<20} {:>8} {:>8}",
            sc.name(),
            n,
            stats.failed.get(sc).copied().unwrap_or(0)
        );
    }
    println!(
        "sessions {} ({:.0}/s), scenarios {}, down {} MiB, up {} MiB; warm-up: {} scenario(s), {} failed",
        stats.sessions,
        stats.sessions as f64 / soak_secs.max(0.001),
        iterations.load(Ordering::Relaxed),
        stats.bytes_down >> 20,
        stats.bytes_up >> 20,
        warm_stats.runs.values().sum::<u64>(),
        warm_stats.failed.values().sum::<u64>(),
    );
    let mut errors = warm_stats.errors.clone();
    for (k, v) in &stats.errors {
        *errors.entry(k.clone()).or_default() += v;
    }
    if errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors:");
        for (k, v) in &errors {
            println!("  {v:>6}  {k}");
        }
        for s in warm_stats
            .samples
            .iter()
            .chain(&stats.samples)
            .take(MAX_SAMPLES)
        {
            println!("    e.g. {s}");
        }
    }
    println!("notes (allowed outcomes):");
    for (k, v) in &stats.notes {
        println!("  {v:>6}  {k}");
    }
    println!(
        "server: fds {fds_before} -> {fds_after} (limit +{FD_SLACK}; {fds_start} at start-up) {kinds_before:?} -> {kinds_after:?}"
    );
    println!(
        "server: VmRSS {} -> {} (limit +{}; {} at start-up); drained in {} (warm-up {})",
        mib(rss_before),
        mib(rss_after),
        mib(RSS_SLACK_KIB),
        mib(rss_start),
        drain.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        warm_drain.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
    );
    println!(
        "server: stderr {} lines, {} failed-login WARN, {} other WARN, {} ERROR, {} panic; answers after the soak: {}; SIGTERM -> {} in {:.2} s",
        log.lines,
        log.failed_logins,
        log.warnings,
        log.errors,
        log.panics,
        if answers.is_ok() { "yes" } else { "NO" },
        exit.map_or("still running".into(), |s| s.to_string()),
        term_secs
    );
    for s in log.samples.iter().take(10) {
        println!("    {s}");
    }
    println!(
        "files: {files_checked} worker file(s) on disk checked byte for byte, {} temp file(s) left",
        temps.len()
    );
    if ok {
        println!("soak: PASS");
    } else {
        println!("soak: FAIL");
        for v in &violations {
            println!("  - {v}");
        }
    }
    let rec = serde_json::json!({
        "mode": "soak",
        "ok": ok,
        "seed": o.seed,
        "workers": o.workers,
        "duration_s": o.duration.as_secs(),
        "soak_s": (soak_secs * 10.0).round() / 10.0,
        "sessions": stats.sessions,
        "scenarios": stats.runs.iter().map(|(k, v)| (k.name().to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "failed": stats.failed.iter().map(|(k, v)| (k.name().to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "errors": errors,
        "notes": stats.notes,
        "bytes_down": stats.bytes_down,
        "bytes_up": stats.bytes_up,
        "fds_start": fds_start,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_kib_start": rss_start,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "files_checked": files_checked,
        "temp_files": temps.len(),
        "stderr_failed_login": log.failed_logins,
        "stderr_warn": log.warnings,
        "stderr_error": log.errors,
        "sigterm_exit_s": (term_secs * 100.0).round() / 100.0,
        "violations": violations,
    });
    println!("{rec}");
    if o.keep {
        let kept = tmp.keep();
        eprintln!("soak: kept {}", kept.display());
    }
    Ok(ok)
}
