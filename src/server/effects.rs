//! Running a session's effects on its shard: each `Effect` of the protocol core becomes a ring op,
//! a helper-pool job or a transfer set-up, and each result (job done, file opened on the ring)
//! goes back to the session as an `Outcome`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::conns::{ConnRef, Kind, token};
use super::data::Data;
use super::fsworker::{Done, Job, ListRequest, More};
use super::limits::{Checked, Turn};
use super::records::{EndReason, FileVerb};
use super::transfer::{Ending, Transfer};
use super::{Conn, Shard};
use crate::proto::path::VirtualPath;
use crate::proto::reply::{Reply, ReplyCode};
use crate::proto::session::{
    Effect, ListTarget, Outcome, Progress, StoreMode, TransferError, stat_listing_body,
    stat_listing_head,
};
use crate::vfs::FileError;

/// A password check waiting for its account's turn.
pub(super) struct LoginWait {
    pub(super) user: Vec<u8>,
    pub(super) password: Vec<u8>,
    pub(super) ticket: u64,
}

/// STAT <path>, streamed over the control connection a piece at a time: the next piece is asked
/// for only once the client has read the last one, so a session holds at most one piece.
pub(super) struct ControlListing {
    request: ListRequest,
    /// Where the listing goes on, while the client reads the piece sent.
    cursor: Option<More>,
    /// The last piece's buffer, for the next piece.
    spare: Vec<u8>,
    /// The reply's first line has gone out.
    started: bool,
    /// When the client last took a piece: one that stops reading is cut off after the data
    /// timeout, as a stalled transfer is.
    progress: Instant,
}

impl ControlListing {
    /// Waiting for the client to read, and it has not since `deadline` ago.
    pub(super) fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        self.cursor.is_some() && now.duration_since(self.progress) > timeout
    }
}

