//! The per-session state machine: commands in, replies and effects out (no I/O, `now` is an argument).
//!
//! `on_command` answers at once where it can and otherwise asks the server to run an [`Effect`];
//! the server reports back with an [`Outcome`] and `on_outcome` produces the replies. Every
//! multi-command sequence (USER/PASS, REST/RETR, PASV/RETR, ABOR) is unit-tested here.

use std::net::{IpAddr, SocketAddr};

use super::addr::{self, EpsvArg};
use super::command::{Command, ListFormat, ParseError, TransferType};
use super::entry::{Entry, FileKind};
use super::error::FileError;
use super::listing::{self, Facts, MlsdRole};
use super::path::VirtualPath;
use super::reply::{Reply, ReplyCode};

/// Names that log in anonymously (RFC 1635).
const ANONYMOUS_NAMES: [&[u8]; 2] = [b"anonymous", b"ftp"];

/// Commands listed by HELP and FEAT-independent tools; keep in sync with `command::parse`.
const HELP_VERBS: &str = "ABOR ACCT ALLO CDUP CWD EPRT EPSV FEAT HELP LIST MDTM MLSD MLST MODE NLST NOOP OPTS PASS \
                          PASV PORT PWD QUIT REST RETR SIZE STAT STRU SYST TYPE USER XCUP XCWD XPWD";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Login {
    AwaitUser,
    AwaitPass { user: Vec<u8>, anonymous: bool },
    LoggedIn { user: Vec<u8> },
}

/// How the next transfer's data connection will be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlan {
    None,
    /// The server listens (PASV/EPSV); the client connects.
    Passive,
    /// The server connects to the client (PORT/EPRT).
    Active(SocketAddr),
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
    None,
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
    /// Produce a listing of `path` and send it (Data) or report `Outcome::Listing` (Control).
    List {
        path: VirtualPath,
        format: ListFormat,
        facts: Facts,
        target: ListTarget,
    },
    /// Abort the transfer in progress (if any) and close the data channel; report `Outcome::Aborted`.
    Abort,
}

/// What a session is waiting for; decides how an `Outcome` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Cwd(VirtualPath),
    Size,
    Mdtm,
    Mlst(VirtualPath),
    StatPath(VirtualPath),
    Passive {
        extended: bool,
    },
    Transfer {
        name: Vec<u8>,
        listing: Option<ListFormat>,
        started: bool,
    },
    Abort,
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
}

/// Results of effects, reported by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passive listener ready: the address to advertise (the control connection's local IP) and port.
    PassiveReady(SocketAddr),
    PassiveFailed,
    Stat(Result<Entry, FileError>),
    /// The listing for a `ListTarget::Control` request.
    Listing(Result<Vec<u8>, FileError>),
    /// The data connection is up and the transfer begins; `size` is known for files.
    TransferStarting {
        size: Option<u64>,
    },
    TransferDone,
    TransferFailed(TransferError),
    /// `Effect::Abort` ran; `transfer_was_active` says whether a transfer was cut short.
    Aborted {
        transfer_was_active: bool,
    },
}

/// The session's answer to a command or an outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub replies: Vec<Reply>,
    pub effect: Option<Effect>,
}

impl Step {
    fn reply(code: ReplyCode, text: impl Into<Vec<u8>>) -> Step {
        Step {
            replies: vec![Reply::new(code, text)],
            effect: None,
        }
    }

    fn effect(effect: Effect) -> Step {
        Step {
            replies: Vec::new(),
            effect: Some(effect),
        }
    }
}

/// The one table from filesystem errors to replies (RFC 959 section 4.2.1; 55x permanent, 45x transient).
pub fn file_error_reply(e: FileError) -> Reply {
    let code = match e {
        FileError::NoSpace => ReplyCode::InsufficientStorage,
        FileError::QuotaExceeded => ReplyCode::ExceededStorage,
        FileError::NameTooLong => ReplyCode::NameNotAllowed,
        FileError::Busy | FileError::Io(_) => ReplyCode::LocalError,
        FileError::NotFound
        | FileError::Escapes
        | FileError::PermissionDenied
        | FileError::NotADirectory
        | FileError::IsADirectory
        | FileError::NotAFile
        | FileError::ReadOnly
        | FileError::Exists
        | FileError::NotEmpty => ReplyCode::FileUnavailable,
    };
    Reply::new(code, format!("{e}."))
}

/// The one table from parse errors to replies.
pub fn parse_error_reply(e: ParseError) -> Reply {
    let (code, text) = match e {
        ParseError::Unknown => (ReplyCode::SyntaxError, "Unknown command."),
        ParseError::NotImplemented => (ReplyCode::NotImplemented, "Command not implemented."),
        ParseError::Syntax => (
            ReplyCode::ParameterSyntaxError,
            "Syntax error in parameters or arguments.",
        ),
        ParseError::ParameterNotImplemented => (
            ReplyCode::ParameterNotImplemented,
            "Command not implemented for that parameter.",
        ),
        ParseError::ProtocolNotSupported => (
            ReplyCode::ProtocolNotSupported,
            "Network protocol not supported, use (1,2).",
        ),
        ParseError::Nul => (ReplyCode::ParameterSyntaxError, "NUL byte in command line."),
        ParseError::BareCr => (ReplyCode::ParameterSyntaxError, "Bare CR in command line."),
        ParseError::InvalidUtf8 => (
            ReplyCode::ParameterSyntaxError,
            "Invalid UTF-8 in command line.",
        ),
    };
    Reply::new(code, text)
}

