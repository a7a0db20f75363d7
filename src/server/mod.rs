//! Glue between the protocol core and the shards: each shard thread owns its ring, its control
//! listeners, its sessions and their data connections, and runs the sessions' effects. This file
//! holds what a shard and a session own; the code that works on them is split by concern:
//!
//! - `startup`: binding listeners, the temp sweep, starting the pool and shards; `Server`
//! - `event_loop`: a shard's loop, routing each completion by its token's kind; the tick
//! - `conns`: the connection table and the op tokens
//! - `control`: the control connection (accept, read and frame lines, write replies, close)
//! - `effects`: running a session's effects and feeding their results back as outcomes
//! - `data`: data connection set-up (PASV/EPSV listeners, PORT/EPRT connects) and timeouts
//! - `transfer`: what a transfer holds, and how it ends
//! - `pump`: sending a file or listing over the chosen data path
//! - `cold`: reading cold windows without blocking the shard; the splice pipe pool
//! - `upload`: receiving a file (STOR, APPE, STOU)
//! - `records`: the transfer and session records handed to the log thread
//! - `tls`: rustls driven from the shard (control connections after AUTH TLS or from the first
//!   byte on an implicit TLS listener, `PROT P` data)
//! - `fsworker`, `logins`, `limits`: the blocking helper pool; the password-check pool; limits
//!   shared across shards
//!
//! The control side is the only writer of replies; 226/426/451 go out only after the data socket
//! has been closed (the transfer log line follows them).

mod cold;
mod conns;
mod control;
mod data;
mod effects;
mod event_loop;
pub mod fsworker;
mod limits;
mod listcache;
mod logins;
mod pump;
mod records;
mod startup;
mod tls;
mod transfer;
mod upload;

pub use startup::{Bound, Server, bind, check, start};

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Receiver;
use nix::sys::eventfd::EventFd;

use crate::config::Config;
use crate::proto::line::LineFramer;
use crate::proto::path::VirtualPath;
use crate::proto::reply::{Reply, ReplyCode};
use crate::proto::session::{Outcome, Policy, Session};
use crate::shard::Ring;
use crate::vfs::Root;
use conns::{ConnRef, Slot};
use data::Data;
use fsworker::{Done, Mailbox, Pool};
use limits::Limits;
use logins::LoginPool;
use records::{EndReason, Totals};
use transfer::{Pipe, Transfer};

/// What every shard shares (read-only, or atomics off the per-byte path).
struct Shared {
    config: Arc<Config>,
    /// The certificate and key for AUTH TLS, when configured (each session copies it with a
    /// session cache of its own, `crate::tls::for_session`).
    tls: Option<Arc<rustls::ServerConfig>>,
    policy: Policy,
    root: Arc<Root>,
    pool: Pool,
    /// Password checks, on threads and a bounded queue of their own.
    logins: LoginPool,
    stop: Arc<AtomicBool>,
    /// Session counts and failed logins, across all shards.
    limits: Arc<Limits>,
    /// Where to hand shard k a session another shard accepted and placed on it (`doors[k]`,
    /// see `Limits::place`).
    doors: Arc<[Mailbox<Arrival>]>,
    /// How transfers ask whether a file window is in the page cache (chosen at start-up).
    residency: crate::sys::fs::Residency,
    /// The ciphers kernel TLS takes keys for (start-up probe); `None` where it has no `tls`.
    ktls: Option<crate::sys::ktls::Support>,
}

/// What the control thread tells a shard (`Server::shutdown`, `Server::reload`).
enum Control {
    /// Close the listeners, tell idle sessions 421 and close them; close the rest once their
    /// transfer ends, or at `deadline` whatever they are doing.
    Drain { deadline: Instant },
    /// New sessions start with these; running sessions keep what they have.
    Reload {
        config: Arc<Config>,
        policy: Policy,
        root: Arc<Root>,
        tls: Option<Arc<rustls::ServerConfig>>,
    },
}

/// The channels a shard is woken for (all behind its one eventfd).
struct Inbox {
    /// Finished helper-pool jobs.
    done: Receiver<(u64, Done)>,
    /// Sessions other shards placed here.
    arrivals: Receiver<Arrival>,
    controls: Receiver<Control>,
}

/// An accepted, admitted control connection on its way to the shard that will serve it.
struct Arrival {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    /// Accepted on an implicit TLS listener: TLS from the first byte.
    implicit_tls: bool,
}

