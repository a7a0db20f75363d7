//! The per-core io_uring runtime: one ring per shard thread, an in-flight op table, readiness polls,
//! multishot accept, timers and fd cancellation. It knows nothing of FTP: callers pass opaque tokens.
//!
//! Every op's kernel-visible memory (only timer timespecs; polls and accepts carry none) is owned by
//! the op table until its final completion, so nothing the kernel may still write can be freed early.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

mod epoll;
mod map;

pub use map::SendMap;
use std::sync::Arc;

/// Which kernel interface drives a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring when the kernel allows it, epoll otherwise.
    Auto,
    IoUring,
    Epoll,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(Backend::IoUring),
            "epoll" => Ok(Backend::Epoll),
            _ => Err(format!(
                "unknown io backend {s:?} (expected auto, io-uring or epoll)"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    /// The spelling `from_str` takes back (config files print and re-read it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io-uring",
            Backend::Epoll => "epoll",
        })
    }
}

enum Driver {
    Uring(IoUring),
    Epoll(epoll::Poller),
}

/// Identifies one in-flight op: table index in the low 32 bits, a generation above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(u64);

/// A completion handed to the owner of the op.
#[derive(Debug)]
pub struct Completion {
    /// The caller's token, as given when the op was submitted.
    pub token: u64,
    /// The op's result: a value >= 0 or a negated errno.
    pub result: i32,
    /// The op is multishot and stays armed.
    pub more: bool,
    /// For accepts: the new connection.
    pub fd: Option<OwnedFd>,
    /// For writes: the buffer, handed back once the kernel is done with it.
    pub buf: Option<Vec<u8>>,
}