pub fn line_too_long_reply() -> Reply {
    Reply::new(ReplyCode::SyntaxError, "Input line too long.")
}

pub struct Session {
    /// The control connection's peer, for the RFC 2577 PORT/EPRT checks.
    peer: IpAddr,
    login: Login,
    allow_anonymous: bool,
    cwd: VirtualPath,
    ty: TransferType,
    rest: u64,
    data: DataPlan,
    /// RFC 2428 section 4: after EPSV ALL only EPSV may set up data connections.
    epsv_all: bool,
    facts: Facts,
    pending: Option<Pending>,
}

impl Session {
    pub fn new(peer: IpAddr, allow_anonymous: bool) -> Session {
        Session {
            peer: addr::canonical_ip(peer),
            login: Login::AwaitUser,
            allow_anonymous,
            cwd: VirtualPath::root(),
            ty: TransferType::Image,
            rest: 0,
            data: DataPlan::None,
            epsv_all: false,
            facts: Facts::default(),
            pending: None,
        }
    }

    pub fn greeting() -> Reply {
        Reply::new(ReplyCode::ServiceReady, "ringftpd ready.")
    }

    pub fn cwd(&self) -> &VirtualPath {
        &self.cwd
    }

    pub fn user(&self) -> Option<&[u8]> {
        match &self.login {
            Login::LoggedIn { user } => Some(user),
            _ => None,
        }
    }

    pub fn in_transfer(&self) -> bool {
        matches!(self.pending, Some(Pending::Transfer { .. }))
    }

    /// Whether `cmd` may run now. While an effect is outstanding the server holds other commands back
    /// and feeds them in order later; only ABOR and STAT cut in during a transfer (RFC 959 section 4.1.3).
    pub fn accepts_now(&self, cmd: &Result<Command, ParseError>) -> bool {
        match &self.pending {
            None => true,
            Some(Pending::Transfer { .. }) => {
                matches!(cmd, Ok(Command::Abor | Command::Stat { path: None }))
            }
            Some(_) => false,
        }
    }