impl Shard {
    pub(super) fn run_effect(&mut self, r: ConnRef, conn: &mut Conn, effect: Effect) {
        match effect {
            Effect::Close => conn.close_for(EndReason::Quit),
            Effect::StartTls => self.start_tls(conn),
            Effect::Passive => {
                let outcome = self.open_passive(r, conn);
                self.outcome(r, conn, outcome);
            }
            Effect::Active(addr) => {
                self.close_data(conn);
                conn.data = Data::Active(addr);
            }
            Effect::Stat(path) => self.look_up(r, conn, path),
            Effect::Retr {
                path,
                offset,
                ascii,
            } => {
                conn.transfer = Some(Transfer::pending_file(
                    path.as_bytes().to_vec(),
                    offset,
                    ascii,
                    self.now,
                ));
                self.open_for_retr(r, conn, path);
            }
            Effect::List {
                path,
                format,
                facts,
                target,
                writable,
                show,
                itself,
            } => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let what = path.as_bytes().to_vec();
                let request = ListRequest {
                    path,
                    format,
                    facts,
                    now,
                    writable,
                    show,
                    itself,
                    cache_ttl: conn.config.listing_cache,
                };
                if target == ListTarget::Data {
                    conn.transfer =
                        Some(Transfer::pending_listing(what, request.clone(), self.now));
                }
                let control = target == ListTarget::Control;
                if control {
                    conn.stat_listing = Some(Box::new(ControlListing {
                        request: request.clone(),
                        cursor: None,
                        spare: Vec::new(),
                        started: false,
                        progress: self.now,
                    }));
                }
                self.submit_job(
                    r,
                    conn,
                    Job::List {
                        request,
                        cursor: None,
                        out: Vec::new(),
                        control,
                    },
                );
            }
            Effect::Authenticate { user, password } => {
                self.authenticate(r, conn, user, password, None)
            }
            Effect::Fs(op) => self.submit_job(r, conn, Job::Fs(op)),
            Effect::Store {
                path,
                mode,
                ascii,
                umask,
            } => {
                let verb = match mode {
                    StoreMode::Atomic { .. } | StoreMode::At(_) => FileVerb::Stor,
                    StoreMode::Append => FileVerb::Appe,
                    StoreMode::Unique { .. } => FileVerb::Stou,
                };
                conn.transfer = Some(Transfer::pending_upload(
                    path.as_bytes().to_vec(),
                    ascii,
                    verb,
                    self.now,
                ));
                self.submit_job(r, conn, Job::Create { path, mode, umask });
            }
            Effect::TransferStatus => {
                // Answered at once, between the 150 and the 226; the transfer is left as it is.
                let progress = conn
                    .transfer
                    .as_ref()
                    .map_or_else(Progress::default, |t| t.progress(self.now));
                conn.session.transfer_status(progress).encode(&mut conn.out);
            }
            Effect::Abort => {
                let transfer_was_active = conn.transfer.is_some() || conn.job.is_some();
                if let Some(t) = &conn.transfer {
                    log::info!(
                        "{} aborted {:?} after {} bytes",
                        conn.peer,
                        String::from_utf8_lossy(t.what()),
                        t.bytes()
                    );
                }
                conn.job = None;
                // A lookup on the ring answers nobody now (its completion is dropped).
                conn.looking = None;
                if self.defer_until_written(conn, Ending::Abort) {
                    // The 426 + 226 go out once the write in flight has landed.
                    return;
                }
                self.abort_transfer(r, conn, transfer_was_active);
            }
        }
    }

    /// A path command's lookup: with io_uring, an `O_PATH` open on the shard's ring under the
    /// same jail rules as `vfs::Root::stat`, then `fstat` here (no thread hop: a SIZE or CWD
    /// answered through the helper pool took about 35 us longer); on the epoll backend through
    /// the helper pool.
    fn look_up(&mut self, r: ConnRef, conn: &mut Conn, path: VirtualPath) {
        // The session waits for this answer; the token's epoch byte numbers the lookup (the data
        // epoch has nothing to do with it).
        conn.look_seq = conn.look_seq.wrapping_add(1);
        let t = token(Kind::Looked, r, conn.look_seq);
        match self.open_on_ring(conn, &path, libc::O_PATH, t) {
            Err(e) => self.on_job_result(r, conn, Done::Stat(Err(e))),
            Ok(true) => {
                conn.looking = Some(path);
                // Waiting on the ring, not on the pool (0: no pool result is due).
                conn.job = Some(0);
            }
            Ok(false) => self.submit_job(r, conn, Job::Stat(path)),
        }
    }

    pub(super) fn on_looked(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        seq: u8,
        result: i32,
        fd: Option<OwnedFd>,
    ) {
        if seq != conn.look_seq || conn.job != Some(0) {
            // A lookup ABOR dropped: the session has moved on.
            return;
        }
        let Some(path) = conn.looking.take() else {
            return;
        };
        conn.job = None;
        let entry = match fd {
            Some(fd) => crate::vfs::stat_opened(&fd, &path),
            None => Err(FileError::from_errno(-result)),
        };
        self.on_job_result(r, conn, Done::Stat(entry));
    }

    /// RETR's open: with io_uring on the shard itself (OPENAT2 under the same jail rules, no
    /// thread hop); on the epoll backend through the helper pool.
    fn open_for_retr(&mut self, r: ConnRef, conn: &mut Conn, path: VirtualPath) {
        let t = token(Kind::Opened, r, conn.data_epoch);
        match self.open_on_ring(conn, &path, crate::vfs::OPEN_FOR_READ, t) {
            Err(e) => self.on_job_result(r, conn, Done::Open(Err(e))),
            Ok(true) => conn.opening = Some(path),
            Ok(false) => self.submit_job(r, conn, Job::Open(path)),
        }
    }

    /// Open `path` beneath the session's root on the ring (`RESOLVE_JAIL`), completing with
    /// token `t`: `Ok(false)` on the epoll backend, where the helper pool opens it instead. An
    /// upload's temporary name is not found, as the pool's jobs have it.
    fn open_on_ring(
        &mut self,
        conn: &Conn,
        path: &VirtualPath,
        flags: i32,
        t: u64,
    ) -> Result<bool, FileError> {
        if path.file_name().is_some_and(crate::vfs::is_temp_name) {
            return Err(FileError::NotFound);
        }
        let (dir, c_path) = conn.root.open_args(path)?;
        let dir = dir.as_raw_fd();
        let keep = Box::new(Arc::clone(&conn.root));
        let opened = self
            .ring
            .open_beneath(dir, c_path, flags, crate::vfs::RESOLVE_JAIL, keep, t);
        Ok(opened.is_some())
    }

    pub(super) fn on_opened(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        result: i32,
        fd: Option<OwnedFd>,
    ) {
        let Some(path) = conn.opening.take() else {
            return;
        };
        let opened = match fd {
            Some(fd) => crate::vfs::opened_for_read(fd, &path),
            None => Err(FileError::from_errno(-result)),
        };
        self.on_job_result(r, conn, Done::Open(opened));
    }

    fn file_opened(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        (file, entry): (std::fs::File, crate::proto::entry::Entry),
    ) {
        // Under PROT P the bytes go through rustls in user space: the copy path, until the
        // connection is handed to kernel TLS (`Transfer::use_data_path`).
        let path = if conn.session.data_protected() {
            crate::config::DataPath::Copy
        } else {
            conn.config.data_path
        };
        if let Some(t) = conn.transfer.as_mut() {
            t.set_file(file, entry.size, path, self.shared.residency);
        }
        self.begin_transfer(r, conn);
    }

    /// A piece of STAT's listing: out it goes after the reply's first line; the last piece (or an
    /// error) ends the reply through the session.
    fn control_listing_piece(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        result: Result<(Vec<u8>, Option<More>), FileError>,
    ) {
        let Some(mut listing) = conn.stat_listing.take() else {
            return;
        };
        match result {
            Err(e) if !listing.started => self.outcome(r, conn, Outcome::Listed(Err(e))),
            Err(e) => {
                // The 213 reply is under way and must end as a 213; the body says it is short.
                log::warn!(
                    "{} STAT listing of {:?} cut short: {e:?}",
                    conn.peer,
                    String::from_utf8_lossy(listing.request.path.as_bytes())
                );
                stat_listing_body(b"(listing cut short by a read error)\r\n", &mut conn.out);
                self.outcome(r, conn, Outcome::Listed(Ok(())));
            }
            Ok((bytes, cursor)) => {
                if !listing.started {
                    stat_listing_head(&listing.request.path, &mut conn.out);
                    listing.started = true;
                }
                stat_listing_body(&bytes, &mut conn.out);
                listing.spare = bytes;
                let Some(cursor) = cursor else {
                    return self.outcome(r, conn, Outcome::Listed(Ok(())));
                };
                listing.cursor = Some(cursor);
                listing.progress = self.now;
                conn.stat_listing = Some(listing);
                // Waiting on the client, not on a job (0: nothing comes back from the pool).
                conn.job = Some(0);
                self.flush(r, conn);
                self.next_control_piece(r, conn);
            }
        }
    }

    /// Ask for STAT's next piece once the client has read everything sent (called after each
    /// flush of a session whose listing waits).
    pub(super) fn next_control_piece(&mut self, r: ConnRef, conn: &mut Conn) {
        if !conn.out.is_empty() || conn.out_armed || conn.closing.is_some() {
            return;
        }
        let Some(listing) = conn.stat_listing.as_mut() else {
            return;
        };
        let Some(cursor) = listing.cursor.take() else {
            return;
        };
        listing.progress = self.now;
        let request = listing.request.clone();
        let job = Job::List {
            request,
            cursor: Some(cursor),
            out: std::mem::take(&mut listing.spare),
            control: true,
        };
        self.submit_job(r, conn, job);
    }

    /// Hand `job` to the helper pool; when its queue is full, the command is answered at once
    /// as if the job had failed with `FileError::Overloaded` (450, nothing tried).
    pub(super) fn submit_job(&mut self, r: ConnRef, conn: &mut Conn, job: Job) {
        let t = self.job_token(r, conn);
        let Err(job) = self.shared.pool.submit(self.index, &conn.root, t, job) else {
            return;
        };
        conn.job = None;
        let busy = FileError::Overloaded;
        let done = match *job {
            Job::Stat(_) => Done::Stat(Err(busy)),
            Job::Open(_) => Done::Open(Err(busy)),
            Job::Fs(_) => Done::Fs(Err(busy)),
            Job::Create { .. } => Done::Created(Err(busy)),
            Job::List { .. } => Done::Listing(Err(busy)),
            // Reserved jobs are never given back; should one be, the session hears of it.
            Job::Commit { .. } => Done::Committed(Err(busy)),
            Job::Discard { .. } => Done::Nothing,
        };
        self.on_job_result(r, conn, done);
    }

    /// A new job number for `conn`, which now waits for it, as a token for the result.
    fn job_token(&mut self, r: ConnRef, conn: &mut Conn) -> u64 {
        self.next_job = self.next_job.wrapping_add(1);
        if self.next_job == 0 {
            // 0 marks a session waiting on the shard itself (a delayed answer, a throttled login).
            self.next_job = 1;
        }
        conn.job = Some(self.next_job);
        // The job token carries the job number where other tokens carry the generation; the
        // session checks it against `conn.job` when the result comes back.
        u64::from(r.index & 0xff_ffff) << 40 | u64::from(self.next_job) << 8 | Kind::Job as u64
    }

    /// A named user's password check: on the login pool once the account's throttle lets it
    /// start (until then it waits here with its ticket, asked again every 50 ms, in arrival order
    /// among the account's attempts), refused at once with 421 when the account's queue or the
    /// pool's queue is full, so a flood of guesses never builds a backlog.
    pub(super) fn authenticate(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        user: Vec<u8>,
        password: Vec<u8>,
        ticket: Option<u64>,
    ) {
        match self.shared.limits.begin_check(&user, ticket, self.now) {
            Turn::Go => {}
            Turn::Wait(ticket) => {
                conn.login_wait = Some(LoginWait {
                    user,
                    password,
                    ticket,
                });
                conn.job = Some(0);
                self.wait_for_login_turn(r);
                return;
            }
            Turn::Full => {
                conn.job = None;
                conn.send(&Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Too many login attempts for this account; try again later.",
                ));
                conn.close_for(EndReason::Limit);
                return;
            }
        }
        let t = self.job_token(r, conn);
        if let Err(user) = self.shared.logins.submit(self.index, t, user, password) {
            self.shared
                .limits
                .end_check(&user, Checked::Skipped, self.now);
            conn.job = None;
            conn.send(&Reply::new(
                ReplyCode::ServiceNotAvailable,
                "Too many login attempts; try again later.",
            ));
            conn.close_for(EndReason::Limit);
        }
    }

    pub(super) fn on_job_done(&mut self, t: u64, done: Done) {
        let index = (t >> 40) as u32;
        let job = (t >> 8) as u32;
        let Some(generation) = self.slots.get(index as usize).map(|s| s.generation) else {
            return;
        };
        let r = ConnRef { index, generation };
        let conn = self.take(r);
        let stale = conn.as_ref().is_none_or(|c| c.job != Some(job));
        if stale {
            // Nobody waits for this result any more (ABOR, or the session is gone); an upload's
            // temporary file must still go.
            if let Done::Created(Ok((_, upload))) = done {
                self.discard(upload);
            }
            if let Some(conn) = conn {
                self.put(r, conn);
            }
            return;
        }
        let Some(mut conn) = conn else { return };
        conn.job = None;
        self.on_job_result(r, &mut conn, done);
        self.settle(r, conn);
    }

    /// The result of a helper-pool job (or of an open on the ring), for the session waiting on it.
    fn on_job_result(&mut self, r: ConnRef, conn: &mut Conn, done: Done) {
        match done {
            Done::Stat(result) => self.outcome(r, conn, Outcome::Stat(result)),
            Done::Listing(Err(e)) if conn.transfer.as_ref().is_some_and(|t| t.started()) => {
                // A later piece of a listing failed after the 150 went out.
                let errno = if let FileError::Io(n) = e {
                    n
                } else {
                    libc::EIO
                };
                self.fail_transfer(r, conn, TransferError::Local(errno));
            }
            Done::Open(Err(e)) | Done::Listing(Err(e)) if conn.transfer.is_some() => {
                conn.transfer = None;
                // The failed command used up the data channel (RFC 959: one transfer per PASV/PORT).
                self.close_data(conn);
                self.outcome(r, conn, Outcome::TransferFailed(TransferError::File(e)));
            }
            Done::Open(Ok(opened)) => self.file_opened(r, conn, opened),
            Done::Listing(result) if conn.transfer.is_none() => {
                self.control_listing_piece(r, conn, result)
            }
            Done::Listing(Ok((bytes, cursor))) => {
                let started = conn.transfer.as_ref().is_some_and(|t| t.started());
                if let Some(t) = conn.transfer.as_mut() {
                    t.set_buffer(bytes, cursor);
                }
                if started {
                    self.drive(r, conn);
                } else {
                    self.begin_transfer(r, conn);
                }
            }
            Done::Login(Some((rights, root))) => {
                if let Some(user) = conn.session.pending_user() {
                    if !self.shared.limits.user_joined(user) {
                        conn.send(&Reply::new(
                            ReplyCode::ServiceNotAvailable,
                            "Too many sessions for this user; try again later.",
                        ));
                        conn.close_for(EndReason::Limit);
                        return;
                    }
                    conn.counted_user = Some(user.to_vec());
                }
                self.shared.limits.login_succeeded(conn.peer.ip());
                conn.root = root;
                self.outcome(r, conn, Outcome::Login(Some(rights)));
                if !conn.session.logged_in() {
                    // The session refused the login after all (a user whose own `tls` asks for
                    // TLS, on a clear connection): it does not hold one of the user's sessions.
                    if let Some(user) = conn.counted_user.take() {
                        self.shared.limits.user_left(&user);
                    }
                }
            }
            Done::Login(None) => {
                // RFC 2577 section 5: slow down password guessing; unknown users and wrong
                // passwords get the same reply after the same delay.
                let failure = self.shared.limits.login_failed(conn.peer.ip(), self.now);
                log::warn!(
                    "{} failed login; answering in {}s{}",
                    conn.peer,
                    failure.delay.as_secs(),
                    if failure.banned {
                        "; too many failures: address banned"
                    } else {
                        ""
                    }
                );
                conn.banned = failure.banned;
                conn.delayed = Some((self.now + failure.delay, Outcome::Login(None)));
                conn.job = Some(0);
            }
            Done::Fs(result) => self.outcome(r, conn, Outcome::Fs(result)),
            Done::Created(Err(e)) => {
                conn.transfer = None;
                self.close_data(conn);
                self.outcome(r, conn, Outcome::TransferFailed(TransferError::File(e)));
            }
            Done::Created(Ok((file, upload))) => {
                if let Some(t) = conn.transfer.as_mut() {
                    t.set_upload(file, upload);
                }
                self.begin_transfer(r, conn);
            }
            Done::Committed(result) => self.upload_committed(r, conn, result),
            Done::Open(Err(_)) | Done::Listing(Err(_)) | Done::Nothing => {}
        }
    }
}
