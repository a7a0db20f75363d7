//! Abuse limits on the real server: the login timeout, session caps per IP and per user, the
//! connection rate per IP, bans after failed logins per IP, the per-account throttle, and the
//! password-spraying scenario (256 addresses guessing one account while another session works).
//! Clients come from several loopback addresses (127.0.0.0/8 is all loopback on Linux): each
//! socket is bound to its address before it connects.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Ctrl, TIMEOUT, USER_PASSWORD};
use socket2::{Domain, Socket, Type};

/// A TCP connection to `server` from `from` (any port).
fn connect_from(from: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())?;
    s.connect_timeout(&server.into(), TIMEOUT)?;
    Ok(s.into())
}

/// A control connection from `from` and its first reply (220, or 421 from a limit).
fn greet_from(from: Ipv4Addr, server: SocketAddr) -> (Ctrl, u16, String) {
    let mut c = Ctrl::from_stream(
        connect_from(from, server).unwrap_or_else(|e| panic!("connect from {from}: {e}")),
    );
    let (code, text) = c.read_reply();
    (c, code, text)
}

/// A control connection from `from` that got its 220.
#[track_caller]
fn ctrl_from(from: Ipv4Addr, server: SocketAddr) -> Ctrl {
    let (c, code, text) = greet_from(from, server);
    assert_eq!(code, 220, "greeting to {from}: {code} {text}");
    c
}

/// Connect from `from` until the greeting is 220, within [`TIMEOUT`] (a session's slot is
/// given back just after its connection closes, so the first try may still be refused).
#[track_caller]
fn ctrl_from_eventually(from: Ipv4Addr, server: SocketAddr) -> Ctrl {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (c, code, text) = greet_from(from, server);
        if code == 220 {
            return c;
        }
        assert!(Instant::now() < deadline, "still refused: {code} {text}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Users for the tests: read-only access is all they need.
const RO: &str = "access = \"read-only\"";

/// The `n`-th spraying address: 127.0.1.2, 127.0.1.3, ...
fn spray_addr(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 1, 2)) + n)
}

/// What the spraying clients saw.
#[derive(Default)]
struct SprayCounts {
    /// PASS commands sent.
    guesses: AtomicUsize,
    /// Clients that have sent at least one PASS.
    started: AtomicUsize,
    /// 530 answers.
    refused: AtomicUsize,
    /// 421 answers (at connect or later).
    closed: AtomicUsize,
}

/// One hostile client: from `from`, guess `user`'s password over and over, reconnecting when
/// closed, until `stop`.
fn spray(from: Ipv4Addr, server: SocketAddr, user: &str, stop: &AtomicBool, n: &SprayCounts) {
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let Ok(s) = connect_from(from, server) else {
            // Refused or reset under load: an attacker just tries again.
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        // Short reads, so the client notices `stop` while a delayed answer is still pending.
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let read = |r: &mut BufReader<TcpStream>| -> Option<String> {
            let mut line = String::new();
            loop {
                match r.read_line(&mut line) {
                    Ok(0) => return None,
                    Ok(_) if line.ends_with('\n') => return Some(line),
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if stop.load(Ordering::Relaxed) {
                            return None;
                        }
                    }
                    Err(_) => return None,
                }
            }
        };
        let mut step = |r: &mut BufReader<TcpStream>, line: &str| -> Option<String> {
            w.write_all(line.as_bytes()).ok()?;
            read(r)
        };
        match read(&mut r) {
            Some(l) if l.starts_with("220") => {}
            Some(l) if l.starts_with("421") => {
                n.closed.fetch_add(1, Ordering::Relaxed);
                // Banned or refused: nothing to do here for a while.
                thread::sleep(Duration::from_millis(200));
                continue;
            }
            _ => continue,
        }
        loop {
            match step(&mut r, &format!("USER {user}\r\n")) {
                Some(l) if l.starts_with("331") => {}
                _ => break,
            }
            n.guesses.fetch_add(1, Ordering::Relaxed);
            if first {
                first = false;
                n.started.fetch_add(1, Ordering::Relaxed);
            }
            match step(&mut r, "PASS wrong\r\n") {
                Some(l) if l.starts_with("530") => {
                    n.refused.fetch_add(1, Ordering::Relaxed);
                }
                Some(l) if l.starts_with("421") => {
                    n.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                _ => break,
            }
        }
    }
}

/// Send `line`, read the reply, check its code; how long that took.
#[track_caller]
fn timed(c: &mut Ctrl, line: &str, code: u16) -> Duration {
    let t = Instant::now();
    c.expect(line, code);
    t.elapsed()
}

