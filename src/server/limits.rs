//! Limits that must hold across shards: sessions in all, per client (an IPv4 address or an IPv6
//! network, /64 by default) and per named user; connection attempts per client per second; failed
//! logins per client (a growing delay, then a ban) and per account (one password check at a time,
//! a second apart, once the account has seen a failure); and how many sessions each shard holds,
//! so new ones go where there are fewest. Touched only when a session starts or ends and around
//! a login, never per byte, so one mutex-guarded state is enough (a sharded map would be the next
//! step at 100k+ sessions/s).
//!
//! Everything remembered about clients and accounts lives in [`Bounded`] maps: entries expire,
//! and a full map (addresses are cheap to churn, above all IPv6 ones) drops its oldest entries,
//! so memory stays flat whatever arrives.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::proto::addr::canonical_ip;

/// Failed logins from a client are forgotten after this long without another failure.
const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// The delay before a 530 doubles with each recent failure from the same client, up to this.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(16);
const FIRST_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// An account that failed a login within this long gets one password check at a time.
const ACCOUNT_FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Password checks one account may have running at once while it has no recent failure (a
/// client opening several sessions at once, as FileZilla and lftp do, logs them in together).
const ACCOUNT_PARALLEL_CHECKS: u32 = 4;
/// Attempts that may wait for one account's turn, served in arrival order; one more is refused
/// at once. A queue, not a free-for-all: the account's owner, arriving during a spray, waits for
/// the attempts ahead of it (about one a second), never for ones that come after.
pub(super) const ACCOUNT_QUEUE_MAX: usize = 16;
/// Entries each map (clients, accounts) holds at most.
pub(super) const MAX_TRACKED: usize = 65_536;
/// Expired entries are swept at least this often (and whenever a map is full).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The limits as configured; a reload replaces them (sessions already admitted stay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Caps {
    pub max_sessions: usize,
    /// 0 = no limit, for this and the other counts.
    pub max_per_ip: u32,
    pub max_per_user: u32,
    pub connects_per_sec: u32,
    pub ipv6_prefix_len: u8,
    pub max_failures_per_ip: u32,
    pub failure_window: Duration,
    pub ban: Duration,
    pub account_delay: Duration,
}

impl Caps {
    pub(super) fn of(c: &Config) -> Caps {
        Caps {
            max_sessions: c.max_sessions,
            max_per_ip: c.max_sessions_per_ip,
            max_per_user: c.max_sessions_per_user,
            connects_per_sec: c.max_connects_per_ip_per_sec,
            ipv6_prefix_len: c.ipv6_prefix_len,
            max_failures_per_ip: c.max_login_failures_per_ip,
            failure_window: c.login_failure_window,
            ban: c.ban_duration,
            account_delay: c.account_failure_delay,
        }
    }
}

/// What a [`Bounded`] map needs to know about its entries.
trait Tracked: Default {
    /// Holds something live (a session, a check under way): never dropped.
    fn pinned(&self) -> bool;
    /// Nothing it remembers matters any more at `now`.
    fn expired(&self, now: Instant) -> bool;
}

/// A map of at most `cap` entries. Expired entries are swept every [`SWEEP_EVERY`]; when the map
/// is full, a sweep runs and, if that is not enough, the least recently touched entries that are
/// not pinned go, down to 7/8 of `cap` (so the sort is paid once per `cap / 8` insertions).
/// Pinned entries are bounded elsewhere (by the session cap).
struct Bounded<K, V> {
    map: HashMap<K, (V, Instant)>,
    cap: usize,
    last_sweep: Instant,
}

