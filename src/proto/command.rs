//! Command lines parsed into typed commands (RFC 959 section 4.1, RFC 2389, RFC 2428, RFC 3659).

use std::net::{SocketAddr, SocketAddrV4};

use super::addr::{self, AddrError, EpsvArg};
use super::listing::{self, ListOptions};

/// Representation type (RFC 959 section 3.1.1). EBCDIC and non-8-bit local types are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    Ascii,
    Image,
}

/// RFC 4217 section 4: the security mechanisms AUTH names that mean explicit TLS ("SSL" and
/// "TLS-C" are the older spellings clients still send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Tls,
}

/// RFC 2228 section 3 protection levels, as PROT names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    Clear,
    /// Integrity only (RFC 2228 "S"): TLS has no such level.
    Safe,
    /// Confidentiality only (RFC 2228 "E"): TLS has no such level.
    Confidential,
    Private,
}

/// Listing flavours sharing one data-connection path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListFormat {
    List,
    Nlst,
    Mlsd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User {
        name: Vec<u8>,
    },
    Pass {
        password: Vec<u8>,
    },
    Acct,
    Syst,
    Feat,
    Opts {
        option: Vec<u8>,
        value: Vec<u8>,
    },
    Pwd,
    Cwd {
        path: Vec<u8>,
    },
    Cdup,
    Type {
        ty: TransferType,
    },
    Mode,
    Stru,
    Noop,
    Help {
        topic: Option<Vec<u8>>,
    },
    /// Without an argument: the server's status; with one, a LIST of it on the control connection.
    Stat {
        args: Option<ListArgs>,
    },
    Quit,
    Pasv,
    Epsv {
        arg: EpsvArg,
    },
    Port {
        addr: SocketAddrV4,
    },
    Eprt {
        addr: SocketAddr,
    },
    Retr {
        path: Vec<u8>,
    },
    Rest {
        offset: u64,
    },
    Size {
        path: Vec<u8>,
    },
    Mdtm {
        path: Vec<u8>,
    },
    /// LIST, NLST (with `ls` options) and MLSD (none, RFC 3659 section 7.1).
    List {
        format: ListFormat,
        options: ListOptions,
        path: Option<Vec<u8>>,
    },
    Mlst {
        path: Option<Vec<u8>>,
    },
    Allo,
    Abor,
    Stor {
        path: Vec<u8>,
    },
    /// RFC 959 STOU takes no argument; a given name is used as the base of the unique name.
    Stou {
        base: Option<Vec<u8>>,
    },
    Appe {
        path: Vec<u8>,
    },
    Dele {
        path: Vec<u8>,
    },
    Mkd {
        path: Vec<u8>,
    },
    Rmd {
        path: Vec<u8>,
    },
    Rnfr {
        path: Vec<u8>,
    },
    Rnto {
        path: Vec<u8>,
    },
    Site(Site),
    /// draft-somers-ftp-mfxx: MFMT YYYYMMDDHHMMSS path.
    Mfmt {
        secs: i64,
        path: Vec<u8>,
    },
    /// RFC 4217 section 4: AUTH TLS (explicit TLS on the control connection).
    Auth {
        mechanism: AuthMechanism,
    },
    /// RFC 4217 section 8: PBSZ; TLS has no buffer size, so it is always 0 in effect.
    Pbsz {
        size: u64,
    },
    /// RFC 4217 section 9: PROT C (clear) or P (private) for the data connections.
    Prot {
        level: ProtLevel,
    },
    /// RFC 4217 section 11: CCC, back to a cleartext control connection.
    Ccc,
}

/// A LIST-style argument: `ls` options, then the path (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListArgs {
    pub options: ListOptions,
    pub path: Option<Vec<u8>>,
}

/// SITE subcommands (site-specific, RFC 959 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    Chmod {
        mode: u32,
        path: Vec<u8>,
    },
    /// Without a mode: show the current umask.
    Umask {
        mode: Option<u32>,
    },
    Help,
}

/// Why a line is not a command we run; each maps to one reply in `session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command")]
    Unknown,
    #[error("command not implemented")]
    NotImplemented,
    #[error("syntax error in parameters or arguments")]
    Syntax,
    #[error("command not implemented for that parameter")]
    ParameterNotImplemented,
    #[error("network protocol not supported")]
    ProtocolNotSupported,
    #[error("NUL byte in command line")]
    Nul,
    #[error("bare CR in command line")]
    BareCr,
    #[error("unknown SITE command")]
    UnknownSite,
}

