//! wu-ftpd transfer log lines, per xferlog(5), as vsftpd and ProFTPD write them.
//!
//! ```text
//! Tue Dec  1 21:14:14 2026 1 192.0.2.7 1048576 /pub/a_b.iso b _ o a guest@example.org ftp 0 * c
//! ```
//!
//! Fields are separated by single spaces, so every free-text field (file name, user) is
//! sanitised: whitespace and control characters become `_` (ProFTPD's `xferlog_write`),
//! bytes that are not UTF-8 become `?` (vsftpd's mark for what it will not print), and valid
//! UTF-8 passes through, so the file is always valid UTF-8 with exactly 14 fields per line.
//! The exact bytes of a name are in the JSON log.

use std::fmt;
use std::io::Write as _;

use chrono::{DateTime, Local, TimeZone};

use super::record::{Direction, TransferRecord, client_ip};

/// Appends the xferlog line for `rec` (with its `\n`) to `out`, in the host's local time as
/// xferlog readers expect. Runs on the log thread: the time zone lookup never happens on a shard.
pub fn write_line(rec: &TransferRecord, out: &mut Vec<u8>) {
    write_line_in(rec, &rec.end().with_timezone(&Local), out);
}

/// [`write_line`] with the end time already in the zone to print, so tests are independent of
/// the machine's `TZ`.
pub fn write_line_in<Tz: TimeZone>(rec: &TransferRecord, end: &DateTime<Tz>, out: &mut Vec<u8>)
where
    Tz::Offset: fmt::Display,
{
    // Writing into a Vec cannot fail; the results are ignored for that reason only.
    let _ = write!(
        out,
        "{} {} {} {} ",
        ctime(end),
        transfer_secs(rec),
        client_ip(&rec.client),
        rec.bytes
    );
    push_field(out, &rec.path);
    let kind = if rec.ascii { 'a' } else { 'b' };
    let direction = match rec.direction {
        Direction::Outgoing => 'o',
        Direction::Incoming => 'i',
    };
    // Anonymous users are logged by the password they gave (their e-mail address, by
    // convention), real users by login name: both vsftpd and ProFTPD do this.
    let (mode, who) = if rec.anonymous {
        ('a', &rec.anonymous_password)
    } else {
        ('r', &rec.user)
    };
    let _ = write!(out, " {kind} _ {direction} {mode} ");
    push_field(out, who);
    let status = if rec.complete { 'c' } else { 'i' };
    // service-name, authentication-method (0 = none, i.e. no RFC 1413 ident), authenticated
    // user id (`*` = not available), completion status.
    let _ = writeln!(out, " ftp 0 * {status}");
}

/// ctime(3) style: `Tue Dec  1 21:14:14 2026`, the day of the month padded with a space
/// (vsftpd does the same; ProFTPD pads with `0`, which xferlog(5) does not show).
fn ctime<Tz: TimeZone>(t: &DateTime<Tz>) -> impl fmt::Display + '_
where
    Tz::Offset: fmt::Display,
{
    t.format("%a %b %e %H:%M:%S %Y")
}

/// Whole seconds, truncated like ProFTPD's `tv_sec`, but never 0: vsftpd logs at least 1 so
/// that a reader's bytes / seconds stays finite, and sub-second transfers are the common case.
fn transfer_secs(rec: &TransferRecord) -> u64 {
    rec.duration.as_secs().max(1)
}

/// Appends `raw` as one space-free, printable field (see the module comment); an empty value
/// is written `*` so the line keeps its 14 fields.
pub(crate) fn push_field(out: &mut Vec<u8>, raw: &[u8]) {
    if raw.is_empty() {
        out.push(b'*');
        return;
    }
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_whitespace() || c.is_control() || is_bidi_control(c) {
                out.push(b'_');
            } else {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        out.extend(chunk.invalid().iter().map(|_| b'?'));
    }
}

