//! JSON lines: one object per finished transfer, per ended session, and per batch of dropped
//! records, for log pipelines that want typed fields rather than xferlog's columns.
//!
//! Conventions (every object):
//! - `"type"`: `"transfer"`, `"session"` or `"dropped"`; `"time"`: when the thing ended, RFC 3339
//!   in UTC with milliseconds (`2026-12-01T21:14:14.123Z`); `"start"` likewise.
//! - Durations are `"duration_s"`, seconds as a number with microsecond resolution (`3.4`),
//!   and throughput `"bytes_per_sec"` an integer, `null` for a zero duration.
//! - Names (paths, users) are bytes on the wire. Valid UTF-8 is written as is (serde_json escapes
//!   quotes and control characters, so every object stays on one line). Otherwise the field holds
//!   the lossy text (each bad sequence as U+FFFD) so it is still readable, and a sibling
//!   `"<field>_hex"` holds the exact bytes in lower-case hex, so nothing is lost.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::record::{Direction, SessionRecord, TransferRecord, client_ip, utc};

/// Appends the `"type":"transfer"` line (with its `\n`) for `rec` to `out`.
pub fn write_transfer(rec: &TransferRecord, out: &mut Vec<u8>) {
    let (user, user_hex) = text(&rec.user);
    let (password, password_hex) = if rec.anonymous {
        let (p, hex) = text(&rec.anonymous_password);
        (Some(p), hex)
    } else {
        (None, None)
    };
    let (path, path_hex) = text(&rec.path);
    let line = Transfer {
        kind: "transfer",
        time: Rfc3339(rec.end()),
        start: Rfc3339(utc(rec.start)),
        session: rec.session,
        client_ip: client_ip(&rec.client),
        client_port: rec.client.port(),
        user,
        user_hex,
        anonymous: rec.anonymous,
        anonymous_password: password,
        anonymous_password_hex: password_hex,
        command: rec.command,
        path,
        path_hex,
        direction: match rec.direction {
            Direction::Incoming => "in",
            Direction::Outgoing => "out",
        },
        mode: if rec.ascii { "ascii" } else { "binary" },
        bytes: rec.bytes,
        duration_s: seconds(rec.duration),
        bytes_per_sec: throughput(rec.bytes, rec.duration),
        result: if rec.complete { "ok" } else { "incomplete" },
        reply_code: rec.reply_code,
        tls: rec.tls.as_str(),
    };
    push(out, &line);
}

/// Appends the `"type":"session"` line (with its `\n`) for `rec` to `out`.
pub fn write_session(rec: &SessionRecord, out: &mut Vec<u8>) {
    let (user, user_hex) = match rec.user.as_deref() {
        Some(u) => {
            let (u, hex) = text(u);
            (Some(u), hex)
        }
        None => (None, None),
    };
    let line = Session {
        kind: "session",
        time: Rfc3339(rec.end()),
        start: Rfc3339(utc(rec.start)),
        session: rec.session,
        client_ip: client_ip(&rec.client),
        client_port: rec.client.port(),
        user,
        user_hex,
        anonymous: rec.anonymous,
        duration_s: seconds(rec.duration),
        bytes_in: rec.bytes_in,
        bytes_out: rec.bytes_out,
        transfers: rec.transfers,
        result: rec.result,
        reply_code: rec.reply_code,
    };
    push(out, &line);
}

/// Appends a `"type":"dropped"` line: `count` records were lost to a full queue before `now`,
/// so a consumer of this file knows it has a gap.
pub fn write_dropped(count: u64, now: DateTime<Utc>, out: &mut Vec<u8>) {
    push(
        out,
        &Dropped {
            kind: "dropped",
            time: Rfc3339(now),
            count,
        },
    );
}

#[derive(Serialize)]
struct Transfer<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: Rfc3339,
    start: Rfc3339,
    session: u64,
    client_ip: IpAddr,
    client_port: u16,
    user: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_hex: Option<String>,
    anonymous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous_password: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous_password_hex: Option<String>,
    command: &'static str,
    path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    direction: &'static str,
    mode: &'static str,
    bytes: u64,
    duration_s: f64,
    bytes_per_sec: Option<u64>,
    result: &'static str,
    reply_code: u16,
    tls: &'static str,
}

