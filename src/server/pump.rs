//! The sending side of a transfer (RETR and listings): one budgeted pump step at a time over the
//! chosen data path (sendfile with io_uring POLLOUT on EAGAIN, splice through a pipe, SEND from a
//! mapping, or the copy path for TYPE A and file systems that refuse sendfile), and what the shard
//! does with how each step ended.

use std::fs::File;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};

use super::cold::COLD_WINDOW;
use super::conns::{ConnRef, Kind, token};
use super::fsworker::{Job, More};
use super::tls::{self, Handoff, Handshake};
use super::transfer::{Mode, Protection, Source, Transfer, Warmth};
use super::{Conn, Shard};
use crate::config::DataPath;
use crate::proto::session::TransferError;
use crate::sys::ktls;

/// Largest single sendfile/copy step; the per-turn budget caps the total.
const COPY_CHUNK: usize = 64 << 10;

/// How much of a file one residency check may vouch for. Pages found resident may be evicted
/// before they are sent; this bounds how far that trust reaches (64 MiB: 1/64 of the checks of
/// 1 MiB windows, and a fraction of a second of a fast download).
const WARM_SPAN: u64 = 64 << 20;

/// How far beyond a read the kernel's readahead may insert pages: a window is at most the
/// device's `read_ahead_kb` (128 KiB by default, 8 MiB on virtio disks here), and an async one
/// starts at most one window ahead.
const RA_REACH: u64 = 16 << 20;

/// How a pump step ended: what the shard does next for this transfer.
enum Pump {
    Done,
    /// The socket is full: wait for POLLOUT.
    Blocked,
    /// The TLS handshake waits for the client: wait for POLLIN.
    BlockedIn,
    /// The per-turn budget is spent: go again after the other sessions.
    Budget,
    /// The next window is not in the page cache: read it asynchronously first.
    Cold {
        offset: u64,
        len: u64,
    },
    /// Waiting for that read (or for a SEND from the mapping).
    Warming,
    /// Send `len` bytes of the mapping from `offset` with io_uring.
    SendMap {
        offset: u64,
        len: u64,
    },
    /// The splice path needs a pipe from the shard's pool.
    NeedPipe,
    /// The cold windows are behind this (former sendfile) transfer: back to sendfile.
    Resume,
    /// This piece of a listing is sent: format the next one from this cursor.
    NextPiece(Box<More>, Vec<u8>),
    Failed(TransferError),
}

/// Whether `file` at `offset` can be sent without the shard waiting for the disk. Bytes already
/// known to be resident are not asked about again. The check is cachestat(2), or on kernels
/// before 6.5 a preadv2(RWF_NOWAIT) of the window (`sys::fs::Residency`); a file system that
/// can answer neither counts as warm (the behaviour of every sendfile server).
fn check_warm(file: &File, offset: u64, end: u64, warmth: &mut Warmth) -> Option<Pump> {
    if offset < warmth.until {
        return None;
    }
    if warmth.reading.is_some() {
        return Some(Pump::Warming);
    }
    let len = (end - offset).min(COLD_WINDOW);
    // The server's start-up choice: cachestat(2), or preadv2(RWF_NOWAIT) probes without it.
    let residency = warmth.residency;
    let resident = |off: u64, n: u64| match residency.cached_bytes(file.as_fd(), off, n) {
        Ok((cached, total)) => cached >= total,
        Err(_) => true,
    };
    if offset >= warmth.read_until {
        // Most files are wholly resident: one check of the next WARM_SPAN (at most) trusts that
        // much at once, instead of one per window. Only a wholly resident span passes, so a span
        // just behind another transfer's readahead (pages inserted, not yet read) never does.
        // After a span with a hole the next try waits a quarter span, so a file with holes
        // does not pay for a failing span check per window.
        let span = (end - offset).min(WARM_SPAN);
        if span > len && offset >= warmth.span_from {
            if resident(offset, span) {
                warmth.until = offset + span;
                return None;
            }
            warmth.span_from = offset + WARM_SPAN / 4;
        }
        if resident(offset, len) {
            warmth.until = offset + len;
            return None;
        }
    }
    // This window is read in (on an io_uring worker, or spliced into a pipe there), and so is the
    // next, read ahead. Their readahead may reach RA_REACH beyond them, filling holes there with
    // pages that look resident before they are. If that reach holds no hole now, before the read,
    // nothing lands there and sendfile resumes after this window: a wholly cached file with a
    // few evicted pages takes the slow path for those windows only. Otherwise the reach is read
    // in too, and a file read from disk stays on the read-in path to its end.
    let reach = (offset + 2 * COLD_WINDOW + RA_REACH).min(end);
    let from = warmth.read_until.max(offset + len);
    if from < reach && !resident(from, reach - from) {
        warmth.read_until = reach;
    }
    warmth.read_until = warmth.read_until.max(offset + len);
    Some(Pump::Cold { offset, len })
}