impl From<AddrError> for ParseError {
    fn from(e: AddrError) -> ParseError {
        match e {
            AddrError::Syntax => ParseError::Syntax,
            AddrError::UnsupportedProtocol => ParseError::ProtocolNotSupported,
        }
    }
}

/// Parse one framed line (CRLF already removed).
/// Request methods an HTTP client starts its request line with (RFC 9110 section 9, and PATCH
/// from RFC 5789), as HTTP sends them: upper case, then a space. None is an FTP verb (there is
/// no FTP `GET` or `PUT`; `OPTS` is not `OPTIONS`), so no FTP client ever sends one of them.
const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"TRACE ",
    b"PATCH ",
];

/// Whether a control line is an HTTP request line: a method and a space, or anything ending in
/// ` HTTP/1.x`. A browser made to talk to the FTP port (cross-protocol attacks such as ALPACA,
/// or HTML form posts to port 21) sends such a line first; its session is closed before any
/// line of it can run as a command or be echoed back in a reply the browser might render.
pub fn looks_like_http(line: &[u8]) -> bool {
    if HTTP_METHODS.iter().any(|m| line.starts_with(m)) {
        return true;
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.len() >= 9 && {
        let tail = &line[line.len() - 9..];
        tail.starts_with(b" HTTP/1.") && tail[8].is_ascii_digit()
    }
}

pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    // ABOR is sent after Telnet IP and Synch (RFC 959 section 4.1.3): IAC IP IAC DM precede the verb.
    let start = line.iter().position(|&b| b < 0xf0).unwrap_or(line.len());
    let line = &line[start..];
    // RFC 854: a data byte 0xFF (Telnet IAC) is sent doubled, as suppaftp and ProFTPD do; a name
    // with a 0xFF in it (Latin-1 "ÿ") arrives as 0xFF 0xFF. A lone 0xFF, from clients that send
    // names raw, is taken as it is: we run no other Telnet commands.
    let undoubled;
    let line = if line.windows(2).any(|w| w == [0xff, 0xff]) {
        undoubled = undouble_iac(line);
        &undoubled[..]
    } else {
        line
    };
    if line.contains(&0) {
        return Err(ParseError::Nul);
    }
    if line.contains(&b'\r') {
        return Err(ParseError::BareCr);
    }
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    if verb.is_empty() || verb.len() > 4 || !verb.iter().all(u8::is_ascii_alphabetic) {
        return Err(ParseError::Unknown);
    }
    // Arguments are bytes: Unix names need not be UTF-8 (RFC 2640 asks clients for UTF-8, but a
    // name already on disk must still be usable), so only NUL and CR are refused, above.
    let mut upper = [0u8; 4];
    upper[..verb.len()].copy_from_slice(verb);
    upper.make_ascii_uppercase();
    let verb = &upper[..verb.len()];
    let path = || required(arg).map(<[u8]>::to_vec);
    let optional = || (!arg.is_empty()).then(|| arg.to_vec());
    Ok(match verb {
        b"USER" => Command::User { name: path()? },
        b"PASS" => Command::Pass {
            password: arg.to_vec(),
        },
        b"ACCT" => Command::Acct,
        b"SYST" => Command::Syst,
        b"FEAT" => Command::Feat,
        b"OPTS" => {
            let arg = required(arg)?;
            let (option, value) = match arg.iter().position(|&b| b == b' ') {
                Some(i) => (&arg[..i], &arg[i + 1..]),
                None => (arg, &[][..]),
            };
            Command::Opts {
                option: option.to_ascii_uppercase(),
                value: value.to_vec(),
            }
        }
        b"PWD" | b"XPWD" => Command::Pwd,
        b"CWD" | b"XCWD" => Command::Cwd { path: path()? },
        b"CDUP" | b"XCUP" => Command::Cdup,
        b"TYPE" => Command::Type {
            ty: parse_type(arg)?,
        },
        b"MODE" => one_letter(arg, b'S').map(|()| Command::Mode)?,
        b"STRU" => one_letter(arg, b'F').map(|()| Command::Stru)?,
        b"NOOP" => Command::Noop,
        b"HELP" => Command::Help { topic: optional() },
        b"STAT" => Command::Stat {
            args: (!arg.is_empty()).then(|| list_args(arg)),
        },
        b"QUIT" => Command::Quit,
        b"PASV" => Command::Pasv,
        b"EPSV" => Command::Epsv {
            arg: addr::parse_epsv(arg)?,
        },
        b"PORT" => Command::Port {
            addr: addr::parse_port(required(arg)?)?,
        },
        b"EPRT" => Command::Eprt {
            addr: addr::parse_eprt(required(arg)?)?,
        },
        b"RETR" => Command::Retr { path: path()? },
        b"REST" => Command::Rest {
            offset: parse_u64(arg)?,
        },
        b"SIZE" => Command::Size { path: path()? },
        b"MDTM" => Command::Mdtm { path: path()? },
        b"LIST" | b"NLST" => {
            let ListArgs { options, path } = list_args(arg);
            let format = match verb {
                b"LIST" => ListFormat::List,
                _ => ListFormat::Nlst,
            };
            Command::List {
                format,
                options,
                path,
            }
        }
        b"MLSD" => Command::List {
            format: ListFormat::Mlsd,
            options: ListOptions::default(),
            path: optional(),
        },
        b"MLST" => Command::Mlst { path: optional() },
        b"ALLO" => Command::Allo,
        b"ABOR" => Command::Abor,
        b"STOR" => Command::Stor { path: path()? },
        b"STOU" => Command::Stou { base: optional() },
        b"APPE" => Command::Appe { path: path()? },
        b"DELE" => Command::Dele { path: path()? },
        b"MKD" | b"XMKD" => Command::Mkd { path: path()? },
        b"RMD" | b"XRMD" => Command::Rmd { path: path()? },
        b"RNFR" => Command::Rnfr { path: path()? },
        b"RNTO" => Command::Rnto { path: path()? },
        b"SITE" => Command::Site(parse_site(required(arg)?)?),
        b"MFMT" => {
            let arg = required(arg)?;
            let (time, path) = split_word(arg).ok_or(ParseError::Syntax)?;
            let secs = listing::parse_time_val(time).ok_or(ParseError::Syntax)?;
            Command::Mfmt {
                secs,
                path: path.to_vec(),
            }
        }
        b"AUTH" => Command::Auth {
            mechanism: parse_auth(required(arg)?)?,
        },
        b"PBSZ" => Command::Pbsz {
            size: parse_u64(arg)?,
        },
        b"PROT" => Command::Prot {
            level: match required(arg)?.to_ascii_uppercase().as_slice() {
                b"C" => ProtLevel::Clear,
                b"S" => ProtLevel::Safe,
                b"E" => ProtLevel::Confidential,
                b"P" => ProtLevel::Private,
                _ => return Err(ParseError::ParameterNotImplemented),
            },
        },
        b"CCC" => Command::Ccc,
        b"SMNT" | b"REIN" | b"LPRT" | b"LPSV" | b"LANG" | b"ADAT" | b"MIC" | b"CONF" | b"ENC"
        | b"HOST" => return Err(ParseError::NotImplemented),
        _ => return Err(ParseError::Unknown),
    })
}

