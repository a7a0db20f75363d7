//! rustls driven from the shard's readiness polls, for the control connection after AUTH TLS
//! and for `PROT P` data connections. No thread, no blocking: every call reads or writes what
//! the non-blocking socket takes now and says whether to wait for POLLIN or POLLOUT.
//!
//! Memory per TLS connection is bounded by rustls: its receive buffer holds at most one record
//! (16 KiB plus overhead) and its send side at most its buffer limit (64 KiB by default), on
//! top of the connection's own reply or file buffer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

/// A control connection that has switched to TLS (AUTH TLS).
pub(super) struct CtrlTls {
    pub(super) conn: ServerConnection,
    /// The configurations of this session's `PROT P` data connections, for downloads and for
    /// uploads: the control connection's session cache, so only its sessions resume there.
    pub(super) download: Arc<ServerConfig>,
    pub(super) upload: Arc<ServerConfig>,
    /// Reply bytes queued before the switch (the 234 itself): they go out in clear, before
    /// the first TLS record.
    pub(super) preamble: Vec<u8>,
}

/// What a read through TLS gave.
pub(super) enum Recv {
    /// Plaintext bytes placed in the caller's buffer.
    Data(usize),
    /// Nothing more until the socket is readable again.
    WouldBlock,
    /// The peer sent close_notify: a clean end.
    Closed,
    /// TCP closed without close_notify: whatever came may be cut short.
    Truncated,
    /// A TLS or socket error: the connection is unusable.
    Failed,
}

/// How a handshake step ended.
pub(super) enum Handshake {
    Done,
    WantRead,
    WantWrite,
    Failed,
}

impl CtrlTls {
    pub(super) fn new(
        configs: crate::tls::SessionConfigs,
        preamble: Vec<u8>,
    ) -> Result<CtrlTls, rustls::Error> {
        Ok(CtrlTls {
            conn: ServerConnection::new(configs.control)?,
            download: configs.download,
            upload: configs.upload,
            preamble,
        })
    }

    /// Write the clear preamble, then `out` through TLS, then every TLS record queued (handshake
    /// messages included). `Ok` when nothing more can go now without the peer (all written, or
    /// the handshake must progress first); `WouldBlock` when the socket is full.
    pub(super) fn flush(&mut self, sock: &TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
        write_plain(sock, &mut self.preamble)?;
        loop {
            send(&mut self.conn, sock)?;
            if out.is_empty() {
                return Ok(());
            }
            // rustls holds plaintext back until the handshake is done and takes no more than its
            // buffer limit: what it does not take stays in `out`.
            let n = self.conn.writer().write(out)?;
            out.drain(..n);
            if n == 0 && !self.conn.wants_write() {
                return Ok(());
            }
        }
    }
}

/// Write `out` to the socket in clear until it is empty (`Ok`) or the socket is full.
pub(super) fn write_plain(sock: &TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    while !out.is_empty() {
        match (&*sock).write(out) {
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write every queued TLS record; `WouldBlock` when the socket is full.
pub(super) fn send(tls: &mut ServerConnection, sock: &TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut &*sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read plaintext into `out`, pulling TLS records from the socket as needed.
pub(super) fn recv(tls: &mut ServerConnection, sock: &TcpStream, out: &mut [u8]) -> Recv {
    loop {
        match tls.reader().read(out) {
            Ok(0) if !out.is_empty() => return Recv::Closed,
            Ok(n) => return Recv::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Recv::Truncated,
            Err(_) => return Recv::Failed,
        }
        match tls.read_tls(&mut &*sock) {
            // EOF is recorded by rustls: the next `reader().read` says how the stream ended.
            Ok(0) => {}
            Ok(_) => {
                if tls.process_new_packets().is_err() {
                    // Tell the peer why (the alert is queued by rustls), best effort.
                    let _ = send(tls, sock);
                    return Recv::Failed;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Recv::WouldBlock,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Recv::Failed,
        }
    }
}

/// Move a data connection's handshake as far as the socket allows.
pub(super) fn handshake(tls: &mut ServerConnection, sock: &TcpStream) -> Handshake {
    loop {
        match send(tls, sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Handshake::WantWrite,
            Err(_) => return Handshake::Failed,
        }
        if !tls.is_handshaking() {
            return Handshake::Done;
        }
        match tls.read_tls(&mut &*sock) {
            Ok(0) => return Handshake::Failed,
            Ok(_) => {
                if tls.process_new_packets().is_err() {
                    let _ = send(tls, sock);
                    return Handshake::Failed;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Handshake::WantRead,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Handshake::Failed,
        }
    }
}

/// Whether a finished data handshake resumed a session from the control session's cache.
pub(super) fn resumed(tls: &ServerConnection) -> bool {
    tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

/// End a data connection that is refused after its handshake with close_notify (best effort),
/// so the client sees a clean end and reads the reply that says why.
pub(super) fn refuse(tls: &mut ServerConnection, sock: &TcpStream) {
    tls.send_close_notify();
    let _ = send(tls, sock);
}