/// Classify a failed socket write: the peer going away is 426, anything else is a local error.
fn socket_error(errno: i32) -> TransferError {
    match Errno::from_raw(errno) {
        Errno::EPIPE
        | Errno::ECONNRESET
        | Errno::ENOTCONN
        | Errno::ETIMEDOUT
        | Errno::ESHUTDOWN => TransferError::ConnectionLost,
        _ => TransferError::Local(errno),
    }
}

/// Send from `t` until done, blocked, or `budget` bytes have gone out.
fn pump(t: &mut Transfer, budget: usize) -> Pump {
    let Some(sock) = t.sock.as_ref() else {
        return Pump::Failed(TransferError::NoDataConnection);
    };
    let mut left = budget;
    loop {
        if left == 0 {
            return Pump::Budget;
        }
        let sent = match &mut t.source {
            Source::Pending | Source::Upload(_) => return Pump::Blocked,
            Source::Buffer {
                data,
                pos,
                more,
                waiting,
            } => {
                if *pos == data.len() {
                    if *waiting {
                        return Pump::Warming;
                    }
                    return match more.take() {
                        Some(cursor) => {
                            *waiting = true;
                            *pos = 0;
                            Pump::NextPiece(Box::new(cursor), std::mem::take(data))
                        }
                        None => Pump::Done,
                    };
                }
                match send_from(sock, data, pos, left) {
                    Ok(n) => n,
                    Err(stop) => return stop,
                }
            }
            Source::File {
                file,
                offset,
                end,
                mode: mode @ Mode::Splice { .. },
                warmth,
                ..
            } => {
                let Mode::Splice { pipe, in_pipe } = mode else {
                    unreachable!()
                };
                let Some(p) = pipe.as_ref() else {
                    return Pump::NeedPipe;
                };
                if *in_pipe > 0 {
                    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
                    match splice(&p.read, None, sock, None, (*in_pipe).min(left), flags) {
                        Ok(n) => {
                            *in_pipe -= n;
                            n
                        }
                        Err(Errno::EAGAIN) => return Pump::Blocked,
                        Err(Errno::EINTR) => 0,
                        Err(e) => return Pump::Failed(socket_error(e as i32)),
                    }
                } else {
                    if *offset >= *end {
                        return Pump::Done;
                    }
                    if let Some(wait) = check_warm(file, *offset, *end, warmth) {
                        return wait;
                    }
                    if warmth.was_sendfile {
                        return Pump::Resume;
                    }
                    let want =
                        (*end - *offset).min((warmth.until - *offset).min(p.size as u64)) as usize;
                    let mut off = *offset as i64;
                    match splice(
                        &*file,
                        Some(&mut off),
                        &p.write,
                        None,
                        want.min(left),
                        SpliceFFlags::SPLICE_F_MOVE,
                    ) {
                        Ok(0) => return Pump::Failed(TransferError::FileChanged),
                        Ok(n) => {
                            *offset = off as u64;
                            *in_pipe = n;
                        }
                        Err(Errno::EINTR) => {}
                        // The file system cannot splice: copy instead (the pipe is empty).
                        Err(Errno::EINVAL | Errno::ENOSYS) => *mode = Mode::Copy,
                        Err(e) => return Pump::Failed(TransferError::Local(e as i32)),
                    }
                    0
                }
            }
            Source::File {
                file,
                offset,
                end,
                mode: Mode::Mmap { sending, .. },
                warmth,
                ..
            } => {
                if *sending {
                    return Pump::Warming;
                }
                if *offset >= *end {
                    return Pump::Done;
                }
                if let Some(wait) = check_warm(file, *offset, *end, warmth) {
                    return wait;
                }
                let len = (*end - *offset)
                    .min(warmth.until - *offset)
                    .min(left as u64)
                    .min(COLD_WINDOW);
                return Pump::SendMap {
                    offset: *offset,
                    len,
                };
            }
            Source::File {
                file,
                offset,
                end,
                mode: mode @ Mode::Sendfile,
                warmth,
                ..
            } => {
                if *offset >= *end {
                    return Pump::Done;
                }
                if let Some(wait) = check_warm(file, *offset, *end, warmth) {
                    // A cold window moves this transfer onto a pipe (see `warm_window`).
                    warmth.was_sendfile |= matches!(wait, Pump::Cold { .. });
                    return wait;
                }
                // Never send past what is known to be resident in one call.
                let left = left.min((warmth.until - *offset) as usize);
                let count = (*end - *offset).min(left as u64) as usize;
                let mut off = *offset as libc::off_t;
                match nix::sys::sendfile::sendfile(sock, &*file, Some(&mut off), count) {
                    // The file ended before the size it had when opened: it shrank under us.
                    Ok(0) => return Pump::Failed(TransferError::FileChanged),
                    Ok(n) => {
                        *offset = off as u64;
                        n
                    }
                    Err(Errno::EAGAIN) => return Pump::Blocked,
                    Err(Errno::EINTR) => 0,
                    // The file system (or a special file) cannot sendfile: copy instead.
                    Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                        log::debug!("sendfile refused; falling back to the copy path");
                        *mode = Mode::Copy;
                        0
                    }
                    Err(e) if e == Errno::EIO => {
                        return Pump::Failed(TransferError::Local(e as i32));
                    }
                    Err(e) => return Pump::Failed(socket_error(e as i32)),
                }
            }
            Source::File {
                file,
                offset,
                end,
                mode,
                buf,
                pos,
                prev_cr,
                warmth,
            } => {
                if *pos == buf.len() {
                    if *offset >= *end {
                        return Pump::Done;
                    }
                    if let Some(wait) = check_warm(file, *offset, *end, warmth) {
                        return wait;
                    }
                    match refill(file, offset, *end, mode, buf, prev_cr) {
                        Ok(start) => *pos = start,
                        Err(stop) => return stop,
                    }
                }
                match send_from(sock, buf, pos, left) {
                    Ok(n) => n,
                    Err(stop) => return stop,
                }
            }
        };
        t.bytes += sent as u64;
        left = left.saturating_sub(sent);
    }
}