/// `line` with every IAC IAC pair (0xFF 0xFF) made one 0xFF.
fn undouble_iac(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter().copied();
    while let Some(b) = bytes.next() {
        out.push(b);
        if b == 0xff {
            // The second of a pair is dropped; a lone 0xFF before anything else is kept.
            match bytes.next() {
                Some(0xff) | None => {}
                Some(other) => out.push(other),
            }
        }
    }
    out
}

/// AUTH's mechanism (RFC 4217 section 4): TLS, and the older TLS-C and SSL; anything else is 504.
fn parse_auth(arg: &[u8]) -> Result<AuthMechanism, ParseError> {
    match arg.to_ascii_uppercase().as_slice() {
        b"TLS" | b"TLS-C" | b"SSL" => Ok(AuthMechanism::Tls),
        _ => Err(ParseError::ParameterNotImplemented),
    }
}

/// "WORD rest": the first word and everything after the single separating space (rest non-empty).
fn split_word(arg: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = arg.iter().position(|&b| b == b' ')?;
    let rest = &arg[i + 1..];
    (i > 0 && !rest.is_empty()).then_some((&arg[..i], rest))
}

/// An octal mode such as "755", "0644" or "04755" (0..=0o7777).
fn parse_mode(word: &[u8]) -> Result<u32, ParseError> {
    if word.is_empty() || word.len() > 5 || !word.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(ParseError::Syntax);
    }
    let mode = word.iter().fold(0, |m, b| m * 8 + u32::from(b - b'0'));
    if mode > 0o7777 {
        return Err(ParseError::Syntax);
    }
    Ok(mode)
}

