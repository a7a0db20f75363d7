//! Glue between the protocol core and the shards: each shard thread owns its ring, its control
//! listeners, its sessions and their data connections, and runs the sessions' effects.
//!
//! The control side is the only writer of replies; 226/426/451 go out only after the data socket
//! has been closed (the transfer log line follows them).

mod conns;
mod control;
mod data;
pub mod fsworker;
mod limits;
mod startup;
mod transfer;
mod upload;

pub use startup::{Server, start};

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use nix::sys::eventfd::EventFd;

use crate::config::Config;
use crate::proto::line::LineFramer;
use crate::proto::reply::{Reply, ReplyCode};
use crate::proto::session::{Effect, ListTarget, Outcome, Session, TransferError};
use crate::shard::{Completion, Ring};
use crate::vfs::{FileError, Root};

use crate::proto::path::VirtualPath;
use crate::proto::session::{Policy, StoreMode};
use conns::{ConnRef, Kind, Slot, token, untoken};
use control::CONTROL_READ_BYTES;
use data::Data;
use fsworker::{Done, Job, ListRequest, Mailbox, Pool};
use limits::Limits;
use transfer::Transfer;

/// Ring size per shard; completions are reaped every loop turn, so this bounds a burst, not sessions.
const RING_ENTRIES: u32 = 1024;
const TICK: Duration = Duration::from_secs(1);

/// What every shard shares (read-only, or atomics off the per-byte path).
struct Shared {
    config: Arc<Config>,
    policy: Policy,
    root: Arc<Root>,
    pool: Pool,
    stop: Arc<AtomicBool>,
    /// Session counts and failed logins, across all shards.
    limits: Arc<Limits>,
    /// Where to hand shard k a session another shard accepted and placed on it (`doors[k]`,
    /// see `Limits::place`).
    doors: Arc<[Mailbox<Arrival>]>,
}

/// An accepted, admitted control connection on its way to the shard that will serve it.
struct Arrival {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
}

/// One control connection and everything hanging off it.
struct Conn {
    ctrl: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    session: Session,
    framer: LineFramer,
    /// Lines received while an effect is outstanding, run in order once it completes.
    queued: VecDeque<Vec<u8>>,
    /// Reply bytes the socket did not take yet.
    out: Vec<u8>,
    out_armed: bool,
    /// QUIT, a fatal error or a timeout: close once the replies are written.
    closing: bool,
    /// The client shut down its sending side: close once the queued work is done.
    eof: bool,
    last_active: Instant,
    data: Data,
    /// Bumped whenever a data fd is closed, so late completions for it are ignored.
    data_epoch: u8,
    transfer: Option<Transfer>,
    /// The helper-pool job this session waits for.
    job: Option<u32>,
    /// The directory served as "/" to this session's principal.
    root: Arc<Root>,
    /// An outcome held back until a deadline (failed logins are answered after a delay).
    delayed: Option<(Instant, Outcome)>,
    /// RETR's file is being opened on the ring.
    opening: Option<VirtualPath>,
}

pub(crate) struct Shard {
    index: usize,
    ring: Ring,
    shared: Shared,
    listeners: Vec<TcpListener>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    done_rx: Receiver<(u64, Done)>,
    /// Sessions other shards placed here.
    arrivals: Receiver<Arrival>,
    wake: Arc<EventFd>,
    /// Transfers that used up their budget this turn and want another go.
    ready: Vec<ConnRef>,
    /// Control connections with unread input left after their share of a turn.
    ctrl_ready: Vec<ConnRef>,
    /// Listeners whose accept stopped on an error, re-armed on the next tick.
    accept_rearm: Vec<usize>,
    /// Idle pipes of the splice data path, and how many are lent to transfers.
    pipes: Vec<transfer::Pipe>,
    pipes_out: usize,
    /// Control reads land here before framing; sessions hold no receive buffer while idle.
    scratch: Vec<u8>,
    pasv_next: u16,
    next_job: u32,
    now: Instant,
}