#[derive(Serialize)]
struct Session<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: Rfc3339,
    start: Rfc3339,
    session: u64,
    client_ip: IpAddr,
    client_port: u16,
    user: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_hex: Option<String>,
    anonymous: bool,
    duration_s: f64,
    bytes_in: u64,
    bytes_out: u64,
    transfers: u32,
    result: &'static str,
    reply_code: Option<u16>,
}

#[derive(Serialize)]
struct Dropped {
    #[serde(rename = "type")]
    kind: &'static str,
    time: Rfc3339,
    count: u64,
}

/// A UTC time written as RFC 3339 with milliseconds, formatted straight into the output.
struct Rfc3339(DateTime<Utc>);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// Serialises `value` and a newline onto `out`, or nothing at all: a failure (none is expected
/// writing to a Vec) must not leave half an object that would corrupt the next line.
fn push<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_ok() {
        out.push(b'\n');
    } else {
        out.truncate(mark);
    }
}

/// The text of a name, and its exact bytes in hex when they are not UTF-8.
fn text(raw: &[u8]) -> (Cow<'_, str>, Option<String>) {
    match std::str::from_utf8(raw) {
        Ok(s) => (Cow::Borrowed(s), None),
        Err(_) => {
            let mut hex = String::with_capacity(raw.len() * 2);
            for b in raw {
                let _ = write!(hex, "{b:02x}");
            }
            (String::from_utf8_lossy(raw), Some(hex))
        }
    }
}

/// Seconds with microsecond resolution, so short transfers print as `0.0125`, not a long tail
/// of binary fraction digits.
fn seconds(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e6
}

