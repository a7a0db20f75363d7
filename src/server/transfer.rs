//! A transfer: what it holds (its data socket, counters, and its source: a file being sent, a
//! listing sent a piece at a time, or an upload's two buffers, with the per-source state the pump,
//! the cold-window reader and the upload writer share) and how it ends: the data socket closed
//! first, then the reply and the log line, or dropped without a reply.

use std::fs::File;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::conns::ConnRef;
use super::fsworker::{ListRequest, More, Upload};
use super::records::FileVerb;
use super::{Conn, Shard};
use crate::config::DataPath;
use crate::proto::reply::ReplyCode;
use crate::proto::session::{Outcome, Progress, TransferError};
use crate::shard::SendMap;
use crate::sys::fs::Residency;

/// How a file's bytes reach the data socket: the configured data path, or the fallback it fell to.
pub(super) enum Mode {
    Sendfile,
    Copy,
    /// file -> pipe -> socket; `in_pipe` bytes sit in the pipe.
    Splice {
        pipe: Option<Pipe>,
        in_pipe: usize,
    },
    /// io_uring SEND from a mapping; `sending` while a SEND is in flight.
    Mmap {
        map: Arc<SendMap>,
        sending: bool,
    },
    /// TYPE A: LF becomes CRLF (RFC 959 section 3.1.1.1), so bytes pass through user space.
    Ascii,
}

impl Mode {
    /// The mode for sending `file` (`len` bytes) over `path`.
    fn of(ascii: bool, path: DataPath, file: &File, len: u64) -> Mode {
        match (ascii, path) {
            (true, _) => Mode::Ascii,
            (false, DataPath::Copy) => Mode::Copy,
            (false, DataPath::Sendfile) => Mode::Sendfile,
            (false, DataPath::Splice) => Mode::Splice {
                pipe: None,
                in_pipe: 0,
            },
            // An empty file cannot be mapped; a failed mapping falls back to sendfile.
            (false, DataPath::Mmap) => match SendMap::new(file) {
                Ok(map) if len > 0 => Mode::Mmap {
                    map: Arc::new(map),
                    sending: false,
                },
                _ => Mode::Sendfile,
            },
        }
    }

    /// How the transfer log line names it.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Mode::Sendfile => "sendfile",
            Mode::Copy => "copy",
            Mode::Splice { .. } => "splice",
            Mode::Mmap { .. } => "mmap",
            Mode::Ascii => "copy, TYPE A",
        }
    }
}

/// Where a transfer's bytes come from (for an upload: where they go).
pub(super) enum Source {
    /// Waiting for the helper pool to open the file or build the listing.
    Pending,
    /// An upload: socket to file.
    Upload(Box<UploadState>),
    File {
        file: File,
        offset: u64,
        end: u64,
        mode: Mode,
        buf: Vec<u8>,
        pos: usize,
        /// TYPE A: the last byte sent was a CR (so an LF after it is already a CRLF).
        prev_cr: bool,
        /// What is known about the file's pages being in the page cache.
        warmth: Warmth,
    },
    /// A listing, sent a piece at a time.
    Buffer {
        data: Vec<u8>,
        pos: usize,
        /// Where the listing goes on after this piece, if it does.
        more: Option<More>,
        /// The next piece is being formatted on the helper pool.
        waiting: bool,
    },
}

/// A RETR, listing or upload in progress on the session's data connection.
pub(super) struct Transfer {
    pub(super) source: Source,
    /// The file command (for the transfer log; STOU also names its file in the 150 reply);
    /// `None` for a listing.
    verb: Option<FileVerb>,
    /// Listings: the request, to ask for the next piece.
    pub(super) listing: Option<ListRequest>,
    /// The virtual path, as the client sees it: the file sent or received (for STOU the name
    /// the server picked, once the file is created), or the directory listed.
    what: Vec<u8>,
    start_offset: u64,
    ascii: bool,
    pub(super) size: Option<u64>,
    pub(super) sock: Option<TcpStream>,
    /// `PROT P`: the data connection's TLS, driven in user space (the copy path).
    pub(super) tls: Option<Box<rustls::ServerConnection>>,
    /// How this transfer's data is protected (`PROT P`: rustls, or kernel TLS after the hand-off).
    pub(super) protection: Protection,
    /// `PROT P` download: try the hand-off to kernel TLS once the handshake is done.
    pub(super) try_kernel: bool,
    /// Kernel TLS: the close_notify alert has gone out.
    pub(super) close_notified: bool,
    /// `PROT P`: where the handshake's reads stand in the record stream.
    pub(super) cut: super::tls::RecordCut,
    /// A readiness poll is in flight for `sock`.
    pub(super) armed: bool,
    pub(super) bytes: u64,
    /// When the command that started the transfer ran (the log line's and STAT's elapsed time).
    started: Instant,
    /// `started` by the wall clock, for the log record (read once per transfer).
    started_at: SystemTime,
    pub(super) last_progress: Instant,
}

