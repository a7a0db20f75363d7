//! Data connections: passive listeners on the shard's own port slice (port stealing refused),
//! active connects back to the client from the control connection's address, handing the
//! connection to the transfer once both are ready, closing the data fds, and the data-side
//! timeouts (a connection that never came, a transfer that stopped moving).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::conns::{ConnRef, Kind, token};
use super::transfer::{Protection, Source};
use super::{Conn, Shard};
use crate::proto::addr;
use crate::proto::session::{Outcome, TransferError};

/// The data channel as the shard holds it.
pub(super) enum Data {
    None,
    /// PASV/EPSV: waiting for the client to connect.
    Listening {
        listener: TcpListener,
        deadline: Instant,
    },
    /// PASV/EPSV: the client connected before the transfer command arrived.
    Ready(TcpStream),
    /// PORT/EPRT: connect here when a transfer starts.
    Active(SocketAddr),
    /// PORT/EPRT: connect in progress.
    Connecting {
        sock: TcpStream,
        deadline: Instant,
    },
}

impl Shard {
    /// PASV/EPSV: a fresh listener on this shard's port slice, bound to the control connection's
    /// local address so the client reaches the same interface.
    pub(super) fn open_passive(&mut self, r: ConnRef, conn: &mut Conn) -> Outcome {
        self.close_data(conn);
        let ip = conn.local.ip();
        match self.bind_passive(ip) {
            Ok(listener) => {
                let Ok(addr) = listener.local_addr() else {
                    return Outcome::PassiveFailed;
                };
                let fd = listener.as_raw_fd();
                self.poll_data(r, conn, fd, libc::POLLIN, Kind::DataListen);
                let deadline = self.now + conn.config.data_timeout;
                conn.data = Data::Listening { listener, deadline };
                // Behind NAT the client must be told the public address; the listener stays local.
                match (conn.config.pasv_address, addr) {
                    (Some(public), SocketAddr::V4(_)) => {
                        Outcome::PassiveReady(SocketAddr::new(public.into(), addr.port()))
                    }
                    _ => Outcome::PassiveReady(addr),
                }
            }
            Err(e) => {
                log::warn!("no passive port for {}: {e}", conn.peer);
                Outcome::PassiveFailed
            }
        }
    }

    fn bind_passive(&mut self, ip: IpAddr) -> io::Result<TcpListener> {
        let domain = Domain::for_address(SocketAddr::new(ip, 0));
        // Walk the shard's slice round-robin from where the last PASV stopped. One socket serves
        // the whole walk: a failed bind leaves it unbound.
        let (lo, hi) = self.shared.config.pasv_slice(self.index);
        let (count, start) = (
            u32::from(hi - lo) + 1,
            u32::from(self.pasv_next.clamp(lo, hi) - lo),
        );
        // Non-blocking from the start; socket2 adds SOCK_CLOEXEC. No fcntl calls per PASV.
        let socket = Socket::new(domain, Type::STREAM.nonblocking(), None)?;
        socket.set_reuse_address(true)?;
        let mut last = io::Error::new(io::ErrorKind::AddrInUse, "passive port range exhausted");
        for i in 0..count {
            let port = lo + ((start + i) % count) as u16;
            if let Err(e) = socket.bind(&SocketAddr::new(ip, port).into()) {
                if e.raw_os_error() != Some(libc::EADDRINUSE) {
                    return Err(e);
                }
                last = e;
                continue;
            }
            socket.listen(1)?;
            self.pasv_next = lo + ((start + i + 1) % count) as u16;
            return Ok(socket.into());
        }
        Err(last)
    }

    /// A one-shot readiness poll on one of the session's data fds, tagged with its data epoch so a
    /// completion for an fd closed meanwhile is recognised and dropped.
    pub(super) fn poll_data(
        &mut self,
        r: ConnRef,
        conn: &Conn,
        fd: RawFd,
        events: i16,
        kind: Kind,
    ) {
        self.ring
            .poll(fd, events as u32, false, token(kind, r, conn.data_epoch));
    }

    /// Close every data fd of the session (listener, connection, transfer socket).
    pub(super) fn close_data(&mut self, conn: &mut Conn) {
        let mut fds: Vec<OwnedFd> = Vec::new();
        match std::mem::replace(&mut conn.data, Data::None) {
            Data::Listening { listener, .. } => fds.push(listener.into()),
            Data::Ready(s) | Data::Connecting { sock: s, .. } => fds.push(s.into()),
            Data::None | Data::Active(_) => {}
        }
        if let Some(t) = conn.transfer.as_mut() {
            if let Some(s) = t.sock.take() {
                fds.push(s.into());
            }
            t.armed = false;
        }
        if fds.is_empty() {
            return;
        }
        conn.data_epoch = conn.data_epoch.wrapping_add(1);
        for fd in fds {
            self.ring.close(fd);
        }
    }

    /// The file is open (or the listing built): get a data connection and start sending.
    pub(super) fn begin_transfer(&mut self, r: ConnRef, conn: &mut Conn) {
        match std::mem::replace(&mut conn.data, Data::None) {
            Data::Ready(sock) => self.start_sending(r, conn, sock),
            d @ (Data::Listening { .. } | Data::Connecting { .. }) => conn.data = d,
            Data::Active(target) => match self.connect_active(conn.local.ip(), target) {
                Ok(sock) => {
                    let fd = sock.as_raw_fd();
                    self.poll_data(r, conn, fd, libc::POLLOUT, Kind::DataConnect);
                    let deadline = self.now + conn.config.data_timeout;
                    conn.data = Data::Connecting { sock, deadline };
                }
                Err(e) => {
                    log::info!("{} active connect to {target} failed: {e}", conn.peer);
                    self.fail_transfer(r, conn, TransferError::NoDataConnection);
                }
            },
            Data::None => self.fail_transfer(r, conn, TransferError::NoDataConnection),
        }
    }