/// Where in its buffer the copy path's chunk starts: half a page in. memcpy's `rep movsb` on AMD
/// Zen runs about 16 times slower (3.3 against 55 GB/s, measured here) when the destination
/// sits just above the source modulo 4 KiB, and rustls copies each record's plaintext to 5 bytes
/// past the start of a page-aligned buffer (after the record header): with the chunk page-aligned
/// too, that copy alone took a third of a `PROT P` download's server CPU. Half a page off, no
/// copy of the chunk (rustls's, the kernel's into the socket, the read into it) is near that.
const CHUNK_START: usize = 2048;

/// The copy path's next chunk (at most `COPY_CHUNK` bytes from `offset`) read into `buf` from
/// [`CHUNK_START`] on; returns where the data starts. The buffer is reused from chunk to chunk (no
/// allocation once it has grown); TYPE A converts line endings (its data then starts at 0).
/// Shared by the cleartext copy path and `PROT P`.
fn refill(
    file: &File,
    offset: &mut u64,
    end: u64,
    mode: &Mode,
    buf: &mut Vec<u8>,
    prev_cr: &mut bool,
) -> Result<usize, Pump> {
    let want = (end - *offset).min(COPY_CHUNK as u64) as usize;
    buf.resize(CHUNK_START + want, 0);
    let n = loop {
        match file.read_at(&mut buf[CHUNK_START..], *offset) {
            Ok(0) => return Err(Pump::Failed(TransferError::FileChanged)),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Pump::Failed(TransferError::Local(
                    e.raw_os_error().unwrap_or(libc::EIO),
                )));
            }
        }
    };
    *offset += n as u64;
    buf.truncate(CHUNK_START + n);
    if matches!(mode, Mode::Ascii) {
        *buf = to_crlf(&buf[CHUNK_START..], prev_cr);
        return Ok(0);
    }
    Ok(CHUNK_START)
}

