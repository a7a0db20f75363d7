//! Uploads (STOR, APPE, STOU, REST+STOR): the data socket is read into one of two bounded buffers
//! while the other is written to the file with io_uring, so neither a slow disk nor a fast client
//! stalls the shard, and memory per upload is fixed. Atomic STOR writes to a temporary name that is
//! renamed into place only after the data connection closed cleanly.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use super::conns::{ConnRef, Kind, token};
use super::fsworker::{Job, Upload};
use super::tls::{self, Handoff, Handshake, Recv};
use super::transfer::{Ending, Protection, Source, Transfer, UPLOAD_BUF_BYTES, page_start};
use super::{Conn, Shard};
use crate::proto::error::FileError;
use crate::proto::session::TransferError;
use crate::sys::ktls::{self, Incoming};

/// Bytes per file write: a buffer goes to the file in pieces of this size. The page cache sizes
/// its folios to the write, and on the VM the benchmarks run on larger writes cost more to copy
/// in: 2 GiB written by 8 `dd`s took about 1 s of system time in 32-64 KiB writes against 2.3-4 s
/// in 128-256 KiB writes. Over 8 alternating upload runs, 64 KiB pieces gave 0.84-1.07 s/GB of
/// server CPU against 0.65-1.92 for whole 256 KiB buffers: steadier, a little dearer at best.
const WRITE_PIECE_BYTES: usize = 64 << 10;

/// Drop every CR that directly precedes an LF in `buf[from..end]`; returns the new end.
fn crlf_to_lf(buf: &mut [u8], from: usize, end: usize) -> usize {
    let mut w = from;
    let mut i = from;
    while i < end {
        if buf[i] == b'\r' && i + 1 < end && buf[i + 1] == b'\n' {
            i += 1;
            continue;
        }
        buf[w] = buf[i];
        w += 1;
        i += 1;
    }
    w
}

enum Step {
    /// Wait for the socket to become readable.
    Poll,
    /// Wait for the socket to become writable (the TLS handshake).
    PollOut,
    /// `PROT P`: the TLS handshake failed, or did not resume the control connection's session.
    Refused(TransferError),
    /// `PROT P`: the connection closed without close_notify.
    Truncated,
    /// Wait for the write in flight.
    Wait,
    /// The client reset the data connection.
    Lost,
    /// All bytes are in the file.
    Complete,
}

