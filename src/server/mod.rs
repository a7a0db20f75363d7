//! Glue between the protocol core and the shards: each shard thread owns its ring, its control
//! listeners, its sessions and their data connections, and runs the sessions' effects.
//!
//! The control side is the only writer of replies; 226/426/451 go out only after the data socket
//! has been closed (the transfer log line follows them).

mod conns;
mod control;
mod data;
mod effects;
pub mod fsworker;
mod limits;
mod startup;
mod transfer;
mod upload;

pub use startup::{Server, start};

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::eventfd::EventFd;

use crate::config::Config;
use crate::proto::line::LineFramer;
use crate::proto::reply::{Reply, ReplyCode};
use crate::proto::session::{Outcome, Session};
use crate::shard::{Completion, Ring};
use crate::vfs::Root;

use crate::proto::path::VirtualPath;
use crate::proto::session::Policy;
use conns::{ConnRef, Kind, Slot, token, untoken};
use control::CONTROL_READ_BYTES;
use data::Data;
use fsworker::{Done, Mailbox, Pool};
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
