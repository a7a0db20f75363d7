//! rustls driven from the shard's readiness polls, for the control connection after AUTH TLS
//! and for `PROT P` data connections. No thread, no blocking: every call reads or writes what
//! the non-blocking socket takes now and says whether to wait for POLLIN or POLLOUT.
//!
//! A download's data connection leaves rustls after its handshake where the kernel can take
//! over (`into_kernel`): from then on kernel TLS encrypts what the zero-copy paths send.
//!
//! Memory per TLS connection is bounded by rustls: its receive buffer holds at most one record
//! (16 KiB plus overhead) and its send side at most its buffer limit (64 KiB by default), on
//! top of the connection's own reply or file buffer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::{ConnectionTrafficSecrets, ServerConfig, ServerConnection};

use crate::sys::ktls::{self, Cipher, CryptoInfo, KtlsError, Support, Version};

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

/// Where a data connection's reads stand in the TLS record stream during its handshake, so
/// they never take a byte past the record being received. After the client's Finished the next
/// byte on the socket is then the first of a record rustls has not seen, which is what the
/// kernel needs for `TLS_RX`: a client that sends data right behind its Finished (TLS 1.3) would
/// otherwise leave part of a record in rustls's buffer. While rustls is still handshaking, the
/// record being received belongs to the handshake, so reading all of it is safe.
#[derive(Default)]
pub(super) struct RecordCut {
    header: [u8; 5],
    /// Header bytes received of the next record.
    have: usize,
    /// Body bytes still to come of the current record.
    left: usize,
}

/// The socket, read no further than the current record's end.
struct CutReader<'a> {
    cut: &'a mut RecordCut,
    sock: &'a TcpStream,
}

impl Read for CutReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let c = &mut *self.cut;
        let want = if c.left > 0 { c.left } else { 5 - c.have };
        let want = want.min(buf.len());
        let n = (&*self.sock).read(&mut buf[..want])?;
        if c.left > 0 {
            c.left -= n;
        } else {
            c.header[c.have..c.have + n].copy_from_slice(&buf[..n]);
            c.have += n;
            if c.have == 5 {
                // Type, version, then the body's length (RFC 8446 section 5.1).
                c.left = usize::from(u16::from_be_bytes([c.header[3], c.header[4]]));
                c.have = 0;
            }
        }
        Ok(n)
    }
}

/// Move a data connection's handshake as far as the socket allows.
pub(super) fn handshake(
    tls: &mut ServerConnection,
    sock: &TcpStream,
    cut: &mut RecordCut,
) -> Handshake {
    loop {
        match send(tls, sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Handshake::WantWrite,
            Err(_) => return Handshake::Failed,
        }
        if !tls.is_handshaking() {
            return Handshake::Done;
        }
        match tls.read_tls(&mut CutReader {
            cut: &mut *cut,
            sock,
        }) {
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

/// How handing a data connection to kernel TLS went.
pub(super) enum Handoff {
    /// The kernel encrypts from now on (`TLS_TX` is set) and rustls is gone: the transfer uses
    /// the cleartext data paths (sendfile, splice, the mapping, writes).
    Kernel,
    /// The connection stays in rustls, for this reason (logged at debug level).
    Keep(&'static str),
    /// Records rustls queued after the handshake (TLS 1.3 session tickets) must reach the socket
    /// before the kernel numbers its first record: wait for POLLOUT and try again.
    Blocked,
    /// The keys left rustls but the kernel refused them: the connection cannot go on.
    Failed(KtlsError),
}

/// The largest plaintext of one TLS record: how many records a file of a given size needs.
const MAX_RECORD_PLAINTEXT: u64 = 16 << 10;

/// The kernel cipher for a negotiated rustls suite (all of rustls's AEADs map).
fn kernel_cipher(suite: rustls::CipherSuite) -> Option<Cipher> {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Some(Cipher::Aes128Gcm),
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some(Cipher::Aes256Gcm),
        S::TLS13_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Some(Cipher::Chacha20Poly1305),
        _ => None,
    }
}

/// After a data connection's handshake (and its resumption check): give its transmit key to the
/// kernel when the kernel offloads the cipher, rustls holds nothing more to send (queued records
/// are flushed first) and nothing received that is still unread, and the transfer cannot reach
/// the cipher's confidentiality limit (the kernel does not count records, and 6.1 cannot
/// rekey). `size` is the number of bytes to send, where known. With `rx` (uploads) the receive
/// key goes to the kernel too: the handshake's reads stopped at a record boundary
/// (`RecordCut`), so the kernel decrypts from the first record rustls did not see. `slot` is
/// emptied on `Kernel` and `Failed`; on `Keep` and `Blocked` rustls carries on as before.
pub(super) fn into_kernel(
    slot: &mut Option<Box<ServerConnection>>,
    sock: &TcpStream,
    support: &Support,
    size: Option<u64>,
    rx: bool,
) -> Handoff {
    let Some(tls) = slot.as_deref_mut() else {
        return Handoff::Keep("no TLS");
    };
    match send(tls, sock) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Handoff::Blocked,
        // The rustls path meets the same error and reports it.
        Err(_) => return Handoff::Keep("socket error"),
    }
    match tls.process_new_packets() {
        Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
        Ok(_) => return Handoff::Keep("received bytes still buffered in rustls"),
        Err(_) => return Handoff::Keep("TLS error"),
    }
    let version = match tls.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => Version::Tls12,
        Some(rustls::ProtocolVersion::TLSv1_3) => Version::Tls13,
        _ => return Handoff::Keep("TLS version"),
    };
    let Some(suite) = tls.negotiated_cipher_suite() else {
        return Handoff::Keep("no cipher suite");
    };
    let Some(cipher) = kernel_cipher(suite.suite()) else {
        return Handoff::Keep("cipher suite not offloadable");
    };
    if !support.offloads(version, cipher) {
        return Handoff::Keep("the kernel does not offload this cipher");
    }
    let limit = match suite {
        rustls::SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        rustls::SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
    };
    // A few records of slack: listings and TYPE A send more records than the size says.
    let records = size.map_or(0, |n| n / MAX_RECORD_PLAINTEXT + 64);
    if records >= limit / 2 {
        return Handoff::Keep("the transfer would need a key update");
    }
    if let Err(e) = ktls::attach(sock) {
        return Handoff::Keep(match e {
            KtlsError::NoModule => "no tls module",
            _ => "TCP_ULP refused",
        });
    }
    let Some(tls) = slot.take() else {
        return Handoff::Keep("no TLS");
    };
    let secrets = match tls.dangerous_extract_secrets() {
        Ok(s) => s,
        Err(_) => return Handoff::Failed(KtlsError::Keys("rustls refused to extract them")),
    };
    let info = |(seq, keys): &(u64, ConnectionTrafficSecrets)| {
        let (key, iv) = match keys {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key.as_ref(), iv.as_ref()),
            _ => return Err(KtlsError::Keys("an AEAD the kernel has no struct for")),
        };
        CryptoInfo::new(version, cipher, key, iv, *seq)
            .map_err(|_| KtlsError::Keys("a key or IV of the wrong length"))
    };
    let result = info(&secrets.tx).and_then(|tx| ktls::set_tx(sock, &tx));
    let result = match result {
        Ok(()) if rx => info(&secrets.rx).and_then(|rx| ktls::set_rx(sock, &rx)),
        other => other,
    };
    match result {
        Ok(()) => Handoff::Kernel,
        Err(e) => Handoff::Failed(e),
    }
}