impl Shard {
    /// Move data from the socket to the file as far as buffers allow, then wait for the next event.
    pub(super) fn drive_upload(&mut self, r: ConnRef, conn: &mut Conn) {
        let epoch = conn.data_epoch;
        let must_resume = conn.config.tls_require_reuse;
        let kernel = self.shared.ktls;
        let Some(t) = conn.transfer.as_mut() else {
            return;
        };
        let Some(sock) = t.sock.as_ref() else { return };
        let Source::Upload(u) = &mut t.source else {
            return;
        };
        let mut handshake = match t.tls.as_deref_mut() {
            Some(tls) if tls.is_handshaking() => match tls::handshake(tls, sock, &mut t.cut) {
                Handshake::Done if must_resume && !tls::resumed(tls) => {
                    tls::refuse(tls, sock);
                    Some(Step::Refused(TransferError::TlsNotResumed))
                }
                Handshake::Done => None,
                Handshake::WantRead => Some(Step::Poll),
                Handshake::WantWrite => Some(Step::PollOut),
                Handshake::Failed => Some(Step::Refused(TransferError::TlsHandshake)),
            },
            _ => None,
        };
        if let (None, true, Some(support)) = (&handshake, t.try_kernel, kernel.as_ref()) {
            // Both keys to the kernel: it decrypts what the client sends from here on, and
            // encrypts our close_notify.
            match tls::into_kernel(&mut t.tls, sock, support, None, true) {
                Handoff::Kernel => {
                    t.try_kernel = false;
                    t.protection = Protection::Kernel;
                }
                Handoff::Keep(why) => {
                    log::debug!("PROT P upload stays in rustls: {why}");
                    t.try_kernel = false;
                }
                Handoff::Blocked => handshake = Some(Step::PollOut),
                Handoff::Failed(e) => {
                    log::warn!("kTLS hand-off failed after the keys left rustls: {e}");
                    handshake = Some(Step::Refused(TransferError::Local(libc::EIO)));
                }
            }
        }
        let step = if let Some(step) = handshake {
            step
        } else {
            loop {
                if !u.writing && u.ready() > 0 {
                    let len = u.ready();
                    let next = u.spare.take().unwrap_or_else(|| vec![0; UPLOAD_BUF_BYTES]);
                    let held = u.start + len < u.filled;
                    let from = u.start;
                    let mut buf = std::mem::replace(&mut u.fill, next);
                    // The next buffer's data lands right after this one's.
                    u.start = page_start(&u.fill, u.offset + len as u64);
                    u.filled = u.start;
                    if held {
                        // Carry the held CR into the new buffer; the next byte decides what it is.
                        u.fill[u.start] = b'\r';
                        u.filled += 1;
                    }
                    buf.truncate(from + len);
                    self.ring.write_at(
                        u.file.as_raw_fd(),
                        buf,
                        from..from + len.min(WRITE_PIECE_BYTES),
                        u.offset,
                        token(Kind::DataWrite, r, epoch),
                    );
                    u.writing = true;
                    u.written = from;
                }
                if u.eof {
                    break if u.writing {
                        Step::Wait
                    } else {
                        Step::Complete
                    };
                }
                if u.filled == u.fill.len() {
                    break Step::Wait;
                }
                let got = match t.tls.as_deref_mut() {
                    None if t.protection == Protection::Kernel => {
                        if u.fill.len() - u.filled < 2 {
                            // Room for an alert's payload; the write in flight frees a buffer.
                            break Step::Wait;
                        }
                        let got = ktls::recv_record(sock.as_fd(), &mut u.fill[u.filled..]);
                        if u.lowat_raised
                            && !matches!(&got, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                        {
                            // A record (or the end) came: readable means "any byte" again.
                            u.lowat_raised = false;
                            let _ = ktls::reset_wait(sock.as_fd());
                        }
                        match got {
                            Ok(Incoming::Data(n)) => Recv::Data(n),
                            Ok(Incoming::CloseNotify) => {
                                // Ours in answer, as on the rustls path (best effort).
                                let _ = ktls::send_close_notify(sock.as_fd());
                                Recv::Closed
                            }
                            Ok(Incoming::Eof) => Recv::Truncated,
                            Ok(Incoming::Handshake) => {
                                break Step::Refused(TransferError::TlsRekey);
                            }
                            Ok(Incoming::Alert(..) | Incoming::Other(_)) => Recv::Failed,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                // Part of a record may be queued, which makes the socket
                                // readable at once: wait for more bytes than that instead.
                                if ktls::wait_for_more(sock.as_fd()).unwrap_or(false) {
                                    u.lowat_raised = true;
                                }
                                Recv::WouldBlock
                            }
                            // EBADMSG (a record that does not decrypt) and socket errors.
                            Err(_) => Recv::Failed,
                        }
                    }
                    None => match (&*sock).read(&mut u.fill[u.filled..]) {
                        Ok(0) => Recv::Closed,
                        Ok(n) => Recv::Data(n),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Recv::WouldBlock,
                        Err(_) => Recv::Failed,
                    },
                    Some(tls) => {
                        let got = tls::recv(tls, sock, &mut u.fill[u.filled..]);
                        if let Recv::Closed = got {
                            // Answer the client's close_notify with ours at once: clients such as
                            // Python's ssl wait for it before they read the 226.
                            tls.send_close_notify();
                            let _ = tls::send(tls, sock);
                        }
                        got
                    }
                };
                match got {
                    Recv::Closed => {
                        u.eof = true;
                        u.held_cr = false;
                    }
                    Recv::Data(n) => {
                        t.bytes += n as u64;
                        let end = u.filled + n;
                        u.filled = if u.ascii {
                            let from = u.filled.saturating_sub(usize::from(u.held_cr));
                            let end = crlf_to_lf(&mut u.fill, from, end);
                            u.held_cr = u.fill[u.start..end].last() == Some(&b'\r');
                            end
                        } else {
                            end
                        };
                    }
                    Recv::WouldBlock => break Step::Poll,
                    Recv::Truncated => break Step::Truncated,
                    Recv::Failed => break Step::Lost,
                }
            }
        };
        t.last_progress = self.now;
        match step {
            Step::Poll => {
                if !t.armed {
                    t.armed = true;
                    let fd = sock.as_raw_fd();
                    self.ring.poll(
                        fd,
                        libc::POLLIN as u32,
                        false,
                        token(Kind::DataIn, r, epoch),
                    );
                }
            }
            Step::PollOut => {
                if !t.armed {
                    t.armed = true;
                    let fd = sock.as_raw_fd();
                    self.ring.poll(
                        fd,
                        libc::POLLOUT as u32,
                        false,
                        token(Kind::DataOut, r, epoch),
                    );
                }
            }
            Step::Refused(e) => self.fail_upload(r, conn, e),
            Step::Truncated => {
                // An ABOR may be waiting (clients abort by closing the data connection).
                self.on_ctrl_readable(r, conn, 0, true);
                if conn.transfer.is_some() {
                    self.fail_upload(r, conn, TransferError::TlsTruncated);
                }
            }
            Step::Wait => {}
            Step::Lost => {
                // An ABOR may be waiting on the control connection (see `lost_data_connection`).
                self.on_ctrl_readable(r, conn, 0, true);
                if conn.transfer.is_some() {
                    self.fail_upload(r, conn, TransferError::ConnectionLost);
                }
            }
            Step::Complete => self.complete_upload(r, conn),
        }
    }

