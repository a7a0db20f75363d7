//! Limits that must hold across shards: sessions in all, sessions per client IP, and failed logins
//! per IP; and how many sessions each shard holds, so new ones go where there are fewest. Touched
//! only when a session starts or ends and when a login fails, never per byte, so one mutex-guarded
//! map is enough (a sharded map would be the next step at 100k+ sessions/s).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::proto::addr::canonical_ip;

/// Failed logins are forgotten after this long without another failure.
const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// The delay before a 530 doubles with each recent failure from the same IP, up to this.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(16);
const FIRST_FAILURE_DELAY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct PerIp {
    sessions: u32,
    failures: u32,
    last_failure: Option<Instant>,
}

pub(super) struct Limits {
    /// Caps a reload may change; sessions already admitted stay.
    max_sessions: AtomicUsize,
    /// 0 = no per-IP limit.
    max_per_ip: AtomicU32,
    sessions: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, PerIp>>,
    /// Sessions each shard holds, including those handed to it and not yet taken up.
    per_shard: Box<[AtomicUsize]>,
    /// Transfers each shard is running, as of its last tick (for the service manager's status).
    transfers: Box<[AtomicUsize]>,
}

/// Why a new session is turned away.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    TooManySessions,
    TooManyFromIp,
}

impl Limits {
    pub(super) fn new(max_sessions: usize, max_per_ip: u32, shards: usize) -> Limits {
        Limits {
            max_sessions: AtomicUsize::new(max_sessions),
            max_per_ip: AtomicU32::new(max_per_ip),
            sessions: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            per_shard: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            transfers: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// New caps from a reloaded configuration; sessions over them are not closed.
    pub(super) fn set_caps(&self, max_sessions: usize, max_per_ip: u32) {
        self.max_sessions.store(max_sessions, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// Sessions in all, and transfers running as of each shard's last tick.
    pub(super) fn activity(&self) -> (usize, usize) {
        let transfers = self
            .transfers
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .sum();
        (self.sessions.load(Ordering::Relaxed), transfers)
    }

    /// Shard `shard` is running `n` transfers (called once per tick).
    pub(super) fn set_transfers(&self, shard: usize, n: usize) {
        self.transfers[shard].store(n, Ordering::Relaxed);
    }

    /// The shard a session accepted by shard `here` should live on, now counted there: `here`
    /// unless another shard holds fewer sessions. The kernel spreads connections over the shards'
    /// listeners by a hash of the addresses, so a handful of clients often land on one shard,
    /// which then does all the work while the others idle (4 downloads on 2 shards: all on one
    /// shard in 3 of 12 runs). Two shards placing at once may both pick the same one; the next
    /// placements even that out.
    pub(super) fn place(&self, here: usize) -> usize {
        let count = |i: usize| self.per_shard[i].load(Ordering::Relaxed);
        let mut to = here;
        for i in 0..self.per_shard.len() {
            if count(i) < count(to) {
                to = i;
            }
        }
        self.per_shard[to].fetch_add(1, Ordering::Relaxed);
        to
    }

    /// A session placed on `shard` has ended (or never started there).
    pub(super) fn left(&self, shard: usize) {
        self.per_shard[shard].fetch_sub(1, Ordering::Relaxed);
    }

    /// Sessions per shard, a snapshot.
    pub(super) fn sessions_per_shard(&self) -> Vec<usize> {
        self.per_shard
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, PerIp>> {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a new session from `ip`, or say why it may not start.
    pub(super) fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.sessions.fetch_add(1, Ordering::Relaxed)
            >= self.max_sessions.load(Ordering::Relaxed)
        {
            self.sessions.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TooManySessions);
        }
        let mut map = self.map();
        let entry = map.entry(canonical_ip(ip)).or_default();
        let max_per_ip = self.max_per_ip.load(Ordering::Relaxed);
        if max_per_ip > 0 && entry.sessions >= max_per_ip {
            drop(map);
            self.sessions.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TooManyFromIp);
        }
        entry.sessions += 1;
        Ok(())
    }

    /// A session admitted with `admit` has ended.
    pub(super) fn release(&self, ip: IpAddr) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        let ip = canonical_ip(ip);
        let mut map = self.map();
        if let Some(e) = map.get_mut(&ip) {
            e.sessions = e.sessions.saturating_sub(1);
            if e.sessions == 0 && e.failures == 0 {
                map.remove(&ip);
            }
        }
    }

    /// A login from `ip` failed: how long to wait before saying so (RFC 2577 section 5). The wait
    /// doubles with every recent failure from that IP, so guessing passwords gets slower and
    /// slower, across sessions and shards.
    pub(super) fn login_failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut map = self.map();
        let e = map.entry(canonical_ip(ip)).or_default();
        if e.last_failure
            .is_some_and(|t| now.duration_since(t) > FAILURE_MEMORY)
        {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = Some(now);
        FIRST_FAILURE_DELAY
            .saturating_mul(1 << (e.failures - 1).min(4))
            .min(MAX_FAILURE_DELAY)
    }

    /// A login from `ip` succeeded: its failure count starts over.
    pub(super) fn login_succeeded(&self, ip: IpAddr) {
        if let Some(e) = self.map().get_mut(&canonical_ip(ip)) {
            e.failures = 0;
            e.last_failure = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn global_and_per_ip_caps() {
        let l = Limits::new(3, 2, 1);
        assert_eq!(l.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(
            l.admit(ip("::ffff:10.0.0.1")),
            Ok(()),
            "IPv4-mapped counts as the same IP"
        );
        assert_eq!(l.admit(ip("10.0.0.1")), Err(Refusal::TooManyFromIp));
        assert_eq!(l.admit(ip("10.0.0.2")), Ok(()));
        assert_eq!(l.admit(ip("10.0.0.3")), Err(Refusal::TooManySessions));
        l.release(ip("10.0.0.1"));
        assert_eq!(l.admit(ip("10.0.0.1")), Ok(()));
        // A reload raises the caps for new sessions.
        l.set_caps(4, 3);
        assert_eq!(l.admit(ip("10.0.0.1")), Ok(()));
        assert_eq!(l.activity().0, 4);
    }

    #[test]
    fn sessions_go_to_the_shard_with_fewest() {
        let l = Limits::new(100, 0, 3);
        // Every connection arrives at shard 0, as the kernel's hash may well arrange.
        let placed: Vec<usize> = (0..6).map(|_| l.place(0)).collect();
        assert_eq!(placed, [0, 1, 2, 0, 1, 2]);
        assert_eq!(l.sessions_per_shard(), [2, 2, 2]);
        l.left(1);
        l.left(1);
        assert_eq!(l.place(2), 1, "the emptiest shard wins");
        assert_eq!(l.place(2), 1);
        assert_eq!(l.place(2), 2, "a tie stays where it arrived");
        assert_eq!(l.sessions_per_shard(), [2, 2, 3]);
    }

    #[test]
    fn failed_login_delay_doubles_then_resets() {
        let l = Limits::new(10, 0, 1);
        let now = Instant::now();
        let a = ip("192.0.2.7");
        let delays: Vec<u64> = (0..7).map(|_| l.login_failed(a, now).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(
            l.login_failed(ip("192.0.2.8"), now).as_secs(),
            1,
            "other IPs are not slowed"
        );
        l.login_succeeded(a);
        assert_eq!(l.login_failed(a, now).as_secs(), 1);
        let later = now + FAILURE_MEMORY + Duration::from_secs(1);
        l.login_failed(a, now);
        assert_eq!(
            l.login_failed(a, later).as_secs(),
            1,
            "old failures are forgotten"
        );
    }
}