    pub fn on_command(&mut self, cmd: Result<Command, ParseError>) -> Step {
        let cmd = match cmd {
            Ok(cmd) => cmd,
            Err(e) => {
                let mut step = Step::default();
                step.replies.push(parse_error_reply(e));
                return step;
            }
        };
        if let Some(Pending::Transfer { .. }) = self.pending {
            return match cmd {
                Command::Abor => {
                    self.pending = Some(Pending::Abort);
                    Step::effect(Effect::Abort)
                }
                _ => Step::reply(ReplyCode::SystemStatus, "Transfer in progress."),
            };
        }
        // The gate: before login only these commands run.
        let logged_in = matches!(self.login, Login::LoggedIn { .. });
        if !logged_in
            && !matches!(
                cmd,
                Command::User { .. }
                    | Command::Pass { .. }
                    | Command::Quit
                    | Command::Syst
                    | Command::Feat
                    | Command::Help { .. }
                    | Command::Noop
                    | Command::Opts { .. }
                    | Command::Acct
            )
        {
            return Step::reply(ReplyCode::NotLoggedIn, "Please login with USER and PASS.");
        }
        match cmd {
            Command::User { name } => self.user_cmd(name),
            Command::Pass { .. } => self.pass_cmd(),
            Command::Acct if logged_in => {
                Step::reply(ReplyCode::CommandSuperfluous, "No account needed.")
            }
            Command::Acct => Step::reply(ReplyCode::NotImplemented, "ACCT not implemented."),
            Command::Syst => Step::reply(ReplyCode::SystemType, "UNIX Type: L8"),
            Command::Feat => Step {
                replies: vec![self.feat()],
                effect: None,
            },
            Command::Opts { option, value } => self.opts(&option, &value),
            Command::Noop => Step::reply(ReplyCode::CommandOkay, "NOOP ok."),
            Command::Help { topic } => self.help(topic),
            Command::Quit => Step {
                replies: vec![Reply::new(ReplyCode::ClosingControl, "Goodbye.")],
                effect: Some(Effect::Close),
            },
            Command::Pwd => {
                let mut text = self.cwd.quoted();
                text.extend_from_slice(b" is the current directory.");
                Step::reply(ReplyCode::PathCreated, text)
            }
            Command::Cwd { path } => {
                self.with_path(&path, |s, p| s.stat_for(Pending::Cwd(p.clone()), p))
            }
            Command::Cdup => {
                let parent = self.cwd.parent();
                self.stat_for(Pending::Cwd(parent.clone()), parent)
            }
            Command::Type { ty } => {
                self.ty = ty;
                match ty {
                    TransferType::Ascii => {
                        Step::reply(ReplyCode::CommandOkay, "Switching to ASCII mode.")
                    }
                    TransferType::Image => {
                        Step::reply(ReplyCode::CommandOkay, "Switching to Binary mode.")
                    }
                }
            }
            Command::Mode => Step::reply(ReplyCode::CommandOkay, "Mode set to S."),
            Command::Stru => Step::reply(ReplyCode::CommandOkay, "Structure set to F."),
            Command::Stat { path: None } => self.status(),
            Command::Stat { path: Some(p) } => self.with_path(&p, |s, p| {
                s.pending = Some(Pending::StatPath(p.clone()));
                Step::effect(Effect::List {
                    path: p,
                    format: ListFormat::List,
                    facts: s.facts,
                    target: ListTarget::Control,
                })
            }),
            Command::Pasv if self.epsv_all => Step::reply(
                ReplyCode::BadSequence,
                "Only EPSV is allowed after EPSV ALL.",
            ),
            Command::Pasv => {
                if addr::net_prt(self.peer) != 1 {
                    return Step::reply(
                        ReplyCode::CantOpenDataConnection,
                        "PASV is IPv4 only; use EPSV.",
                    );
                }
                self.pending = Some(Pending::Passive { extended: false });
                Step::effect(Effect::Passive)
            }
            Command::Epsv { arg: EpsvArg::All } => {
                self.epsv_all = true;
                Step::reply(ReplyCode::CommandOkay, "EPSV ALL ok.")
            }
            Command::Epsv { arg } => {
                if let EpsvArg::Proto(p) = arg {
                    if p != addr::net_prt(self.peer) {
                        let use_ = if addr::net_prt(self.peer) == 1 {
                            "(1)"
                        } else {
                            "(2)"
                        };
                        return Step::reply(
                            ReplyCode::ProtocolNotSupported,
                            format!("Network protocol not supported, use {use_}."),
                        );
                    }
                }
                self.pending = Some(Pending::Passive { extended: true });
                Step::effect(Effect::Passive)
            }
            Command::Port { addr } => self.active(SocketAddr::V4(addr)),
            Command::Eprt { addr } => self.active(addr),
            Command::Rest { offset } => {
                self.rest = offset;
                Step::reply(
                    ReplyCode::FileActionPending,
                    format!("Restart position accepted ({offset})."),
                )
            }
            Command::Retr { path } => self.with_path(&path, |s, p| s.retr(p)),
            Command::Size { path } => self.with_path(&path, |s, p| s.stat_for(Pending::Size, p)),
            Command::Mdtm { path } => self.with_path(&path, |s, p| s.stat_for(Pending::Mdtm, p)),
            Command::Mlst { path } => {
                let path = path.unwrap_or_default();
                self.with_path(&path, |s, p| s.stat_for(Pending::Mlst(p.clone()), p))
            }
            Command::List { format, path } => {
                let path = path.unwrap_or_default();
                self.with_path(&path, |s, p| s.list(format, p))
            }
            Command::Allo => Step::reply(ReplyCode::CommandSuperfluous, "ALLO command ignored."),
            Command::Abor => {
                self.pending = Some(Pending::Abort);
                Step::effect(Effect::Abort)
            }
            Command::Write { verb } => Step::reply(
                ReplyCode::FileUnavailable,
                format!("Permission denied: {verb} is not allowed here."),
            ),
        }
    }