impl Shard {
    fn new(
        index: usize,
        shared: Shared,
        listeners: Vec<TcpListener>,
        done_rx: Receiver<(u64, Done)>,
        arrivals: Receiver<Arrival>,
        wake: Arc<EventFd>,
    ) -> io::Result<Shard> {
        let ring = Ring::new(RING_ENTRIES, shared.config.io_backend)?;
        if index == 0 {
            log::info!("shards use {:?}", ring.backend());
        }
        // Start the walk at a random port of the slice: passive ports are not predictable
        // (RFC 2577 section 5), and servers sharing a host do not all start at the same port.
        let (lo, hi) = shared.config.pasv_slice(index);
        let mut seed = [0u8; 2];
        let pasv_next = match crate::sys::fs::fill_random(&mut seed) {
            Ok(()) => lo + (u16::from_ne_bytes(seed) % (hi - lo).saturating_add(1)),
            Err(_) => lo,
        };
        Ok(Shard {
            index,
            ring,
            shared,
            listeners,
            slots: Vec::new(),
            free: Vec::new(),
            done_rx,
            arrivals,
            wake,
            ready: Vec::new(),
            ctrl_ready: Vec::new(),
            accept_rearm: Vec::new(),
            pipes: Vec::new(),
            pipes_out: 0,
            scratch: vec![0; CONTROL_READ_BYTES],
            pasv_next,
            next_job: 0,
            now: Instant::now(),
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let none = ConnRef {
            index: 0,
            generation: 0,
        };
        for i in 0..self.listeners.len() {
            let fd = self.listeners[i].as_raw_fd();
            self.ring.accept_multi(
                fd,
                token(
                    Kind::Accept,
                    ConnRef {
                        index: i as u32,
                        generation: 0,
                    },
                    0,
                ),
            );
        }
        self.ring.poll(
            self.wake.as_fd().as_raw_fd(),
            libc::POLLIN as u32,
            true,
            token(Kind::Wake, none, 0),
        );
        self.ring.timeout(TICK, token(Kind::Tick, none, 0));
        while !self.shared.stop.load(Ordering::Relaxed) {
            let want = usize::from(self.ready.is_empty() && self.ctrl_ready.is_empty());
            self.ring.wait(want)?;
            self.now = Instant::now();
            while let Some(c) = self.ring.next_completion() {
                self.on_completion(c);
            }
            self.run_ready();
            for r in std::mem::take(&mut self.ctrl_ready) {
                if let Some(mut conn) = self.take(r) {
                    self.on_ctrl_readable(r, &mut conn, 0, true);
                    self.settle(r, conn);
                }
            }
        }
        let open: Vec<ConnRef> = self.live_conns();
        for r in open {
            if let Some(conn) = self.take(r) {
                self.close_conn(r, conn);
            }
        }
        Ok(())
    }

    fn on_completion(&mut self, c: Completion) {
        let (kind, r, epoch) = untoken(c.token);
        let Some(kind) = kind else { return };
        match kind {
            Kind::Accept => self.on_accept(r.index as usize, c),
            Kind::Wake => {
                let _ = self.wake.read();
                if !c.more {
                    let none = ConnRef {
                        index: 0,
                        generation: 0,
                    };
                    self.ring.poll(
                        self.wake.as_fd().as_raw_fd(),
                        libc::POLLIN as u32,
                        true,
                        token(Kind::Wake, none, 0),
                    );
                }
                while let Ok((token, done)) = self.done_rx.try_recv() {
                    self.on_job_done(token, done);
                }
                while let Ok(a) = self.arrivals.try_recv() {
                    self.start_session(a);
                }
            }
            Kind::Tick => {
                self.on_tick();
                self.ring.timeout(TICK, c.token);
            }
            Kind::Job => {}
            Kind::CtrlIn
            | Kind::CtrlOut
            | Kind::DataListen
            | Kind::DataConnect
            | Kind::DataOut
            | Kind::DataIn
            | Kind::DataWrite
            | Kind::DataRead
            | Kind::DataFill
            | Kind::DataSent
            | Kind::UploadGrace
            | Kind::Opened => {
                if c.result == -libc::ECANCELED {
                    return;
                }
                let Some(mut conn) = self.take(r) else { return };
                let data_kind = !matches!(kind, Kind::CtrlIn | Kind::CtrlOut);
                if data_kind && epoch != conn.data_epoch {
                    self.put(r, conn);
                    return;
                }
                match kind {
                    Kind::CtrlIn => self.on_ctrl_readable(r, &mut conn, c.result, c.more),
                    Kind::CtrlOut => {
                        conn.out_armed = false;
                        self.flush(r, &mut conn);
                    }
                    Kind::DataListen => self.on_data_listen(r, &mut conn),
                    Kind::DataConnect => self.on_data_connect(r, &mut conn),
                    Kind::DataIn => self.on_data_readable(r, &mut conn),
                    Kind::DataWrite => self.on_data_written(r, &mut conn, c.result, c.buf),
                    Kind::DataRead => self.on_data_read(r, &mut conn, c.result, c.buf),
                    Kind::DataFill => self.on_data_filled(r, &mut conn, c.result),
                    Kind::DataSent => self.on_data_sent(r, &mut conn, c.result),
                    Kind::UploadGrace => self.on_upload_grace(r, &mut conn),
                    Kind::Opened => self.on_opened(r, &mut conn, c.result, c.fd),
                    _ => self.on_data_writable(r, &mut conn),
                }
                self.settle(r, conn);
            }
        }
    }

    fn run_effect(&mut self, r: ConnRef, conn: &mut Conn, effect: Effect) {
        match effect {
            Effect::Close => conn.closing = true,
            Effect::Passive => {
                let outcome = self.open_passive(r, conn);
                self.outcome(r, conn, outcome);
            }
            Effect::Active(addr) => {
                self.close_data(conn);
                conn.data = Data::Active(addr);
            }
            Effect::Stat(path) => self.submit_job(r, conn, Job::Stat(path)),
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
                };
                if target == ListTarget::Data {
                    conn.transfer =
                        Some(Transfer::pending_listing(what, request.clone(), self.now));
                }
                let whole = target == ListTarget::Control;
                self.submit_job(
                    r,
                    conn,
                    Job::List {
                        request,
                        cursor: None,
                        whole,
                    },
                );
            }
            Effect::Authenticate { user, password } => {
                self.submit_job(r, conn, Job::Login { user, password })
            }
            Effect::Fs(op) => self.submit_job(r, conn, Job::Fs(op)),
            Effect::Store {
                path,
                mode,
                ascii,
                umask,
            } => {
                let unique = matches!(mode, StoreMode::Unique { .. });
                conn.transfer = Some(Transfer::pending_upload(
                    path.as_bytes().to_vec(),
                    ascii,
                    unique,
                    self.now,
                ));
                self.submit_job(r, conn, Job::Create { path, mode, umask });
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
                if self.defer_until_written(conn, transfer::Ending::Abort) {
                    // The 426 + 226 go out once the write in flight has landed.
                    return;
                }
                self.drop_transfer(conn);
                self.outcome(
                    r,
                    conn,
                    Outcome::Aborted {
                        transfer_was_active,
                    },
                );
            }
        }
    }