    /// A file write finished: account for it, recycle its buffer, and keep going.
    pub(super) fn on_data_written(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        result: i32,
        buf: Option<Vec<u8>>,
    ) {
        let Some(t) = conn.transfer.as_mut() else {
            return;
        };
        let Source::Upload(u) = &mut t.source else {
            return;
        };
        u.writing = false;
        if let Some(ending) = u.ending.take() {
            return match ending {
                Ending::Abort => self.abort_transfer(r, conn, true),
                Ending::Fail(e) => self.fail_upload(r, conn, e),
            };
        }
        let Some(mut buf) = buf else { return };
        if result < 0 {
            let e = FileError::from_errno(-result);
            return self.fail_upload(r, conn, TransferError::File(e));
        }
        let n = result as usize;
        u.offset += n as u64;
        if n == 0 && u.written < buf.len() {
            return self.fail_upload(r, conn, TransferError::File(FileError::NoSpace));
        }
        u.written += n;
        if u.written < buf.len() {
            // The next piece, or the rest of a short one (e.g. the disk filled up mid-piece: the
            // next attempt reports the real error).
            let from = u.written;
            let to = buf.len().min(from + WRITE_PIECE_BYTES);
            let epoch = conn.data_epoch;
            self.ring.write_at(
                u.file.as_raw_fd(),
                buf,
                from..to,
                u.offset,
                token(Kind::DataWrite, r, epoch),
            );
            u.writing = true;
            return;
        }
        buf.resize(UPLOAD_BUF_BYTES, 0);
        u.spare = Some(buf);
        self.drive_upload(r, conn);
    }

    /// Every byte is in the file. A client that vanished (its control connection is gone) did not
    /// finish its upload even though the data connection closed normally: the old file stays.
    fn complete_upload(&mut self, r: ConnRef, conn: &mut Conn) {
        if !self.client_still_there(r, conn) {
            return;
        }
        // A killed client's kernel closes its sockets last-opened first, so the data connection
        // ends a few microseconds before the control connection (longer when the dying process is
        // preempted): wait `upload_grace` before deciding that this was a finished upload.
        let Some(t) = conn.transfer.as_mut() else {
            return;
        };
        if let Some(sock) = t.sock.take() {
            drop(sock);
        }
        if let Source::Upload(u) = &mut t.source {
            u.finished = true;
        }
        let epoch = conn.data_epoch;
        self.ring
            .timeout(conn.config.upload_grace, token(Kind::UploadGrace, r, epoch));
    }