/// Unicode bidirectional controls: printable as far as `char::is_control` knows, but they
/// reorder what a terminal shows, so a name could make a line read differently than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{FixedOffset, Utc};

    use super::*;

    use crate::logging::record::fixtures::download;

    fn upload() -> TransferRecord {
        TransferRecord {
            user: b"alice".to_vec(),
            anonymous: false,
            anonymous_password: Vec::new(),
            command: "STOR",
            path: b"/home/report.txt".to_vec(),
            bytes: 42,
            direction: Direction::Incoming,
            ascii: true,
            ..download()
        }
    }

    fn line_utc(rec: &TransferRecord) -> String {
        let mut out = Vec::new();
        write_line_in(rec, &rec.end().with_timezone(&Utc), &mut out);
        String::from_utf8(out).expect("xferlog lines are UTF-8")
    }

    fn fields(line: &str) -> Vec<&str> {
        assert!(line.ends_with('\n'), "{line:?}");
        line.trim_end_matches('\n').split(' ').collect()
    }

    #[test]
    fn anonymous_download_field_by_field() {
        let line = line_utc(&download());
        // The date takes 5 space-separated words ("Tue Dec  1" has two spaces: 6 pieces).
        assert!(line.starts_with("Tue Dec  1 21:14:14 2026 "), "{line}");
        let rest: Vec<&str> = fields(&line[25..]);
        assert_eq!(
            rest,
            [
                "3",
                "192.0.2.7",
                "1048576",
                "/pub/file.iso",
                "b",
                "_",
                "o",
                "a",
                "guest@example.org",
                "ftp",
                "0",
                "*",
                "c"
            ]
        );
    }

    #[test]
    fn named_user_upload() {
        let line = line_utc(&upload());
        let f = fields(&line[25..]);
        assert_eq!(f[3], "/home/report.txt");
        assert_eq!(f[4], "a", "TYPE A");
        assert_eq!(f[6], "i", "incoming");
        assert_eq!(f[7], "r", "real user");
        assert_eq!(f[8], "alice", "the login name, not a password");
        assert_eq!(f.len(), 13);
    }

    #[test]
    fn incomplete_transfer() {
        let rec = TransferRecord {
            complete: false,
            bytes: 10,
            reply_code: 426,
            ..download()
        };
        let line = line_utc(&rec);
        assert!(line.ends_with(" ftp 0 * i\n"), "{line}");
        assert_eq!(fields(&line[25..])[2], "10");
    }

    #[test]
    fn spaces_and_control_characters_are_replaced() {
        let rec = TransferRecord {
            path: b"/pub/my file\tv2\x07\x7f.txt".to_vec(),
            anonymous_password: b"a b\r\n".to_vec(),
            ..download()
        };
        let line = line_utc(&rec);
        let f = fields(&line[25..]);
        assert_eq!(f.len(), 13, "{line:?}");
        assert_eq!(f[3], "/pub/my_file_v2__.txt");
        assert_eq!(f[8], "a_b__");
    }

    #[test]
    fn unicode_passes_but_unicode_spaces_and_bidi_do_not() {
        let rec = TransferRecord {
            path: "/pub/café\u{a0}x\u{202e}gpj.exe\u{85}".as_bytes().to_vec(),
            ..download()
        };
        let line = line_utc(&rec);
        assert_eq!(fields(&line[25..])[3], "/pub/café_x_gpj.exe_");
    }

    #[test]
    fn non_utf8_bytes_become_question_marks() {
        // Latin-1 "café" and a lone continuation byte: one `?` per byte that is not UTF-8,
        // and the line stays valid UTF-8 (line_utc would panic otherwise).
        let rec = TransferRecord {
            path: b"/pub/caf\xe9 \x80\x9b[2J".to_vec(),
            ..download()
        };
        let line = line_utc(&rec);
        assert_eq!(fields(&line[25..])[3], "/pub/caf?_??[2J");
    }

    #[test]
    fn empty_user_keeps_fourteen_fields() {
        let rec = TransferRecord {
            anonymous_password: Vec::new(),
            ..download()
        };
        let line = line_utc(&rec);
        let f = fields(&line[25..]);
        assert_eq!(f.len(), 13);
        assert_eq!(f[8], "*");
    }

    #[test]
    fn day_of_month_is_space_padded_and_time_is_the_end_in_the_given_zone() {
        let rec = download();
        let tokyo = FixedOffset::east_opt(9 * 3600).unwrap();
        let mut out = Vec::new();
        write_line_in(&rec, &rec.end().with_timezone(&tokyo), &mut out);
        // 21:14:14 UTC on Dec 1 is 06:14:14 on Dec 2 in UTC+9, still a single digit day.
        assert!(out.starts_with(b"Wed Dec  2 06:14:14 2026 3 "), "{out:?}");
        let ten_days_later = TransferRecord {
            start: rec.start + Duration::from_secs(10 * 86_400),
            ..rec
        };
        assert!(line_utc(&ten_days_later).starts_with("Fri Dec 11 21:14:14 2026 "));
    }

    #[test]
    fn transfer_time_is_whole_seconds_at_least_one() {
        for (ms, secs) in [(0, "1"), (1, "1"), (999, "1"), (1_999, "1"), (2_000, "2")] {
            let rec = TransferRecord {
                duration: Duration::from_millis(ms),
                ..download()
            };
            assert_eq!(fields(&line_utc(&rec)[25..])[0], secs, "{ms} ms");
        }
    }

    #[test]
    fn ipv6_client_and_mapped_ipv4() {
        let v6 = TransferRecord {
            client: "[2001:db8::5]:40000".parse().unwrap(),
            ..download()
        };
        assert_eq!(fields(&line_utc(&v6)[25..])[1], "2001:db8::5");
        let mapped = TransferRecord {
            client: "[::ffff:198.51.100.1]:40000".parse().unwrap(),
            ..download()
        };
        assert_eq!(fields(&line_utc(&mapped)[25..])[1], "198.51.100.1");
    }

    #[test]
    fn local_time_outer_call_gives_a_well_formed_line() {
        let mut out = Vec::new();
        write_line(&download(), &mut out);
        let line = String::from_utf8(out).unwrap();
        // Whatever TZ is: 5 date words (6 pieces with the padded day) + 13 fields.
        let n = line.split_whitespace().count();
        assert_eq!(n, 18, "{line}");
    }
}