    pub fn on_outcome(&mut self, outcome: Outcome) -> Step {
        let pending = self.pending.take();
        match (pending, outcome) {
            (Some(Pending::Passive { extended }), Outcome::PassiveReady(addr)) => {
                self.data = DataPlan::Passive;
                match (extended, addr) {
                    (false, SocketAddr::V4(v4)) => {
                        Step::reply(ReplyCode::EnteringPassiveMode, addr::format_pasv(v4))
                    }
                    (false, SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
                        Some(v4) => Step::reply(
                            ReplyCode::EnteringPassiveMode,
                            addr::format_pasv(std::net::SocketAddrV4::new(v4, v6.port())),
                        ),
                        None => Step::reply(
                            ReplyCode::CantOpenDataConnection,
                            "PASV is IPv4 only; use EPSV.",
                        ),
                    },
                    (true, addr) => Step::reply(
                        ReplyCode::EnteringExtendedPassiveMode,
                        addr::format_epsv(addr.port()),
                    ),
                }
            }
            (Some(Pending::Passive { .. }), _) => {
                self.data = DataPlan::None;
                Step::reply(
                    ReplyCode::CantOpenDataConnection,
                    "Could not open a passive port.",
                )
            }
            (Some(Pending::Cwd(path)), Outcome::Stat(r)) => match r {
                Ok(e) if e.kind == FileKind::Dir => {
                    self.cwd = path;
                    Step::reply(ReplyCode::FileActionOkay, "Directory successfully changed.")
                }
                _ => Step::reply(ReplyCode::FileUnavailable, "Failed to change directory."),
            },
            (Some(Pending::Size), Outcome::Stat(r)) => match r {
                Ok(e) if e.kind == FileKind::File => {
                    Step::reply(ReplyCode::FileStatus, e.size.to_string())
                }
                Ok(_) => Step::reply(
                    ReplyCode::FileUnavailable,
                    "Could not get file size: not a regular file.",
                ),
                Err(e) => Step {
                    replies: vec![file_error_reply(e)],
                    effect: None,
                },
            },
            (Some(Pending::Mdtm), Outcome::Stat(r)) => match r {
                Ok(e) if e.kind == FileKind::File => {
                    Step::reply(ReplyCode::FileStatus, listing::format_time_val(e.mtime))
                }
                Ok(_) => Step::reply(
                    ReplyCode::FileUnavailable,
                    "Could not get modification time: not a regular file.",
                ),
                Err(e) => Step {
                    replies: vec![file_error_reply(e)],
                    effect: None,
                },
            },
            (Some(Pending::Mlst(path)), Outcome::Stat(r)) => match r {
                Ok(e) => {
                    // RFC 3659 section 7.2: the entry line starts with a single space.
                    let mut line = vec![b' '];
                    listing::mlsx_line(
                        &mut line,
                        &e,
                        path.as_bytes(),
                        MlsdRole::Entry,
                        self.facts,
                        false,
                    );
                    line.truncate(line.len() - 2);
                    let mut first = b"Listing ".to_vec();
                    first.extend_from_slice(path.as_bytes());
                    Step {
                        replies: vec![Reply::multi(
                            ReplyCode::FileActionOkay,
                            first,
                            vec![line],
                            "End",
                        )],
                        effect: None,
                    }
                }
                Err(e) => Step {
                    replies: vec![file_error_reply(e)],
                    effect: None,
                },
            },
            (Some(Pending::StatPath(path)), Outcome::Listing(r)) => match r {
                Ok(bytes) => {
                    let body: Vec<Vec<u8>> = bytes
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                        .collect();
                    let mut first = b"Status of ".to_vec();
                    first.extend_from_slice(path.as_bytes());
                    first.push(b':');
                    Step {
                        replies: vec![Reply::multi(
                            ReplyCode::FileStatus,
                            first,
                            body,
                            "End of status",
                        )],
                        effect: None,
                    }
                }
                Err(e) => Step {
                    replies: vec![file_error_reply(e)],
                    effect: None,
                },
            },
            (
                Some(Pending::Transfer {
                    name,
                    listing,
                    started: false,
                }),
                Outcome::TransferStarting { size },
            ) => {
                let mut text = match (listing, self.ty) {
                    (Some(_), _) => b"Here comes the directory listing".to_vec(),
                    (None, TransferType::Ascii) => {
                        b"Opening ASCII mode data connection for ".to_vec()
                    }
                    (None, TransferType::Image) => {
                        b"Opening BINARY mode data connection for ".to_vec()
                    }
                };
                if listing.is_none() {
                    text.extend_from_slice(&name);
                }
                if let Some(size) = size {
                    text.extend_from_slice(format!(" ({size} bytes)").as_bytes());
                }
                text.push(b'.');
                self.pending = Some(Pending::Transfer {
                    name,
                    listing,
                    started: true,
                });
                Step::reply(ReplyCode::FileStatusOkay, text)
            }
            (Some(Pending::Transfer { listing, .. }), Outcome::TransferDone) => {
                self.data = DataPlan::None;
                let text = if listing.is_some() {
                    "Directory send OK."
                } else {
                    "Transfer complete."
                };
                Step::reply(ReplyCode::ClosingDataConnection, text)
            }
            (Some(Pending::Transfer { listing, .. }), Outcome::TransferFailed(e)) => {
                self.data = DataPlan::None;
                Step {
                    replies: vec![transfer_error_reply(e, listing)],
                    effect: None,
                }
            }
            (
                Some(Pending::Abort),
                Outcome::Aborted {
                    transfer_was_active,
                },
            ) => {
                self.data = DataPlan::None;
                self.rest = 0;
                let replies = if transfer_was_active {
                    vec![
                        Reply::new(
                            ReplyCode::TransferAborted,
                            "Connection closed; transfer aborted.",
                        ),
                        Reply::new(ReplyCode::ClosingDataConnection, "ABOR successful."),
                    ]
                } else {
                    vec![Reply::new(
                        ReplyCode::DataConnectionOpenNoTransfer,
                        "No transfer to ABOR.",
                    )]
                };
                Step {
                    replies,
                    effect: None,
                }
            }
            (pending, outcome) => {
                // A stale outcome (e.g. a transfer that ended while ABOR was on its way): keep waiting.
                self.pending = pending;
                let _ = outcome;
                Step::default()
            }
        }
    }