/// The spraying scenario: 256 connections from 256 addresses guess one account's
/// password in a loop. Another (anonymous) session's SIZE + CWD must stay fast, since password
/// checks have their own queue and threads; a login to another account must stay fast, since
/// only the sprayed account is throttled; and the sprayed account gets about one guess a second.
#[test]
fn password_spraying_from_256_addresses_starves_nobody() {
    const CLIENTS: u32 = 256;
    let s = common::start_with_users(&[("hostile", RO), ("friend", RO)], |_| {});
    s.write_file("pub/file.bin", &[7u8; 1000]);
    let addr = s.addr;
    // The measuring session is in before the spray starts.
    let mut anon = s.login();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(SprayCounts::default());
    let mut threads = Vec::new();
    for i in 0..CLIENTS {
        let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
        threads.push(
            thread::Builder::new()
                .stack_size(128 << 10)
                .spawn(move || spray(spray_addr(i), addr, "hostile", &stop, &counts))
                .unwrap(),
        );
    }
    let _stop_on_panic = StopOnDrop(Arc::clone(&stop));
    // Every client has sent its first guess (or the server has refused it), and the first
    // answers are in (a clean account checks a few passwords at once): the spray is on.
    let deadline = Instant::now() + TIMEOUT;
    while counts.started.load(Ordering::Relaxed) + counts.closed.load(Ordering::Relaxed)
        < CLIENTS as usize
        || counts.refused.load(Ordering::Relaxed) < 4
    {
        assert!(
            Instant::now() < deadline,
            "only {} of {CLIENTS} spraying clients got to guess within {TIMEOUT:?}",
            counts.started.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(20));
    }
    let window = Instant::now();
    let refused_before = counts.refused.load(Ordering::Relaxed);
    let mut worst = Duration::ZERO;
    let mut samples = Vec::new();
    for _ in 0..16 {
        let t = timed(&mut anon, "SIZE /pub/file.bin", 213) + timed(&mut anon, "CWD /pub", 250);
        anon.expect("CWD /", 250);
        samples.push(t);
        worst = worst.max(t);
        // Spread the samples over the spray; pacing, not synchronisation.
        thread::sleep(Duration::from_millis(300));
    }
    let t = Instant::now();
    let mut friend = Ctrl::connect(addr);
    friend.login_as("friend", USER_PASSWORD);
    let friend_login = t.elapsed();
    friend.expect("PWD", 257);
    let elapsed = window.elapsed();
    let refused = counts.refused.load(Ordering::Relaxed) - refused_before;
    let rate = refused as f64 / elapsed.as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let mut sorted = samples.clone();
    sorted.sort();
    eprintln!(
        "spray: {CLIENTS} clients, {} guesses sent, {refused} answered 530 in {:.1}s \
         ({rate:.2}/s), {} x 421; SIZE+CWD median {:?} worst {worst:?}; other account's login {friend_login:?}",
        counts.guesses.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        counts.closed.load(Ordering::Relaxed),
        sorted[sorted.len() / 2],
    );
    // Targets: SIZE + CWD < 100 ms and a login < 2 s; the bounds leave room for a loaded CI box.
    assert!(
        worst < Duration::from_millis(300),
        "SIZE + CWD took {worst:?} during the spray (samples {samples:?})"
    );
    assert!(
        friend_login < Duration::from_secs(2),
        "a login to another account took {friend_login:?} during the spray"
    );
    assert!(
        rate < 1.6,
        "the sprayed account got {rate:.2} guesses answered per second"
    );
}

/// A session that never logs in is closed `login_timeout` after it connected, however busy it
/// keeps its connection; a logged-in one is not.
#[test]
fn login_timeout_closes_sessions_that_never_log_in() {
    let s = common::start(|c| c.login_timeout = Duration::from_secs(2));
    let mut idler = s.login();
    let mut squatter = s.connect();
    let started = Instant::now();
    let closed_after = loop {
        // A client that keeps talking: one NOOP a second (pacing, not synchronisation).
        thread::sleep(Duration::from_secs(1));
        idler.expect("NOOP", 200);
        squatter.send_line(b"NOOP");
        let (code, text) = squatter.read_reply();
        if code == 421 {
            assert!(text.contains("Login timeout"), "{text}");
            break started.elapsed();
        }
        assert_eq!(code, 200, "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still open after {:?}",
            started.elapsed()
        );
    };
    squatter.assert_closed();
    assert!(
        closed_after >= Duration::from_secs(2),
        "closed after {closed_after:?}, before the timeout"
    );
    // A failed login does not reset the clock either.
    let mut guesser = s.connect();
    let started = Instant::now();
    guesser.expect("USER anonymous", 331);
    guesser.send_line(b"USER nobody");
    guesser.expect_reply(331, "USER");
    guesser.send_line(b"PASS wrong");
    // The 530 comes after a delay, then the 421 when the two seconds are up.
    let (code, _) = guesser.read_reply();
    let code = if code == 530 {
        guesser.read_reply().0
    } else {
        code
    };
    assert_eq!(code, 421);
    assert!(started.elapsed() < Duration::from_secs(6));
    idler.expect("NOOP", 200);
}