fn parse_site(arg: &[u8]) -> Result<Site, ParseError> {
    let (sub, rest) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], &arg[i + 1..]),
        None => (arg, &[][..]),
    };
    match sub.to_ascii_uppercase().as_slice() {
        b"CHMOD" => {
            let (mode, path) = split_word(rest).ok_or(ParseError::Syntax)?;
            Ok(Site::Chmod {
                mode: parse_mode(mode)?,
                path: path.to_vec(),
            })
        }
        b"UMASK" if rest.is_empty() => Ok(Site::Umask { mode: None }),
        b"UMASK" => Ok(Site::Umask {
            mode: Some(parse_mode(rest)?),
        }),
        b"HELP" => Ok(Site::Help),
        _ => Err(ParseError::UnknownSite),
    }
}

fn required(arg: &[u8]) -> Result<&[u8], ParseError> {
    if arg.is_empty() {
        Err(ParseError::Syntax)
    } else {
        Ok(arg)
    }
}

fn parse_u64(arg: &[u8]) -> Result<u64, ParseError> {
    let s = std::str::from_utf8(arg).map_err(|_| ParseError::Syntax)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax);
    }
    s.parse().map_err(|_| ParseError::Syntax)
}

/// TYPE A [N], TYPE I, TYPE L 8 are supported; other known types are 504, garbage is 501.
fn parse_type(arg: &[u8]) -> Result<TransferType, ParseError> {
    let upper = arg.to_ascii_uppercase();
    let words: Vec<&[u8]> = upper
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        [b"A"] | [b"A", b"N"] => Ok(TransferType::Ascii),
        [b"I"] | [b"L", b"8"] => Ok(TransferType::Image),
        [b"A", b"T" | b"C"] | [b"E", ..] | [b"L", _] => Err(ParseError::ParameterNotImplemented),
        _ => Err(ParseError::Syntax),
    }
}

/// MODE and STRU: only stream mode and file structure exist here; the other RFC 959 letters are 504.
fn one_letter(arg: &[u8], supported: u8) -> Result<(), ParseError> {
    match arg {
        [c] if c.to_ascii_uppercase() == supported => Ok(()),
        [c] if c.is_ascii_alphabetic() => Err(ParseError::ParameterNotImplemented),
        _ => Err(ParseError::Syntax),
    }
}