    /// After the grace period: commit, unless the client has gone (or aborted) meanwhile.
    pub(super) fn on_upload_grace(&mut self, r: ConnRef, conn: &mut Conn) {
        let finished = matches!(conn.transfer.as_ref().map(|t| &t.source), Some(Source::Upload(u)) if u.finished);
        if !finished || !self.client_still_there(r, conn) {
            return;
        }
        let Some(Source::Upload(u)) = conn.transfer.as_ref().map(|t| &t.source) else {
            return;
        };
        let job = Job::Commit {
            upload: u.upload.clone(),
            end: u.offset,
        };
        self.submit_job(r, conn, job);
    }

    /// Whether the upload is still wanted: a queued ABOR cancels it (clients send ABOR, then close
    /// the data connection), and a closed control connection means the client vanished.
    fn client_still_there(&mut self, r: ConnRef, conn: &mut Conn) -> bool {
        self.on_ctrl_readable(r, conn, 0, true);
        if conn.transfer.is_none() {
            return false;
        }
        if conn.eof || control_closed(conn) {
            self.fail_upload(r, conn, TransferError::ConnectionLost);
            return false;
        }
        true
    }

    /// The commit job is back: reply 226, or the error.
    pub(super) fn upload_committed(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        result: Result<(), FileError>,
    ) {
        let error = result.err().map(TransferError::File);
        self.finish_transfer(r, conn, error);
    }

    /// Close the data connection, remove the temporary file, reply with the error.
    fn fail_upload(&mut self, r: ConnRef, conn: &mut Conn, e: TransferError) {
        if self.defer_until_written(conn, Ending::Fail(e)) {
            return;
        }
        if let Some(t) = &conn.transfer {
            self.discard_upload(t);
        }
        self.close_data(conn);
        self.finish_transfer(r, conn, Some(e));
    }

    /// If the session's upload has a write in flight, close its data connection now and finish
    /// with `ending` when the write completes; returns whether it did so.
    pub(super) fn defer_until_written(&mut self, conn: &mut Conn, ending: Ending) -> bool {
        let Some(t) = conn.transfer.as_mut() else {
            return false;
        };
        let Source::Upload(u) = &mut t.source else {
            return false;
        };
        if !u.writing {
            return false;
        }
        u.ending = Some(ending);
        if let Some(sock) = t.sock.take() {
            t.armed = false;
            self.ring.close(sock.into());
        }
        true
    }

    /// An upload that will not complete leaves no temporary file behind.
    pub(super) fn discard_upload(&self, t: &Transfer) {
        if let Source::Upload(u) = &t.source {
            self.discard(u.upload.clone());
        }
    }

    pub(super) fn discard(&self, upload: Upload) {
        if upload.temp.is_some() {
            let root = Arc::clone(&upload.root);
            // Discards go on the reserved queue, which never refuses.
            let _ = self
                .shared
                .pool
                .submit(self.index, &root, 0, Job::Discard { upload });
        }
    }
}

/// Whether the control connection has been closed by the peer (without consuming its input).
fn control_closed(conn: &Conn) -> bool {
    let mut byte = [0u8; 1];
    matches!(conn.ctrl.peek(&mut byte), Ok(0))
}

#[cfg(test)]
mod tests {
    use super::crlf_to_lf;

    #[test]
    fn crlf_becomes_lf_and_lone_cr_stays() {
        let mut b = b"a\r\nb\rc\r\n\r".to_vec();
        let end = b.len();
        let n = crlf_to_lf(&mut b, 0, end);
        assert_eq!(&b[..n], b"a\nb\rc\n\r");
    }
}