/// Sessions per client IP hold across shards; other addresses are not affected.
#[test]
fn sessions_per_ip_across_shards() {
    let s = common::start(|c| {
        c.max_sessions_per_ip = 3;
        c.max_connects_per_ip_per_sec = 0;
    });
    let a = v4("127.0.0.21");
    let mut held: Vec<Ctrl> = (0..3).map(|_| ctrl_from(a, s.addr)).collect();
    assert!(
        s.sessions_per_shard().iter().all(|&n| n > 0),
        "the sessions are spread over the shards: {:?}",
        s.sessions_per_shard()
    );
    let (mut c, code, text) = greet_from(a, s.addr);
    assert_eq!(code, 421, "{text}");
    assert!(
        text.contains("Too many connections from your address"),
        "{text}"
    );
    c.assert_closed();
    let mut other = ctrl_from(v4("127.0.0.22"), s.addr);
    other.login();
    held.pop().unwrap().expect("QUIT", 221);
    ctrl_from_eventually(a, s.addr).login();
}

/// Connection attempts per client per second: a burst of twice the rate, then 421.
#[test]
fn connection_rate_per_ip() {
    let s = common::start(|c| c.max_connects_per_ip_per_sec = 2);
    let a = v4("127.0.0.31");
    let mut codes = Vec::new();
    let mut held = Vec::new();
    for _ in 0..8 {
        let (c, code, text) = greet_from(a, s.addr);
        if code == 421 {
            assert!(text.contains("slow down"), "{text}");
        }
        codes.push(code);
        held.push(c);
    }
    let accepted = codes.iter().filter(|&&c| c == 220).count();
    assert!(
        (4..=6).contains(&accepted),
        "8 attempts at once with 2/s: {codes:?}"
    );
    assert_eq!(codes[..4], [220; 4], "the burst");
    ctrl_from(v4("127.0.0.32"), s.addr).login();
}

/// Sessions per named user, across shards; anonymous sessions do not share one quota.
#[test]
fn sessions_per_named_user() {
    let s = common::start_with_users(&[("alice", RO)], |c| {
        c.max_sessions_per_user = 2;
        c.max_connects_per_ip_per_sec = 0;
    });
    let mut first = s.login_as("alice");
    let _second = s.login_as("alice");
    let mut third = s.connect();
    third.expect("USER alice", 331);
    let text = third.expect("PASS pw", 421);
    assert!(text.contains("Too many sessions for this user"), "{text}");
    third.assert_closed();
    // Anonymous users are limited per address only.
    let _anon: Vec<Ctrl> = (0..4).map(|_| s.login()).collect();
    first.expect("QUIT", 221);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = s.connect();
        c.expect("USER alice", 331);
        match c.cmd("PASS pw") {
            (230, _) => break,
            (421, _) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            (code, text) => panic!("after a QUIT: {code} {text}"),
        }
    }
}

/// After `max_login_failures_per_ip` failures, the client is banned on every shard: its
/// failing session is closed and new connections get 421 before the greeting. Other
/// addresses are not banned.
#[test]
fn failed_logins_ban_the_address_across_shards() {
    let s = common::start_with_users(&[("alice", RO)], |c| {
        c.max_login_failures_per_ip = 2;
        c.ban_duration = Duration::from_secs(60);
        c.max_connects_per_ip_per_sec = 0;
    });
    let a = v4("127.0.0.41");
    let mut one = ctrl_from(a, s.addr);
    let mut two = ctrl_from(a, s.addr);
    assert_eq!(s.sessions_per_shard(), [1, 1], "one session on each shard");
    one.expect("USER alice", 331);
    one.expect("PASS wrong", 530);
    two.expect("USER bob", 331);
    two.expect("PASS wrong", 530);
    let text = two.expect_reply(421, "after the failure that bans");
    assert!(text.contains("Too many failed logins"), "{text}");
    two.assert_closed();
    for _ in 0..2 {
        let (mut c, code, text) = greet_from(a, s.addr);
        assert_eq!(code, 421, "{text}");
        assert!(text.contains("Too many failed logins"), "{text}");
        c.assert_closed();
    }
    let mut other = ctrl_from(v4("127.0.0.42"), s.addr);
    other.login_as("alice", USER_PASSWORD);
}

