//! The per-session state machine: commands in, replies and effects out (no I/O, `now` is an argument).
//!
//! `on_command` answers at once where it can and otherwise asks the server to run an [`Effect`];
//! the server reports back with an [`Outcome`] and `on_outcome` produces the replies. Every
//! multi-command sequence (USER/PASS, REST/RETR, PASV/RETR, ABOR, STAT mid-transfer) is
//! unit-tested here.
//!
//! This file holds the session state and the two dispatchers; each verb family, with the outcomes
//! of the effects it asks for, lives in its own file: `login`, `text` (FEAT/OPTS/HELP/STAT),
//! `lookup` (PWD/CWD/SIZE/MDTM/MLST), `data` (PORT/PASV/EPSV/TYPE), `transfer` (RETR/STOR/LIST/
//! ABOR, and STAT during a transfer) and `fs` (DELE/MKD/RMD/RNFR/RNTO/MFMT/SITE). `gate` checks
//! every command, `replies` maps errors to replies, `effect` is the vocabulary shared with the
//! server.

use std::net::{IpAddr, SocketAddr};

use super::addr::{self, EpsvArg};
use super::command::{Command, ParseError, TransferType};
use super::listing::Facts;
use super::path::VirtualPath;
use super::reply::{Reply, ReplyCode};

mod data;
mod effect;
mod fs;
mod gate;
mod login;
mod lookup;
mod replies;
mod text;
mod tls;
mod transfer;

pub use data::DataPlan;
pub use effect::{Effect, FsOp, ListTarget, Outcome, Progress, Step, StoreMode, TransferError};
use fs::FsReply;
use gate::Action;
pub use gate::Rights;
use login::Login;
pub use login::{MAX_ANONYMOUS_PASSWORD_BYTES, Policy, TlsPolicy};
pub use lookup::{stat_listing_body, stat_listing_head};
pub use replies::{file_error_reply, line_too_long_reply, parse_error_reply};
pub use tls::TlsRequirement;
use tls::TlsState;
use transfer::TransferKind;

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
    /// `path` is what the transfer names (for STOU the directory until the server picks the name);
    /// `named` is RETR's argument as the client sent it, which its 150 reply echoes.
    Transfer {
        path: VirtualPath,
        named: Vec<u8>,
        kind: TransferKind,
        started: bool,
    },
    Abort,
    Login,
    Rnfr(VirtualPath),
    Fs(FsReply),
}

pub struct Session {
    /// The control connection's peer, for the RFC 2577 PORT/EPRT checks.
    peer: IpAddr,
    login: Login,
    policy: Policy,
    cwd: VirtualPath,
    /// SITE UMASK: applied to files and directories this session creates.
    umask: u32,
    /// RNFR accepted; only the very next command may be RNTO (RFC 959 section 4.1.3).
    rename_from: Option<VirtualPath>,
    ty: TransferType,
    rest: u64,
    data: DataPlan,
    /// RFC 2428 section 4: after EPSV ALL only EPSV may set up data connections.
    epsv_all: bool,
    facts: Facts,
    pending: Option<Pending>,
    tls: TlsState,
}

impl Session {
    pub fn new(peer: IpAddr, policy: Policy) -> Session {
        Session {
            peer: addr::canonical_ip(peer),
            login: Login::AwaitUser,
            policy,
            cwd: VirtualPath::root(),
            umask: 0o022,
            rename_from: None,
            ty: TransferType::Image,
            rest: 0,
            data: DataPlan::None,
            epsv_all: false,
            facts: Facts::default(),
            pending: None,
            tls: TlsState::default(),
        }
    }

    pub fn cwd(&self) -> &VirtualPath {
        &self.cwd
    }

