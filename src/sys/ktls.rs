//! Kernel TLS (`TCP_ULP "tls"`, `SOL_TLS`/`TLS_TX`/`TLS_RX`): the socket options that hand a
//! finished TLS session's keys to the kernel, the `crypto_info` structs they take (TLS 1.2 and
//! 1.3, AES-GCM-128/256 and ChaCha20-Poly1305; the layouts of `uapi/linux/tls.h`), a control
//! record (an alert) sent with `TLS_SET_RECORD_TYPE`, receiving with the record type
//! (`TLS_GET_RECORD_TYPE`), and the start-up probe of what this kernel offers.
//!
//! After `TLS_TX` every byte written to the socket (write, sendfile, splice, io_uring SEND) goes
//! out as TLS application data records, encrypted by the kernel: the zero-copy data paths keep
//! working. The kernel of 6.1 cannot rekey a TX key (TLS 1.3 KeyUpdate), so a caller keeps
//! transfers that would need one in user space (`confidentiality_limit`).

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};

/// TLS record content types (RFC 8446 section 5.1).
pub const RECORD_ALERT: u8 = 21;
pub const RECORD_HANDSHAKE: u8 = 22;
pub const RECORD_APPLICATION_DATA: u8 = 23;

/// The close_notify alert's payload: level warning (1), description close_notify (0).
pub const CLOSE_NOTIFY: [u8; 2] = [1, 0];

/// Why kTLS cannot be used (on this kernel, or for this connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KtlsError {
    /// `setsockopt(TCP_ULP, "tls")` gave ENOENT: the kernel has no `tls` module (CONFIG_TLS).
    #[error("the kernel has no tls module (TCP_ULP \"tls\": ENOENT)")]
    NoModule,
    /// The kernel knows the ULP but not this version and cipher (EINVAL/ENOPROTOOPT...).
    #[error("the kernel does not offload {0}")]
    Cipher(&'static str),
    /// rustls did not give the traffic keys in a form the kernel takes.
    #[error("the traffic keys could not be handed over: {0}")]
    Keys(&'static str),
    /// Any other failure of a socket call, with its errno.
    #[error("{call}: {errno}")]
    Os { call: &'static str, errno: Errno },
}

/// The protocol versions the kernel takes keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

impl Version {
    fn uapi(self) -> u16 {
        match self {
            Version::Tls12 => libc::TLS_1_2_VERSION,
            Version::Tls13 => libc::TLS_1_3_VERSION,
        }
    }
}

/// The AEAD ciphers the kernel can offload (and rustls negotiates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    pub const ALL: [Cipher; 3] = [
        Cipher::Aes128Gcm,
        Cipher::Aes256Gcm,
        Cipher::Chacha20Poly1305,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes128Gcm => "AES-GCM-128",
            Cipher::Aes256Gcm => "AES-GCM-256",
            Cipher::Chacha20Poly1305 => "ChaCha20-Poly1305",
        }
    }

    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => libc::TLS_CIPHER_AES_GCM_128_KEY_SIZE,
            Cipher::Aes256Gcm => libc::TLS_CIPHER_AES_GCM_256_KEY_SIZE,
            Cipher::Chacha20Poly1305 => libc::TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE,
        }
    }
}

/// One direction's keys as `setsockopt(SOL_TLS, TLS_TX)` takes them; the key material is
/// overwritten with zeros when it is dropped, once the kernel has its copy.
pub struct CryptoInfo(sockopt::TlsCryptoInfo);