/// Count 530s answered to `clients` addresses guessing `user`'s password for `window`.
fn guesses_answered(
    server: SocketAddr,
    user: &'static str,
    first: Ipv4Addr,
    clients: u32,
    window: Duration,
) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(SprayCounts::default());
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
                let from = Ipv4Addr::from(u32::from(first) + i);
                thread::spawn(move || spray(from, server, user, &stop, &counts))
            })
            .collect();
        // The guessing goes on for the window (pacing, not synchronisation).
        thread::sleep(window);
        let n = counts.refused.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        n
    })
}

/// Guesses against one account from many addresses get about one answer a second in all,
/// whether the account exists or not; other accounts and anonymous users are not slowed.
#[test]
fn failing_accounts_are_throttled_across_addresses_and_shards() {
    let s = common::start_with_users(&[("victim", RO), ("friend", RO)], |_| {});
    let window = Duration::from_secs(5);
    let victim = guesses_answered(s.addr, "victim", v4("127.0.0.60"), 8, window);
    let ghost = guesses_answered(s.addr, "ghost", v4("127.0.0.80"), 8, window);
    // Meanwhile, from elsewhere: the other account and anonymous users log in at once.
    thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let mut friend = ctrl_from(v4("127.0.0.99"), s.addr);
    friend.login_as("friend", USER_PASSWORD);
    ctrl_from(v4("127.0.0.99"), s.addr).login();
    let other_logins = t.elapsed();
    let (victim, ghost) = (victim.join().unwrap(), ghost.join().unwrap());
    eprintln!(
        "5 s of guessing from 8 addresses: {victim} answered for an account, {ghost} for an \
         unknown name; other logins took {other_logins:?}"
    );
    // A clean account checks a few passwords at once, then one a second: about 4 + 5.
    for (what, n) in [("victim", victim), ("ghost", ghost)] {
        assert!(
            (2..=11).contains(&n),
            "{what}: {n} guesses answered in {window:?}"
        );
    }
    assert!(
        other_logins < Duration::from_secs(1),
        "other logins took {other_logins:?}"
    );
}

/// Stops the spraying clients if the test fails half-way.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Attempts waiting for a throttled account are served in arrival order: the account's owner,
/// arriving while 15 addresses guess its password over and over, waits for the attempts already
/// queued (at most 15, one per check interval), never for the guesses that come after it. The
/// check interval is shortened to keep the test quick; bans are off so the spray keeps up.
#[test]
fn the_owner_of_a_sprayed_account_logs_in_in_bounded_time() {
    const CLIENTS: u32 = 15;
    const DELAY: Duration = Duration::from_millis(200);
    let s = common::start_with_users(&[("owner", RO)], |c| {
        c.account_failure_delay = DELAY;
        c.max_login_failures_per_ip = 0;
    });
    let addr = s.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_panic = StopOnDrop(Arc::clone(&stop));
    let counts = Arc::new(SprayCounts::default());
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            let from = Ipv4Addr::from(u32::from(v4("127.0.3.2")) + i);
            thread::spawn(move || spray(from, addr, "owner", &stop, &counts))
        })
        .collect();
    // Every client guesses and the account has failed: it is throttled from now on.
    let deadline = Instant::now() + TIMEOUT;
    while counts.started.load(Ordering::Relaxed) < CLIENTS as usize
        || counts.refused.load(Ordering::Relaxed) < 4
    {
        assert!(Instant::now() < deadline, "the spray did not start");
        thread::sleep(Duration::from_millis(20));
    }
    let mut owner = ctrl_from(v4("127.0.3.100"), addr);
    let t = Instant::now();
    owner.expect("USER owner", 331);
    owner.expect(&format!("PASS {USER_PASSWORD}"), 230);
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let bound = DELAY * (CLIENTS + 1) + Duration::from_secs(2);
    eprintln!(
        "owner's login took {took:?} while {CLIENTS} addresses guessed ({} answered 530)",
        counts.refused.load(Ordering::Relaxed)
    );
    assert!(
        took < bound,
        "the owner's login took {took:?} (bound {bound:?})"
    );
}
