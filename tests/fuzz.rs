//! Arbitrary bytes on the control connection never break the server: every reply stays well formed
//! (RFC 959 section 4.2), the session ends cleanly when the client half-closes, and the server
//! keeps serving new sessions afterwards.

mod common;

use common::{Ctrl, ReplyError};
use proptest::prelude::*;

/// Verbs that answer at once without a data connection (no PASV/PORT: a RETR after one would wait
/// for the data timeout; no QUIT: it would end the session early, which is tested elsewhere).
const VERBS: &[&str] = &[
    "USER", "PASS", "ACCT", "CWD", "XCWD", "CDUP", "PWD", "TYPE", "MODE", "STRU", "REST", "RETR",
    "SIZE", "MDTM", "LIST", "NLST", "MLSD", "MLST", "STAT", "HELP", "FEAT", "OPTS", "NOOP", "SYST",
    "ALLO", "ABOR", "STOR", "DELE", "SITE", "REIN", "EPRT", "XYZZY", "user", "Pwd",
];

/// CRLF, bare LF, a bare CR (501 when inside a line) and nothing (the next line runs on).
const LINE_ENDS: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b""];

/// Lines that look like commands, with hostile arguments.
fn command_lines() -> impl Strategy<Value = Vec<u8>> {
    let line = (
        prop::sample::select(VERBS),
        prop_oneof![
            Just(Vec::new()),
            prop::collection::vec(any::<u8>(), 0..64),
            "[ -~]{0,300}".prop_map(String::into_bytes),
            Just(b" ../../../../etc/passwd".to_vec()),
            Just(b" anonymous".to_vec()),
        ],
        prop::sample::select(LINE_ENDS),
    )
        .prop_map(|(verb, arg, end)| {
            let mut l = verb.as_bytes().to_vec();
            if !arg.is_empty() && arg[0] != b' ' {
                l.push(b' ');
            }
            l.extend_from_slice(&arg);
            l.extend_from_slice(end);
            l
        });
    prop::collection::vec(line, 1..40).prop_map(|lines| lines.concat())
}

/// Send `input`, half-close, and read every reply until the server closes.
fn exercise(input: &[u8]) -> Result<(), TestCaseError> {
    let s = common::start(|c| c.data_timeout = std::time::Duration::from_secs(2));
    s.write_file("f.txt", b"file");
    s.mkdir("d");
    let mut c = s.connect();
    c.send_raw(input);
    c.shutdown_write();
    let mut replies = 0;
    loop {
        match c.try_read_reply() {
            Ok(_) => replies += 1,
            Err(ReplyError::Eof) => break,
            Err(ReplyError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(ReplyError::Io(e)) if common::is_timeout(&e) => {
                return Err(TestCaseError::fail(format!(
                    "session still open {:?} after EOF, {replies} replies",
                    common::TIMEOUT
                )));
            }
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "after {replies} replies: {e:?}"
                )));
            }
        }
    }
    // The server is still there for everyone else.
    let mut fresh = Ctrl::connect(s.addr);
    fresh.login();
    prop_assert_eq!(fresh.retr("f.txt"), b"file".to_vec());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_break_a_session(input in prop::collection::vec(any::<u8>(), 0..10_000)) {
        exercise(&input)?;
    }

    #[test]
    fn hostile_command_lines_never_break_a_session(input in command_lines()) {
        exercise(&input)?;
    }

    #[test]
    fn logged_in_hostile_lines_never_break_a_session(input in command_lines()) {
        let mut with_login = b"USER anonymous\r\nPASS x\r\n".to_vec();
        with_login.extend_from_slice(&input);
        exercise(&with_login)?;
    }
}
