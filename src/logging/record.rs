//! What a shard hands the log thread: finished transfers and sessions as plain owned data.
//!
//! Building a record costs a few copies of bytes the session already holds; all formatting
//! (local time, escaping, JSON) happens later on the log thread, so a shard never pays for it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// Which way a transfer's bytes went, seen from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: STOR, APPE, STOU.
    Incoming,
    /// Server to client: RETR.
    Outgoing,
}

/// One finished file transfer, complete or not. Built once the data connection is closed and
/// the final reply is known, so the log line follows the 226/426/451 (style.md, "Replies in
/// RFC order").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRecord {
    /// The session's id, the same as in its [`SessionRecord`].
    pub session: u64,
    /// Wall-clock time the transfer started.
    pub start: SystemTime,
    /// How long it ran (monotonic clock on the shard).
    pub duration: Duration,
    /// The control connection's peer.
    pub client: SocketAddr,
    /// The login name (for anonymous users the name they typed, e.g. `anonymous`).
    pub user: Vec<u8>,
    /// Logged in as the anonymous principal.
    pub anonymous: bool,
    /// The password an anonymous user gave (conventionally an e-mail address); empty otherwise.
    pub anonymous_password: Vec<u8>,
    /// The verb: `"RETR"`, `"STOR"`, `"APPE"` or `"STOU"`.
    pub command: &'static str,
    /// The virtual absolute path as the user sees it (never the host path).
    pub path: Vec<u8>,
    /// Bytes moved on the data connection.
    pub bytes: u64,
    /// Which way they went.
    pub direction: Direction,
    /// `TYPE A` (line endings converted) rather than `TYPE I`.
    pub ascii: bool,
    /// The whole file went through and the client got a 226.
    pub complete: bool,
    /// The final reply the client got for this transfer (226, 426, 451, ...).
    pub reply_code: u16,
    /// What protected the data connection: nothing, rustls, or kernel TLS.
    pub tls: DataTls,
}

/// A transfer's data connection protection, as the JSON log names it (`"tls"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataTls {
    /// `PROT C`.
    None,
    /// `PROT P` through rustls in user space.
    Rustls,
    /// `PROT P` handed to kernel TLS after the handshake (zero-copy paths).
    Kernel,
}

impl DataTls {
    pub fn as_str(self) -> &'static str {
        match self {
            DataTls::None => "none",
            DataTls::Rustls => "rustls",
            DataTls::Kernel => "kernel",
        }
    }
}

/// One ended control session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's id, the same as in its [`TransferRecord`]s.
    pub session: u64,
    /// The control connection's peer.
    pub client: SocketAddr,
    /// The login name, if the client ever logged in.
    pub user: Option<Vec<u8>>,
    /// Logged in as the anonymous principal.
    pub anonymous: bool,
    /// Wall-clock time the control connection was accepted.
    pub start: SystemTime,
    /// How long the session lasted.
    pub duration: Duration,
    /// Bytes received over data connections.
    pub bytes_in: u64,
    /// Bytes sent over data connections.
    pub bytes_out: u64,
    /// Transfers started, complete or not.
    pub transfers: u32,
    /// Why it ended: `"quit"`, `"closed"`, `"idle-timeout"`, `"login-timeout"`, `"limit"`, `"shutdown"`, `"protocol"`, ...
    pub result: &'static str,
    /// The last reply sent (221 after QUIT, 421 on timeout or shutdown), if any.
    pub reply_code: Option<u16>,
}

impl TransferRecord {
    /// When the transfer ended: xferlog's `current-time` is the end, not the start.
    pub fn end(&self) -> DateTime<Utc> {
        end_time(self.start, self.duration)
    }
}

impl SessionRecord {
    /// When the session ended.
    pub fn end(&self) -> DateTime<Utc> {
        end_time(self.start, self.duration)
    }
}

/// `start + duration` as a calendar time, saturating instead of panicking on times chrono
/// cannot represent (a record is input like any other and must not crash the log thread).
pub(crate) fn end_time(start: SystemTime, duration: Duration) -> DateTime<Utc> {
    utc(start.checked_add(duration).unwrap_or(start))
}

/// A `SystemTime` as a UTC calendar time; before 1970 or beyond chrono's range it clamps to the
/// epoch or chrono's maximum rather than panicking as `DateTime::from(SystemTime)` can.
pub(crate) fn utc(t: SystemTime) -> DateTime<Utc> {
    let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        // A clock set before 1970: not worth a negative timestamp in a log.
        Err(_) => (0, 0),
    };
    DateTime::from_timestamp(secs, nanos).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The client's address as logs show it: an IPv4 client on a dual-stack listener arrives as
/// `::ffff:a.b.c.d`, logged as plain `a.b.c.d` so one client has one spelling.
pub(crate) fn client_ip(addr: &SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// One record both formatters' tests start from.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::time::{Duration, SystemTime};

    use super::{Direction, TransferRecord};

    /// 2026-12-01 21:14:14 UTC, a Tuesday.
    pub const DEC_1: u64 = 1_796_159_654;

    /// An anonymous 1 MiB download that ended at `DEC_1` + 0.4 s.
    pub fn download() -> TransferRecord {
        TransferRecord {
            session: 7,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(DEC_1 - 3),
            duration: Duration::from_millis(3_400),
            client: "192.0.2.7:50123".parse().unwrap(),
            user: b"anonymous".to_vec(),
            anonymous: true,
            anonymous_password: b"guest@example.org".to_vec(),
            command: "RETR",
            path: b"/pub/file.iso".to_vec(),
            bytes: 1_048_576,
            direction: Direction::Outgoing,
            ascii: false,
            complete: true,
            reply_code: 226,
            tls: super::DataTls::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_is_start_plus_duration() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let end = end_time(start, Duration::from_millis(2_500));
        assert_eq!(end.timestamp(), 1_002);
        assert_eq!(end.timestamp_subsec_millis(), 500);
    }

    #[test]
    fn out_of_range_times_do_not_panic() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(utc(before).timestamp(), 0);
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(utc(far), DateTime::<Utc>::MAX_UTC);
        // start + duration overflowing SystemTime keeps the start.
        let _ = end_time(far, Duration::MAX);
    }

    #[test]
    fn mapped_ipv4_is_logged_as_ipv4() {
        let a: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        assert_eq!(client_ip(&a).to_string(), "192.0.2.7");
        let b: SocketAddr = "[2001:db8::1]:21".parse().unwrap();
        assert_eq!(client_ip(&b).to_string(), "2001:db8::1");
    }
}
