//! The epoll fallback behind the same `Ring` API, for hosts where io_uring is switched off
//! (`kernel.io_uring_disabled`, Docker's default seccomp profile). Readiness is level-triggered
//! here; callers already read and write until EAGAIN, so both backends look the same to them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// What one registered op waits for.
#[derive(Clone, Copy)]
enum Wait {
    Poll { events: u32, multishot: bool },
    Accept,
}

/// A completion before it is matched with the op table: user_data, result, more, accepted fd.
pub(super) type Raw = (u64, i32, bool, Option<OwnedFd>);

pub(super) struct Poller {
    epoll: OwnedFd,
    /// Ops per fd; epoll has one registration per fd, so interests are merged.
    fds: HashMap<RawFd, Vec<(u64, Wait)>>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) ready: VecDeque<Raw>,
}

/// Accepted connections handed out per readiness event, so one listener cannot monopolise a turn.
const ACCEPT_BATCH: usize = 64;

impl Poller {
    pub(super) fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 has no memory arguments; a non-negative result is a new fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller {
            epoll,
            fds: HashMap::new(),
            timers: BinaryHeap::new(),
            ready: VecDeque::new(),
        })
    }

    pub(super) fn poll(&mut self, fd: RawFd, events: u32, multishot: bool, user_data: u64) {
        self.add(fd, user_data, Wait::Poll { events, multishot });
    }

    pub(super) fn accept(&mut self, fd: RawFd, user_data: u64) {
        self.add(fd, user_data, Wait::Accept);
    }

    pub(super) fn timeout(&mut self, after: Duration, user_data: u64) {
        self.timers
            .push(Reverse((Instant::now() + after, user_data)));
    }

    /// Drop every op on `fd` (each completes with -ECANCELED, as io_uring reports it), then close it.
    pub(super) fn close(&mut self, fd: OwnedFd) {
        let raw = fd.as_raw_fd();
        if let Some(ops) = self.fds.remove(&raw) {
            let _ = self.ctl(libc::EPOLL_CTL_DEL, raw, 0);
            for (user_data, _) in ops {
                self.ready
                    .push_back((user_data, -libc::ECANCELED, false, None));
            }
        }
        drop(fd);
    }

    fn add(&mut self, fd: RawFd, user_data: u64, wait: Wait) {
        let ops = self.fds.entry(fd).or_default();
        let first = ops.is_empty();
        ops.push((user_data, wait));
        let interest = interest(ops);
        let op = if first {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        let mut result = self.ctl(op, fd, interest);
        if !first
            && result
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
        {
            // The fd was closed behind our back (the kernel dropped its registration) and the
            // number reused: the old ops can never fire; end them and register afresh.
            let stale: Vec<u64> = self.fds.get(&fd).map_or(Vec::new(), |ops| {
                ops.iter()
                    .map(|(u, _)| *u)
                    .filter(|u| *u != user_data)
                    .collect()
            });
            for u in stale {
                self.ready.push_back((u, -libc::ECANCELED, false, None));
            }
            self.fds.insert(fd, vec![(user_data, wait)]);
            result = self.ctl(libc::EPOLL_CTL_ADD, fd, interest_of(wait));
        }
        if let Err(e) = result {
            // Report the failure the way a failed io_uring op would.
            if let Some(ops) = self.fds.get_mut(&fd) {
                ops.retain(|(u, _)| *u != user_data);
                if ops.is_empty() {
                    self.fds.remove(&fd);
                }
            }
            self.ready.push_back((
                user_data,
                -e.raw_os_error().unwrap_or(libc::EINVAL),
                false,
                None,
            ));
        }
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; the kernel copies it.
        let rc = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Wait for readiness (not at all when `block` is false or completions are already queued).
    pub(super) fn wait(&mut self, block: bool) -> io::Result<()> {
        let now = Instant::now();
        let timeout_ms = if !block || !self.ready.is_empty() {
            0
        } else {
            match self.timers.peek() {
                Some(Reverse((at, _))) => {
                    at.saturating_duration_since(now)
                        .as_millis()
                        .min(i32::MAX as u128) as i32
                        + 1
                }
                None => -1,
            }
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
        // SAFETY: `events` is a writable array of `events.len()` epoll_event structs.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
        for ev in &events[..n.max(0) as usize] {
            let (fd, revents) = (ev.u64 as RawFd, ev.events);
            self.dispatch(fd, revents);
        }
        let now = Instant::now();
        while let Some(Reverse((at, user_data))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.ready.push_back((user_data, -libc::ETIME, false, None));
        }
        Ok(())
    }

    fn dispatch(&mut self, fd: RawFd, revents: u32) {
        let Some(ops) = self.fds.get_mut(&fd) else {
            return;
        };
        let error = revents & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        let mut keep = Vec::with_capacity(ops.len());
        for (user_data, wait) in ops.drain(..) {
            match wait {
                Wait::Poll { events, multishot } => {
                    if revents & events != 0 || error {
                        self.ready.push_back((
                            user_data,
                            (revents & (events | 0x18)) as i32,
                            multishot,
                            None,
                        ));
                        if multishot {
                            keep.push((user_data, wait));
                        }
                    } else {
                        keep.push((user_data, wait));
                    }
                }
                Wait::Accept => {
                    let mut ended = false;
                    for _ in 0..ACCEPT_BATCH {
                        // SAFETY: null address arguments are allowed; a non-negative result is a new
                        // fd owned by nobody else yet.
                        let s = unsafe {
                            libc::accept4(
                                fd,
                                std::ptr::null_mut(),
                                std::ptr::null_mut(),
                                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                            )
                        };
                        if s >= 0 {
                            // SAFETY: `s` is the fd accept4 just created for us.
                            let owned = unsafe { OwnedFd::from_raw_fd(s) };
                            self.ready.push_back((user_data, s, true, Some(owned)));
                            continue;
                        }
                        let errno = io::Error::last_os_error()
                            .raw_os_error()
                            .unwrap_or(libc::EIO);
                        if errno != libc::EAGAIN
                            && errno != libc::EINTR
                            && errno != libc::ECONNABORTED
                        {
                            // Like a multishot accept that stops on error: the caller re-arms.
                            self.ready.push_back((user_data, -errno, false, None));
                            ended = true;
                        }
                        break;
                    }
                    if !ended {
                        keep.push((user_data, wait));
                    }
                }
            }
        }
        *ops = keep;
        let interest = interest(ops);
        if ops.is_empty() {
            self.fds.remove(&fd);
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
        } else {
            let _ = self.ctl(libc::EPOLL_CTL_MOD, fd, interest);
        }
    }
}

fn interest(ops: &[(u64, Wait)]) -> u32 {
    ops.iter().fold(0, |acc, (_, w)| acc | interest_of(*w))
}

fn interest_of(w: Wait) -> u32 {
    match w {
        Wait::Poll { events, .. } => events,
        Wait::Accept => libc::EPOLLIN as u32,
    }
}