    pub fn user(&self) -> Option<&[u8]> {
        match &self.login {
            Login::LoggedIn { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The named (not anonymous) user whose password is being checked.
    pub fn pending_user(&self) -> Option<&[u8]> {
        match &self.login {
            Login::AwaitPass {
                user,
                anonymous: false,
            } if self.pending == Some(Pending::Login) => Some(user),
            _ => None,
        }
    }

    /// Logged in as the anonymous principal (USER anonymous or ftp, RFC 1635).
    pub fn is_anonymous(&self) -> bool {
        matches!(
            self.login,
            Login::LoggedIn {
                anonymous: true,
                ..
            }
        )
    }

    /// The password an anonymous user gave (by convention their e-mail address), cut to
    /// [`MAX_ANONYMOUS_PASSWORD_BYTES`]; `None` unless logged in anonymously. The transfer log
    /// names anonymous users by it.
    pub fn anonymous_password(&self) -> Option<&[u8]> {
        match &self.login {
            Login::LoggedIn {
                anonymous: true,
                identity,
                ..
            } => Some(identity),
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
                matches!(cmd, Ok(Command::Abor | Command::Stat { args: None }))
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
        if self.in_transfer() {
            return self.during_transfer(cmd);
        }
        // The gate: before login only a few commands run.
        if let Err(refused) = self.admits(&cmd) {
            return refused;
        }
        // RFC 959 section 4.1.3: RNTO must follow RNFR immediately; anything else forgets it.
        let rename_from = self.rename_from.take();
        match cmd {
            // login.rs
            Command::User { name } => self.user_cmd(name),
            Command::Pass { password } => self.pass_cmd(password),
            Command::Acct => self.acct(),
            // text.rs
            Command::Feat => self.feat(),
            Command::Opts { option, value } => self.opts(&option, &value),
            Command::Help { topic } => self.help(topic),
            Command::Stat { args: None } => self.status(),
            // Fixed answers that change nothing (MODE S and STRU F are all the parser accepts).
            Command::Syst => Step::reply(ReplyCode::SystemType, "UNIX Type: L8"),
            Command::Noop => Step::reply(ReplyCode::CommandOkay, "NOOP ok."),
            Command::Mode => Step::reply(ReplyCode::CommandOkay, "Mode set to S."),
            Command::Stru => Step::reply(ReplyCode::CommandOkay, "Structure set to F."),
            Command::Allo => Step::reply(ReplyCode::CommandSuperfluous, "ALLO command ignored."),
            Command::Quit => Step {
                replies: vec![Reply::new(ReplyCode::ClosingControl, "Goodbye.")],
                effect: Some(Effect::Close),
            },
            // lookup.rs
            Command::Pwd => self.pwd(),
            Command::Cwd { path } => self.with_path(&path, Session::change_dir),
            Command::Cdup => self.change_dir(self.cwd.parent()),
            Command::Size { path } => self.with_path(&path, Session::size),
            Command::Mdtm { path } => self.with_path(&path, Session::mdtm),
            Command::Mlst { path } => self.with_path(&path.unwrap_or_default(), Session::mlst),
            Command::Stat { args: Some(args) } => {
                let arg = args.path.unwrap_or_default();
                self.with_path(&arg, |s, p| s.stat_path(p, args.options, &arg))
            }
            // data.rs
            Command::Type { ty } => self.set_type(ty),
            Command::Pasv => self.pasv(),
            Command::Epsv { arg: EpsvArg::All } => self.enter_epsv_all(),
            Command::Epsv { arg } => self.epsv(arg),
            Command::Port { addr } => self.active(SocketAddr::V4(addr)),
            Command::Eprt { addr } => self.active(addr),
            // transfer.rs
            Command::Rest { offset } => self.rest(offset),
            Command::Retr { path: arg } => self.with_path(&arg, |s, p| s.retr(p, &arg)),
            Command::List {
                format,
                options,
                path,
            } => {
                let arg = path.unwrap_or_default();
                self.with_path(&arg, |s, p| s.list(format, options, p, &arg))
            }
            Command::Stor { path } => self.with_path(&path, Session::stor),
            Command::Appe { path } => self.with_path(&path, |s, p| s.store(p, StoreMode::Append)),
            Command::Stou { base } => self.stou(base),
            Command::Abor => self.abor(),
            // fs.rs
            Command::Dele { path } => self.with_path(&path, Session::dele),
            Command::Mkd { path } => self.with_path(&path, Session::mkd),
            Command::Rmd { path } => self.with_path(&path, Session::rmd),
            Command::Rnfr { path } => self.with_path(&path, Session::rnfr),
            Command::Rnto { path } => self.rnto(rename_from, &path),
            Command::Mfmt { secs, path } => self.with_path(&path, |s, p| s.mfmt(secs, p)),
            Command::Site(site) => self.site(site),
            // tls.rs
            Command::Auth { mechanism } => self.auth(mechanism),
            Command::Pbsz { size } => self.pbsz(size),
            Command::Prot { level } => self.prot(level),
            Command::Ccc => self.ccc(),
        }
    }

    pub fn on_outcome(&mut self, outcome: Outcome) -> Step {
        let pending = self.pending.take();
        match (pending, outcome) {
            (Some(Pending::Passive { extended }), Outcome::PassiveReady(addr)) => {
                self.passive_ready(extended, addr)
            }
            (Some(Pending::Passive { .. }), _) => self.passive_failed(),
            (Some(Pending::Cwd(path)), Outcome::Stat(r)) => self.cwd_checked(path, r),
            (Some(Pending::Size), Outcome::Stat(r)) => self.size_checked(r),
            (Some(Pending::Mdtm), Outcome::Stat(r)) => self.mdtm_checked(r),
            (Some(Pending::Mlst(path)), Outcome::Stat(r)) => self.mlst_checked(path, r),
            (Some(Pending::StatPath(_)), Outcome::Listed(r)) => self.stat_listed(r),
            (
                Some(Pending::Transfer {
                    path,
                    named,
                    kind,
                    started: false,
                }),
                Outcome::TransferStarting { size, name: unique },
            ) => self.transfer_starting(path, named, kind, size, unique),
            (Some(Pending::Transfer { kind, path, .. }), Outcome::TransferDone) => {
                self.transfer_done(kind, &path)
            }
            (Some(Pending::Transfer { kind, .. }), Outcome::TransferFailed(e)) => {
                self.transfer_failed(kind, e)
            }
            (Some(Pending::Login), Outcome::Login(rights)) => self.login_checked(rights),
            (Some(Pending::Rnfr(path)), Outcome::Stat(r)) => self.rnfr_checked(path, r),
            (Some(Pending::Fs(done)), Outcome::Fs(r)) => self.fs_done(done, r),
            (
                Some(Pending::Abort),
                Outcome::Aborted {
                    transfer_was_active,
                },
            ) => self.aborted(transfer_was_active),
            (pending, outcome) => {
                // A stale outcome (e.g. a transfer that ended while ABOR was on its way): keep waiting.
                self.pending = pending;
                let _ = outcome;
                Step::default()
            }
        }
    }

    /// Resolves a command's path argument against the current directory, then runs `then` on it.
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
}

#[cfg(test)]
mod tests;