impl<K: Hash + Eq + Clone, V: Tracked> Bounded<K, V> {
    fn new(cap: usize, now: Instant) -> Self {
        Bounded {
            map: HashMap::new(),
            cap: cap.max(8),
            last_sweep: now,
        }
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|(v, _)| v)
    }

    /// The entry for `k`, made if missing (making room first), marked as touched at `now`.
    fn touch(&mut self, k: K, now: Instant) -> &mut V {
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.sweep(now);
        }
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            self.make_room(now);
        }
        let e = self.map.entry(k).or_insert_with(|| (V::default(), now));
        e.1 = now;
        &mut e.0
    }

    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        self.map.retain(|_, (v, _)| v.pinned() || !v.expired(now));
    }

    fn make_room(&mut self, now: Instant) {
        self.sweep(now);
        let keep = self.cap - self.cap / 8;
        if self.map.len() <= keep {
            return;
        }
        let mut old: Vec<(Instant, K)> = self
            .map
            .iter()
            .filter(|(_, (v, _))| !v.pinned())
            .map(|(k, (_, t))| (*t, k.clone()))
            .collect();
        let n = (self.map.len() - keep).min(old.len());
        if n == 0 {
            return;
        }
        old.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for (_, k) in old.drain(..n) {
            self.map.remove(&k);
        }
    }

    /// Drop `k` if it holds nothing worth keeping.
    fn forget_if_expired(&mut self, k: &K, now: Instant) {
        if self
            .map
            .get(k)
            .is_some_and(|(v, _)| !v.pinned() && v.expired(now))
        {
            self.map.remove(k);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// What is known about one client (an IPv4 address, or an IPv6 network).
#[derive(Default)]
struct PerIp {
    sessions: u32,
    /// Failures for the doubling delay, forgotten `FAILURE_MEMORY` after the last one.
    failures: u32,
    last_failure: Option<Instant>,
    /// Failures towards a ban, counted from `window_start`.
    window_failures: u32,
    window_start: Option<Instant>,
    banned_until: Option<Instant>,
    /// Connection attempts left in the bucket as of `refilled` (`None`: a full bucket).
    tokens: Option<(f64, Instant)>,
    /// Past this, nothing above matters any more (the bucket is full again, failures and bans
    /// have run out).
    forget_at: Option<Instant>,
}

impl PerIp {
    fn remember_until(&mut self, t: Instant) {
        self.forget_at = Some(self.forget_at.map_or(t, |f| f.max(t)));
    }
}

impl Tracked for PerIp {
    fn pinned(&self) -> bool {
        self.sessions > 0
    }
    fn expired(&self, now: Instant) -> bool {
        self.forget_at.is_none_or(|t| now >= t)
    }
}

/// What is known about one account name (named users and names that do not exist alike).
#[derive(Default)]
struct Account {
    /// Password checks running.
    checking: u32,
    /// The next check may not start before this.
    next: Option<Instant>,
    last_failure: Option<Instant>,
    /// Tickets of the attempts waiting for their turn, oldest first.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

/// Whether a password check may start (`Limits::begin_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Start it now (then `end_check`).
    Go,
    /// Ask again later with this ticket (or give it up with `give_up_turn`).
    Wait(u64),
    /// The account's queue is full: refuse the attempt.
    Full,
}

impl Tracked for Account {
    fn pinned(&self) -> bool {
        self.checking > 0 || !self.waiting.is_empty()
    }
    fn expired(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
            && self
                .last_failure
                .is_none_or(|t| now.saturating_duration_since(t) >= ACCOUNT_FAILURE_MEMORY)
    }
}

struct State {
    caps: Caps,
    per_ip: Bounded<IpAddr, PerIp>,
    /// Sessions logged in per named user (only users that exist get here).
    per_user: HashMap<Vec<u8>, u32>,
    /// Keyed by a keyed hash of the name: attackers choose names up to a line long, and two
    /// names sharing a throttle by chance is harmless.
    accounts: Bounded<u64, Account>,
}

pub(super) struct Limits {
    max_sessions: AtomicUsize,
    sessions: AtomicUsize,
    state: Mutex<State>,
    names: RandomState,
    /// Sessions each shard holds, including those handed to it and not yet taken up.
    per_shard: Box<[AtomicUsize]>,
    /// Transfers each shard is running, as of its last tick (for the service manager's status).
    transfers: Box<[AtomicUsize]>,
}

/// Why a new session is turned away (each with its own 421 text).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum Refusal {
    TooManySessions,
    TooManyFromIp,
    /// Connection attempts from the client came faster than its bucket refills.
    TooFast,
    /// Too many failed logins from the client recently.
    Banned,
}

/// How a failed login is answered.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) struct Failure {
    /// Wait this long before the 530 (RFC 2577 section 5).
    pub delay: Duration,
    /// The client has now failed too often: close this session too, after the 530.
    pub banned: bool,
}