/// `pump` for a `PROT P` data connection: finish the TLS handshake (refusing one that did not
/// resume the control connection's session when `must_resume`), then hand the connection to
/// kernel TLS where `kernel` (this kernel's offloads, the configured data path) allows, after
/// which the cleartext `pump` sends over that path and the kernel encrypts. Otherwise read the
/// file (or take the listing) into rustls, which encrypts it, and write its records to the
/// socket. The end is always marked with close_notify, so the client can tell a complete file
/// from a cut one (under kernel TLS by `close_kernel_tls`).
fn pump_tls(
    t: &mut Transfer,
    budget: usize,
    must_resume: bool,
    kernel: Option<(&ktls::Support, DataPath)>,
) -> Pump {
    if let (Some(tls), Some(sock)) = (t.tls.as_deref_mut(), t.sock.as_ref()) {
        if tls.is_handshaking() {
            match tls::handshake(tls, sock, &mut t.cut) {
                Handshake::Done => {}
                Handshake::WantRead => return Pump::BlockedIn,
                Handshake::WantWrite => return Pump::Blocked,
                Handshake::Failed => return Pump::Failed(TransferError::TlsHandshake),
            }
            if must_resume && !tls::resumed(tls) {
                // close_notify first, so the client reads a clean end and then the 522.
                tls::refuse(tls, sock);
                return Pump::Failed(TransferError::TlsNotResumed);
            }
        }
        if let (true, Some((support, path))) = (t.try_kernel, kernel) {
            match tls::into_kernel(&mut t.tls, sock, support, t.size, false) {
                Handoff::Kernel => {
                    t.try_kernel = false;
                    t.protection = Protection::Kernel;
                    // The cleartext paths from here on: the kernel encrypts what they send.
                    t.use_data_path(path);
                    return pump(t, budget);
                }
                Handoff::Keep(why) => {
                    log::debug!("PROT P data stays in rustls: {why}");
                    t.try_kernel = false;
                }
                Handoff::Blocked => return Pump::Blocked,
                Handoff::Failed(e) => {
                    log::warn!("kTLS hand-off failed after the keys left rustls: {e}");
                    return Pump::Failed(TransferError::Local(libc::EIO));
                }
            }
        }
    }
    let Transfer {
        tls: Some(tls),
        sock: Some(sock),
        source,
        bytes,
        ..
    } = t
    else {
        return Pump::Failed(TransferError::NoDataConnection);
    };
    let mut left = budget;
    loop {
        match tls::send(tls, sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Pump::Blocked,
            Err(e) => return Pump::Failed(socket_error(e.raw_os_error().unwrap_or(libc::EIO))),
        }
        if left == 0 {
            return Pump::Budget;
        }
        let chunk: &[u8] = match source {
            Source::Buffer {
                data,
                pos,
                more,
                waiting,
            } => {
                if *pos == data.len() {
                    if *waiting {
                        return Pump::Warming;
                    }
                    if let Some(cursor) = more.take() {
                        *waiting = true;
                        *pos = 0;
                        return Pump::NextPiece(Box::new(cursor), std::mem::take(data));
                    }
                    &[]
                } else {
                    &data[*pos..]
                }
            }
            Source::File {
                file,
                offset,
                end,
                mode,
                buf,
                pos,
                prev_cr,
                warmth,
            } => {
                if *pos == buf.len() && *offset < *end {
                    if let Some(wait) = check_warm(file, *offset, *end, warmth) {
                        return wait;
                    }
                    match refill(file, offset, *end, mode, buf, prev_cr) {
                        Ok(start) => *pos = start,
                        Err(stop) => return stop,
                    }
                }
                &buf[*pos..]
            }
            Source::Pending | Source::Upload(_) => return Pump::Blocked,
        };
        if chunk.is_empty() {
            // Everything is in rustls: close_notify after it (sent once, however often we pass
            // here), and done once the socket has taken the last record.
            tls.send_close_notify();
            return match tls::send(tls, sock) {
                Ok(()) => Pump::Done,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pump::Blocked,
                Err(e) => Pump::Failed(socket_error(e.raw_os_error().unwrap_or(libc::EIO))),
            };
        }
        // rustls takes what fits under its buffer limit and encrypts it at once.
        let n = match tls.writer().write(&chunk[..chunk.len().min(left)]) {
            Ok(n) => n,
            Err(_) => return Pump::Failed(TransferError::Local(libc::EIO)),
        };
        match source {
            Source::Buffer { pos, .. } | Source::File { pos, .. } => *pos += n,
            Source::Pending | Source::Upload(_) => {}
        }
        *bytes += n as u64;
        left = left.saturating_sub(n);
        if n == 0 && !tls.wants_write() {
            return Pump::Failed(TransferError::Local(libc::EIO));
        }
    }
}