    fn user_cmd(&mut self, name: Vec<u8>) -> Step {
        if matches!(self.login, Login::LoggedIn { .. }) {
            return Step::reply(
                ReplyCode::BadSequence,
                "Already logged in; USER cannot change user.",
            );
        }
        let anonymous = ANONYMOUS_NAMES
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&name));
        self.login = Login::AwaitPass {
            user: name,
            anonymous,
        };
        if anonymous {
            Step::reply(
                ReplyCode::NeedPassword,
                "Anonymous login ok, send your email as password.",
            )
        } else {
            Step::reply(ReplyCode::NeedPassword, "Please specify the password.")
        }
    }

    fn pass_cmd(&mut self) -> Step {
        match std::mem::replace(&mut self.login, Login::AwaitUser) {
            Login::AwaitUser => Step::reply(ReplyCode::BadSequence, "Login with USER first."),
            Login::LoggedIn { user } => {
                self.login = Login::LoggedIn { user };
                Step::reply(ReplyCode::UserLoggedIn, "Already logged in.")
            }
            Login::AwaitPass {
                user,
                anonymous: true,
            } if self.allow_anonymous => {
                self.login = Login::LoggedIn { user };
                Step::reply(ReplyCode::UserLoggedIn, "Login successful.")
            }
            // Named users arrive with the users file; until then every such login fails the same way.
            Login::AwaitPass { .. } => Step::reply(ReplyCode::NotLoggedIn, "Login incorrect."),
        }
    }

    fn feat(&self) -> Reply {
        let body = [
            " EPRT".to_string(),
            " EPSV".to_string(),
            " MDTM".to_string(),
            format!(" MLST {}", self.facts.feat_list()),
            " PASV".to_string(),
            " REST STREAM".to_string(),
            " SIZE".to_string(),
            " TVFS".to_string(),
            " UTF8".to_string(),
        ];
        Reply::multi(
            ReplyCode::SystemStatus,
            "Features:",
            body.into_iter().map(String::into_bytes).collect(),
            "End",
        )
    }

    fn opts(&mut self, option: &[u8], value: &[u8]) -> Step {
        match option {
            // RFC 2640: names are always UTF-8 here, so both ON and OFF are accepted and change nothing.
            b"UTF8" | b"UTF-8"
                if value.eq_ignore_ascii_case(b"ON") || value.eq_ignore_ascii_case(b"OFF") =>
            {
                Step::reply(ReplyCode::CommandOkay, "Always in UTF8 mode.")
            }
            b"MLST" => {
                self.facts = Facts::from_opts(value);
                Step::reply(
                    ReplyCode::CommandOkay,
                    format!("MLST OPTS {}", self.facts.enabled_list()),
                )
            }
            _ => Step::reply(ReplyCode::ParameterSyntaxError, "Option not understood."),
        }
    }

    fn help(&self, topic: Option<Vec<u8>>) -> Step {
        match topic {
            Some(t) => {
                let known = HELP_VERBS
                    .split(' ')
                    .any(|v| v.as_bytes().eq_ignore_ascii_case(&t));
                if known {
                    Step::reply(
                        ReplyCode::HelpMessage,
                        "Syntax as in RFC 959, RFC 2428 and RFC 3659.",
                    )
                } else {
                    Step::reply(ReplyCode::ParameterSyntaxError, "Unknown command.")
                }
            }
            None => {
                let body: Vec<Vec<u8>> = HELP_VERBS
                    .split(' ')
                    .collect::<Vec<_>>()
                    .chunks(8)
                    .map(|c| format!(" {}", c.join(" ")).into_bytes())
                    .collect();
                Step {
                    replies: vec![Reply::multi(
                        ReplyCode::HelpMessage,
                        "The following commands are recognized.",
                        body,
                        "Help OK.",
                    )],
                    effect: None,
                }
            }
        }
    }

    fn status(&self) -> Step {
        let mut body = vec![format!(" Connected to {}", self.peer).into_bytes()];
        if let Some(user) = self.user() {
            let mut line = b" Logged in as ".to_vec();
            line.extend_from_slice(user);
            body.push(line);
        }
        let ty = match self.ty {
            TransferType::Ascii => "ASCII",
            TransferType::Image => "BINARY",
        };
        body.push(format!(" TYPE: {ty}; STRUcture: File; transfer MODE: Stream").into_bytes());
        body.push(b" No data connection".to_vec());
        body.push(format!(" ringftpd {}", env!("CARGO_PKG_VERSION")).into_bytes());
        Step {
            replies: vec![Reply::multi(
                ReplyCode::SystemStatus,
                "FTP server status:",
                body,
                "End of status",
            )],
            effect: None,
        }
    }

    fn with_path(
        &mut self,
        arg: &[u8],
        then: impl FnOnce(&mut Session, VirtualPath) -> Step,
    ) -> Step {
        match self.cwd.join(arg) {
            Ok(p) => then(self, p),
            Err(e) => Step::reply(ReplyCode::NameNotAllowed, format!("Path not allowed: {e}.")),
        }
    }

    fn stat_for(&mut self, pending: Pending, path: VirtualPath) -> Step {
        self.pending = Some(pending);
        Step::effect(Effect::Stat(path))
    }

    fn active(&mut self, target: SocketAddr) -> Step {
        if self.epsv_all {
            return Step::reply(
                ReplyCode::BadSequence,
                "Only EPSV is allowed after EPSV ALL.",
            );
        }
        // RFC 2577 section 3: connecting anywhere but back to the client, or to a privileged port,
        // turns the server into a bounce proxy.
        if addr::canonical_ip(target.ip()) != self.peer {
            return Step::reply(
                ReplyCode::ParameterNotImplemented,
                "Data connections go only to the client's own address.",
            );
        }
        if target.port() < 1024 {
            return Step::reply(
                ReplyCode::ParameterNotImplemented,
                "Data connections to ports below 1024 are refused.",
            );
        }
        self.data = DataPlan::Active(target);
        Step {
            replies: vec![Reply::new(
                ReplyCode::CommandOkay,
                "PORT command successful. Consider using EPSV.",
            )],
            effect: Some(Effect::Active(target)),
        }
    }

    fn needs_data(&self) -> Option<Step> {
        match self.data {
            DataPlan::None => Some(Step::reply(
                ReplyCode::CantOpenDataConnection,
                "Use PORT, EPRT, PASV or EPSV first.",
            )),
            _ => None,
        }
    }

    fn retr(&mut self, path: VirtualPath) -> Step {
        let offset = std::mem::take(&mut self.rest);
        if let Some(step) = self.needs_data() {
            return step;
        }
        let name = path.file_name().unwrap_or(b"/").to_vec();
        self.pending = Some(Pending::Transfer {
            name,
            listing: None,
            started: false,
        });
        Step::effect(Effect::Retr {
            path,
            offset,
            ascii: self.ty == TransferType::Ascii,
        })
    }

    fn list(&mut self, format: ListFormat, path: VirtualPath) -> Step {
        if let Some(step) = self.needs_data() {
            return step;
        }
        self.pending = Some(Pending::Transfer {
            name: Vec::new(),
            listing: Some(format),
            started: false,
        });
        Step::effect(Effect::List {
            path,
            format,
            facts: self.facts,
            target: ListTarget::Data,
        })
    }
}

