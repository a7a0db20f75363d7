//! A shard's loop: building the shard (its ring, its slice of the passive ports), arming its
//! listeners, wake-up eventfd and tick, then each turn routing every completion by its token's kind,
//! giving budgeted transfers and chatty control connections their next go, and on each tick
//! re-arming failed accepts and enforcing login delays and throttles, login, idle and data
//! timeouts.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::eventfd::EventFd;

use super::conns::{ConnRef, Kind, token, untoken};
use super::control::CONTROL_READ_BYTES;
use super::records::EndReason;
use super::{Control, Inbox, Shard, Shared};
use crate::proto::reply::{Reply, ReplyCode};
use crate::shard::{Completion, Ring};

/// Ring size per shard; completions are reaped every loop turn, so this bounds a burst, not sessions.
const RING_ENTRIES: u32 = 1024;
const TICK: Duration = Duration::from_secs(1);
/// How often password checks waiting for their account's turn ask again.
const LOGIN_TURN: Duration = Duration::from_millis(50);

impl Shard {
    pub(super) fn new(
        index: usize,
        shared: Shared,
        listeners: Vec<TcpListener>,
        implicit_from: usize,
        inbox: Inbox,
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
            implicit_from,
            slots: Vec::new(),
            free: Vec::new(),
            inbox,
            wake,
            draining: None,
            ready: Vec::new(),
            ctrl_ready: Vec::new(),
            login_waiters: Vec::new(),
            login_timer: false,
            accept_rearm: Vec::new(),
            pipes: Vec::new(),
            pipes_out: 0,
            scratch: vec![0; CONTROL_READ_BYTES],
            pasv_next,
            next_job: 0,
            sessions: 0,
            now: Instant::now(),
        })
    }

    pub(super) fn run(&mut self) -> io::Result<()> {
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
        while !self.shared.stop.load(Ordering::Relaxed) && !self.drained() {
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
            if let Some(mut conn) = self.take(r) {
                conn.close_for(EndReason::Shutdown);
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
                while let Ok((token, done)) = self.inbox.done.try_recv() {
                    self.on_job_done(token, done);
                }
                while let Ok(a) = self.inbox.arrivals.try_recv() {
                    self.start_session(a);
                }
                while let Ok(control) = self.inbox.controls.try_recv() {
                    self.on_control(control);
                }
            }
            Kind::Tick => {
                self.on_tick();
                self.ring.timeout(TICK, c.token);
            }
            Kind::LoginTurn => self.on_login_turn(),
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
            | Kind::Opened
            | Kind::Looked => {
                if c.result == -libc::ECANCELED {
                    return;
                }
                let Some(mut conn) = self.take(r) else { return };
                let data_kind = !matches!(kind, Kind::CtrlIn | Kind::CtrlOut | Kind::Looked);
                if data_kind && epoch != conn.data_epoch {
                    self.put(r, conn);
                    return;
                }
                match kind {
                    Kind::CtrlIn => self.on_ctrl_readable(r, &mut conn, c.result, c.more),
                    Kind::CtrlOut => {
                        conn.out_armed = false;
                        self.flush(r, &mut conn);
                        self.next_control_piece(r, &mut conn);
                    }
                    Kind::DataListen => self.on_data_listen(r, &mut conn),
                    Kind::DataConnect => self.on_data_connect(r, &mut conn),
                    Kind::DataIn => self.drive_data(r, &mut conn),
                    Kind::DataWrite => self.on_data_written(r, &mut conn, c.result, c.buf),
                    Kind::DataRead => self.on_data_read(r, &mut conn, c.result, c.buf),
                    Kind::DataFill => self.on_data_filled(r, &mut conn, c.result),
                    Kind::DataSent => self.on_data_sent(r, &mut conn, c.result),
                    Kind::UploadGrace => self.on_upload_grace(r, &mut conn),
                    Kind::Opened => self.on_opened(r, &mut conn, c.result, c.fd),
                    Kind::Looked => self.on_looked(r, &mut conn, epoch, c.result, c.fd),
                    _ => self.drive_data(r, &mut conn),
                }
                self.settle(r, conn);
            }
        }
    }

    /// Ask again for the turn of every password check waiting here (in arrival order per
    /// account: only the oldest waiting attempt of an account may start).
    fn on_login_turn(&mut self) {
        self.login_timer = false;
        for r in std::mem::take(&mut self.login_waiters) {
            let Some(mut conn) = self.take(r) else {
                continue;
            };
            if let Some(wait) = conn.login_wait.take() {
                conn.job = None;
                let ticket = Some(wait.ticket);
                self.authenticate(r, &mut conn, wait.user, wait.password, ticket);
            }
            self.settle(r, conn);
        }
    }

    /// Ask again for `r`'s turn soon.
    pub(super) fn wait_for_login_turn(&mut self, r: ConnRef) {
        self.login_waiters.push(r);
        if !self.login_timer {
            self.login_timer = true;
            let none = ConnRef {
                index: 0,
                generation: 0,
            };
            self.ring
                .timeout(LOGIN_TURN, token(Kind::LoginTurn, none, 0));
        }
    }

    fn on_tick(&mut self) {
        for listener in std::mem::take(&mut self.accept_rearm) {
            // A drain closed the listeners meanwhile.
            let Some(l) = self.listeners.get(listener) else {
                continue;
            };
            let fd = l.as_raw_fd();
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
        let cut_off = self.draining.is_some_and(|deadline| self.now >= deadline);
        let mut transfers = 0;
        for r in self.live_conns() {
            let Some(mut conn) = self.take(r) else {
                continue;
            };
            if cut_off {
                // The grace is over: whatever the session is doing ends now (a cut-off upload
                // is discarded by close_conn, so the old file stays).
                conn.send(&Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Server shutting down; closing control connection.",
                ));
                conn.close_for(EndReason::Shutdown);
                self.flush(r, &mut conn);
                self.close_conn(r, conn);
                continue;
            }
            transfers += usize::from(conn.transfer.is_some());
            let idle = conn.config.idle_timeout;
            let data_timeout = conn.config.data_timeout;
            if conn.delayed.as_ref().is_some_and(|(at, _)| self.now >= *at) {
                if let Some((_, outcome)) = conn.delayed.take() {
                    conn.job = None;
                    self.outcome(r, &mut conn, outcome);
                    if std::mem::take(&mut conn.banned) {
                        conn.send(&Reply::new(
                            ReplyCode::ServiceNotAvailable,
                            "Too many failed logins from your address; closing control connection.",
                        ));
                        conn.close_for(EndReason::Limit);
                    }
                }
            }
            let busy = conn.transfer.is_some() || conn.job.is_some();
            // Counted from the connect, not from the last command: before login, anything a
            // client sends (even a line answered 530) would otherwise hold the session forever.
            if !conn.session.logged_in()
                && self.now.duration_since(conn.started) > conn.config.login_timeout
            {
                conn.send(&Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Login timeout; closing control connection.",
                ));
                conn.close_for(EndReason::LoginTimeout);
            } else if !busy && self.now.duration_since(conn.last_active) > idle {
                conn.send(&Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Timeout; closing control connection.",
                ));
                conn.close_for(EndReason::IdleTimeout);
            } else if conn
                .stat_listing
                .as_ref()
                .is_some_and(|l| l.stalled(self.now, data_timeout))
            {
                // STAT <dir> over a control connection the client stopped reading.
                conn.out.clear();
                conn.close_for(EndReason::Error);
            } else {
                self.check_data_deadlines(r, &mut conn, data_timeout);
            }
            self.settle(r, conn);
        }
        self.shared.limits.set_transfers(self.index, transfers);
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Reload {
                config,
                policy,
                root,
                tls,
            } => {
                self.shared.config = config;
                self.shared.policy = policy;
                self.shared.root = root;
                self.shared.tls = tls;
            }
            Control::Drain { deadline } => {
                if self.draining.is_some() {
                    return;
                }
                self.draining = Some(deadline);
                // Closing cancels the multishot accepts; connections still in the backlog are
                // reset, which is what a client of a stopping server should see.
                for l in self.listeners.drain(..) {
                    self.ring.close(OwnedFd::from(l));
                }
                // Idle sessions hear 421 now (settle does it); busy ones when they finish.
                for r in self.live_conns() {
                    if let Some(conn) = self.take(r) {
                        self.settle(r, conn);
                    }
                }
            }
        }
    }

    /// A drain has closed every session: the shard's work is done.
    fn drained(&self) -> bool {
        self.draining.is_some() && self.slots.iter().all(|s| s.conn.is_none())
    }
}