    /// RETR's open: with io_uring on the shard itself (OPENAT2 under the same jail rules, no
    /// thread hop); on the epoll backend through the helper pool.
    fn open_for_retr(&mut self, r: ConnRef, conn: &mut Conn, path: VirtualPath) {
        if path.file_name().is_some_and(crate::vfs::is_temp_name) {
            return self.on_job_result(r, conn, Done::Open(Err(FileError::NotFound)));
        }
        let args = match conn.root.open_args(&path) {
            Ok((dir, c_path)) => (dir.as_raw_fd(), c_path),
            Err(e) => return self.on_job_result(r, conn, Done::Open(Err(e))),
        };
        let keep = Box::new(Arc::clone(&conn.root));
        let t = token(Kind::Opened, r, conn.data_epoch);
        let flags = crate::vfs::OPEN_FOR_READ;
        if self
            .ring
            .open_beneath(args.0, args.1, flags, crate::vfs::RESOLVE_JAIL, keep, t)
            .is_some()
        {
            conn.opening = Some(path);
        } else {
            self.submit_job(r, conn, Job::Open(path));
        }
    }

    fn on_opened(&mut self, r: ConnRef, conn: &mut Conn, result: i32, fd: Option<OwnedFd>) {
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
        let path = self.shared.config.data_path;
        if let Some(t) = conn.transfer.as_mut() {
            t.set_file(file, entry.size, path);
        }
        self.begin_transfer(r, conn);
    }

    fn submit_job(&mut self, r: ConnRef, conn: &mut Conn, job: Job) {
        self.next_job = self.next_job.wrapping_add(1);
        conn.job = Some(self.next_job);
        // The job token carries the job number where other tokens carry the generation; the
        // session checks it against `conn.job` when the result comes back.
        let t =
            u64::from(r.index & 0xff_ffff) << 40 | u64::from(self.next_job) << 8 | Kind::Job as u64;
        self.shared.pool.submit(self.index, &conn.root, t, job);
    }

    fn on_job_done(&mut self, t: u64, done: Done) {
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
                let result = result.map(|(bytes, _)| bytes);
                self.outcome(r, conn, Outcome::Listing(result))
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
                self.shared.limits.login_succeeded(conn.peer.ip());
                conn.root = root;
                self.outcome(r, conn, Outcome::Login(Some(rights)));
            }
            Done::Login(None) => {
                // RFC 2577 section 5: slow down password guessing; unknown users and wrong
                // passwords get the same reply after the same delay.
                let delay = self.shared.limits.login_failed(conn.peer.ip(), self.now);
                log::warn!(
                    "{} failed login; answering in {}s",
                    conn.peer,
                    delay.as_secs()
                );
                conn.delayed = Some((self.now + delay, Outcome::Login(None)));
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

    fn on_tick(&mut self) {
        for listener in std::mem::take(&mut self.accept_rearm) {
            let fd = self.listeners[listener].as_raw_fd();
            let t = token(
                Kind::Accept,
                ConnRef {
                    index: listener as u32,
                    generation: 0,
                },
                0,
            );
            self.ring.accept_multi(fd, t);
        }
        let idle = self.shared.config.idle_timeout;
        let data_timeout = self.shared.config.data_timeout;
        for r in self.live_conns() {
            let Some(mut conn) = self.take(r) else {
                continue;
            };
            if conn.delayed.as_ref().is_some_and(|(at, _)| self.now >= *at) {
                if let Some((_, outcome)) = conn.delayed.take() {
                    conn.job = None;
                    self.outcome(r, &mut conn, outcome);
                }
            }
            let busy = conn.transfer.is_some() || conn.job.is_some();
            if !busy && self.now.duration_since(conn.last_active) > idle {
                Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Timeout; closing control connection.",
                )
                .encode(&mut conn.out);
                conn.closing = true;
            } else {
                self.check_data_deadlines(r, &mut conn, data_timeout);
            }
            self.settle(r, conn);
        }
    }
}