/// Bytes per second, `None` when no time elapsed (rather than an infinity JSON cannot hold).
fn throughput(bytes: u64, d: Duration) -> Option<u64> {
    if d.is_zero() {
        return None;
    }
    // `as` saturates: an absurd rate from a 1 ns transfer cannot overflow.
    Some((bytes as f64 / d.as_secs_f64()).round() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::{Value, json};

    use super::*;

    use crate::logging::record::fixtures::DEC_1;

    /// The shared download, with a byte count that makes an even rate over its 3.4 s.
    fn download() -> TransferRecord {
        TransferRecord {
            bytes: 1_700_000,
            ..crate::logging::record::fixtures::download()
        }
    }

    fn session() -> SessionRecord {
        SessionRecord {
            session: 7,
            client: "[2001:db8::5]:40000".parse().unwrap(),
            user: Some(b"alice".to_vec()),
            anonymous: false,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(DEC_1 - 60),
            duration: Duration::from_micros(60_250_000),
            bytes_in: 42,
            bytes_out: 1_700_000,
            transfers: 2,
            result: "quit",
            reply_code: Some(221),
        }
    }

    /// Exactly one line, parsed back.
    fn parse(out: &[u8]) -> Value {
        let s = std::str::from_utf8(out).expect("JSON lines are UTF-8");
        assert!(s.ends_with('\n'), "{s:?}");
        assert_eq!(s.matches('\n').count(), 1, "{s:?}");
        serde_json::from_str(s).expect("valid JSON")
    }

    fn transfer_json(rec: &TransferRecord) -> Value {
        let mut out = Vec::new();
        write_transfer(rec, &mut out);
        parse(&out)
    }

    #[test]
    fn anonymous_download_fields() {
        let v = transfer_json(&download());
        assert_eq!(
            v,
            json!({
                "type": "transfer",
                "time": "2026-12-01T21:14:14.400Z",
                "start": "2026-12-01T21:14:11.000Z",
                "session": 7,
                "client_ip": "192.0.2.7",
                "client_port": 50123,
                "user": "anonymous",
                "anonymous": true,
                "anonymous_password": "guest@example.org",
                "command": "RETR",
                "path": "/pub/file.iso",
                "direction": "out",
                "mode": "binary",
                "bytes": 1_700_000,
                "duration_s": 3.4,
                "bytes_per_sec": 500_000,
                "result": "ok",
                "reply_code": 226,
                "tls": "none",
            })
        );
    }

    #[test]
    fn named_upload_incomplete_has_no_password_field() {
        let rec = TransferRecord {
            user: b"alice".to_vec(),
            anonymous: false,
            anonymous_password: Vec::new(),
            command: "STOR",
            direction: Direction::Incoming,
            ascii: true,
            complete: false,
            reply_code: 451,
            ..download()
        };
        let v = transfer_json(&rec);
        assert_eq!(v["user"], "alice");
        assert_eq!(v["anonymous"], false);
        assert!(v.get("anonymous_password").is_none());
        assert_eq!(v["command"], "STOR");
        assert_eq!(v["direction"], "in");
        assert_eq!(v["mode"], "ascii");
        assert_eq!(v["result"], "incomplete");
        assert_eq!(v["reply_code"], 451);
    }

    #[test]
    fn quotes_newlines_and_controls_round_trip_on_one_line() {
        let name = "/pub/a \"b\"\n\\c\t\u{0}\u{7f}\u{2028}.txt";
        let rec = TransferRecord {
            path: name.as_bytes().to_vec(),
            ..download()
        };
        let v = transfer_json(&rec);
        assert_eq!(v["path"], name);
        assert!(v.get("path_hex").is_none());
    }

    #[test]
    fn non_utf8_name_is_lossy_text_plus_exact_hex() {
        let rec = TransferRecord {
            path: b"/pub/caf\xe9".to_vec(),
            user: b"\xff".to_vec(),
            ..download()
        };
        let v = transfer_json(&rec);
        assert_eq!(v["path"], "/pub/caf\u{fffd}");
        assert_eq!(v["path_hex"], "2f7075622f636166e9");
        assert_eq!(v["user"], "\u{fffd}");
        assert_eq!(v["user_hex"], "ff");
    }

    #[test]
    fn zero_duration_has_null_throughput() {
        let rec = TransferRecord {
            duration: Duration::ZERO,
            ..download()
        };
        let v = transfer_json(&rec);
        assert_eq!(v["duration_s"], 0.0);
        assert_eq!(v["bytes_per_sec"], Value::Null);
        let tiny = TransferRecord {
            duration: Duration::from_nanos(1),
            bytes: u64::MAX,
            ..download()
        };
        assert!(transfer_json(&tiny)["bytes_per_sec"].is_u64());
    }

    #[test]
    fn session_fields() {
        let mut out = Vec::new();
        write_session(&session(), &mut out);
        assert_eq!(
            parse(&out),
            json!({
                "type": "session",
                "time": "2026-12-01T21:14:14.250Z",
                "start": "2026-12-01T21:13:14.000Z",
                "session": 7,
                "client_ip": "2001:db8::5",
                "client_port": 40000,
                "user": "alice",
                "anonymous": false,
                "duration_s": 60.25,
                "bytes_in": 42,
                "bytes_out": 1_700_000,
                "transfers": 2,
                "result": "quit",
                "reply_code": 221,
            })
        );
    }

    #[test]
    fn session_without_login_or_reply() {
        let rec = SessionRecord {
            user: None,
            result: "idle-timeout",
            reply_code: None,
            client: "[::ffff:198.51.100.1]:1".parse().unwrap(),
            ..session()
        };
        let mut out = Vec::new();
        write_session(&rec, &mut out);
        let v = parse(&out);
        assert_eq!(v["user"], Value::Null);
        assert_eq!(v["reply_code"], Value::Null);
        assert_eq!(v["result"], "idle-timeout");
        assert_eq!(v["client_ip"], "198.51.100.1");
    }

    #[test]
    fn dropped_line() {
        let mut out = Vec::new();
        let now = DateTime::from_timestamp(DEC_1 as i64, 5_000_000).unwrap();
        write_dropped(12, now, &mut out);
        assert_eq!(
            parse(&out),
            json!({"type": "dropped", "time": "2026-12-01T21:14:14.005Z", "count": 12})
        );
    }

    #[test]
    fn lines_append_after_existing_bytes() {
        let mut out = b"x\n".to_vec();
        write_transfer(&download(), &mut out);
        assert!(out.starts_with(b"x\n{\"type\":\"transfer\""));
    }
}