impl Transfer {
    pub(super) fn pending_file(what: Vec<u8>, offset: u64, ascii: bool, now: Instant) -> Transfer {
        Transfer {
            verb: Some(FileVerb::Retr),
            ..Transfer::new(what, offset, ascii, now)
        }
    }

    pub(super) fn pending_listing(what: Vec<u8>, request: ListRequest, now: Instant) -> Transfer {
        Transfer {
            listing: Some(request),
            ..Transfer::new(what, 0, true, now)
        }
    }

    /// The data connection is up (the 150 has gone out).
    pub(super) fn started(&self) -> bool {
        self.sock.is_some()
    }

    /// `verb` is STOR, APPE or STOU.
    pub(super) fn pending_upload(
        what: Vec<u8>,
        ascii: bool,
        verb: FileVerb,
        now: Instant,
    ) -> Transfer {
        Transfer {
            verb: Some(verb),
            ..Transfer::new(what, 0, ascii, now)
        }
    }

    pub(super) fn set_upload(&mut self, file: File, upload: Upload) {
        self.what = upload.path.as_bytes().to_vec();
        self.source = Source::Upload(Box::new(UploadState::new(file, upload, self.ascii)));
    }

    pub(super) fn is_upload(&self) -> bool {
        matches!(self.source, Source::Upload(_))
    }

    /// STOU: the 150 reply names the file the server picked.
    pub(super) fn is_unique(&self) -> bool {
        self.verb == Some(FileVerb::Stou)
    }

    pub(super) fn verb(&self) -> Option<FileVerb> {
        self.verb
    }

    /// The file is open (a download) or created (an upload): the transfer got past its 550s.
    pub(super) fn has_file(&self) -> bool {
        matches!(self.source, Source::File { .. } | Source::Upload(_))
    }

    pub(super) fn ascii(&self) -> bool {
        self.ascii
    }