/// One control connection and everything hanging off it.
struct Conn {
    /// The settings in force when the session started (a reload does not change them).
    config: Arc<Config>,
    /// Names the session in the logs; unique across shards (`records::session_id`).
    id: u64,
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
    /// QUIT, a fatal error, a timeout or the server stopping, decided: close once the replies
    /// are written. The first reason set is the one logged.
    closing: Option<EndReason>,
    /// The client shut down its sending side: close once the queued work is done.
    eof: bool,
    last_active: Instant,
    data: Data,
    /// Bumped whenever a data fd is closed, so late completions for it are ignored.
    data_epoch: u8,
    transfer: Option<Transfer>,
    /// The helper-pool job this session waits for.
    job: Option<u32>,
    /// STAT <path> being streamed over the control connection.
    stat_listing: Option<Box<effects::ControlListing>>,
    /// The directory served as "/" to this session's principal.
    root: Arc<Root>,
    /// An outcome held back until a deadline (failed logins are answered after a delay).
    delayed: Option<(Instant, Outcome)>,
    /// The failed login being answered after a delay got the client banned: close after it.
    banned: bool,
    /// A password check (user, password) waiting for its account's turn, tried again each tick.
    login_wait: Option<effects::LoginWait>,
    /// The named user this session is counted for (`Limits::user_joined`).
    counted_user: Option<Vec<u8>>,
    /// RETR's file is being opened on the ring.
    opening: Option<VirtualPath>,
    /// A path command's lookup is being opened on the ring (`O_PATH`, then `fstat` here).
    looking: Option<VirtualPath>,
    /// The number of the latest lookup, carried in its token: a completion of one that ABOR
    /// dropped cannot answer the next.
    look_seq: u8,
    /// When the control connection was accepted: by the wall clock for the session record, and
    /// by the shard's monotonic clock for its duration.
    started_at: SystemTime,
    started: Instant,
    /// Bytes and file transfers so far, for the session record.
    totals: Totals,
    /// The last reply queued for the client (221 after QUIT, 421 on a timeout), for the record.
    last_reply: Option<ReplyCode>,
    /// The TLS configuration in force when the session started (for AUTH TLS).
    tls_base: Option<Arc<rustls::ServerConfig>>,
    /// The control connection after AUTH TLS.
    tls: Option<Box<tls::CtrlTls>>,
    /// AUTH TLS ran: lines read before the handshake and not yet run are dropped.
    input_reset: bool,
}

impl Conn {
    /// Queue `reply` for the client.
    fn send(&mut self, reply: &Reply) {
        reply.encode(&mut self.out);
        self.last_reply = Some(reply.code);
    }

    /// Close the session once its replies are written; the first reason decided is kept.
    fn close_for(&mut self, reason: EndReason) {
        self.closing.get_or_insert(reason);
    }
}

/// One shard thread: its ring, listeners, sessions, pipe pool and per-turn work lists.
pub(crate) struct Shard {
    index: usize,
    ring: Ring,
    shared: Shared,
    listeners: Vec<TcpListener>,
    /// Listeners from this index on are implicit TLS ones (`implicit_tls_listen`).
    implicit_from: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    inbox: Inbox,
    wake: Arc<EventFd>,
    /// A graceful stop is under way: the listeners are closed, and every session still open
    /// at this deadline is closed whatever it is doing.
    draining: Option<Instant>,
    /// Transfers that used up their budget this turn and want another go.
    ready: Vec<ConnRef>,
    /// Control connections with unread input left after their share of a turn.
    ctrl_ready: Vec<ConnRef>,
    /// Sessions whose password check waits for its account's turn, asked again every
    /// `LOGIN_TURN` while any wait (the account frees up within a second, the tick is too slow).
    login_waiters: Vec<ConnRef>,
    login_timer: bool,
    /// Listeners whose accept stopped on an error, re-armed on the next tick.
    accept_rearm: Vec<usize>,
    /// Idle pipes of the splice data path, and how many are lent to transfers.
    pipes: Vec<Pipe>,
    pipes_out: usize,
    /// Control reads land here before framing; sessions hold no receive buffer while idle.
    scratch: Vec<u8>,
    pasv_next: u16,
    next_job: u32,
    /// Sessions this shard has started, the sequence in their ids.
    sessions: u64,
    now: Instant,
}