    /// PORT/EPRT: a non-blocking connect from the control connection's local address.
    fn connect_active(&self, local: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(target),
            Type::STREAM.nonblocking(),
            None,
        )?;
        socket.bind(&SocketAddr::new(local, 0).into())?;
        match socket.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(socket.into())
    }

    pub(super) fn on_data_listen(&mut self, r: ConnRef, conn: &mut Conn) {
        let Data::Listening { listener, .. } = &conn.data else {
            return;
        };
        loop {
            // Non-blocking and close-on-exec from accept4 itself: no extra system call.
            let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
            match socket2::SockRef::from(listener).accept4(flags) {
                Ok((sock, peer)) => {
                    let Some(peer) = peer.as_socket() else {
                        continue;
                    };
                    // RFC 2577 section 4 (port stealing): only the control peer may connect.
                    if addr::canonical_ip(peer.ip()) != addr::canonical_ip(conn.peer.ip()) {
                        log::warn!(
                            "refused data connection from {peer} for session of {}",
                            conn.peer
                        );
                        continue;
                    }
                    let sock = TcpStream::from(sock);
                    // The listener's one-shot poll has completed, so it can simply be dropped.
                    conn.data = Data::None;
                    if conn
                        .transfer
                        .as_ref()
                        .is_some_and(|t| !matches!(t.source, Source::Pending))
                    {
                        self.start_sending(r, conn, sock);
                    } else {
                        conn.data = Data::Ready(sock);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let fd = listener.as_raw_fd();
        self.poll_data(r, conn, fd, libc::POLLIN, Kind::DataListen);
    }

    pub(super) fn on_data_connect(&mut self, r: ConnRef, conn: &mut Conn) {
        let Data::Connecting { sock, .. } = &conn.data else {
            return;
        };
        let ok = matches!(socket2::SockRef::from(sock).take_error(), Ok(None))
            && sock.peer_addr().is_ok();
        let Data::Connecting { sock, .. } = std::mem::replace(&mut conn.data, Data::None) else {
            return;
        };
        if ok {
            self.start_sending(r, conn, sock);
        } else {
            self.ring.close(sock.into());
            self.fail_transfer(r, conn, TransferError::NoDataConnection);
        }
    }

    fn start_sending(&mut self, r: ConnRef, conn: &mut Conn, sock: TcpStream) {
        let Some(t) = conn.transfer.as_mut() else {
            conn.data = Data::Ready(sock);
            return;
        };
        t.sock = Some(sock);
        t.last_progress = self.now;
        let size = t.size;
        let name = match &t.source {
            Source::Upload(u) if t.is_unique() => Some(u.upload.path.clone()),
            _ => None,
        };
        let upload = t.is_upload();
        self.outcome(r, conn, Outcome::TransferStarting { size, name });
        if conn.session.data_protected() {
            // PROT P: the client starts the TLS handshake once it has the 150 (ftplib, curl).
            let tls = conn
                .tls
                .as_ref()
                .map(|c| if upload { &c.upload } else { &c.download })
                .map(|config| rustls::ServerConnection::new(std::sync::Arc::clone(config)));
            let kernel = conn.config.ktls && self.shared.ktls.is_some();
            match (tls, conn.transfer.as_mut()) {
                (Some(Ok(tls)), Some(t)) => {
                    t.tls = Some(Box::new(tls));
                    t.protection = Protection::Rustls;
                    t.try_kernel = kernel;
                }
                _ => return self.fail_transfer(r, conn, TransferError::TlsHandshake),
            }
        }
        if upload {
            self.drive_upload(r, conn);
        } else {
            self.drive(r, conn);
        }
    }

    /// The data socket is ready for what the transfer waits for (a download may wait for input
    /// during its TLS handshake, an upload for output).
    pub(super) fn drive_data(&mut self, r: ConnRef, conn: &mut Conn) {
        match conn.transfer.as_mut() {
            Some(t) if t.armed => t.armed = false,
            _ => return,
        }
        if conn.transfer.as_ref().is_some_and(|t| t.is_upload()) {
            self.drive_upload(r, conn);
        } else {
            self.drive(r, conn);
        }
    }

    /// Called every tick: data connections that never came, and transfers that stopped moving.
    pub(super) fn check_data_deadlines(&mut self, r: ConnRef, conn: &mut Conn, timeout: Duration) {
        let expired = match &conn.data {
            Data::Listening { deadline, .. } | Data::Connecting { deadline, .. } => {
                self.now >= *deadline
            }
            _ => false,
        };
        let waiting = conn
            .transfer
            .as_ref()
            .is_some_and(|t| t.sock.is_none() && !matches!(t.source, Source::Pending));
        if expired {
            self.close_data(conn);
            if waiting {
                self.fail_transfer(r, conn, TransferError::NoDataConnection);
            }
            return;
        }
        let stalled = conn.transfer.as_ref().is_some_and(|t| {
            t.sock.is_some() && self.now.duration_since(t.last_progress) > timeout
        });
        if stalled {
            self.fail_transfer(r, conn, TransferError::ConnectionLost);
        }
    }
}