/// Resources the kernel may touch until the op's final completion.
enum Owned {
    Nothing,
    /// An accept op: its completions carry new fds, handed out as `OwnedFd`.
    Accept,
    Timespec(#[allow(dead_code)] Box<types::Timespec>),
    /// A write's source buffer: the kernel reads it until the write completes.
    Buffer(Vec<u8>),
    /// A file read's or write's buffer, and the op's own duplicate of the file's fd: the caller
    /// may close its fd meanwhile, and io_uring may look the number up only when a worker runs
    /// the op, so without the duplicate a number reused by another open would redirect the op.
    FileIo {
        buf: Vec<u8>,
        #[allow(dead_code)]
        fd: OwnedFd,
    },
    /// A send's source mapping, kept alive until the send completes.
    Map(#[allow(dead_code)] Arc<SendMap>),
    /// An open's path and `open_how`, plus whatever keeps its directory fd open.
    Open(#[allow(dead_code)] Box<OpenArgs>),
    /// A splice's own duplicates of its file and pipe fds (see `FileIo`).
    Fds(#[allow(dead_code)] [OwnedFd; 2]),
}

impl Owned {
    /// The buffer a read or write hands back with its completion.
    fn into_buf(self) -> Option<Vec<u8>> {
        match self {
            Owned::Buffer(b) | Owned::FileIo { buf: b, .. } => Some(b),
            _ => None,
        }
    }
}

/// An op's own duplicate of `fd`, which the caller holds open for the duration of this call.
fn dup_for_op(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: the caller passes an fd it holds open for the duration of this call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().ok()
}

/// The op-owned state of a file read or write: a duplicate of `fd` (its number is what the op
/// uses) with the buffer. Without a free descriptor for the duplicate, the caller's fd is used.
fn file_io(fd: RawFd, buf: Vec<u8>) -> (RawFd, Owned) {
    match dup_for_op(fd) {
        Some(dup) => (dup.as_raw_fd(), Owned::FileIo { buf, fd: dup }),
        None => (fd, Owned::Buffer(buf)),
    }
}

struct Slot {
    generation: u32,
    /// `Some` while an op occupies the slot.
    op: Option<(u64, Owned)>,
}

/// What an OPENAT2 op reads until it completes.
struct OpenArgs {
    path: std::ffi::CString,
    how: types::OpenHow,
    _keep: Box<dyn std::any::Any + Send>,
}

/// A syscall's return value as an io_uring completion reports it: the count, or minus errno.
fn completion_result(n: isize) -> i32 {
    if n < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        n as i32
    }
}

/// Reserved user_data for internal ops (cancellations) whose completions nobody waits for.
const INTERNAL: u64 = u64::MAX;

/// How long a ring being dropped waits for its cancelled ops to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

pub struct Ring {
    driver: Driver,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Completions taken off a full completion queue so a submission could go in (`push`):
    /// (user_data, result, flags), in the order the kernel posted them. `next_completion` hands
    /// these out before anything still in the queue.
    overflow: std::collections::VecDeque<(u64, i32, u32)>,
}

impl Ring {
    /// A ring for the calling thread (it must stay the only submitter: `SINGLE_ISSUER`).
    pub fn new(entries: u32, backend: Backend) -> io::Result<Ring> {
        let driver = match backend {
            Backend::Epoll => Driver::Epoll(epoll::Poller::new()?),
            Backend::IoUring => Driver::Uring(Ring::uring(entries)?),
            Backend::Auto => match Ring::probe().and_then(|()| Ring::uring(entries)) {
                Ok(ring) => Driver::Uring(ring),
                Err(_) => Driver::Epoll(epoll::Poller::new()?),
            },
        };
        Ok(Ring {
            driver,
            slots: Vec::new(),
            free: Vec::new(),
            overflow: std::collections::VecDeque::new(),
        })
    }

    /// The backend actually in use.
    pub fn backend(&self) -> Backend {
        match self.driver {
            Driver::Uring(_) => Backend::IoUring,
            Driver::Epoll(_) => Backend::Epoll,
        }
    }

    fn uring(entries: u32) -> io::Result<IoUring> {
        // DEFER_TASKRUN (6.1+) runs completion work only when we ask for events, so it never interrupts
        // the loop; COOP_TASKRUN is the next best on older kernels. Either way completion work
        // waits for an enter with GETEVENTS, which a turn that must not block (transfers still
        // have budget to spend) would not make: TASKRUN_FLAG marks pending work in the SQ flags
        // and `wait(0)` then asks for events. Without it, control connections of a shard kept
        // busy by fast downloads went unserved for up to 200 ms.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(entries * 4)
            .build(entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag()
                    .setup_cqsize(entries * 4)
                    .build(entries)
            })?;
        Ok(ring)
    }

    /// Whether the kernel supports the opcodes this runtime uses.
    pub fn probe() -> io::Result<()> {
        let ring = IoUring::new(8)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::AcceptMulti::CODE, "ACCEPT"),
            (opcode::Timeout::CODE, "TIMEOUT"),
            (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring lacks {name}"),
                ));
            }
        }
        Ok(())
    }

    fn alloc(&mut self, token: u64, owned: Owned) -> OpId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    op: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.op = Some((token, owned));
        OpId(u64::from(slot.generation) << 32 | u64::from(index))
    }

    /// Queue `entry`. When the submission queue is full, what it holds goes to the kernel first.
    /// A full completion queue is emptied into `overflow` before that: the kernel would otherwise
    /// keep further completions on a list of its own, allocated atomically (an allocation that
    /// fails drops the completion for good), and older kernels refuse to submit at all while that
    /// list is not empty (`EBUSY`). If the kernel still takes nothing, the queue is reaped again;
    /// with nothing to reap it waits up to a millisecond for a completion instead of spinning.
    fn push(&mut self, entry: squeue::Entry) {
        let Driver::Uring(ring) = &mut self.driver else {
            unreachable!("io_uring entry on the epoll backend")
        };
        loop {
            // SAFETY: `entry` points only at memory its op-table slot owns (a timespec, buffer,
            // mapping or open arguments) until the op's final CQE.
            if unsafe { ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if ring.completion().is_full() || ring.submission().cq_overflow() {
                reap_into(ring, &mut self.overflow);
            }
            let submitted = match ring.submit() {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // EBUSY/EAGAIN (and anything else): nothing went in; make room below.
                Err(_) => 0,
            };
            if submitted > 0 {
                continue;
            }
            if reap_into(ring, &mut self.overflow) == 0 {
                // Nothing to reap yet: let the kernel run its deferred work and post a
                // completion, waiting at most 1 ms.
                let ts = types::Timespec::new().nsec(1_000_000);
                let args = types::SubmitArgs::new().timespec(&ts);
                let _ = ring.submitter().submit_with_args(1, &args);
                reap_into(ring, &mut self.overflow);
            }
        }
    }

    /// A NOP op (for tests of the queue itself).
    #[cfg(test)]
    fn nop(&mut self, token: u64) -> OpId {
        let id = self.alloc(token, Owned::Nothing);
        self.push(opcode::Nop::new().build().user_data(id.0));
        id
    }

    /// Poll `fd` for `events` (POLLIN, POLLOUT, ...). A multishot poll stays armed until cancelled.
    pub fn poll(&mut self, fd: RawFd, events: u32, multishot: bool, token: u64) -> OpId {
        let id = self.alloc(token, Owned::Nothing);
        if let Driver::Epoll(p) = &mut self.driver {
            p.poll(fd, events, multishot, id.0);
            return id;
        }
        let entry = opcode::PollAdd::new(types::Fd(fd), events)
            .multi(multishot)
            .build()
            .user_data(id.0);
        self.push(entry);
        id
    }

    /// Multishot accept on a listening socket; each completion carries a new non-blocking fd.
    pub fn accept_multi(&mut self, fd: RawFd, token: u64) -> OpId {
        let id = self.alloc(token, Owned::Accept);
        if let Driver::Epoll(p) = &mut self.driver {
            p.accept(fd, id.0);
            return id;
        }
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(id.0);
        self.push(entry);
        id
    }

    /// A one-shot timer; completes with -ETIME when it fires.
    pub fn timeout(&mut self, after: Duration, token: u64) -> OpId {
        if let Driver::Epoll(_) = self.driver {
            let id = self.alloc(token, Owned::Nothing);
            if let Driver::Epoll(p) = &mut self.driver {
                p.timeout(after, id.0);
            }
            return id;
        }
        let ts = Box::new(types::Timespec::from(after));
        let ptr: *const types::Timespec = &*ts;
        let id = self.alloc(token, Owned::Timespec(ts));
        let entry = opcode::Timeout::new(ptr).build().user_data(id.0);
        self.push(entry);
        id
    }

    /// Write `buf[range]` to `fd` at `offset` (a file). The buffer is owned by the op until its
    /// completion hands it back. io_uring does buffered writes asynchronously (or on its worker
    /// threads), and the epoll backend on its offload thread, so a slow disk never stalls the
    /// shard. The op works on its own duplicate of `fd`, which the caller may close at once.
    pub fn write_at(
        &mut self,
        fd: RawFd,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        offset: u64,
        token: u64,
    ) -> OpId {
        let end = range.end.min(buf.len());
        let start = range.start.min(end);
        let len = end - start;
        // The pointer stays valid while the op table owns the Vec: moving a Vec does not move
        // its heap buffer.
        let ptr = buf[start..].as_ptr();
        let (fd, owned) = file_io(fd, buf);
        let id = self.alloc(token, owned);
        if let Driver::Epoll(p) = &mut self.driver {
            // The op table slot `id` keeps the buffer and the fd until the completion is taken.
            p.file_op(fd, ptr.cast_mut(), len, offset, true, id.0);
            return id;
        }
        let entry = opcode::Write::new(types::Fd(fd), ptr, len as u32)
            .offset(offset)
            .build()
            .user_data(id.0);
        self.push(entry);
        id
    }

    /// Read up to `buf.len()` bytes of `fd` (a file) at `offset` into `buf`, handed back with the
    /// completion. A buffered read waits for the disk on an io_uring worker (or the epoll
    /// backend's offload thread), never on the shard; its other effect is that the range is in
    /// the page cache afterwards. The op works on its own duplicate of `fd`, as for `write_at`.
    pub fn read_at(&mut self, fd: RawFd, mut buf: Vec<u8>, offset: u64, token: u64) -> OpId {
        let len = buf.len();
        let ptr = buf.as_mut_ptr();
        let (fd, owned) = file_io(fd, buf);
        let id = self.alloc(token, owned);
        if let Driver::Epoll(p) = &mut self.driver {
            // The op table slot `id` keeps the buffer and the fd until the completion is taken.
            p.file_op(fd, ptr, len, offset, false, id.0);
            return id;
        }
        // ASYNC: go straight to an io_uring worker. A buffered read of a cold file would otherwise
        // start the disk I/O from this thread, and submitting it can block when the device queue
        // is full (exactly when other transfers are reading cold files too).
        let entry = opcode::Read::new(types::Fd(fd), ptr, len as u32)
            .offset(offset)
            .build()
            .flags(squeue::Flags::ASYNC)
            .user_data(id.0);
        self.push(entry);
        id
    }

    /// Move `len` bytes of `file` at `offset` into the pipe `pipe` without copying, on an io_uring
    /// worker (io_uring always runs a splice there), so waiting for the disk never stalls the
    /// shard; the completion carries the bytes moved. The op works on its own duplicates of both
    /// fds. `None` on the epoll backend, or without a free descriptor for the duplicates.
    pub fn splice_in(
        &mut self,
        file: RawFd,
        offset: u64,
        pipe: RawFd,
        len: u32,
        token: u64,
    ) -> Option<OpId> {
        if !matches!(self.driver, Driver::Uring(_)) {
            return None;
        }
        let (file, pipe) = (dup_for_op(file)?, dup_for_op(pipe)?);
        let entry = opcode::Splice::new(
            types::Fd(file.as_raw_fd()),
            offset as i64,
            types::Fd(pipe.as_raw_fd()),
            -1,
            len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build();
        let id = self.alloc(token, Owned::Fds([file, pipe]));
        self.push(entry.user_data(id.0));
        Some(id)
    }

    /// `openat2(dirfd, path, flags, resolve)` on io_uring; the completion carries the new fd.
    /// `keep` is held until then (it must keep `dirfd` open: the kernel may resolve the path on a
    /// worker thread after this call returns). Only on the io_uring backend: `None` on epoll,
    /// where the caller opens the file some other way.
    pub fn open_beneath(
        &mut self,
        dirfd: RawFd,
        path: std::ffi::CString,
        flags: i32,
        resolve: u64,
        keep: Box<dyn std::any::Any + Send>,
        token: u64,
    ) -> Option<OpId> {
        if let Driver::Epoll(_) = self.driver {
            return None;
        }
        let how = types::OpenHow::new()
            .flags((flags | libc::O_CLOEXEC) as u64)
            .resolve(resolve);
        let args = Box::new(OpenArgs {
            path,
            how,
            _keep: keep,
        });
        let (path_ptr, how_ptr) = (args.path.as_ptr(), &args.how as *const types::OpenHow);
        let id = self.alloc(token, Owned::Open(args));
        let entry = opcode::OpenAt2::new(types::Fd(dirfd), path_ptr, how_ptr)
            .build()
            .user_data(id.0);
        self.push(entry);
        Some(id)
    }

    /// Send `len` bytes of `map` from `offset` on the socket `fd`. The op holds a reference to the
    /// mapping until it completes, so the session may go away meanwhile. A truncated file fails
    /// with -EFAULT. The epoll backend sends in place (and may answer -EAGAIN).
    pub fn send_map(
        &mut self,
        fd: RawFd,
        map: &Arc<SendMap>,
        offset: usize,
        len: usize,
        token: u64,
    ) -> OpId {
        let len = len
            .min(map.len().saturating_sub(offset))
            .min(u32::MAX as usize);
        let ptr = map.ptr(offset);
        let id = self.alloc(token, Owned::Map(Arc::clone(map)));
        if let Driver::Epoll(p) = &mut self.driver {
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            // SAFETY: `ptr..ptr+len` lies in the mapping slot `id` holds; only the kernel reads it.
            let n = unsafe { libc::send(fd, ptr.cast(), len, flags) };
            p.ready.push_back((id.0, completion_result(n), false, None));
            return id;
        }
        let entry = opcode::Send::new(types::Fd(fd), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(id.0);
        self.push(entry);
        id
    }

    /// Cancel every op on `fd`, then close it. The cancellation is submitted before the close so the
    /// fd number cannot be reused while the kernel still matches ops against it, and closing only
    /// after the polls are gone is what makes the peer see the FIN now rather than never.
    pub fn close(&mut self, fd: OwnedFd) {
        if let Driver::Epoll(p) = &mut self.driver {
            p.close(fd);
            return;
        }
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd.as_raw_fd())).all())
                .build()
                .user_data(INTERNAL);
        self.push(entry);
        // Poll cancellation runs inline in io_uring_enter, so after this returns no op holds the file.
        if let Driver::Uring(ring) = &self.driver {
            let _ = ring.submit();
        }
        drop(fd);
    }

    /// Submit queued ops and wait until at least `want` completions are ready.
    pub fn wait(&mut self, mut want: usize) -> io::Result<()> {
        if !self.overflow.is_empty() {
            // Completions are already waiting in user space: submit, but do not block.
            want = 0;
        }
        let ring = match &mut self.driver {
            Driver::Uring(ring) => ring,
            Driver::Epoll(p) => return p.wait(want > 0),
        };
        match ring.submit_and_wait(want) {
            Ok(_) => Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINTR)
                    || e.raw_os_error() == Some(libc::EBUSY) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The next completion of one of our ops, if any is ready (internal ops are skipped).
    pub fn next_completion(&mut self) -> Option<Completion> {
        loop {
            let (user_data, result, more) = match &mut self.driver {
                Driver::Uring(ring) => match self.overflow.pop_front() {
                    Some((user_data, result, flags)) => (user_data, result, cqueue::more(flags)),
                    None => {
                        let cqe = ring.completion().next()?;
                        (cqe.user_data(), cqe.result(), cqueue::more(cqe.flags()))
                    }
                },
                Driver::Epoll(p) => {
                    let (user_data, result, more, fd) = p.ready.pop_front()?;
                    let Some((token, owned)) = self.finish(user_data, more) else {
                        continue;
                    };
                    let buf = owned.into_buf();
                    return Some(Completion {
                        token,
                        result,
                        more,
                        fd,
                        buf,
                    });
                }
            };
            if user_data == INTERNAL {
                continue;
            }
            let Some((token, owned)) = self.finish(user_data, more) else {
                continue;
            };
            // Accepts and opens complete with a new fd that we own from here on.
            let accept = matches!(owned, Owned::Accept | Owned::Open(_));
            let fd = if accept && result >= 0 {
                // SAFETY: an ACCEPT/OPENAT2 completion's non-negative result is a new fd installed
                // for this op alone; nothing else refers to it yet.
                Some(unsafe { OwnedFd::from_raw_fd(result) })
            } else {
                None
            };
            let buf = owned.into_buf();
            return Some(Completion {
                token,
                result,
                more,
                fd,
                buf,
            });
        }
    }

    /// Look up the op's token; free its slot unless it stays armed.
    /// Look up the op's token. A final completion frees the slot and hands back what it owned;
    /// a multishot one leaves it armed and reports only whether it is an accept.
    fn finish(&mut self, user_data: u64, more: bool) -> Option<(u64, Owned)> {
        let index = (user_data & 0xffff_ffff) as usize;
        let generation = (user_data >> 32) as u32;
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let (token, owned) = slot.op.as_ref()?;
        let token = *token;
        if more {
            let marker = if matches!(owned, Owned::Accept) {
                Owned::Accept
            } else {
                Owned::Nothing
            };
            return Some((token, marker));
        }
        let (_, owned) = slot.op.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index as u32);
        Some((token, owned))
    }

    /// Ops in flight (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// Move every completion in `ring`'s completion queue into `overflow`; how many were moved.