/// How a password check ended, for the account's throttle.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum Checked {
    Passed,
    Failed,
    /// Not checked at all (the check queue was full).
    Skipped,
}

impl Limits {
    pub(super) fn new(caps: Caps, shards: usize) -> Limits {
        Limits::with_capacity(caps, shards, MAX_TRACKED)
    }

    fn with_capacity(caps: Caps, shards: usize, cap: usize) -> Limits {
        let now = Instant::now();
        Limits {
            max_sessions: AtomicUsize::new(caps.max_sessions),
            sessions: AtomicUsize::new(0),
            state: Mutex::new(State {
                caps,
                per_ip: Bounded::new(cap, now),
                per_user: HashMap::new(),
                accounts: Bounded::new(cap, now),
            }),
            names: RandomState::new(),
            per_shard: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            transfers: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// New caps from a reloaded configuration; sessions over them are not closed.
    pub(super) fn set_caps(&self, caps: Caps) {
        self.max_sessions
            .store(caps.max_sessions, Ordering::Relaxed);
        self.state().caps = caps;
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

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a new session from `ip`, or say why it may not start. Refused attempts use up the
    /// client's connection bucket too (except while it is banned).
    pub(super) fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let mut state = self.state();
        let caps = state.caps;
        let e = state.per_ip.touch(client(ip, caps.ipv6_prefix_len), now);
        if e.banned_until.is_some_and(|t| now < t) {
            return Err(Refusal::Banned);
        }
        if caps.connects_per_sec > 0 {
            // A bucket of twice the rate per second, refilled continuously.
            let rate = f64::from(caps.connects_per_sec);
            let burst = rate * 2.0;
            let left = match e.tokens {
                None => burst,
                Some((t, at)) => {
                    (t + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
                }
            };
            let left = left - 1.0;
            e.tokens = Some((left.max(-1.0), now));
            e.remember_until(now + Duration::from_secs_f64((burst - left) / rate));
            if left < 0.0 {
                return Err(Refusal::TooFast);
            }
        }
        if caps.max_per_ip > 0 && e.sessions >= caps.max_per_ip {
            return Err(Refusal::TooManyFromIp);
        }
        if self.sessions.fetch_add(1, Ordering::Relaxed)
            >= self.max_sessions.load(Ordering::Relaxed)
        {
            self.sessions.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::TooManySessions);
        }
        e.sessions += 1;
        Ok(())
    }

    /// A session admitted with `admit` has ended.
    pub(super) fn release(&self, ip: IpAddr, now: Instant) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        let mut state = self.state();
        let key = client(ip, state.caps.ipv6_prefix_len);
        if let Some(e) = state.per_ip.get_mut(&key) {
            e.sessions = e.sessions.saturating_sub(1);
        }
        state.per_ip.forget_if_expired(&key, now);
    }

    /// A login from `ip` failed: how long to wait before saying so (RFC 2577 section 5), and
    /// whether the client is now banned. The wait doubles with every recent failure from the
    /// client, so guessing passwords gets slower and slower, across sessions and shards.
    pub(super) fn login_failed(&self, ip: IpAddr, now: Instant) -> Failure {
        let mut state = self.state();
        let caps = state.caps;
        let e = state.per_ip.touch(client(ip, caps.ipv6_prefix_len), now);
        if e.last_failure
            .is_some_and(|t| now.saturating_duration_since(t) > FAILURE_MEMORY)
        {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = Some(now);
        e.remember_until(now + FAILURE_MEMORY);
        let mut banned = false;
        if caps.max_failures_per_ip > 0 {
            if e.window_start
                .is_none_or(|t| now.saturating_duration_since(t) >= caps.failure_window)
            {
                e.window_start = Some(now);
                e.window_failures = 0;
            }
            e.window_failures += 1;
            e.remember_until(now + caps.failure_window);
            if e.window_failures >= caps.max_failures_per_ip {
                banned = true;
                e.banned_until = Some(now + caps.ban);
                e.remember_until(now + caps.ban);
                e.window_start = None;
                e.window_failures = 0;
            }
        }
        let delay = FIRST_FAILURE_DELAY
            .saturating_mul(1 << (e.failures - 1).min(4))
            .min(MAX_FAILURE_DELAY);
        Failure { delay, banned }
    }

    /// A login from `ip` succeeded: its failure count for the delay starts over (failures
    /// towards a ban stay: a guesser who also knows one password is still guessing).
    pub(super) fn login_succeeded(&self, ip: IpAddr) {
        let mut state = self.state();
        let key = client(ip, state.caps.ipv6_prefix_len);
        if let Some(e) = state.per_ip.get_mut(&key) {
            e.failures = 0;
            e.last_failure = None;
        }
    }

    /// Whether a password check for account `name` may start now: one at a time, and not
    /// sooner than `account_delay` after the account's last failure, once it has failed
    /// recently (whatever the address, and whether or not the account exists, so the throttle
    /// tells nothing about which accounts exist); a few at a time otherwise. A `true` must be
    /// followed by `end_check`.
    ///
    /// Attempts that cannot start wait in arrival order: a new attempt (`ticket` `None`) gets a
    /// ticket behind those already waiting (or `Full` when `ACCOUNT_QUEUE_MAX` wait), and only
    /// the oldest ticket may start.
    pub(super) fn begin_check(&self, name: &[u8], ticket: Option<u64>, now: Instant) -> Turn {
        let key = self.names.hash_one(name);
        let mut state = self.state();
        if state.caps.account_delay.is_zero() {
            return Turn::Go;
        }
        let a = state.accounts.touch(key, now);
        let failing = a
            .last_failure
            .is_some_and(|t| now.saturating_duration_since(t) < ACCOUNT_FAILURE_MEMORY);
        let parallel = if failing { 1 } else { ACCOUNT_PARALLEL_CHECKS };
        let free = a.checking < parallel && a.next.is_none_or(|t| now >= t);
        match ticket {
            Some(t) if a.waiting.front() == Some(&t) => {
                if !free {
                    return Turn::Wait(t);
                }
                a.waiting.pop_front();
            }
            Some(t) if a.waiting.contains(&t) => return Turn::Wait(t),
            // A new attempt (or one whose ticket the account no longer knows).
            _ => {
                if !a.waiting.is_empty() || !free {
                    if a.waiting.len() >= ACCOUNT_QUEUE_MAX {
                        return Turn::Full;
                    }
                    let t = a.next_ticket;
                    a.next_ticket = a.next_ticket.wrapping_add(1);
                    a.waiting.push_back(t);
                    return Turn::Wait(t);
                }
            }
        }
        a.checking += 1;
        Turn::Go
    }

    /// An attempt waiting with `ticket` will not ask again (its session ended).
    pub(super) fn give_up_turn(&self, name: &[u8], ticket: u64) {
        let key = self.names.hash_one(name);
        let mut state = self.state();
        if let Some(a) = state.accounts.get_mut(&key) {
            a.waiting.retain(|&t| t != ticket);
        }
    }

    /// A check that `begin_check` let start has ended.
    pub(super) fn end_check(&self, name: &[u8], how: Checked, now: Instant) {
        let key = self.names.hash_one(name);
        let mut state = self.state();
        let delay = state.caps.account_delay;
        if delay.is_zero() {
            return;
        }
        let Some(a) = state.accounts.get_mut(&key) else {
            return;
        };
        a.checking = a.checking.saturating_sub(1);
        if how == Checked::Failed {
            a.last_failure = Some(now);
            a.next = Some(now + delay);
        }
    }

    /// A session logged in as named user `user`: count it, or refuse it when the user has
    /// `max_per_user` sessions already. A `true` must be followed by `user_left`.
    pub(super) fn user_joined(&self, user: &[u8]) -> bool {
        let mut state = self.state();
        let max = state.caps.max_per_user;
        let n = state.per_user.entry(user.to_vec()).or_default();
        if max > 0 && *n >= max {
            if *n == 0 {
                state.per_user.remove(user);
            }
            return false;
        }
        *n += 1;
        true
    }

    pub(super) fn user_left(&self, user: &[u8]) {
        let mut state = self.state();
        if let Some(n) = state.per_user.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_user.remove(user);
            }
        }
    }

