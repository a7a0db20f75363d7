//! The log records a shard produces: one per finished file transfer (RETR, STOR, APPE, STOU; not
//! listings) once its final reply is known, and one per ended session. Each is built once, from
//! what the session already holds, and handed to the log thread without blocking
//! (`logging::transfer` / `logging::session`); nothing here runs per chunk.

use super::transfer::{Protection, Transfer};
use super::{Conn, Shard};
use crate::logging::{self, DataTls, Direction, SessionRecord, TransferRecord};
use crate::proto::reply::ReplyCode;

/// Bits of a session id below the shard index: 2^48 sessions per shard before the sequence wraps.
const SESSION_SEQ_BITS: u32 = 48;

/// A session id unique across the shards of this process without any shared counter: the shard
/// index in the top 16 bits, the shard's own session sequence below.
pub(super) fn session_id(shard: usize, seq: u64) -> u64 {
    (shard as u64) << SESSION_SEQ_BITS | (seq & ((1 << SESSION_SEQ_BITS) - 1))
}

/// The file transfer commands the transfer log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileVerb {
    Retr,
    /// STOR, and REST + STOR.
    Stor,
    Appe,
    Stou,
}

impl FileVerb {
    pub(super) fn command(self) -> &'static str {
        match self {
            FileVerb::Retr => "RETR",
            FileVerb::Stor => "STOR",
            FileVerb::Appe => "APPE",
            FileVerb::Stou => "STOU",
        }
    }

    pub(super) fn direction(self) -> Direction {
        match self {
            FileVerb::Retr => Direction::Outgoing,
            FileVerb::Stor | FileVerb::Appe | FileVerb::Stou => Direction::Incoming,
        }
    }
}

/// Why a session ended, as its record says. The first reason decided wins (a QUIT whose 221
/// cannot be written is still a quit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed the control connection (EOF).
    Closed,
    /// No command within `idle_timeout`.
    IdleTimeout,
    /// Not logged in within `login_timeout`.
    LoginTimeout,
    /// Refused by a limit after it started: too many sessions of its user, too many failed
    /// logins from its client, a full login queue.
    Limit,
    /// The control connection failed (read or write error, reset), or the client broke a limit
    /// (too many queued commands, replies it does not read).
    Error,
    /// The server stopped.
    Shutdown,
    /// The client spoke another protocol: an HTTP request line on the control connection, or
    /// a TLS handshake that failed (bytes that are not TLS on an implicit TLS session).
    Protocol,
}

impl EndReason {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            EndReason::Quit => "quit",
            EndReason::Closed => "closed",
            EndReason::IdleTimeout => "idle-timeout",
            EndReason::LoginTimeout => "login-timeout",
            EndReason::Limit => "limit",
            EndReason::Error => "error",
            EndReason::Shutdown => "shutdown",
            EndReason::Protocol => "protocol",
        }
    }
}

/// A session's totals over its file transfers (those in the transfer log; listings are not
/// counted), updated once as each ends.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Totals {
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) transfers: u32,
}

impl Shard {
    /// A transfer ended and `reply` is the final reply the client got for it (226, or
    /// 425/426/451/...): count it in the session's totals and queue its log record. Listings,
    /// and transfers that never got their file (a failed open is a plain 550), are not logged.
    pub(super) fn log_transfer(&self, conn: &mut Conn, t: &Transfer, reply: ReplyCode) {
        let Some(verb) = t.verb() else { return };
        if !t.has_file() {
            return;
        }
        let direction = verb.direction();
        let bytes = t.bytes();
        match direction {
            Direction::Incoming => conn.totals.bytes_in += bytes,
            Direction::Outgoing => conn.totals.bytes_out += bytes,
        }
        conn.totals.transfers = conn.totals.transfers.saturating_add(1);
        if !logging::wants_transfers() {
            return;
        }
        let anonymous_password = conn.session.anonymous_password();
        logging::transfer(TransferRecord {
            session: conn.id,
            start: t.started_at(),
            duration: t.duration(self.now),
            client: conn.peer,
            user: conn.session.user().unwrap_or_default().to_vec(),
            anonymous: anonymous_password.is_some(),
            anonymous_password: anonymous_password.unwrap_or_default().to_vec(),
            command: verb.command(),
            path: t.what().to_vec(),
            bytes,
            direction,
            ascii: t.ascii(),
            complete: reply == ReplyCode::ClosingDataConnection,
            reply_code: reply.as_u16(),
            tls: match t.protection {
                Protection::Clear => DataTls::None,
                Protection::Rustls => DataTls::Rustls,
                Protection::Kernel => DataTls::Kernel,
            },
        });
    }

    /// The session is closing: queue its record.
    pub(super) fn log_session(&self, conn: &Conn, reason: EndReason) {
        if !logging::wants_sessions() {
            return;
        }
        logging::session(SessionRecord {
            session: conn.id,
            client: conn.peer,
            user: conn.session.user().map(<[u8]>::to_vec),
            anonymous: conn.session.is_anonymous(),
            start: conn.started_at,
            duration: self.now.saturating_duration_since(conn.started),
            bytes_in: conn.totals.bytes_in,
            bytes_out: conn.totals.bytes_out,
            transfers: conn.totals.transfers,
            result: reason.as_str(),
            reply_code: conn.last_reply.map(ReplyCode::as_u16),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_differ_across_shards_and_sequences() {
        assert_eq!(session_id(0, 1), 1);
        assert_eq!(session_id(1, 1), (1 << 48) | 1);
        assert_ne!(session_id(1, 5), session_id(2, 5));
        // The sequence wraps inside its own bits, never into the next shard's.
        assert_eq!(session_id(3, 1 << 48), 3 << 48);
    }

    #[test]
    fn verbs_and_reasons_spell_as_logged() {
        assert_eq!(FileVerb::Retr.command(), "RETR");
        assert_eq!(FileVerb::Stou.command(), "STOU");
        assert_eq!(FileVerb::Retr.direction(), Direction::Outgoing);
        assert_eq!(FileVerb::Appe.direction(), Direction::Incoming);
        let all = [
            EndReason::Quit,
            EndReason::Closed,
            EndReason::IdleTimeout,
            EndReason::LoginTimeout,
            EndReason::Limit,
            EndReason::Error,
            EndReason::Shutdown,
            EndReason::Protocol,
        ];
        let names: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "quit",
                "closed",
                "idle-timeout",
                "login-timeout",
                "limit",
                "error",
                "shutdown",
                "protocol"
            ]
        );
    }
}