    /// How long the transfer has run by the shard's monotonic clock `now`.
    pub(super) fn duration(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    pub(super) fn started_at(&self) -> SystemTime {
        self.started_at
    }

    fn new(what: Vec<u8>, start_offset: u64, ascii: bool, now: Instant) -> Transfer {
        Transfer {
            source: Source::Pending,
            verb: None,
            listing: None,
            what,
            start_offset,
            ascii,
            size: None,
            sock: None,
            tls: None,
            protection: Protection::Clear,
            try_kernel: false,
            close_notified: false,
            cut: super::tls::RecordCut::default(),
            armed: false,
            bytes: 0,
            started: now,
            started_at: SystemTime::now(),
            last_progress: now,
        }
    }

    pub(super) fn set_file(&mut self, file: File, len: u64, path: DataPath, residency: Residency) {
        let mode = Mode::of(self.ascii, path, &file, len);
        let offset = self.start_offset.min(len);
        self.size = Some(len - offset);
        self.source = Source::File {
            file,
            offset,
            end: len,
            mode,
            buf: Vec::new(),
            pos: 0,
            prev_cr: false,
            warmth: Warmth {
                residency,
                ..Warmth::default()
            },
        };
    }

    /// A `PROT P` download handed to kernel TLS: from the copy path that rustls needs to the
    /// configured data path, before any byte is sent (TYPE A keeps converting).
    pub(super) fn use_data_path(&mut self, path: DataPath) {
        if let Source::File {
            file,
            end,
            mode: mode @ Mode::Copy,
            ..
        } = &mut self.source
        {
            *mode = Mode::of(false, path, file, *end);
        }
    }

    pub(super) fn set_buffer(&mut self, data: Vec<u8>, more: Option<More>) {
        self.source = Source::Buffer {
            data,
            pos: 0,
            more,
            waiting: false,
        };
    }

    pub(super) fn what(&self) -> &[u8] {
        &self.what
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// For STAT during the transfer, from the counters the data path keeps anyway. TYPE A sends
    /// more bytes than the file holds (LF becomes CRLF), so its total is unknown.
    pub(super) fn progress(&self, now: Instant) -> Progress {
        Progress {
            bytes: self.bytes,
            total: if self.ascii { None } else { self.size },
            elapsed: now.saturating_duration_since(self.started),
            protection: match (self.protection, &self.source) {
                (Protection::Clear, _) => None,
                (Protection::Rustls, _) => Some("TLS in user space"),
                (Protection::Kernel, Source::File { mode, .. }) => Some(match mode {
                    Mode::Sendfile => "kernel TLS, sendfile",
                    Mode::Splice { .. } => "kernel TLS, splice",
                    Mode::Mmap { .. } => "kernel TLS, mmap",
                    Mode::Copy | Mode::Ascii => "kernel TLS, copy",
                }),
                (Protection::Kernel, _) => Some("kernel TLS"),
            },
        }
    }
}

/// What protects a transfer's data connection (the transfer log says which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protection {
    Clear,
    /// `PROT P` through rustls in user space (the copy path).
    Rustls,
    /// `PROT P` handed to kernel TLS after the handshake (the zero-copy paths).
    Kernel,
}

/// A pipe of the splice data path.
pub(super) struct Pipe {
    pub(super) read: OwnedFd,
    pub(super) write: OwnedFd,
    pub(super) size: usize,
}

/// What a transfer knows about its file's pages being in the page cache.
#[derive(Default)]
pub(super) struct Warmth {
    /// Bytes before this offset are resident and up to date: sending them cannot wait on the disk.
    pub(super) until: u64,
    /// A read that brings a cold window into the page cache is in flight, from this offset.
    pub(super) reading: Option<u64>,
    /// Windows before this offset are read in before they are sent, whatever cachestat(2)
    /// says: reading a cold window starts readahead beyond it, and cachestat counts pages that
    /// readahead has inserted but not yet filled, which sendfile on the shard would wait for.
    pub(super) read_until: u64,
    /// The next check of a whole `WARM_SPAN` waits until here (one found a hole).
    pub(super) span_from: u64,
    /// A sendfile transfer that was moved onto a pipe for a cold window: it goes back to
    /// sendfile once the pipe is empty and the next window is resident.
    pub(super) was_sendfile: bool,
    /// The buffer of the last read, for the next one (its contents are never looked at).
    pub(super) spare: Option<Vec<u8>>,
    /// How residency is checked (the server's start-up choice).
    pub(super) residency: Residency,
}
/// Size of each of the two buffers of an upload.
pub(super) const UPLOAD_BUF_BYTES: usize = 256 << 10;

/// An upload in progress: one buffer fills from the socket while the other is written to the file.
pub(super) struct UploadState {
    pub(super) file: Arc<File>,
    pub(super) upload: Upload,
    /// Where the next write lands.
    pub(super) offset: u64,
    /// The buffer being filled from the socket (always `UPLOAD_BUF_BYTES` long), where its data
    /// starts (`page_start`) and its fill level (an index into `fill`, `start..filled` is data).
    pub(super) fill: Vec<u8>,
    pub(super) start: usize,
    pub(super) filled: usize,
    /// The other buffer, when no write holds it.
    pub(super) spare: Option<Vec<u8>>,
    /// A write is in flight (its buffer is owned by the ring until it completes).
    pub(super) writing: bool,
    /// How much of the buffer being written is already in the file.
    pub(super) written: usize,
    /// The client closed its side: everything has arrived.
    pub(super) eof: bool,
    /// How the upload ends once the write in flight has landed (ABOR, or a failure).
    pub(super) ending: Option<Ending>,
    /// All bytes are written; waiting out the commit grace period.
    pub(super) finished: bool,
    /// TYPE A: CRLF becomes LF (RFC 959 section 3.1.1.1). A CR that ends a read stays held back
    /// until the next byte shows whether it starts a CRLF.
    pub(super) ascii: bool,
    pub(super) held_cr: bool,
    /// Kernel TLS: the socket's receive low-water mark is raised past a partial record
    /// (`ktls::wait_for_more`) and goes back to 1 once a record has been read.
    pub(super) lowat_raised: bool,
}

impl UploadState {
    pub(super) fn new(file: File, upload: Upload, ascii: bool) -> UploadState {
        let file = Arc::new(file);
        let mut upload = upload;
        upload.file = Some(Arc::clone(&file));
        let fill = vec![0; UPLOAD_BUF_BYTES];
        let start = page_start(&fill, upload.offset);
        UploadState {
            file,
            offset: upload.offset,
            upload,
            fill,
            start,
            filled: start,
            spare: None,
            writing: false,
            written: 0,
            eof: false,
            ending: None,
            finished: false,
            ascii,
            held_cr: false,
            lowat_raised: false,
        }
    }