/// LIST/NLST/STAT arguments: clients (lftp, FileZilla, ftputil) send `ls` options such as "-la"
/// before the path. Every leading word that starts with '-' is options (letters we do not know
/// are ignored); a word "--" ends them, so "LIST -- -x" lists "-x". The path is everything after
/// the single space that follows the last option word, spaces included. As with vsftpd, a path
/// that itself starts with '-' needs "--" or "./".
fn list_args(arg: &[u8]) -> ListArgs {
    let mut options = ListOptions::default();
    let mut rest = arg;
    while rest.first() == Some(&b'-') {
        let (word, after) = match rest.iter().position(|&b| b == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        if word == b"--" {
            break;
        }
        options.add_word(word);
    }
    ListArgs {
        options,
        path: (!rest.is_empty()).then(|| rest.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_request_lines_are_recognised_and_ftp_lines_are_not() {
        for line in [
            &b"GET / HTTP/1.1"[..],
            b"POST /upload HTTP/1.0",
            b"HEAD /",
            b"PUT /x",
            b"DELETE /x",
            b"OPTIONS * HTTP/1.1",
            b"CONNECT example.org:443 HTTP/1.1",
            b"TRACE /",
            b"PATCH /x",
            b"FOO /bar HTTP/1.1",
            b"FOO /bar HTTP/1.0\r",
        ] {
            assert!(looks_like_http(line), "{:?}", String::from_utf8_lossy(line));
        }
        for line in [
            &b"USER anonymous"[..],
            b"OPTS UTF8 ON",
            b"RETR GET",
            b"get file",
            b"GET",
            b"STOR HTTP/1.1.txt",
            b"RETR notes HTTP/1.x",
            b"PASS GET / HTTP/1.",
            b"",
        ] {
            assert!(
                !looks_like_http(line),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // None of the methods is a verb this server runs.
        for m in HTTP_METHODS {
            assert!(parse(m).is_err(), "{:?}", String::from_utf8_lossy(m));
        }
    }

    use super::*;
    use proptest::prelude::*;

    /// A few verbs `parse` runs, in either case.
    const SOME_VERBS: [&str; 8] = [
        "RETR", "STOR", "LIST", "USER", "pass", "opts", "SITE", "MLSD",
    ];

    #[test]
    fn verbs_are_case_insensitive_and_aliases_map() {
        assert_eq!(parse(b"noop"), Ok(Command::Noop));
        assert_eq!(parse(b"XPWD"), Ok(Command::Pwd));
        assert_eq!(parse(b"xcup"), Ok(Command::Cdup));
        assert_eq!(
            parse(b"CWD /a b"),
            Ok(Command::Cwd {
                path: b"/a b".to_vec()
            })
        );
    }

    #[test]
    fn arguments_keep_spaces_and_utf8() {
        assert_eq!(
            parse("RETR  lead é".as_bytes()),
            Ok(Command::Retr {
                path: " lead é".as_bytes().to_vec()
            })
        );
    }

    #[test]
    fn path_arguments_are_bytes_not_utf8() {
        let name = b"d\xfe/caf\xe9 \xff\x80.txt";
        let p = || name.to_vec();
        let with = |verb: &str| {
            let mut line = verb.as_bytes().to_vec();
            line.push(b' ');
            line.extend_from_slice(name);
            parse(&line)
        };
        assert_eq!(with("RETR"), Ok(Command::Retr { path: p() }));
        assert_eq!(with("STOR"), Ok(Command::Stor { path: p() }));
        assert_eq!(with("APPE"), Ok(Command::Appe { path: p() }));
        assert_eq!(with("STOU"), Ok(Command::Stou { base: Some(p()) }));
        assert_eq!(with("SIZE"), Ok(Command::Size { path: p() }));
        assert_eq!(with("MDTM"), Ok(Command::Mdtm { path: p() }));
        assert_eq!(with("MLST"), Ok(Command::Mlst { path: Some(p()) }));
        assert_eq!(with("CWD"), Ok(Command::Cwd { path: p() }));
        assert_eq!(with("XMKD"), Ok(Command::Mkd { path: p() }));
        assert_eq!(with("RMD"), Ok(Command::Rmd { path: p() }));
        assert_eq!(with("DELE"), Ok(Command::Dele { path: p() }));
        assert_eq!(with("RNFR"), Ok(Command::Rnfr { path: p() }));
        assert_eq!(with("RNTO"), Ok(Command::Rnto { path: p() }));
        assert_eq!(
            with("SITE CHMOD 644"),
            Ok(Command::Site(Site::Chmod {
                mode: 0o644,
                path: p()
            }))
        );
        assert_eq!(
            with("MFMT 20200102030405"),
            Ok(Command::Mfmt {
                secs: 1577934245,
                path: p()
            })
        );
        // Not paths, but bytes too: a non-UTF-8 user name or password is simply wrong later.
        assert_eq!(
            parse(b"USER \xe9t\xe9"),
            Ok(Command::User {
                name: b"\xe9t\xe9".to_vec()
            })
        );
        assert_eq!(
            parse(b"PASS \xff"),
            Ok(Command::Pass {
                password: b"\xff".to_vec()
            })
        );
        assert_eq!(parse(b"SITE \xe9"), Err(ParseError::UnknownSite));
        // Telnet: a doubled 0xFF is one data byte; a lone one is kept as sent.
        assert_eq!(
            parse(b"RETR \xff\xff\xff\xffa\xffb\xff\xff\xff"),
            Ok(Command::Retr {
                path: b"\xff\xffa\xffb\xff\xff".to_vec()
            })
        );
        assert_eq!(parse(b"REST \xe9"), Err(ParseError::Syntax));
    }

    #[test]
    fn typed_arguments() {
        assert_eq!(parse(b"REST 100"), Ok(Command::Rest { offset: 100 }));
        assert_eq!(parse(b"REST -1"), Err(ParseError::Syntax));
        assert_eq!(
            parse(b"REST 99999999999999999999999"),
            Err(ParseError::Syntax)
        );
        assert_eq!(
            parse(b"TYPE I"),
            Ok(Command::Type {
                ty: TransferType::Image
            })
        );
        assert_eq!(
            parse(b"TYPE a n"),
            Ok(Command::Type {
                ty: TransferType::Ascii
            })
        );
        assert_eq!(
            parse(b"TYPE L 8"),
            Ok(Command::Type {
                ty: TransferType::Image
            })
        );
        assert_eq!(parse(b"TYPE E"), Err(ParseError::ParameterNotImplemented));
        assert_eq!(parse(b"TYPE X"), Err(ParseError::Syntax));
        assert_eq!(parse(b"MODE S"), Ok(Command::Mode));
        assert_eq!(parse(b"MODE B"), Err(ParseError::ParameterNotImplemented));
        assert_eq!(parse(b"STRU R"), Err(ParseError::ParameterNotImplemented));
        assert_eq!(
            parse(b"PORT 127,0,0,1,4,1"),
            Ok(Command::Port {
                addr: "127.0.0.1:1025".parse().unwrap()
            })
        );
        assert_eq!(
            parse(b"EPRT |3|x|1|"),
            Err(ParseError::ProtocolNotSupported)
        );
        assert_eq!(parse(b"EPSV ALL"), Ok(Command::Epsv { arg: EpsvArg::All }));
    }

    #[test]
    fn write_commands() {
        assert_eq!(
            parse(b"STOR a b"),
            Ok(Command::Stor {
                path: b"a b".to_vec()
            })
        );
        assert_eq!(parse(b"STOU"), Ok(Command::Stou { base: None }));
        assert_eq!(
            parse(b"XMKD d"),
            Ok(Command::Mkd {
                path: b"d".to_vec()
            })
        );
        assert_eq!(
            parse(b"XRMD d"),
            Ok(Command::Rmd {
                path: b"d".to_vec()
            })
        );
        assert_eq!(
            parse(b"SITE CHMOD 755 x y"),
            Ok(Command::Site(Site::Chmod {
                mode: 0o755,
                path: b"x y".to_vec()
            }))
        );
        assert_eq!(
            parse(b"site chmod 04755 x"),
            Ok(Command::Site(Site::Chmod {
                mode: 0o4755,
                path: b"x".to_vec()
            }))
        );
        assert_eq!(parse(b"SITE CHMOD 8 x"), Err(ParseError::Syntax));
        assert_eq!(parse(b"SITE CHMOD 755"), Err(ParseError::Syntax));
        assert_eq!(
            parse(b"SITE UMASK"),
            Ok(Command::Site(Site::Umask { mode: None }))
        );
        assert_eq!(
            parse(b"SITE UMASK 027"),
            Ok(Command::Site(Site::Umask { mode: Some(0o27) }))
        );
        assert_eq!(parse(b"SITE HELP"), Ok(Command::Site(Site::Help)));
        assert_eq!(parse(b"SITE EXEC ls"), Err(ParseError::UnknownSite));
        assert_eq!(
            parse(b"MFMT 20200102030405 f g"),
            Ok(Command::Mfmt {
                secs: 1577934245,
                path: b"f g".to_vec()
            })
        );
        assert_eq!(parse(b"MFMT 2020 f"), Err(ParseError::Syntax));
        assert_eq!(parse(b"MFMT 20200102030405"), Err(ParseError::Syntax));
    }

    #[test]
    fn list_options_are_parsed() {
        let list = |format, options: &[u8], path: Option<&[u8]>| {
            let mut o = ListOptions::default();
            o.add_word(options);
            Ok(Command::List {
                format,
                options: o,
                path: path.map(<[u8]>::to_vec),
            })
        };
        use ListFormat::{List, Mlsd, Nlst};
        assert_eq!(parse(b"LIST"), list(List, b"", None));
        assert_eq!(parse(b"LIST -la"), list(List, b"-la", None));
        assert_eq!(parse(b"LIST -a pub"), list(List, b"-a", Some(b"pub")));
        assert_eq!(parse(b"LIST -l -A pub"), list(List, b"-lA", Some(b"pub")));
        assert_eq!(parse(b"NLST -d"), list(Nlst, b"-d", None));
        assert_eq!(parse(b"NLST"), list(Nlst, b"", None));
        // Unknown letters (and -R, which is not done) are ignored.
        assert_eq!(parse(b"LIST -alRtF x"), list(List, b"-al", Some(b"x")));
        // "--" ends the options; the path keeps its spaces and bytes.
        assert_eq!(parse(b"LIST -a -- -x"), list(List, b"-a", Some(b"-x")));
        assert_eq!(parse(b"LIST --"), list(List, b"", None));
        assert_eq!(
            parse(b"LIST -a  two \xff"),
            list(List, b"-a", Some(b" two \xff"))
        );
        assert_eq!(parse(b"LIST dir -a"), list(List, b"", Some(b"dir -a")));
        // MLSD takes no options: "-a" would be a name.
        assert_eq!(parse(b"MLSD -a"), list(Mlsd, b"", Some(b"-a")));
        assert_eq!(parse(b"STAT"), Ok(Command::Stat { args: None }));
        let mut la = ListOptions::default();
        la.add_word(b"-la");
        assert_eq!(
            parse(b"STAT -la"),
            Ok(Command::Stat {
                args: Some(ListArgs {
                    options: la,
                    path: None
                })
            })
        );
        assert_eq!(
            parse(b"STAT sub"),
            Ok(Command::Stat {
                args: Some(ListArgs {
                    options: ListOptions::default(),
                    path: Some(b"sub".to_vec())
                })
            })
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse(b""), Err(ParseError::Unknown));
        assert_eq!(parse(b"FOOBAR"), Err(ParseError::Unknown));
        assert_eq!(parse(b"RETR a\0b"), Err(ParseError::Nul));
        assert_eq!(parse(b"RETR a\rb"), Err(ParseError::BareCr));
        assert_eq!(parse(b"RETR"), Err(ParseError::Syntax));
        assert_eq!(parse(b"REIN"), Err(ParseError::NotImplemented));
    }

    #[test]
    fn rfc_4217_commands() {
        for spelling in ["AUTH TLS", "auth ssl", "AUTH TLS-C"] {
            assert_eq!(
                parse(spelling.as_bytes()),
                Ok(Command::Auth {
                    mechanism: AuthMechanism::Tls
                }),
                "{spelling}"
            );
        }
        assert_eq!(
            parse(b"AUTH GSSAPI"),
            Err(ParseError::ParameterNotImplemented)
        );
        assert_eq!(parse(b"AUTH"), Err(ParseError::Syntax));
        assert_eq!(parse(b"PBSZ 0"), Ok(Command::Pbsz { size: 0 }));
        assert_eq!(parse(b"PBSZ x"), Err(ParseError::Syntax));
        assert_eq!(
            parse(b"PROT p"),
            Ok(Command::Prot {
                level: ProtLevel::Private
            })
        );
        assert_eq!(
            parse(b"PROT E"),
            Ok(Command::Prot {
                level: ProtLevel::Confidential
            })
        );
        assert_eq!(parse(b"PROT Q"), Err(ParseError::ParameterNotImplemented));
        assert_eq!(parse(b"CCC"), Ok(Command::Ccc));
    }

    #[test]
    fn telnet_interrupt_before_abor_is_skipped() {
        assert_eq!(parse(b"\xff\xf4\xff\xf2ABOR"), Ok(Command::Abor));
        assert_eq!(parse(b"\xff\xf4\xffABOR"), Ok(Command::Abor));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&line);
            let _ = looks_like_http(&line);
        }

        /// FTP verbs with any argument that does not end like an HTTP request line stay FTP
        /// commands.
        #[test]
        fn ftp_verbs_are_never_taken_for_http(
            verb in proptest::sample::select(SOME_VERBS.to_vec()),
            arg in "[ -~]{0,40}",
        ) {
            let tail = arg.len().saturating_sub(9);
            prop_assume!(!arg[tail..].starts_with(" HTTP/1."));
            let line = format!("{verb} {arg}");
            prop_assert!(!looks_like_http(line.as_bytes()), "{}", line);
        }

        #[test]
        fn arbitrary_verbs_with_args_never_panic(verb in "[A-Za-z]{3,4}", arg in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut line = verb.into_bytes();
            line.push(b' ');
            line.extend(arg);
            let _ = parse(&line);
        }
    }
}
