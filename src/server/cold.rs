//! Cold windows and the pipe pool: a window of a file that is not in the page cache is brought in
//! without the shard waiting for the disk (an async splice into the transfer's pipe on io_uring, or
//! an io_uring read that leaves it cached, reading ahead while the last window is sent), and the
//! shard lends splice pipes from a bounded pool.

use std::os::fd::AsRawFd;

use super::conns::{ConnRef, Kind, token};
use super::transfer::{Mode, Pipe, Source, Transfer};
use super::{Conn, Shard};
use crate::proto::session::TransferError;

/// Pipes a shard lends out at once; with 1 MiB pipes this stays within the default
/// `fs.pipe-user-pages-soft` (64 MiB) for two shards.
const MAX_PIPES_PER_SHARD: usize = 32;
const PIPE_BYTES: usize = 1 << 20;

/// How much of a file is checked for page-cache residency (and read in when cold) at a time.
pub(super) const COLD_WINDOW: u64 = 1 << 20;

impl Shard {
    /// Bring a cold window in without the shard waiting for the disk. On io_uring a sendfile or
    /// splice transfer moves it straight into a pipe with an async splice (no copy; a sendfile
    /// transfer becomes a splice one if the pool has a pipe); otherwise it is read in.
    pub(super) fn warm_window(&mut self, r: ConnRef, conn: &mut Conn, offset: u64, len: u64) {
        let uring = self.ring.backend() == crate::config::Backend::IoUring;
        let convert = uring
            && matches!(
                conn.transfer.as_ref().map(|t| &t.source),
                Some(Source::File {
                    mode: Mode::Sendfile,
                    ..
                })
            );
        if convert {
            if let Some(p) = self.take_pipe() {
                if let Some(Source::File { mode, .. }) =
                    conn.transfer.as_mut().map(|t| &mut t.source)
                {
                    *mode = Mode::Splice {
                        pipe: Some(p),
                        in_pipe: 0,
                    };
                }
            }
        }
        if uring && self.fill_pipe(r, conn, offset, len) {
            return;
        }
        self.read_window(r, conn, offset, len);
    }

    /// Start an async splice of the file at `offset` into the transfer's empty pipe; false if
    /// this transfer has no pipe or the ring cannot splice.
    fn fill_pipe(&mut self, r: ConnRef, conn: &mut Conn, offset: u64, len: u64) -> bool {
        let epoch = conn.data_epoch;
        let Some(Source::File {
            file,
            mode:
                Mode::Splice {
                    pipe: Some(p),
                    in_pipe: 0,
                },
            warmth,
            ..
        }) = conn.transfer.as_mut().map(|t| &mut t.source)
        else {
            return false;
        };
        let len = len.min(p.size as u64) as u32;
        let tok = token(Kind::DataFill, r, epoch);
        let started = self
            .ring
            .splice_in(file.as_raw_fd(), offset, p.write.as_raw_fd(), len, tok)
            .is_some();
        if started {
            warmth.reading = Some(offset);
        }
        started
    }

    /// Read a window of the transfer's file on an io_uring worker, which leaves it in the page
    /// cache, up to date, for sendfile.
    fn read_window(&mut self, r: ConnRef, conn: &mut Conn, offset: u64, len: u64) {
        let epoch = conn.data_epoch;
        let Some(Source::File { file, warmth, .. }) = conn.transfer.as_mut().map(|t| &mut t.source)
        else {
            return;
        };
        warmth.reading = Some(offset);
        let mut buf = warmth.spare.take().unwrap_or_default();
        buf.resize(len as usize, 0);
        self.ring.read_at(
            file.as_raw_fd(),
            buf,
            offset,
            token(Kind::DataRead, r, epoch),
        );
    }

    /// A pipe for the splice path: from the shard's pool, or new (1 MiB when the pipe quota
    /// allows, the kernel's default otherwise); `None` once the shard holds its maximum.
    pub(super) fn take_pipe(&mut self) -> Option<Pipe> {
        if let Some(p) = self.pipes.pop() {
            self.pipes_out += 1;
            return Some(p);
        }
        if self.pipes_out >= MAX_PIPES_PER_SHARD {
            return None;
        }
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .ok()?;
        let size = nix::fcntl::fcntl(
            &write,
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES as i32),
        )
        .or_else(|_| nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_GETPIPE_SZ))
        .ok()? as usize;
        self.pipes_out += 1;
        Some(Pipe { read, write, size })
    }

    /// Give a transfer's pipe back; a pipe with bytes still in it, or with a splice into it in
    /// flight, is closed instead.
    pub(super) fn return_pipe(&mut self, t: &mut Transfer) {
        if let Source::File {
            mode: Mode::Splice { pipe, in_pipe },
            warmth,
            ..
        } = &mut t.source
        {
            if let Some(p) = pipe.take() {
                self.pipes_out -= 1;
                if *in_pipe == 0 && warmth.reading.is_none() {
                    self.pipes.push(p);
                }
            }
        }
    }

    /// An async splice of a cold window into the transfer's pipe completed: send it.
    pub(super) fn on_data_filled(&mut self, r: ConnRef, conn: &mut Conn, result: i32) {
        let Some(t) = conn.transfer.as_mut() else {
            return;
        };
        let Source::File {
            offset,
            mode: Mode::Splice { in_pipe, .. },
            warmth,
            ..
        } = &mut t.source
        else {
            return;
        };
        if warmth.reading.take().is_none() {
            return;
        }
        match result {
            n if n > 0 => {
                *in_pipe = n as usize;
                *offset += n as u64;
                warmth.until = *offset;
            }
            // The file ended before the size it had when opened: it shrank under us.
            0 => return self.fail_transfer(r, conn, TransferError::FileChanged),
            e if e == -libc::EINVAL || e == -libc::ENOSYS || e == -libc::EOPNOTSUPP => {
                // This file system cannot splice: copy instead (the pipe is empty).
                self.return_pipe(t);
                if let Source::File { mode, .. } = &mut t.source {
                    *mode = Mode::Copy;
                }
            }
            e => return self.fail_transfer(r, conn, TransferError::Local(-e)),
        }
        self.drive(r, conn);
    }

    /// A cold window has been read (and so is in the page cache): carry on sending.
    pub(super) fn on_data_read(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        result: i32,
        buf: Option<Vec<u8>>,
    ) {
        let Some(t) = conn.transfer.as_mut() else {
            return;
        };
        let Source::File { end, warmth, .. } = &mut t.source else {
            return;
        };
        let Some(start) = warmth.reading.take() else {
            return;
        };
        warmth.spare = buf;
        match result {
            n if n > 0 => warmth.until = start + n as u64,
            0 => return self.fail_transfer(r, conn, TransferError::FileChanged),
            e => return self.fail_transfer(r, conn, TransferError::Local(-e)),
        }
        // Read the next window while this one is sent: the disk and the network overlap.
        let (next, end) = (warmth.until, *end);
        if next < end {
            self.read_window(r, conn, next, (end - next).min(COLD_WINDOW));
        }
        self.drive(r, conn);
    }
}