    /// Entries remembered about clients and accounts (for tests of the bounds).
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let state = self.state();
        (state.per_ip.len(), state.accounts.len())
    }
}

/// The client an address counts as: IPv4 (and IPv4-mapped) addresses as they are, IPv6 ones by
/// their first `prefix` bits (one site usually gets a /64, and picks addresses in it freely).
fn client(ip: IpAddr, prefix: u8) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) if prefix < 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Whether a new attempt may start now (a waiting one is taken back at once).
    fn try_go(l: &Limits, name: &[u8], now: Instant) -> bool {
        match l.begin_check(name, None, now) {
            Turn::Go => true,
            Turn::Wait(t) => {
                l.give_up_turn(name, t);
                false
            }
            Turn::Full => false,
        }
    }

    /// Attempts against a throttled account start in arrival order, whoever asks first each
    /// tick; a full queue refuses at once; a waiter that leaves makes room.
    #[test]
    fn waiting_attempts_start_in_arrival_order() {
        let l = Limits::new(caps(), 1);
        let now = Instant::now();
        assert_eq!(l.begin_check(b"alice", None, now), Turn::Go);
        l.end_check(b"alice", Checked::Failed, now);
        let tickets: Vec<u64> = (0..ACCOUNT_QUEUE_MAX)
            .map(|_| match l.begin_check(b"alice", None, now) {
                Turn::Wait(t) => t,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(l.begin_check(b"alice", None, now), Turn::Full);
        assert!(try_go(&l, b"bob", now), "other accounts are not slowed");
        let mut t = now;
        for (i, &ticket) in tickets.iter().enumerate() {
            t += Duration::from_millis(1100);
            // The later tickets ask first: they must go on waiting.
            for &later in tickets[i + 1..].iter().rev() {
                assert_eq!(l.begin_check(b"alice", Some(later), t), Turn::Wait(later));
            }
            assert_eq!(
                l.begin_check(b"alice", Some(ticket), t),
                Turn::Go,
                "ticket {i}"
            );
            l.end_check(b"alice", Checked::Failed, t);
            if i == 0 {
                // A place freed: a newcomer queues at the back.
                let Turn::Wait(last) = l.begin_check(b"alice", None, t) else {
                    panic!("newcomer not queued");
                };
                l.give_up_turn(b"alice", last);
            }
        }
        // Leaving the queue hands the turn on to the attempt behind.
        let wait = |l: &Limits| match l.begin_check(b"alice", None, t) {
            Turn::Wait(ticket) => ticket,
            other => panic!("{other:?}"),
        };
        let (first, second) = (wait(&l), wait(&l));
        l.give_up_turn(b"alice", first);
        t += Duration::from_millis(1100);
        assert_eq!(l.begin_check(b"alice", Some(second), t), Turn::Go);
    }

    fn caps() -> Caps {
        Caps {
            max_sessions: 10,
            max_per_ip: 0,
            max_per_user: 0,
            connects_per_sec: 0,
            ipv6_prefix_len: 64,
            max_failures_per_ip: 0,
            failure_window: Duration::from_secs(60),
            ban: Duration::from_secs(60),
            account_delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn global_and_per_ip_caps() {
        let l = Limits::new(
            Caps {
                max_sessions: 3,
                max_per_ip: 2,
                ..caps()
            },
            1,
        );
        let now = Instant::now();
        assert_eq!(l.admit(ip("10.0.0.1"), now), Ok(()));
        assert_eq!(
            l.admit(ip("::ffff:10.0.0.1"), now),
            Ok(()),
            "IPv4-mapped counts as the same IP"
        );
        assert_eq!(l.admit(ip("10.0.0.1"), now), Err(Refusal::TooManyFromIp));
        assert_eq!(l.admit(ip("10.0.0.2"), now), Ok(()));
        assert_eq!(l.admit(ip("10.0.0.3"), now), Err(Refusal::TooManySessions));
        l.release(ip("10.0.0.1"), now);
        assert_eq!(l.admit(ip("10.0.0.1"), now), Ok(()));
        // A reload raises the caps for new sessions.
        l.set_caps(Caps {
            max_sessions: 4,
            max_per_ip: 3,
            ..caps()
        });
        assert_eq!(l.admit(ip("10.0.0.1"), now), Ok(()));
        assert_eq!(l.activity().0, 4);
    }

    #[test]
    fn ipv6_clients_count_per_prefix() {
        let l = Limits::new(
            Caps {
                max_per_ip: 2,
                ..caps()
            },
            1,
        );
        let now = Instant::now();
        assert_eq!(l.admit(ip("2001:db8:0:1::1"), now), Ok(()));
        assert_eq!(l.admit(ip("2001:db8:0:1:ffff::2"), now), Ok(()));
        assert_eq!(
            l.admit(ip("2001:db8:0:1:1234:5678:9abc:def0"), now),
            Err(Refusal::TooManyFromIp),
            "the same /64"
        );
        assert_eq!(l.admit(ip("2001:db8:0:2::1"), now), Ok(()), "another /64");
        assert_eq!(client(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(client(ip("2001:db8:aaaa::1"), 32), ip("2001:db8::"));
        assert_eq!(client(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(client(ip("192.0.2.1"), 64), ip("192.0.2.1"));
    }

    #[test]
    fn connection_bucket_allows_a_burst_then_the_rate() {
        let l = Limits::new(
            Caps {
                max_sessions: 1000,
                connects_per_sec: 2,
                ..caps()
            },
            1,
        );
        let now = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..4 {
            assert_eq!(l.admit(a, now), Ok(()), "burst attempt {i}");
        }
        assert_eq!(l.admit(a, now), Err(Refusal::TooFast));
        assert_eq!(l.admit(ip("192.0.2.2"), now), Ok(()), "another client");
        // Refills at two a second; the refused attempt cost one too.
        let later = now + Duration::from_millis(1500);
        assert_eq!(l.admit(a, later), Ok(()));
        assert_eq!(l.admit(a, later), Ok(()));
        assert_eq!(l.admit(a, later), Err(Refusal::TooFast));
        let much_later = later + Duration::from_secs(10);
        for _ in 0..4 {
            assert_eq!(l.admit(a, much_later), Ok(()));
        }
        assert_eq!(
            l.admit(a, much_later),
            Err(Refusal::TooFast),
            "no more than the burst"
        );
    }

    #[test]
    fn failed_login_delay_doubles_then_resets() {
        let l = Limits::new(caps(), 1);
        let now = Instant::now();
        let a = ip("192.0.2.7");
        let delays: Vec<u64> = (0..7)
            .map(|_| l.login_failed(a, now).delay.as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(
            l.login_failed(ip("192.0.2.8"), now).delay.as_secs(),
            1,
            "other IPs are not slowed"
        );
        l.login_succeeded(a);
        assert_eq!(l.login_failed(a, now).delay.as_secs(), 1);
        let later = now + FAILURE_MEMORY + Duration::from_secs(1);
        l.login_failed(a, now);
        assert_eq!(
            l.login_failed(a, later).delay.as_secs(),
            1,
            "old failures are forgotten"
        );
    }

    #[test]
    fn failures_in_a_window_ban_the_client_for_a_while() {
        let l = Limits::new(
            Caps {
                max_failures_per_ip: 3,
                failure_window: Duration::from_secs(60),
                ban: Duration::from_secs(300),
                ..caps()
            },
            1,
        );
        let now = Instant::now();
        let a = ip("192.0.2.9");
        assert!(!l.login_failed(a, now).banned);
        assert!(!l.login_failed(a, now).banned);
        // Failures that fall out of the window do not count.
        let t = now + Duration::from_secs(61);
        assert!(!l.login_failed(a, t).banned);
        assert!(!l.login_failed(a, t).banned);
        assert_eq!(l.admit(a, t), Ok(()));
        assert!(l.login_failed(a, t).banned, "the third in a window");
        assert_eq!(l.admit(a, t), Err(Refusal::Banned));
        assert_eq!(
            l.admit(ip("192.0.2.10"), t),
            Ok(()),
            "others are not banned"
        );
        let after = t + Duration::from_secs(301);
        assert_eq!(l.admit(a, after), Ok(()), "the ban runs out");
    }

    #[test]
    fn one_check_a_second_per_failing_account() {
        let l = Limits::new(caps(), 1);
        let now = Instant::now();
        // A clean account checks a few at once (a client opening parallel sessions).
        for _ in 0..ACCOUNT_PARALLEL_CHECKS {
            assert!(try_go(&l, b"alice", now));
        }
        assert!(!try_go(&l, b"alice", now));
        for _ in 0..ACCOUNT_PARALLEL_CHECKS {
            l.end_check(b"alice", Checked::Passed, now);
        }
        assert!(try_go(&l, b"alice", now), "successes do not throttle");
        l.end_check(b"alice", Checked::Failed, now);
        // After a failure: nothing for a second, then one at a time.
        let soon = now + Duration::from_millis(500);
        assert!(!try_go(&l, b"alice", soon));
        assert!(try_go(&l, b"bob", soon), "other accounts are not slowed");
        let t = now + Duration::from_secs(1);
        assert!(try_go(&l, b"alice", t));
        assert!(!try_go(&l, b"alice", t), "one at a time");
        l.end_check(b"alice", Checked::Skipped, t);
        assert!(try_go(&l, b"alice", t), "a skipped check costs nothing");
        l.end_check(b"alice", Checked::Failed, t);
        // Names that do not exist are throttled the same way.
        assert!(try_go(&l, b"nobody", t));
        l.end_check(b"nobody", Checked::Failed, t);
        assert!(!try_go(&l, b"nobody", t));
        // Off when the delay is 0.
        l.set_caps(Caps {
            account_delay: Duration::ZERO,
            ..caps()
        });
        assert!(try_go(&l, b"nobody", t));
    }

    #[test]
    fn sessions_per_named_user() {
        let l = Limits::new(
            Caps {
                max_per_user: 2,
                ..caps()
            },
            1,
        );
        assert!(l.user_joined(b"alice"));
        assert!(l.user_joined(b"alice"));
        assert!(!l.user_joined(b"alice"));
        assert!(l.user_joined(b"bob"));
        l.user_left(b"alice");
        assert!(l.user_joined(b"alice"));
        l.user_left(b"bob");
        assert!(!l.state().per_user.contains_key(b"bob".as_slice()));
    }

    #[test]
    fn client_memory_expires() {
        let l = Limits::new(
            Caps {
                max_sessions: 1000,
                connects_per_sec: 5,
                ..caps()
            },
            1,
        );
        let now = Instant::now();
        for i in 0..100u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.admit(a, now).unwrap();
            l.release(a, now);
            l.login_failed(a, now);
        }
        for i in 0..100u32 {
            try_go(&l, format!("user{i}").as_bytes(), now);
            l.end_check(format!("user{i}").as_bytes(), Checked::Failed, now);
        }
        assert_eq!(l.tracked(), (100, 100));
        // Once everything they remember has run out, the next touch sweeps them.
        let later = now + FAILURE_MEMORY + SWEEP_EVERY;
        l.admit(ip("192.0.2.1"), later).unwrap();
        try_go(&l, b"x", later);
        assert_eq!(l.tracked(), (1, 1));
    }

    #[test]
    fn address_churn_stays_within_the_cap() {
        let cap = 1024;
        let l = Limits::with_capacity(
            Caps {
                max_sessions: 100_000,
                connects_per_sec: 5,
                max_failures_per_ip: 10,
                ..caps()
            },
            1,
            cap,
        );
        let now = Instant::now();
        // A client holding a session is never forgotten, however many others come.
        let held = ip("2001:db8:ffff::1");
        l.admit(held, now).unwrap();
        for i in 0..20_000u128 {
            // A fresh /64 each time, failing a login with a fresh name.
            let a = IpAddr::V6((0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + (i << 64)).into());
            let t = now + Duration::from_millis(i as u64);
            let _ = l.admit(a, t);
            l.release(a, t);
            l.login_failed(a, t);
            let name = format!("guess{i}");
            assert!(try_go(&l, name.as_bytes(), t));
            l.end_check(name.as_bytes(), Checked::Failed, t);
            let (clients, accounts) = l.tracked();
            assert!(clients <= cap && accounts <= cap, "{clients} {accounts}");
        }
        assert_eq!(
            l.state()
                .per_ip
                .get_mut(&client(held, 64))
                .map(|e| e.sessions),
            Some(1)
        );
        // The newest failures are still remembered.
        let last =
            IpAddr::V6((0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + (19_999 << 64)).into());
        assert_eq!(l.login_failed(last, now).delay.as_secs(), 2);
    }

    #[test]
    fn sessions_go_to_the_shard_with_fewest() {
        let l = Limits::new(
            Caps {
                max_sessions: 100,
                ..caps()
            },
            3,
        );
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
}