impl Drop for CryptoInfo {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl CryptoInfo {
    /// Overwrite the key, salt and IV with zeros (what dropping does).
    fn wipe(&mut self) {
        use zeroize::Zeroize;
        match &mut self.0 {
            sockopt::TlsCryptoInfo::Aes128Gcm(i) => {
                i.key.zeroize();
                i.salt.zeroize();
                i.iv.zeroize();
            }
            sockopt::TlsCryptoInfo::Aes256Gcm(i) => {
                i.key.zeroize();
                i.salt.zeroize();
                i.iv.zeroize();
            }
            sockopt::TlsCryptoInfo::Chacha20Poly1305(i) => {
                i.key.zeroize();
                i.iv.zeroize();
            }
        }
    }
}

/// A key or IV of the wrong length for its cipher (a bug in the caller, never the peer's doing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{cipher}: key of {key} bytes or IV of {iv} bytes")]
pub struct BadKey {
    pub cipher: &'static str,
    pub key: usize,
    pub iv: usize,
}

impl CryptoInfo {
    /// The kernel's form of a traffic key: `key`, the 12-byte `iv` of the AEAD nonce (rustls's
    /// form: for AES-GCM a 4-byte salt and 8 more bytes) and `seq`, the sequence number of the
    /// next record this side sends.
    ///
    /// TLS 1.3 and ChaCha20-Poly1305 build each record's nonce as iv XOR sequence number, in the
    /// kernel as in rustls, so the IV goes over unchanged. TLS 1.2 AES-GCM (RFC 5288) sends an
    /// explicit 8-byte nonce per record whose construction is the sender's choice: rustls uses
    /// iv XOR seq, the kernel counts up from the value it is given. Starting the kernel's count
    /// at rustls's start would reuse the nonces of the records rustls already sent under this
    /// key (its Finished): a GCM nonce used twice leaks the authentication key. The kernel's
    /// count therefore starts with the top bit flipped: rustls's nonces differ from its start in
    /// the low bits only (fewer than 2^16 records), and the kernel's count would have to run
    /// through 2^62 records before it came back to them.
    pub fn new(
        version: Version,
        cipher: Cipher,
        key: &[u8],
        iv: &[u8],
        seq: u64,
    ) -> Result<CryptoInfo, BadKey> {
        if key.len() != cipher.key_len() || iv.len() != 12 {
            return Err(BadKey {
                cipher: cipher.name(),
                key: key.len(),
                iv: iv.len(),
            });
        }
        let rec_seq = seq.to_be_bytes();
        let info = |cipher_type| libc::tls_crypto_info {
            version: version.uapi(),
            cipher_type,
        };
        let (salt, explicit) = iv.split_at(4);
        let mut explicit: [u8; 8] = explicit.try_into().expect("12 - 4 bytes");
        if version == Version::Tls12 && cipher != Cipher::Chacha20Poly1305 {
            explicit[0] ^= 0x80;
        }
        let salt: [u8; 4] = salt.try_into().expect("4 bytes");
        Ok(CryptoInfo(match cipher {
            Cipher::Aes128Gcm => {
                sockopt::TlsCryptoInfo::Aes128Gcm(libc::tls12_crypto_info_aes_gcm_128 {
                    info: info(libc::TLS_CIPHER_AES_GCM_128),
                    iv: explicit,
                    key: key.try_into().expect("checked length"),
                    salt,
                    rec_seq,
                })
            }
            Cipher::Aes256Gcm => {
                sockopt::TlsCryptoInfo::Aes256Gcm(libc::tls12_crypto_info_aes_gcm_256 {
                    info: info(libc::TLS_CIPHER_AES_GCM_256),
                    iv: explicit,
                    key: key.try_into().expect("checked length"),
                    salt,
                    rec_seq,
                })
            }
            Cipher::Chacha20Poly1305 => sockopt::TlsCryptoInfo::Chacha20Poly1305(
                libc::tls12_crypto_info_chacha20_poly1305 {
                    info: info(libc::TLS_CIPHER_CHACHA20_POLY1305),
                    iv: iv.try_into().expect("checked length"),
                    key: key.try_into().expect("checked length"),
                    salt: [],
                    rec_seq,
                },
            ),
        }))
    }
}

/// Attach the `tls` upper layer protocol to a connected TCP socket. Until `set_tx` the socket
/// behaves as before (the kernel's TLS_BASE mode passes bytes through).
pub fn attach(sock: &impl AsFd) -> Result<(), KtlsError> {
    match setsockopt(sock, sockopt::TcpUlp::default(), b"tls") {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => Err(KtlsError::NoModule),
        Err(errno) => Err(KtlsError::Os {
            call: "setsockopt(TCP_ULP)",
            errno,
        }),
    }
}

/// Give the kernel the transmit key: from now on it encrypts everything written to `sock`.
pub fn set_tx(sock: &impl AsFd, info: &CryptoInfo) -> Result<(), KtlsError> {
    setsockopt(sock, sockopt::TcpTlsTx, &info.0).map_err(|errno| KtlsError::Os {
        call: "setsockopt(TLS_TX)",
        errno,
    })
}

/// Give the kernel the receive key: from now on reads return decrypted application data, and
/// other records come one at a time with their type (`recv_record`).
pub fn set_rx(sock: &impl AsFd, info: &CryptoInfo) -> Result<(), KtlsError> {
    setsockopt(sock, sockopt::TcpTlsRx, &info.0).map_err(|errno| KtlsError::Os {
        call: "setsockopt(TLS_RX)",
        errno,
    })
}

/// What one receive on a `TLS_RX` socket brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// This many bytes of application data.
    Data(usize),
    /// The peer's close_notify: a clean end of its data.
    CloseNotify,
    /// Any other alert (level, description): the peer gave up.
    Alert(u8, u8),
    /// A handshake message after the handshake: in TLS 1.3 a KeyUpdate (RFC 8446 section
    /// 4.6.3), after which the peer encrypts with keys the kernel of 6.1 cannot take.
    Handshake,
    /// A record of another type (ChangeCipherSpec or unknown).
    Other(u8),
    /// TCP ended (no record at all).
    Eof,
}

