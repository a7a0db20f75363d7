//! The command parser on arbitrary lines: it never panics; a parsed line never held a NUL or a
//! bare CR; verbs are case-insensitive; and the arguments that have a canonical text form (PORT,
//! EPRT, REST, EPSV) parse back to the same command from it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringftpd::proto::addr::EpsvArg;
use ringftpd::proto::command::{Command, parse};

fuzz_target!(|line: &[u8]| {
    let parsed = parse(line);
    let Ok(cmd) = parsed else {
        return;
    };
    // Telnet IAC bytes (>= 0xf0) may precede the verb (ABOR after IP/Synch); after them no NUL
    // and no CR can be part of a command.
    let start = line.iter().position(|&b| b < 0xf0).unwrap_or(line.len());
    let body = &line[start..];
    assert!(!body.contains(&0), "NUL accepted: {cmd:?}");
    assert!(!body.contains(&b'\r'), "CR accepted: {cmd:?}");
    // The verb's case does not matter.
    let verb_end = body.iter().position(|&b| b == b' ').unwrap_or(body.len());
    for flip in [u8::to_ascii_lowercase, u8::to_ascii_uppercase] {
        let mut other = body.to_vec();
        other[..verb_end].iter_mut().for_each(|b| *b = flip(b));
        assert_eq!(
            parse(&other),
            Ok(cmd.clone()),
            "verb case changed the command"
        );
    }
    // Canonical forms parse back to the same command.
    let canonical = match &cmd {
        Command::Port { addr } => {
            let [h1, h2, h3, h4] = addr.ip().octets();
            let [p1, p2] = addr.port().to_be_bytes();
            Some(format!("PORT {h1},{h2},{h3},{h4},{p1},{p2}"))
        }
        Command::Eprt { addr } => {
            let proto = if addr.is_ipv4() { 1 } else { 2 };
            Some(format!("EPRT |{proto}|{}|{}|", addr.ip(), addr.port()))
        }
        Command::Rest { offset } => Some(format!("REST {offset}")),
        Command::Epsv { arg } => Some(match arg {
            EpsvArg::Any => "EPSV".to_string(),
            EpsvArg::All => "EPSV ALL".to_string(),
            EpsvArg::Proto(p) => format!("EPSV {p}"),
        }),
        _ => None,
    };
    if let Some(text) = canonical {
        assert_eq!(parse(text.as_bytes()), Ok(cmd), "{text:?}");
    }
});
