//! The session's side of the conversation with the server: the `Effect`s it asks for, the
//! `Outcome`s it is told about, and the `Step` it answers each command or outcome with.

use std::net::SocketAddr;
use std::time::Duration;

use super::Rights;
use crate::proto::command::ListFormat;
use crate::proto::entry::Entry;
use crate::proto::error::FileError;
use crate::proto::listing::{Facts, Visibility};
use crate::proto::path::VirtualPath;
use crate::proto::reply::{Reply, ReplyCode};

/// How an upload is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreMode {
    /// STOR: to a temporary name, renamed into place when the data connection closed cleanly.
    /// `exclusive` refuses to replace an existing file (anonymous drop box).
    Atomic { exclusive: bool },
    /// APPE: in place, at the end.
    Append,
    /// REST n + STOR: in place from offset n (resuming an interrupted upload).
    At(u64),
    /// STOU: a new file with a name the server picks in `path` (a directory); `base` starts it.
    Unique { base: Vec<u8> },
}

/// Filesystem changes that need no data connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    Delete(VirtualPath),
    Mkdir { path: VirtualPath, umask: u32 },
    Rmdir(VirtualPath),
    Rename { from: VirtualPath, to: VirtualPath },
    Chmod { path: VirtualPath, mode: u32 },
    SetMtime { path: VirtualPath, secs: i64 },
}

/// Where a listing goes: over a data connection (LIST/NLST/MLSD) or inline in a STAT reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListTarget {
    Data,
    Control,
}

/// Work the server must do before the session can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send the replies, then close the control connection.
    Close,
    /// Close any data listener/connection and listen on a fresh passive port.
    Passive,
    /// Close any data listener; the next transfer connects to this address.
    Active(SocketAddr),
    /// Stat a path and report `Outcome::Stat`.
    Stat(VirtualPath),
    /// Open `path` and send it from `offset` over the data connection.
    Retr {
        path: VirtualPath,
        offset: u64,
        ascii: bool,
    },
    /// Produce a listing of `path` and send it (Data) or stream it over the control connection and report `Outcome::Listed` (Control).
    /// `writable`: the MLSD `perm` facts offer write operations. `show`: which entries appear
    /// (upload temporary files never do). `itself` (`ls -d`): list `path` itself, under this name.
    List {
        path: VirtualPath,
        format: ListFormat,
        facts: Facts,
        target: ListTarget,
        writable: bool,
        show: Visibility,
        itself: Option<Vec<u8>>,
    },
    /// Abort the transfer in progress (if any) and close the data channel; report `Outcome::Aborted`.
    Abort,
    /// Check a named user's password (slowly, off the shard); report `Outcome::Login`.
    Authenticate { user: Vec<u8>, password: Vec<u8> },
    /// Receive a file over the data connection into `path`; report like a transfer.
    Store {
        path: VirtualPath,
        mode: StoreMode,
        ascii: bool,
        umask: u32,
    },
    /// Change the filesystem; report `Outcome::Fs`.
    Fs(FsOp),
    /// STAT during a transfer: answer at once with `Session::transfer_status` and the transfer's
    /// `Progress`. No outcome follows and the transfer goes on.
    TransferStatus,
    /// AUTH TLS was accepted: once the 234 is written, the control connection speaks TLS.
    /// Every byte received before the handshake and not yet run is discarded (RFC 4217
    /// section 4; STARTTLS command injection, CVE-2011-0411 and CVE-2011-1575). No outcome follows.
    StartTls,
}

/// How far the running transfer has got, as the server counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes sent (downloads, listings) or received (uploads) over the data connection so far.
    pub bytes: u64,
    /// Bytes the whole transfer will carry, where known (a binary RETR: the file size less the
    /// REST offset); unknown for uploads, listings and TYPE A.
    pub total: Option<u64>,
    /// Time since the transfer began.
    pub elapsed: Duration,
    /// `PROT P`: what encrypts the data connection ("TLS in user space", "kernel TLS, sendfile"),
    /// shown as a line of its own; `None` in clear.
    pub protection: Option<&'static str>,
}

/// Why a transfer did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferError {
    /// The file or directory could not be opened.
    File(FileError),
    /// No data connection could be made (timeout, refused, wrong peer).
    NoDataConnection,
    /// The peer closed or reset the data connection mid-transfer.
    ConnectionLost,
    /// The file shrank while it was being sent.
    FileChanged,
    /// A local read error.
    Local(i32),
    /// `PROT P`: the data connection's TLS handshake failed.
    TlsHandshake,
    /// `PROT P`: the data connection made a full TLS handshake instead of resuming the control
    /// connection's session, so it may come from someone else (port stealing under TLS).
    TlsNotResumed,
    /// `PROT P` upload: the data connection closed without a TLS close_notify, so the file may
    /// be cut short by an attacker or a broken path (RFC 4217 section 12.6).
    TlsTruncated,
    /// `PROT P` upload through kernel TLS: the client sent a handshake message (a TLS 1.3
    /// KeyUpdate) after the hand-off; the kernel cannot take its new keys, so the transfer
    /// stops before a byte it could not decrypt reaches the file.
    TlsRekey,
}

/// Results of effects, reported by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passive listener ready: the address to advertise (the control connection's local IP) and port.
    PassiveReady(SocketAddr),
    PassiveFailed,
    Stat(Result<Entry, FileError>),
    /// A `ListTarget::Control` listing (STAT <path>) has gone out, streamed by the server in
    /// pieces after `stat_listing_head` (Ok: the reply's last line is due), or failed before any
    /// of it was sent.
    Listed(Result<(), FileError>),
    /// The data connection is up and the transfer begins; `size` is known for downloads, `name`
    /// is the name the server picked for STOU.
    TransferStarting {
        size: Option<u64>,
        name: Option<VirtualPath>,
    },
    TransferDone,
    TransferFailed(TransferError),
    /// `Effect::Abort` ran; `transfer_was_active` says whether a transfer was cut short.
    Aborted {
        transfer_was_active: bool,
    },
    /// The result of `Effect::Authenticate`: the user's rights, or `None` for a failed login.
    Login(Option<Rights>),
    Fs(Result<(), FileError>),
}

/// The session's answer to a command or an outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub replies: Vec<Reply>,
    pub effect: Option<Effect>,
}

impl Step {
    pub(super) fn reply(code: ReplyCode, text: impl Into<Vec<u8>>) -> Step {
        Step {
            replies: vec![Reply::new(code, text)],
            effect: None,
        }
    }

    pub(super) fn effect(effect: Effect) -> Step {
        Step {
            replies: Vec::new(),
            effect: Some(effect),
        }
    }
}