fn reap_into(
    ring: &mut IoUring,
    overflow: &mut std::collections::VecDeque<(u64, i32, u32)>,
) -> usize {
    let before = overflow.len();
    overflow.extend(
        ring.completion()
            .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
    );
    overflow.len() - before
}

impl Drop for Ring {
    /// Ops still in flight may write into buffers the op table owns (a READ on an io_uring
    /// worker), and the kernel finishes them only after the ring's fd is closed: cancel them all
    /// and wait for their last completions before the table is freed. A worker blocked on the
    /// disk is waited for, up to `DRAIN_LIMIT`. (The epoll backend joins its offload thread.)
    fn drop(&mut self) {
        if !matches!(self.driver, Driver::Uring(_)) {
            return;
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(INTERNAL);
        self.push(cancel);
        let deadline = std::time::Instant::now() + DRAIN_LIMIT;
        while self.in_flight() > 0 && std::time::Instant::now() < deadline {
            if let Driver::Uring(ring) = &mut self.driver {
                let ts = types::Timespec::new().nsec(50_000_000);
                let args = types::SubmitArgs::new().timespec(&ts);
                let _ = ring.submitter().submit_with_args(1, &args);
            }
            while self.next_completion().is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn backends() -> [Backend; 2] {
        [Backend::IoUring, Backend::Epoll]
    }

    #[test]
    fn poll_fires_on_readable_and_close_cancels() {
        for backend in backends() {
            poll_fires_on_readable_and_close_cancels_on(backend);
        }
    }

    fn poll_fires_on_readable_and_close_cancels_on(backend: Backend) {
        let mut ring = Ring::new(8, backend).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        ring.poll(a.as_raw_fd(), libc::POLLIN as u32, true, 7);
        b.write_all(b"x").unwrap();
        ring.wait(1).unwrap();
        let got: Vec<Completion> = std::iter::from_fn(|| ring.next_completion()).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].token, 7);
        assert!(got[0].more);
        assert_eq!(ring.in_flight(), 1);
        ring.close(OwnedFd::from(a));
        ring.wait(1).unwrap();
        let cancelled: Vec<Completion> = std::iter::from_fn(|| ring.next_completion()).collect();
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].result, -libc::ECANCELED);
        assert_eq!(ring.in_flight(), 0);
    }

    /// A loop turn that must not block (`wait(0)`, transfers still have budget) still collects
    /// completions that became ready meanwhile: control connections are not starved by downloads.
    #[test]
    fn non_blocking_wait_delivers_ready_completions() {
        for backend in backends() {
            let mut ring = Ring::new(8, backend).unwrap();
            let (a, mut b) = UnixStream::pair().unwrap();
            ring.poll(a.as_raw_fd(), libc::POLLIN as u32, false, 9);
            ring.wait(0).unwrap();
            assert!(ring.next_completion().is_none(), "nothing is readable yet");
            b.write_all(b"x").unwrap();
            let mut got = Vec::new();
            for _ in 0..3 {
                ring.wait(0).unwrap();
                got.extend(std::iter::from_fn(|| ring.next_completion()));
                if !got.is_empty() {
                    break;
                }
            }
            assert_eq!(got.len(), 1, "{backend:?}: wait(0) must reap the poll");
            assert_eq!(got[0].token, 9);
        }
    }

    #[test]
    fn read_at_hands_the_data_back() {
        use std::io::Write;
        for backend in backends() {
            let mut ring = Ring::new(8, backend).unwrap();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(b"0123456789").unwrap();
            ring.read_at(file.as_raw_fd(), vec![0; 4], 3, 12);
            ring.wait(1).unwrap();
            let c = ring.next_completion().expect("read completion");
            assert_eq!((c.token, c.result), (12, 4), "{backend:?}");
            assert_eq!(c.buf.as_deref(), Some(&b"3456"[..]), "{backend:?}");
            assert_eq!(ring.in_flight(), 0);
        }
    }

    /// File ops work on their own duplicate of the fd: the caller's close (and a reuse of the
    /// number by another open) before the op runs cannot send it to another file.
    #[test]
    fn file_ops_survive_the_callers_close() {
        use std::io::Write;
        for backend in backends() {
            let mut ring = Ring::new(8, backend).unwrap();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(b"0123456789").unwrap();
            let fd = OwnedFd::from(file);
            let raw = fd.as_raw_fd();
            ring.read_at(raw, vec![0; 4], 6, 13);
            drop(fd);
            // Likely to take the freed number: an op that still used it would read this instead.
            let mut other = tempfile::tempfile().unwrap();
            other.write_all(b"abcdefghij").unwrap();
            let mut c = None;
            while c.is_none() {
                ring.wait(1).unwrap();
                c = ring.next_completion();
            }
            let c = c.unwrap();
            assert_eq!((c.token, c.result), (13, 4), "{backend:?}");
            assert_eq!(c.buf.as_deref(), Some(&b"6789"[..]), "{backend:?}");
        }
    }

    /// Dropping a ring cancels what is still in flight (polls, accepts, timers, file reads) and
    /// waits for it, quickly: nothing may write into the op table after it is gone.
    #[test]
    fn dropping_a_ring_with_ops_in_flight_cancels_them() {
        for backend in backends() {
            let mut ring = Ring::new(8, backend).unwrap();
            let (a, _b) = UnixStream::pair().unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let file = tempfile::tempfile().unwrap();
            ring.poll(a.as_raw_fd(), libc::POLLIN as u32, true, 1);
            ring.accept_multi(listener.as_raw_fd(), 2);
            ring.timeout(Duration::from_secs(30), 3);
            ring.read_at(file.as_raw_fd(), vec![0; 1 << 20], 0, 4);
            ring.wait(0).unwrap();
            let t0 = std::time::Instant::now();
            drop(ring);
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "{backend:?}: drop took {:?}",
                t0.elapsed()
            );
        }
    }

    #[test]
    fn multishot_accept_hands_out_fds() {
        for backend in backends() {
            let mut ring = Ring::new(8, backend).unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            ring.accept_multi(listener.as_raw_fd(), 9);
            let addr = listener.local_addr().unwrap();
            let _a = std::net::TcpStream::connect(addr).unwrap();
            let _b = std::net::TcpStream::connect(addr).unwrap();
            let mut fds = Vec::new();
            while fds.len() < 2 {
                ring.wait(1).unwrap();
                while let Some(c) = ring.next_completion() {
                    assert_eq!(c.token, 9, "{backend:?}");
                    assert!(c.more, "{backend:?}");
                    fds.push(c.fd.expect("accepted fd"));
                }
            }
            assert_eq!(ring.in_flight(), 1);
        }
    }

    #[test]
    fn write_at_hands_the_buffer_back() {
        use std::io::Read;
        for backend in backends() {
            let mut ring = Ring::new(8, backend).unwrap();
            let mut file = tempfile::tempfile().unwrap();
            ring.write_at(file.as_raw_fd(), b"hello world".to_vec(), 6..11, 3, 11);
            ring.wait(1).unwrap();
            let c = ring.next_completion().expect("write completion");
            assert_eq!((c.token, c.result), (11, 5), "{backend:?}");
            assert_eq!(c.buf.as_deref(), Some(&b"hello world"[..]));
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            assert_eq!(content, b"\0\0\0world");
            assert_eq!(ring.in_flight(), 0);
        }
    }

    /// More ops than the ring has entries, with nothing reaped meanwhile: the submission queue
    /// (8) and the completion queue (32) both fill many times over. `push` must neither hang
    /// nor lose a completion: every NOP and every timer comes back exactly once.
    #[test]
    fn pushing_past_a_full_ring_loses_nothing() {
        let mut ring = Ring::new(8, Backend::IoUring).unwrap();
        let mut want = std::collections::BTreeSet::new();
        for i in 0..300u64 {
            if i % 3 == 0 {
                ring.timeout(Duration::from_micros(1), i);
            } else {
                ring.nop(i);
            }
            want.insert(i);
        }
        assert!(
            !ring.overflow.is_empty(),
            "the completion queue filled: completions were moved aside to make room"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut got = std::collections::BTreeSet::new();
        while got.len() < want.len() && std::time::Instant::now() < deadline {
            ring.wait(1).unwrap();
            while let Some(c) = ring.next_completion() {
                let expect = if c.token % 3 == 0 { -libc::ETIME } else { 0 };
                assert_eq!(c.result, expect, "token {}", c.token);
                assert!(got.insert(c.token), "token {} completed twice", c.token);
            }
        }
        assert_eq!(got, want);
        assert_eq!(ring.in_flight(), 0);
        assert!(ring.next_completion().is_none());
    }

    #[test]
    fn timeout_fires() {
        for backend in backends() {
            timeout_fires_on(backend);
        }
    }

    fn timeout_fires_on(backend: Backend) {
        let mut ring = Ring::new(8, backend).unwrap();
        ring.timeout(Duration::from_millis(1), 3);
        ring.wait(1).unwrap();
        let got: Vec<Completion> = std::iter::from_fn(|| ring.next_completion()).collect();
        assert_eq!(got[0].token, 3);
        assert_eq!(got[0].result, -libc::ETIME);
        assert_eq!(ring.in_flight(), 0);
    }
}