fn transfer_error_reply(e: TransferError, listing: Option<ListFormat>) -> Reply {
    match e {
        // RFC 3659 section 7.2.1: MLSD of something that is not a directory is a 501.
        TransferError::File(FileError::NotADirectory) if listing == Some(ListFormat::Mlsd) => {
            Reply::new(ReplyCode::ParameterSyntaxError, "MLSD needs a directory.")
        }
        TransferError::File(e) => file_error_reply(e),
        TransferError::NoDataConnection => Reply::new(
            ReplyCode::CantOpenDataConnection,
            "Failed to establish connection.",
        ),
        TransferError::ConnectionLost => Reply::new(
            ReplyCode::TransferAborted,
            "Connection closed; transfer aborted.",
        ),
        TransferError::FileChanged => Reply::new(
            ReplyCode::LocalError,
            "File changed during transfer; transfer aborted.",
        ),
        TransferError::Local(errno) => Reply::new(
            ReplyCode::LocalError,
            format!("Local error in processing (errno {errno})."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::command::parse;

    fn peer() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn run(s: &mut Session, line: &str) -> Step {
        s.on_command(parse(line.as_bytes()))
    }

    fn codes(step: &Step) -> Vec<u16> {
        step.replies.iter().map(|r| r.code.as_u16()).collect()
    }

    fn logged_in() -> Session {
        let mut s = Session::new(peer(), true);
        assert_eq!(codes(&run(&mut s, "USER anonymous")), [331]);
        assert_eq!(codes(&run(&mut s, "PASS a@b")), [230]);
        s
    }

    fn file(size: u64) -> Entry {
        Entry {
            name: b"f".to_vec(),
            kind: FileKind::File,
            size,
            mtime: 0,
            mode: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            dev: 1,
            ino: 2,
        }
    }

    #[test]
    fn login_sequence() {
        let mut s = Session::new(peer(), true);
        assert_eq!(codes(&run(&mut s, "PASS x")), [503]);
        assert_eq!(codes(&run(&mut s, "PWD")), [530]);
        assert_eq!(codes(&run(&mut s, "USER bob")), [331]);
        assert_eq!(codes(&run(&mut s, "PASS x")), [530]);
        assert_eq!(codes(&run(&mut s, "USER FTP")), [331]);
        assert_eq!(codes(&run(&mut s, "PASS ")), [230]);
        assert_eq!(codes(&run(&mut s, "USER other")), [503]);
        assert_eq!(codes(&run(&mut s, "ACCT x")), [202]);
    }

    #[test]
    fn anonymous_can_be_disabled() {
        let mut s = Session::new(peer(), false);
        run(&mut s, "USER anonymous");
        assert_eq!(codes(&run(&mut s, "PASS x")), [530]);
    }

    #[test]
    fn retr_needs_a_data_channel_then_runs() {
        let mut s = logged_in();
        assert_eq!(codes(&run(&mut s, "RETR f")), [425]);
        let step = run(&mut s, "PASV");
        assert_eq!(step.effect, Some(Effect::Passive));
        let step = s.on_outcome(Outcome::PassiveReady("127.0.0.1:50000".parse().unwrap()));
        assert_eq!(
            step.replies[0].to_bytes(),
            b"227 Entering Passive Mode (127,0,0,1,195,80).\r\n"
        );
        assert_eq!(codes(&run(&mut s, "REST 10")), [350]);
        let step = run(&mut s, "RETR /d/f");
        assert_eq!(
            step.effect,
            Some(Effect::Retr {
                path: VirtualPath::root().join(b"/d/f").unwrap(),
                offset: 10,
                ascii: false
            })
        );
        assert!(!s.accepts_now(&parse(b"NOOP")));
        assert!(s.accepts_now(&parse(b"ABOR")));
        let step = s.on_outcome(Outcome::TransferStarting { size: Some(5) });
        assert_eq!(
            step.replies[0].to_bytes(),
            b"150 Opening BINARY mode data connection for f (5 bytes).\r\n"
        );
        assert_eq!(codes(&s.on_outcome(Outcome::TransferDone)), [226]);
        // The passive channel is used up and REST applies to one transfer only.
        assert_eq!(codes(&run(&mut s, "RETR f")), [425]);
    }

    #[test]
    fn abort_mid_transfer_gives_426_then_226() {
        let mut s = logged_in();
        run(&mut s, "EPSV");
        assert_eq!(
            s.on_outcome(Outcome::PassiveReady("127.0.0.1:50001".parse().unwrap()))
                .replies[0]
                .to_bytes(),
            b"229 Entering Extended Passive Mode (|||50001|)\r\n"
        );
        run(&mut s, "RETR f");
        s.on_outcome(Outcome::TransferStarting { size: None });
        assert_eq!(run(&mut s, "ABOR").effect, Some(Effect::Abort));
        // The transfer's own end racing with ABOR is ignored.
        assert!(s.on_outcome(Outcome::TransferDone).replies.is_empty());
        assert_eq!(
            codes(&s.on_outcome(Outcome::Aborted {
                transfer_was_active: true
            })),
            [426, 226]
        );
        assert_eq!(codes(&run(&mut s, "ABOR")), []);
        assert_eq!(
            codes(&s.on_outcome(Outcome::Aborted {
                transfer_was_active: false
            })),
            [225]
        );
    }

    #[test]
    fn transfer_failures_map_to_rfc_codes() {
        for (err, code) in [
            (TransferError::File(FileError::NotFound), 550),
            (TransferError::NoDataConnection, 425),
            (TransferError::ConnectionLost, 426),
            (TransferError::FileChanged, 451),
            (TransferError::Local(5), 451),
        ] {
            let mut s = logged_in();
            run(&mut s, "PASV");
            s.on_outcome(Outcome::PassiveReady("127.0.0.1:50000".parse().unwrap()));
            run(&mut s, "RETR f");
            assert_eq!(
                codes(&s.on_outcome(Outcome::TransferFailed(err))),
                [code],
                "{err:?}"
            );
        }
    }

    #[test]
    fn mlsd_on_a_file_is_501() {
        let mut s = logged_in();
        run(&mut s, "PASV");
        s.on_outcome(Outcome::PassiveReady("127.0.0.1:50000".parse().unwrap()));
        run(&mut s, "MLSD f");
        assert_eq!(
            codes(&s.on_outcome(Outcome::TransferFailed(TransferError::File(
                FileError::NotADirectory
            )))),
            [501]
        );
    }

    #[test]
    fn port_refuses_bounce_and_low_ports() {
        let mut s = logged_in();
        assert_eq!(codes(&run(&mut s, "PORT 10,0,0,1,200,10")), [504]);
        assert_eq!(codes(&run(&mut s, "PORT 127,0,0,1,0,21")), [504]);
        assert_eq!(codes(&run(&mut s, "PORT 127,0,0,1")), [501]);
        let step = run(&mut s, "PORT 127,0,0,1,200,10");
        assert_eq!(codes(&step), [200]);
        assert_eq!(
            step.effect,
            Some(Effect::Active("127.0.0.1:51210".parse().unwrap()))
        );
        assert_eq!(codes(&run(&mut s, "EPRT |2|::1|5000|")), [504]);
        assert_eq!(codes(&run(&mut s, "EPRT |1|127.0.0.1|5000|")), [200]);
        assert_eq!(codes(&run(&mut s, "EPRT |9|x|5000|")), [522]);
    }

    #[test]
    fn epsv_all_locks_out_other_setups() {
        let mut s = logged_in();
        assert_eq!(codes(&run(&mut s, "EPSV ALL")), [200]);
        assert_eq!(codes(&run(&mut s, "PASV")), [503]);
        assert_eq!(codes(&run(&mut s, "PORT 127,0,0,1,200,10")), [503]);
        assert_eq!(run(&mut s, "EPSV").effect, Some(Effect::Passive));
    }

    #[test]
    fn epsv_protocol_mismatch_is_522() {
        let mut s = logged_in();
        assert_eq!(codes(&run(&mut s, "EPSV 2")), [522]);
        assert_eq!(run(&mut s, "EPSV 1").effect, Some(Effect::Passive));
    }

    #[test]
    fn ipv6_peer_pasv_is_refused() {
        let mut s = Session::new("::1".parse().unwrap(), true);
        run(&mut s, "USER ftp");
        run(&mut s, "PASS x");
        assert_eq!(codes(&run(&mut s, "PASV")), [425]);
    }

    #[test]
    fn cwd_pwd_cdup() {
        let mut s = logged_in();
        assert_eq!(
            run(&mut s, "PWD").replies[0].to_bytes(),
            b"257 \"/\" is the current directory.\r\n"
        );
        let step = run(&mut s, "CWD a \"q\"");
        assert_eq!(
            step.effect,
            Some(Effect::Stat(VirtualPath::root().join(b"a \"q\"").unwrap()))
        );
        let mut dir = file(0);
        dir.kind = FileKind::Dir;
        assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(dir.clone())))), [250]);
        assert_eq!(
            run(&mut s, "PWD").replies[0].to_bytes(),
            b"257 \"/a \"\"q\"\"\" is the current directory.\r\n"
        );
        run(&mut s, "CWD f");
        assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(file(1))))), [550]);
        run(&mut s, "CWD missing");
        assert_eq!(
            codes(&s.on_outcome(Outcome::Stat(Err(FileError::NotFound)))),
            [550]
        );
        assert_eq!(
            run(&mut s, "CDUP").effect,
            Some(Effect::Stat(VirtualPath::root()))
        );
        assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(dir)))), [250]);
        assert_eq!(s.cwd(), &VirtualPath::root());
    }

    #[test]
    fn size_mdtm_mlst() {
        let mut s = logged_in();
        run(&mut s, "SIZE f");
        assert_eq!(
            s.on_outcome(Outcome::Stat(Ok(file(1234)))).replies[0].to_bytes(),
            b"213 1234\r\n"
        );
        run(&mut s, "MDTM f");
        assert_eq!(
            s.on_outcome(Outcome::Stat(Ok(file(1)))).replies[0].to_bytes(),
            b"213 19700101000000\r\n"
        );
        run(&mut s, "SIZE d");
        let mut dir = file(0);
        dir.kind = FileKind::Dir;
        assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(dir)))), [550]);
        run(&mut s, "MLST f");
        let r = s.on_outcome(Outcome::Stat(Ok(file(3)))).replies[0].to_bytes();
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("250-Listing /f\r\n type=file;size=3;"),
            "{text}"
        );
        assert!(text.ends_with(" /f\r\n250 End\r\n"), "{text}");
    }

    #[test]
    fn simple_commands() {
        let mut s = logged_in();
        assert_eq!(
            run(&mut s, "SYST").replies[0].to_bytes(),
            b"215 UNIX Type: L8\r\n"
        );
        assert_eq!(codes(&run(&mut s, "TYPE A")), [200]);
        assert_eq!(codes(&run(&mut s, "TYPE E")), [504]);
        assert_eq!(codes(&run(&mut s, "MODE S")), [200]);
        assert_eq!(codes(&run(&mut s, "STRU F")), [200]);
        assert_eq!(codes(&run(&mut s, "NOOP")), [200]);
        assert_eq!(codes(&run(&mut s, "ALLO 100")), [202]);
        assert_eq!(codes(&run(&mut s, "HELP")), [214]);
        assert_eq!(codes(&run(&mut s, "HELP RETR")), [214]);
        assert_eq!(codes(&run(&mut s, "STAT")), [211]);
        assert_eq!(codes(&run(&mut s, "OPTS UTF8 ON")), [200]);
        assert_eq!(codes(&run(&mut s, "OPTS FOO")), [501]);
        assert_eq!(codes(&run(&mut s, "STOR x")), [550]);
        assert_eq!(codes(&run(&mut s, "DELE x")), [550]);
        assert_eq!(codes(&run(&mut s, "XYZZY")), [500]);
        assert_eq!(codes(&run(&mut s, "REIN")), [502]);
        let quit = run(&mut s, "QUIT");
        assert_eq!(codes(&quit), [221]);
        assert_eq!(quit.effect, Some(Effect::Close));
    }

    #[test]
    fn feat_lists_extensions() {
        let mut s = Session::new(peer(), true);
        let text = String::from_utf8(run(&mut s, "FEAT").replies[0].to_bytes()).unwrap();
        for ext in [
            "EPSV",
            "EPRT",
            "MDTM",
            "MLST type*;",
            "REST STREAM",
            "SIZE",
            "UTF8",
        ] {
            assert!(text.contains(&format!(" {ext}")), "{ext} missing in {text}");
        }
        assert!(text.starts_with("211-") && text.ends_with("211 End\r\n"));
    }
}
