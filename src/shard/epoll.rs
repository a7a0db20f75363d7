//! The epoll fallback behind the same `Ring` API, for hosts where io_uring is switched off
//! (`kernel.io_uring_disabled`, Docker's default seccomp profile). Readiness is level-triggered
//! here; callers already read and write until EAGAIN, so both backends look the same to them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;
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
    /// File reads and writes run here, started on first use.
    offload: Option<Offload>,
}

/// A file read or write handed to the offload thread.
struct FileOp {
    user_data: u64,
    /// Kept open by the ring's op table until the completion has been taken.
    fd: RawFd,
    buf: BufPtr,
    len: usize,
    offset: u64,
    write: bool,
}

/// The address of a buffer the op table owns until the op's completion has been taken.
struct BufPtr(*mut u8);

// The pointer is used only by the offload thread, only while its op is in flight. The op table
// neither moves nor frees the buffer until the completion has come back through the channel
// (which orders the thread's writes before the shard's reads), and `Poller`'s drop joins the
// thread before the `Ring`'s op table (a later field) is dropped.
// SAFETY: so the buffer outlives every use of the pointer on the offload thread.
unsafe impl Send for BufPtr {}

/// The epoll backend's stand-in for io_uring's worker threads: blocking `pread`/`pwrite` on a
/// thread of its own, completions back through a channel and an eventfd in the epoll set, so
/// a cold file or a slow disk never stalls the shard on this backend either.
struct Offload {
    tx: Option<mpsc::Sender<FileOp>>,
    done: mpsc::Receiver<(u64, i32)>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Offload {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the ops already queued are done; joining it
        // keeps their buffers (owned by the ring's op table) alive until then.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
            offload: None,
        })
    }

    /// Read (`write` false) or write `len` bytes at `buf` from or to `fd` at `offset`, on the
    /// offload thread. The caller keeps `buf` in place and `fd` open (it passes the op's own
    /// duplicate) until the completion for `user_data` has been taken from `ready`. If no thread
    /// can be had, the op runs here.
    pub(super) fn file_op(
        &mut self,
        fd: RawFd,
        buf: *mut u8,
        len: usize,
        offset: u64,
        write: bool,
        user_data: u64,
    ) {
        let op = FileOp {
            user_data,
            fd,
            buf: BufPtr(buf),
            len,
            offset,
            write,
        };
        let queued = match self.offload() {
            Some(tx) => tx.send(op).is_ok(),
            None => false,
        };
        if !queued {
            let n = run_file_op(fd, buf, len, offset, write);
            self.ready.push_back((user_data, n, false, None));
        }
    }

    /// The offload thread's queue, starting the thread on first use.
    fn offload(&mut self) -> Option<&mpsc::Sender<FileOp>> {
        if self.offload.is_none() {
            self.offload = self.start_offload().ok();
        }
        self.offload.as_ref()?.tx.as_ref()
    }

    fn start_offload(&mut self) -> io::Result<Offload> {
        let wake = nix::sys::eventfd::EventFd::from_flags(
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
        )?;
        let wake: OwnedFd = wake.into();
        let signal = wake.try_clone()?;
        let (tx, rx) = mpsc::channel::<FileOp>();
        let (done_tx, done) = mpsc::channel::<(u64, i32)>();
        let thread = std::thread::Builder::new()
            .name("ringftpd-file".into())
            .spawn(move || {
                for op in rx {
                    let n = run_file_op(op.fd, op.buf.0, op.len, op.offset, op.write);
                    if done_tx.send((op.user_data, n)).is_err() {
                        return;
                    }
                    let one = 1u64.to_ne_bytes();
                    // SAFETY: writes 8 bytes from a live array to the eventfd we hold.
                    let _ = unsafe { libc::write(signal.as_raw_fd(), one.as_ptr().cast(), 8) };
                }
            })?;
        self.ctl(libc::EPOLL_CTL_ADD, wake.as_raw_fd(), libc::EPOLLIN as u32)?;
        Ok(Offload {
            tx: Some(tx),
            done,
            wake,
            thread: Some(thread),
        })
    }

    /// Completions of offloaded file ops, into `ready`.
    fn reap_offload(&mut self) {
        let Some(off) = &self.offload else { return };
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live array from the eventfd we hold.
        let _ = unsafe { libc::read(off.wake.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        while let Ok((user_data, n)) = off.done.try_recv() {
            self.ready.push_back((user_data, n, false, None));
        }
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
        let wake = self.offload.as_ref().map(|o| o.wake.as_raw_fd());
        for ev in &events[..n.max(0) as usize] {
            let (fd, revents) = (ev.u64 as RawFd, ev.events);
            if Some(fd) == wake {
                self.reap_offload();
            } else {
                self.dispatch(fd, revents);
            }
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

/// `pread`/`pwrite` of the whole range (retrying on EINTR), as a completion result: bytes moved
/// or a negated errno.
fn run_file_op(fd: RawFd, buf: *mut u8, len: usize, offset: u64, write: bool) -> i32 {
    loop {
        let n = if write {
            // SAFETY: `buf..buf+len` is a live buffer its owner keeps in place for this op.
            unsafe { libc::pwrite(fd, buf.cast_const().cast(), len, offset as libc::off_t) }
        } else {
            // SAFETY: as above, and nothing else reads or writes it meanwhile.
            unsafe { libc::pread(fd, buf.cast(), len, offset as libc::off_t) }
        };
        if n >= 0 {
            return i32::try_from(n).unwrap_or(i32::MAX);
        }
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if errno != libc::EINTR {
            return -errno;
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