/// Name what a receive brought by its record type (`None`: the kernel attached none, as at
/// TCP's end) and, for alerts, the payload.
pub fn classify(record_type: Option<u8>, payload: &[u8]) -> Incoming {
    let Some(record_type) = record_type else {
        return match payload.len() {
            0 => Incoming::Eof,
            n => Incoming::Data(n),
        };
    };
    match (record_type, payload) {
        (RECORD_APPLICATION_DATA, _) => Incoming::Data(payload.len()),
        (RECORD_ALERT, [_, 0, ..]) => Incoming::CloseNotify,
        (RECORD_ALERT, [level, desc, ..]) => Incoming::Alert(*level, *desc),
        (RECORD_ALERT, _) => Incoming::Alert(0, 0),
        (RECORD_HANDSHAKE, _) => Incoming::Handshake,
        (other, _) => Incoming::Other(other),
    }
}

/// One non-blocking receive on a `TLS_RX` socket into `buf`: application data (possibly from
/// several records), or one record of another type, told apart by the `TLS_GET_RECORD_TYPE`
/// control message. (A plain read would fail with EIO on a non-data record.) `buf` must hold at
/// least 2 bytes, an alert's payload. `WouldBlock` when nothing is there; EBADMSG when a record
/// does not decrypt (a corrupt stream, or keys changed by a KeyUpdate).
pub fn recv_record(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Incoming> {
    let mut control = [0u64; RECORD_TYPE_CMSG_SPACE.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain integers and pointers, for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = RECORD_TYPE_CMSG_SPACE as _;
    let len = loop {
        // SAFETY: `msg` points at `iov` (describing `buf`, writable for its whole length) and at
        // `control` (msg_controllen bytes); all outlive the call; `sock` is an open descriptor.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut record_type = None;
    // The kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR returns null or a header
    // inside `control`, and CMSG_DATA of a SOL_TLS/TLS_GET_RECORD_TYPE header points at its one
    // byte of data, inside `control` (its cmsg_len is checked first).
    // SAFETY: every pointer read below stays inside `control`, as said above.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_TLS
            && (*cmsg).cmsg_type == libc::TLS_GET_RECORD_TYPE
            && (*cmsg).cmsg_len as usize >= libc::CMSG_LEN(1) as usize
        {
            record_type = Some(*libc::CMSG_DATA(cmsg));
        }
    }
    Ok(classify(record_type, &buf[..len]))
}

/// `CMSG_SPACE(1)`: a cmsghdr and one byte of record type, padded to the header's alignment.
const RECORD_TYPE_CMSG_SPACE: usize =
    (size_of::<libc::cmsghdr>() + 1).next_multiple_of(size_of::<usize>());

/// After a receive found no whole record (`EAGAIN`): have the socket report readable only once
/// more bytes have arrived than it holds now; returns whether it held any. The TCP readiness
/// check counts the raw bytes queued, and the kernel's TLS parser leaves a partial record in
/// that queue, so a socket holding part of a record reports readable at once, the receive finds
/// nothing, and a wait re-armed at once turns into a busy loop until the rest arrives (measured
/// under 6.1: 1.46-1.51 CPU-s in 1.5 s, on both backends). The receive low-water mark
/// (`SO_RCVLOWAT`) set to the queue's length plus one waits for the next segment instead;
/// `reset_wait` puts it back to 1 once a record has been read.
pub fn wait_for_more(sock: BorrowedFd<'_>) -> io::Result<bool> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD on a socket writes one c_int through the pointer, which is `queued`'s.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if queued <= 0 {
        return Ok(false);
    }
    set_rcvlowat(sock, queued.saturating_add(1))?;
    Ok(true)
}

/// Readable on any byte again (undoes `wait_for_more`).
pub fn reset_wait(sock: BorrowedFd<'_>) -> io::Result<()> {
    set_rcvlowat(sock, 1)
}

fn set_rcvlowat(sock: BorrowedFd<'_>, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: `bytes` is a live c_int and the length passed is its size; `sock` is open.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const bytes).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Send `payload` as one TLS record of content type `record_type` on a socket with `TLS_TX`
/// (`TLS_SET_RECORD_TYPE`): how a close_notify alert goes out, since plain writes are always
/// application data. Non-blocking: `WouldBlock` when the socket is full (nothing was sent; the
/// kernel takes a control record whole or not at all).
pub fn send_record(sock: BorrowedFd<'_>, record_type: u8, payload: &[u8]) -> io::Result<usize> {
    // u64 elements give the buffer the alignment of a cmsghdr.
    let mut control = [0u64; RECORD_TYPE_CMSG_SPACE.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain integers and pointers, for which all-zero is a valid value (no
    // name, no iovec, no control) before the fields are filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = RECORD_TYPE_CMSG_SPACE as _;
    // SAFETY: msg_control points at `control`, which is RECORD_TYPE_CMSG_SPACE bytes or more and
    // aligned for cmsghdr, so CMSG_FIRSTHDR returns a header inside it with room for CMSG_LEN(1).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = record_type;
    }
    loop {
        // SAFETY: `msg` points at `iov` (describing `payload`, only read by the kernel) and at
        // `control`; all three outlive the call, and `sock` is an open descriptor.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Send close_notify as an alert record (RFC 8446 section 6.1), the end of a kTLS transfer.
pub fn send_close_notify(sock: BorrowedFd<'_>) -> io::Result<()> {
    send_record(sock, RECORD_ALERT, &CLOSE_NOTIFY).map(drop)
}

/// What this kernel offloads: for each version, the ciphers whose TX keys it took in the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Support {
    tls12: [bool; 3],
    tls13: [bool; 3],
}

impl Support {
    pub fn offloads(&self, version: Version, cipher: Cipher) -> bool {
        let i = Cipher::ALL.iter().position(|c| *c == cipher).unwrap_or(0);
        match version {
            Version::Tls12 => self.tls12[i],
            Version::Tls13 => self.tls13[i],
        }
    }

    /// "TLS 1.2 AES-GCM-128, ...": what a log line names.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        for (version, set) in [("TLS 1.2", &self.tls12), ("TLS 1.3", &self.tls13)] {
            let names: Vec<&str> = Cipher::ALL
                .iter()
                .zip(set)
                .filter(|(_, on)| **on)
                .map(|(c, _)| c.name())
                .collect();
            if !names.is_empty() {
                out.push(format!("{version} {}", names.join("/")));
            }
        }
        out.join(", ")
    }
}

/// A connected loopback TCP pair (the server side is what the probe configures).
fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((server, client))
}

/// Which versions and ciphers this kernel takes TX keys for: one loopback pair per candidate,
/// `TCP_ULP "tls"` and `TLS_TX` with an all-zero key (nothing is ever sent with it). Run once at
/// start-up, off the shards. `Err` when the kernel has no `tls` module or none is offloaded.
pub fn probe() -> Result<Support, KtlsError> {
    let os = |call| {
        move |e: io::Error| KtlsError::Os {
            call,
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    };
    let mut support = Support::default();
    let mut last = None;
    for version in [Version::Tls12, Version::Tls13] {
        for (i, cipher) in Cipher::ALL.into_iter().enumerate() {
            let (server, _client) = loopback_pair().map_err(os("loopback pair"))?;
            attach(&server)?;
            let zero = [0u8; 32];
            let info = CryptoInfo::new(version, cipher, &zero[..cipher.key_len()], &[0; 12], 0)
                .expect("lengths from the cipher");
            match set_tx(&server, &info) {
                Ok(()) => match version {
                    Version::Tls12 => support.tls12[i] = true,
                    Version::Tls13 => support.tls13[i] = true,
                },
                Err(e) => last = Some(e),
            }
        }
    }
    if support == Support::default() {
        return Err(match last {
            Some(KtlsError::Os { .. }) | None => KtlsError::Cipher("any cipher"),
            Some(e) => e,
        });
    }
    Ok(support)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_info_layouts_are_the_kernels() {
        // uapi/linux/tls.h: 4 bytes of version and cipher, then iv, key, salt, rec_seq.
        assert_eq!(size_of::<libc::tls_crypto_info>(), 4);
        assert_eq!(
            size_of::<libc::tls12_crypto_info_aes_gcm_128>(),
            4 + 8 + 16 + 4 + 8
        );
        assert_eq!(
            size_of::<libc::tls12_crypto_info_aes_gcm_256>(),
            4 + 8 + 32 + 4 + 8
        );
        assert_eq!(
            size_of::<libc::tls12_crypto_info_chacha20_poly1305>(),
            4 + 12 + 32 + 8
        );
        assert_eq!(
            std::mem::offset_of!(libc::tls12_crypto_info_aes_gcm_128, iv),
            4
        );
        assert_eq!(
            std::mem::offset_of!(libc::tls12_crypto_info_aes_gcm_128, rec_seq),
            32
        );
        assert_eq!(libc::SOL_TLS, 282);
        assert_eq!((libc::TLS_TX, libc::TLS_SET_RECORD_TYPE), (1, 1));
        assert_eq!(
            (libc::TLS_1_2_VERSION, libc::TLS_1_3_VERSION),
            (0x0303, 0x0304)
        );
    }

    fn fields(info: &CryptoInfo) -> (u16, u16, Vec<u8>, Vec<u8>, Vec<u8>, [u8; 8]) {
        match info.0 {
            sockopt::TlsCryptoInfo::Aes128Gcm(i) => (
                i.info.version,
                i.info.cipher_type,
                i.key.to_vec(),
                i.salt.to_vec(),
                i.iv.to_vec(),
                i.rec_seq,
            ),
            sockopt::TlsCryptoInfo::Aes256Gcm(i) => (
                i.info.version,
                i.info.cipher_type,
                i.key.to_vec(),
                i.salt.to_vec(),
                i.iv.to_vec(),
                i.rec_seq,
            ),
            sockopt::TlsCryptoInfo::Chacha20Poly1305(i) => (
                i.info.version,
                i.info.cipher_type,
                i.key.to_vec(),
                Vec::new(),
                i.iv.to_vec(),
                i.rec_seq,
            ),
        }
    }

    #[test]
    fn keys_split_into_salt_iv_and_sequence() {
        let iv: Vec<u8> = (1..=12).collect();
        let key = [7u8; 16];
        let info = CryptoInfo::new(Version::Tls13, Cipher::Aes128Gcm, &key, &iv, 0x0102).unwrap();
        let (version, cipher, k, salt, explicit, seq) = fields(&info);
        assert_eq!((version, cipher), (0x0304, 51));
        assert_eq!(k, key);
        assert_eq!(salt, [1, 2, 3, 4]);
        assert_eq!(explicit, [5, 6, 7, 8, 9, 10, 11, 12], "TLS 1.3: unchanged");
        assert_eq!(seq, [0, 0, 0, 0, 0, 0, 1, 2], "big-endian sequence number");

        let key = [9u8; 32];
        let info = CryptoInfo::new(Version::Tls12, Cipher::Aes256Gcm, &key, &iv, 1).unwrap();
        let (version, cipher, _, salt, explicit, _) = fields(&info);
        assert_eq!((version, cipher), (0x0303, 52));
        assert_eq!(salt, [1, 2, 3, 4]);
        assert_eq!(
            explicit,
            [5 ^ 0x80, 6, 7, 8, 9, 10, 11, 12],
            "TLS 1.2 GCM: the kernel's nonce count starts away from rustls's"
        );

        let info = CryptoInfo::new(Version::Tls12, Cipher::Chacha20Poly1305, &key, &iv, 3).unwrap();
        let (_, cipher, _, salt, whole, seq) = fields(&info);
        assert_eq!(cipher, 54);
        assert!(salt.is_empty());
        assert_eq!(whole, iv, "ChaCha20: the whole 12-byte IV");
        assert_eq!(seq[7], 3);
    }

    #[test]
    fn dropped_keys_are_wiped() {
        for cipher in [
            Cipher::Aes128Gcm,
            Cipher::Aes256Gcm,
            Cipher::Chacha20Poly1305,
        ] {
            let key = vec![0xA5; cipher.key_len()];
            let mut info = CryptoInfo::new(Version::Tls13, cipher, &key, &[0x5A; 12], 7).unwrap();
            let (_, _, k, _, _, _) = fields(&info);
            assert!(k.iter().all(|&b| b == 0xA5), "{}", cipher.name());
            info.wipe();
            let (_, _, k, salt, iv, _) = fields(&info);
            assert!(
                k.iter().chain(&salt).chain(&iv).all(|&b| b == 0),
                "{}",
                cipher.name()
            );
        }
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let e = CryptoInfo::new(Version::Tls13, Cipher::Aes256Gcm, &[0; 16], &[0; 12], 0);
        assert_eq!(e.err().map(|e| e.key), Some(16));
        assert!(CryptoInfo::new(Version::Tls13, Cipher::Aes128Gcm, &[0; 16], &[0; 8], 0).is_err());
    }

    /// The nonces of the kernel's TLS 1.2 GCM records never meet those rustls used first.
    #[test]
    fn tls12_nonce_sequences_do_not_meet() {
        for start in [
            0u64,
            1,
            0x7fff_ffff_ffff_ffff,
            u64::MAX,
            0x8000_0000_0000_0001,
        ] {
            let kernel = start ^ (1 << 63);
            let rustls: Vec<u64> = (0..4).map(|s| start ^ s).collect();
            for n in 0..1000u64 {
                assert!(!rustls.contains(&kernel.wrapping_add(n)), "{start:x} {n}");
            }
        }
    }

    #[test]
    fn received_records_are_told_apart_by_type() {
        assert_eq!(classify(Some(23), b"abc"), Incoming::Data(3));
        assert_eq!(
            classify(Some(23), b""),
            Incoming::Data(0),
            "an empty data record"
        );
        assert_eq!(classify(None, b""), Incoming::Eof, "no record: TCP ended");
        assert_eq!(classify(None, b"ab"), Incoming::Data(2));
        assert_eq!(classify(Some(21), &CLOSE_NOTIFY), Incoming::CloseNotify);
        // A fatal close_notify (level 2) still closes; another description is an error.
        assert_eq!(classify(Some(21), &[2, 0]), Incoming::CloseNotify);
        assert_eq!(classify(Some(21), &[2, 20]), Incoming::Alert(2, 20));
        assert_eq!(
            classify(Some(21), &[1]),
            Incoming::Alert(0, 0),
            "short alert"
        );
        // A TLS 1.3 KeyUpdate: handshake type 24, length 1, update_requested.
        assert_eq!(classify(Some(22), &[24, 0, 0, 1, 1]), Incoming::Handshake);
        assert_eq!(classify(Some(20), &[1]), Incoming::Other(20));
    }

    #[test]
    fn the_probe_agrees_with_a_plain_attach() {
        // Without CONFIG_TLS (this build host) both say NoModule; with it, the ULP attaches and
        // at least one cipher is offloaded.
        let (server, _client) = loopback_pair().unwrap();
        match (probe(), attach(&server)) {
            (Ok(s), Ok(())) => assert!(!s.describe().is_empty()),
            (Err(KtlsError::NoModule), Err(KtlsError::NoModule)) => {}
            (p, a) => panic!("probe {p:?} but attach {a:?}"),
        }
    }
}
