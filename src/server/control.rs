//! The control connection: accepting and placing sessions, reading and framing command lines
//! (queued behind outstanding work, with ABOR/STAT cutting in), writing replies, and closing the
//! session once its replies are out.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::SystemTime;

use super::conns::{ConnRef, Kind, token};
use super::data::Data;
use super::limits::Refusal;
use super::records::{EndReason, Totals, session_id};
use super::tls::{self, Recv};
use super::{Arrival, Conn, Shard};
use crate::proto::command::{self, Command, ParseError};
use crate::proto::line::{Frame, LineFramer};
use crate::proto::reply::{Reply, ReplyCode};
use crate::proto::session::{self, Outcome, Session, Step};
use crate::shard::Completion;

/// Commands a client may pipeline behind a running transfer or lookup before we stop listening.
const MAX_QUEUED_LINES: usize = 64;
/// Unsent reply bytes tolerated for a client that does not read its control connection.
const MAX_PENDING_REPLY_BYTES: usize = 256 << 10;
/// Control bytes read per readiness event, so one chatty client cannot hog the shard.
pub(super) const CONTROL_READ_BYTES: usize = 16 << 10;

impl Shard {
    pub(super) fn on_accept(&mut self, listener: usize, c: Completion) {
        if listener >= self.listeners.len() {
            // A drain closed the listeners: this is their cancelled accept, or a connection
            // that raced the close (dropping it closes it).
            return;
        }
        let Some(fd) = c.fd else {
            // Multishot accept ends on errors such as EMFILE. Re-arming at once would spin while
            // the condition lasts, so wait for the next tick.
            log::warn!("accept failed: {}", io::Error::from_raw_os_error(-c.result));
            if !c.more {
                self.accept_rearm.push(listener);
            }
            return;
        };
        if !c.more {
            let fd = self.listeners[listener].as_raw_fd();
            self.ring.accept_multi(fd, c.token);
        }
        let stream = TcpStream::from(fd);
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            return;
        };
        let implicit_tls = listener >= self.implicit_from;
        if let Err(refusal) = self.shared.limits.admit(peer.ip(), self.now) {
            if implicit_tls {
                // A TLS client cannot read a reply in clear: it is simply closed.
                return;
            }
            let text: &[u8] = match refusal {
                Refusal::TooManySessions => b"421 Too many users, try again later.\r\n",
                Refusal::TooManyFromIp => b"421 Too many connections from your address.\r\n",
                Refusal::TooFast => {
                    b"421 Too many connection attempts from your address; slow down.\r\n"
                }
                Refusal::Banned => {
                    b"421 Too many failed logins from your address; try again later.\r\n"
                }
            };
            let _ = (&stream).write(text);
            return;
        }
        let _ = stream.set_nodelay(true);
        // Clients send ABOR as Telnet "urgent" data (ftplib even marks the whole line urgent):
        // keep those bytes in the stream instead of losing one to the out-of-band slot.
        let _ = socket2::SockRef::from(&stream).set_out_of_band_inline(true);
        let arrival = Arrival {
            stream,
            peer,
            local,
            implicit_tls,
        };
        let to = self.shared.limits.place(self.index);
        if to == self.index {
            return self.start_session(arrival);
        }
        // Another shard holds fewer sessions: the session lives there from its greeting on.
        if let Err(a) = self.shared.doors[to].post(arrival) {
            // That shard has stopped (the server is shutting down).
            self.shared.limits.left(to);
            self.shared.limits.release(a.peer.ip(), self.now);
        }
    }

    /// Serve a new control connection, admitted and counted on this shard: greet it and wait
    /// for its commands. On an implicit TLS connection the handshake comes first: the greeting
    /// is held by rustls until it is done, and goes out through TLS.
    pub(super) fn start_session(&mut self, arrival: Arrival) {
        let Arrival {
            stream,
            peer,
            local,
            implicit_tls,
        } = arrival;
        self.sessions = self.sessions.wrapping_add(1);
        let conn = Box::new(Conn {
            config: Arc::clone(&self.shared.config),
            id: session_id(self.index, self.sessions),
            ctrl: stream,
            peer,
            local,
            session: Session::new(peer.ip(), self.shared.policy.clone()),
            framer: LineFramer::new(),
            queued: VecDeque::new(),
            out: Vec::new(),
            out_armed: false,
            closing: None,
            eof: false,
            last_active: self.now,
            data: Data::None,
            data_epoch: 0,
            transfer: None,
            job: None,
            stat_listing: None,
            root: Arc::clone(&self.shared.root),
            delayed: None,
            banned: false,
            login_wait: None,
            counted_user: None,
            opening: None,
            looking: None,
            look_seq: 0,
            started_at: SystemTime::now(),
            started: self.now,
            totals: Totals::default(),
            last_reply: None,
            tls_base: self.shared.tls.clone(),
            tls: None,
            input_reset: false,
        });
        let r = self.insert(conn);
        let mut conn = self.take(r).expect("just inserted");
        let fd = conn.ctrl.as_raw_fd();
        self.ring.poll(
            fd,
            (libc::POLLIN | libc::POLLRDHUP) as u32,
            true,
            token(Kind::CtrlIn, r, 0),
        );
        if implicit_tls {
            conn.session.start_implicit_tls();
            self.start_tls(&mut conn);
        }
        let banner = Reply::new(ReplyCode::ServiceReady, conn.config.banner.as_bytes());
        conn.send(&banner);
        self.flush(r, &mut conn);
        self.settle(r, conn);
    }

    pub(super) fn on_ctrl_readable(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        result: i32,
        more: bool,
    ) {
        if result < 0 {
            conn.close_for(EndReason::Error);
            return;
        }
        if !more {
            let fd = conn.ctrl.as_raw_fd();
            self.ring.poll(
                fd,
                (libc::POLLIN | libc::POLLRDHUP) as u32,
                true,
                token(Kind::CtrlIn, r, 0),
            );
        }
        let mut buf = std::mem::take(&mut self.scratch);
        if buf.is_empty() {
            // Re-entered (a transfer step reading a pending ABOR): the shared buffer is in use.
            buf = vec![0; CONTROL_READ_BYTES];
        }
        let mut frames = Vec::new();
        // The poll fires on wake-ups, not on levels: read until EAGAIN (a read also stops at a TCP
        // urgent mark, as ABOR sent with MSG_OOB has), or until this turn's share is used up.
        let mut total = 0;
        loop {
            let got = match conn.tls.as_deref_mut() {
                None => match (&conn.ctrl).read(&mut buf) {
                    Ok(0) => Recv::Closed,
                    Ok(n) => Recv::Data(n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Recv::WouldBlock,
                    Err(_) => Recv::Failed,
                },
                Some(tls) => tls::recv(&mut tls.conn, &conn.ctrl, &mut buf),
            };
            match got {
                Recv::Data(n) => {
                    conn.framer.push(&buf[..n], &mut frames);
                    total += n;
                    if total >= CONTROL_READ_BYTES * 4 {
                        self.ctrl_ready.push(r);
                        break;
                    }
                }
                Recv::Closed | Recv::Truncated => {
                    conn.eof = true;
                    break;
                }
                Recv::WouldBlock => break,
                Recv::Failed => {
                    // A handshake that fails is a client that does not speak TLS (or not ours).
                    let handshaking = conn.tls.as_ref().is_some_and(|t| t.conn.is_handshaking());
                    if handshaking {
                        log::info!("{}: TLS handshake failed; closed", conn.peer);
                    }
                    conn.close_for(if handshaking {
                        EndReason::Protocol
                    } else {
                        EndReason::Error
                    });
                    break;
                }
            }
        }
        self.scratch = buf;
        if !frames.is_empty() {
            conn.last_active = self.now;
        }
        conn.input_reset = false;
        for frame in frames {
            // After AUTH TLS the rest of what was read came in clear before the handshake: a
            // man in the middle may have added it (STARTTLS command injection), so it is dropped.
            if conn.closing.is_some() || conn.input_reset {
                break;
            }
            match frame {
                Frame::TooLong => self.apply(
                    r,
                    conn,
                    Step {
                        replies: vec![session::line_too_long_reply()],
                        effect: None,
                    },
                ),
                Frame::Line(line) => self.on_line(r, conn, line),
            }
        }
    }

    /// AUTH TLS was answered with 234: from now on the control connection speaks TLS. The 234
    /// (and anything queued before it) goes out in clear first; every line received before the
    /// handshake and not yet run is dropped, never run.
    pub(super) fn start_tls(&mut self, conn: &mut Conn) {
        let Some(base) = conn.tls_base.as_deref() else {
            conn.close_for(EndReason::Error);
            return;
        };
        let config = crate::tls::for_session(base);
        match tls::CtrlTls::new(config, std::mem::take(&mut conn.out)) {
            Ok(t) => conn.tls = Some(Box::new(t)),
            Err(e) => {
                log::warn!("{}: cannot start TLS: {e}", conn.peer);
                conn.close_for(EndReason::Error);
            }
        }
        conn.framer = LineFramer::new();
        conn.queued.clear();
        conn.input_reset = true;
    }

    fn on_line(&mut self, r: ConnRef, conn: &mut Conn, line: Vec<u8>) {
        if command::looks_like_http(&line) {
            // A browser made to talk to this port (cross-protocol attacks): closed without a
            // reply, so nothing it sent comes back in a response it might render. The line
            // itself is not logged (it could carry anything, passwords included).
            log::info!(
                "{}: HTTP request on the control connection; closed",
                conn.peer
            );
            conn.queued.clear();
            conn.close_for(EndReason::Protocol);
            return;
        }
        let cmd = command::parse(&line);
        // During a transfer ABOR and STAT cut in even ahead of pipelined commands (RFC 959
        // section 4.1.3); everything else keeps its order.
        let cuts_in = conn.session.in_transfer() && conn.session.accepts_now(&cmd);
        if !cuts_in && (!conn.queued.is_empty() || !conn.session.accepts_now(&cmd)) {
            if conn.queued.len() >= MAX_QUEUED_LINES {
                conn.send(&Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Too many queued commands.",
                ));
                conn.close_for(EndReason::Error);
            } else {
                conn.queued.push_back(line);
            }
            return;
        }
        self.run_command(r, conn, cmd);
    }

    fn run_command(&mut self, r: ConnRef, conn: &mut Conn, cmd: Result<Command, ParseError>) {
        let step = conn.session.on_command(cmd);
        self.apply(r, conn, step);
    }

    /// Write a step's replies and run its effect.
    fn apply(&mut self, r: ConnRef, conn: &mut Conn, step: Step) {
        for reply in &step.replies {
            conn.send(reply);
        }
        if let Some(effect) = step.effect {
            self.run_effect(r, conn, effect);
        }
    }

    /// Tell the session how an effect went, write its answer, then run the commands that waited.
    pub(super) fn outcome(&mut self, r: ConnRef, conn: &mut Conn, outcome: Outcome) {
        self.answer(r, conn, outcome);
        self.drain_queued(r, conn);
    }

    /// `outcome` without running the waiting commands; returns the code of the first reply
    /// written (for a transfer, its final reply), so the caller can log it before they run.
    pub(super) fn answer(
        &mut self,
        r: ConnRef,
        conn: &mut Conn,
        outcome: Outcome,
    ) -> Option<ReplyCode> {
        let step = conn.session.on_outcome(outcome);
        let code = step.replies.first().map(|reply| reply.code);
        self.apply(r, conn, step);
        code
    }

    pub(super) fn drain_queued(&mut self, r: ConnRef, conn: &mut Conn) {
        while let Some(line) = conn.queued.front() {
            if conn.closing.is_some() {
                return;
            }
            let cmd = command::parse(line);
            if !conn.session.accepts_now(&cmd) {
                return;
            }
            conn.queued.pop_front();
            self.run_command(r, conn, cmd);
        }
    }

    /// Write pending reply bytes (through TLS after AUTH TLS); on EAGAIN wait for POLLOUT.
    pub(super) fn flush(&mut self, r: ConnRef, conn: &mut Conn) {
        let written = match conn.tls.as_deref_mut() {
            None => tls::write_plain(&conn.ctrl, &mut conn.out),
            Some(t) => t.flush(&conn.ctrl, &mut conn.out),
        };
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if conn.out.len() > MAX_PENDING_REPLY_BYTES {
                    conn.close_for(EndReason::Error);
                    conn.out.clear();
                } else if !conn.out_armed {
                    conn.out_armed = true;
                    let fd = conn.ctrl.as_raw_fd();
                    self.ring
                        .poll(fd, libc::POLLOUT as u32, false, token(Kind::CtrlOut, r, 0));
                }
                return;
            }
            Err(_) => {
                conn.close_for(EndReason::Error);
                conn.out.clear();
                return;
            }
        }
        if conn.out.len() > MAX_PENDING_REPLY_BYTES {
            // TLS holds replies back until its handshake is done; a client that never finishes
            // it does not get to pile them up.
            conn.close_for(EndReason::Error);
            conn.out.clear();
        }
        if conn.out.is_empty() && conn.out.capacity() > 4096 {
            conn.out = Vec::new();
        }
    }

    /// Flush, then either put the session back or close it.
    pub(super) fn settle(&mut self, r: ConnRef, mut conn: Box<Conn>) {
        let idle = conn.job.is_none() && conn.transfer.is_none() && conn.queued.is_empty();
        if self.draining.is_some() && idle && conn.opening.is_none() && conn.closing.is_none() {
            // A graceful stop: nothing running here (any more), so the session ends now.
            conn.send(&Reply::new(
                ReplyCode::ServiceNotAvailable,
                "Server shutting down; closing control connection.",
            ));
            conn.close_for(EndReason::Shutdown);
        }
        self.flush(r, &mut conn);
        if conn.closing.is_some() || (conn.eof && idle) {
            self.close_conn(r, conn);
        } else {
            self.put(r, conn);
        }
    }

    /// End the session: a transfer still running is cut off (and logged as such), the session
    /// record is queued, the sockets are closed and the slot freed.
    pub(super) fn close_conn(&mut self, r: ConnRef, mut conn: Box<Conn>) {
        // Closing without a reason decided means the client closed its side and the work it
        // queued is done.
        let reason = conn.closing.unwrap_or(EndReason::Closed);
        if let Some(t) = self.drop_transfer(&mut conn) {
            log::info!(
                "{} transfer of {:?} cut off after {} bytes: session closed",
                conn.peer,
                String::from_utf8_lossy(t.what()),
                t.bytes()
            );
            // The client gets no reply for it; 426 is what such an end means (RFC 959: "Connection
            // closed; transfer aborted").
            self.log_transfer(&mut conn, &t, ReplyCode::TransferAborted);
        }
        self.log_session(&conn, reason);
        if let Some(wait) = conn.login_wait.take() {
            // Its place in the account's queue goes to the attempt behind it.
            self.shared.limits.give_up_turn(&wait.user, wait.ticket);
        }
        self.close_data(&mut conn);
        if let Some(t) = conn.tls.as_deref_mut() {
            // A clean TLS end (RFC 8446 section 6.1), best effort: the socket closes either way.
            t.conn.send_close_notify();
            let _ = tls::send(&mut t.conn, &conn.ctrl);
        }
        let Conn {
            ctrl,
            peer,
            counted_user,
            ..
        } = *conn;
        self.ring.close(OwnedFd::from(ctrl));
        if let Some(user) = counted_user {
            self.shared.limits.user_left(&user);
        }
        self.shared.limits.release(peer.ip(), self.now);
        self.shared.limits.left(self.index);
        // The slot's generation moves on, so late completions for this session find nothing.
        let slot = &mut self.slots[r.index as usize];
        slot.generation = slot.generation.wrapping_add(1) & 0xff_ffff;
        self.free.push(r.index);
    }
}