    /// Bytes ready to be written (a held-back CR is not).
    pub(super) fn ready(&self) -> usize {
        self.filled - self.start - usize::from(self.held_cr && !self.eof)
    }
}

/// Where in `buf` to put the data that will be written at file offset `at`: the index whose
/// address has the same offset within a 4 KiB page as `at`. The kernel then copies each piece
/// into the page cache between equal page offsets. With the data at the buffer's start instead,
/// the two offsets drift apart with every short read; when the page cache side ends up a few
/// bytes above the buffer's (modulo 4 KiB), the copy's `rep movsb` runs about 16 times slower
/// on AMD Zen (measured here: 3.3 against 55 GB/s), and since later pieces are whole buffers the
/// upload keeps that misfortune to its end. Costs at most 4 KiB less room in the buffer.
pub(super) fn page_start(buf: &[u8], at: u64) -> usize {
    const PAGE: u64 = 4096;
    let addr = buf.as_ptr() as u64;
    (at.wrapping_sub(addr) % PAGE) as usize
}

/// An upload ended while a write was in flight: its reply waits for the write, so no byte lands
/// in the file after the client was told the transfer is over.
pub(super) enum Ending {
    Abort,
    Fail(TransferError),
}

impl Shard {
    /// End the session's transfer without a reply: its data fds are closed through the ring first
    /// (a socket with an armed poll must be cancelled, not just closed), an upload's temporary file
    /// is removed and a splice pipe goes back to the pool.
    pub(super) fn drop_transfer(&mut self, conn: &mut Conn) -> Option<Transfer> {
        self.close_data(conn);
        conn.data_epoch = conn.data_epoch.wrapping_add(1);
        conn.opening = None;
        let mut t = conn.transfer.take()?;
        self.discard_upload(&t);
        self.return_pipe(&mut t);
        Some(t)
    }

    /// Close the data socket first, then reply (226 only once the data connection is closed).
    pub(super) fn finish_transfer(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        error: Option<TransferError>,
    ) {
        let Some(mut t) = conn.transfer.take() else {
            return;
        };
        self.return_pipe(&mut t);
        if let Some(sock) = t.sock.take() {
            if t.armed {
                self.ring.close(sock.into());
            } else {
                drop(sock);
            }
        }
        conn.data_epoch = conn.data_epoch.wrapping_add(1);
        let secs = t.duration(self.now).as_secs_f64();
        let status = match error {
            None => "ok".to_string(),
            Some(e) => format!("{e:?}"),
        };
        let verb = if t.is_upload() { "received" } else { "sent" };
        let path = match (t.protection, &t.source) {
            (Protection::Rustls, _) => " (TLS in user space)".to_string(),
            (Protection::Kernel, Source::File { mode, .. }) => format!(" (kTLS, {})", mode.name()),
            (Protection::Kernel, _) => " (kTLS)".to_string(),
            (Protection::Clear, _) => String::new(),
        };
        log::info!(
            "{} {verb} {:?} {} bytes in {secs:.3}s{path}: {status}",
            conn.peer,
            String::from_utf8_lossy(&t.what),
            t.bytes
        );
        let outcome = match error {
            None => Outcome::TransferDone,
            Some(e) => Outcome::TransferFailed(e),
        };
        let reply = self.answer(r, conn, outcome);
        // No reply only if the session was no longer waiting for this transfer (an ABOR on its
        // way answers it): the transfer still ended cut short.
        self.log_transfer(conn, &t, reply.unwrap_or(ReplyCode::TransferAborted));
        self.drain_queued(r, conn);
    }

    /// ABOR has closed the data connection (and waited for an upload's write in flight): drop the
    /// transfer, reply 426 + 226 (or 225 when nothing ran), and log the transfer with its 426.
    pub(super) fn abort_transfer(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        transfer_was_active: bool,
    ) {
        let dropped = self.drop_transfer(conn);
        let reply = self.answer(
            r,
            conn,
            Outcome::Aborted {
                transfer_was_active,
            },
        );
        if let Some(t) = dropped {
            self.log_transfer(conn, &t, reply.unwrap_or(ReplyCode::TransferAborted));
        }
        self.drain_queued(r, conn);
    }

    /// The client reset the data connection. Clients abort by sending ABOR and closing the data
    /// socket at once, so the ABOR may already wait unread on the control connection: read it
    /// first, so the client gets the 426 + 226 it asked for rather than 426 + 225.
    pub(super) fn lost_data_connection(&mut self, r: ConnRef, conn: &mut Conn) {
        self.on_ctrl_readable(r, conn, 0, true);
        if conn.transfer.is_some() {
            self.fail_transfer(r, conn, TransferError::ConnectionLost);
        }
    }

    pub(super) fn fail_transfer(&mut self, r: ConnRef, conn: &mut Conn, e: TransferError) {
        self.close_data(conn);
        self.finish_transfer(r, conn, Some(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_data_starts_at_the_page_offset_of_its_file_position() {
        let buf = vec![0u8; UPLOAD_BUF_BYTES];
        for at in [0u64, 1, 5, 4095, 4096, 4097, 123_456_789, u64::MAX - 3] {
            let start = page_start(&buf, at);
            assert!(start < 4096);
            assert_eq!(
                (buf.as_ptr() as u64 + start as u64) % 4096,
                at % 4096,
                "at {at}"
            );
        }
    }
}