/// The end of a kernel TLS transfer: close_notify as an alert record, so the client can tell a
/// complete file from a cut one (rustls sends it itself on the user-space path).
fn close_kernel_tls(t: &mut Transfer) -> Pump {
    if t.protection != Protection::Kernel || t.close_notified {
        return Pump::Done;
    }
    let Some(sock) = t.sock.as_ref() else {
        return Pump::Failed(TransferError::NoDataConnection);
    };
    match ktls::send_close_notify(sock.as_fd()) {
        Ok(()) => {
            t.close_notified = true;
            Pump::Done
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pump::Blocked,
        Err(e) => Pump::Failed(socket_error(e.raw_os_error().unwrap_or(libc::EIO))),
    }
}

/// Write `buf[*pos..]` (at most `left` bytes) to the socket and advance `pos`; a full socket or
/// a failure is the `Pump` to return.
fn send_from(sock: &TcpStream, buf: &[u8], pos: &mut usize, left: usize) -> Result<usize, Pump> {
    let end = buf.len().min(*pos + left);
    match (&*sock).write(&buf[*pos..end]) {
        Ok(n) => {
            *pos += n;
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Pump::Blocked),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(Pump::Failed(socket_error(
            e.raw_os_error().unwrap_or(libc::EIO),
        ))),
    }
}

/// TYPE A on the wire: every LF is sent as CRLF.
/// A line end already sent as CRLF is left alone; `prev_cr` carries the last byte across chunks.
fn to_crlf(raw: &[u8], prev_cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for &b in raw {
        if b == b'\n' && !*prev_cr {
            out.push(b'\r');
        }
        out.push(b);
        *prev_cr = b == b'\r';
    }
    out
}

impl Shard {
    /// Run one budgeted step of the transfer and act on how it ended.
    pub(super) fn drive(&mut self, r: ConnRef, conn: &mut Conn) {
        let budget = conn.config.send_budget_bytes;
        let must_resume = conn.config.tls_require_reuse;
        let kernel = self.shared.ktls;
        let path = conn.config.data_path;
        let Some(t) = conn.transfer.as_mut() else {
            return;
        };
        let before = t.bytes;
        let result = match t.tls {
            None => pump(t, budget),
            Some(_) => pump_tls(t, budget, must_resume, kernel.as_ref().map(|k| (k, path))),
        };
        let result = match result {
            Pump::Done => close_kernel_tls(t),
            other => other,
        };
        if t.bytes != before {
            t.last_progress = self.now;
        }
        match result {
            Pump::Done => self.finish_transfer(r, conn, None),
            Pump::Failed(TransferError::ConnectionLost) => self.lost_data_connection(r, conn),
            Pump::Failed(e) => self.finish_transfer(r, conn, Some(e)),
            Pump::Blocked => {
                if let Some(fd) = t.sock.as_ref().map(AsRawFd::as_raw_fd) {
                    t.armed = true;
                    self.poll_data(r, conn, fd, libc::POLLOUT, Kind::DataOut);
                }
            }
            Pump::BlockedIn => {
                if let Some(fd) = t.sock.as_ref().map(AsRawFd::as_raw_fd) {
                    t.armed = true;
                    self.poll_data(r, conn, fd, libc::POLLIN, Kind::DataIn);
                }
            }
            Pump::Budget => self.ready.push(r),
            Pump::Warming => {}
            Pump::NextPiece(cursor, out) => {
                if let Some(request) = t.listing.clone() {
                    self.submit_job(
                        r,
                        conn,
                        Job::List {
                            request,
                            cursor: Some(*cursor),
                            out,
                            control: false,
                        },
                    );
                }
            }
            Pump::NeedPipe => match self.take_pipe() {
                Some(p) => {
                    if let Source::File {
                        mode: Mode::Splice { pipe, .. },
                        ..
                    } = &mut t.source
                    {
                        *pipe = Some(p);
                    }
                    self.drive(r, conn);
                }
                None => {
                    // The pool is used up (pipe quota): this transfer uses sendfile instead.
                    if let Source::File { mode, .. } = &mut t.source {
                        *mode = Mode::Sendfile;
                    }
                    self.drive(r, conn);
                }
            },
            Pump::Resume => {
                self.return_pipe(t);
                if let Source::File { mode, warmth, .. } = &mut t.source {
                    *mode = Mode::Sendfile;
                    warmth.was_sendfile = false;
                }
                self.drive(r, conn);
            }
            Pump::SendMap { offset, len } => {
                if let (
                    Source::File {
                        mode: Mode::Mmap { map, sending },
                        ..
                    },
                    Some(sock),
                ) = (&mut t.source, &t.sock)
                {
                    *sending = true;
                    let fd = sock.as_raw_fd();
                    let tok = token(Kind::DataSent, r, conn.data_epoch);
                    self.ring
                        .send_map(fd, map, offset as usize, len as usize, tok);
                }
            }
            Pump::Cold { offset, len } => self.warm_window(r, conn, offset, len),
        }
    }

    /// A SEND from the mapping completed.
    pub(super) fn on_data_sent(&mut self, r: ConnRef, conn: &mut Conn, result: i32) {
        let Some(t) = conn.transfer.as_mut() else {
            return;
        };
        let Source::File {
            offset,
            mode: Mode::Mmap { sending, .. },
            ..
        } = &mut t.source
        else {
            return;
        };
        *sending = false;
        match result {
            n if n > 0 => {
                *offset += n as u64;
                t.bytes += n as u64;
                t.last_progress = self.now;
                self.drive(r, conn);
            }
            e if e == -libc::EAGAIN => {
                if let Some(fd) = t.sock.as_ref().map(AsRawFd::as_raw_fd) {
                    t.armed = true;
                    self.poll_data(r, conn, fd, libc::POLLOUT, Kind::DataOut);
                }
            }
            // The file shrank under the mapping: the kernel refused to read past its end.
            e if e == -libc::EFAULT => self.fail_transfer(r, conn, TransferError::FileChanged),
            0 => self.lost_data_connection(r, conn),
            e => match socket_error(-e) {
                TransferError::ConnectionLost => self.lost_data_connection(r, conn),
                other => self.fail_transfer(r, conn, other),
            },
        }
    }

    /// Transfers that spent their budget last turn get another step now.
    pub(super) fn run_ready(&mut self) {
        for r in std::mem::take(&mut self.ready) {
            let Some(mut conn) = self.take(r) else {
                continue;
            };
            self.drive(r, &mut conn);
            self.settle(r, conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::to_crlf;

    #[test]
    fn ascii_conversion_turns_lf_into_crlf() {
        let mut cr = false;
        assert_eq!(to_crlf(b"a\nb\n", &mut cr), b"a\r\nb\r\n");
        assert_eq!(to_crlf(b"", &mut cr), b"");
        assert_eq!(to_crlf(b"no newline", &mut cr), b"no newline");
        assert_eq!(to_crlf(b"dos\r\nline\r", &mut cr), b"dos\r\nline\r");
        assert_eq!(
            to_crlf(b"\nnext", &mut cr),
            b"\nnext",
            "CRLF split across chunks stays CRLF"
        );
    }
}
