//! The one gate every command passes: login first, then the principal's rights for the path.

use super::{Login, Session, Step};
use crate::proto::command::Command;
use crate::proto::path::VirtualPath;
use crate::proto::reply::ReplyCode;

/// What a logged-in principal may do; one gate (`Session::allowed`) checks it for every command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// DELE, MKD, RMD, RNFR/RNTO, SITE CHMOD, MFMT.
    pub modify: bool,
    /// STOR, STOU, APPE.
    pub upload: bool,
    /// RETR.
    pub download: bool,
    /// Anonymous "incoming" directory: uploads only there, never overwriting, and nothing in it
    /// can be downloaded or listed (a write-only drop box, as mirror sites run them).
    pub drop_box: Option<VirtualPath>,
    /// The user's own TLS requirement (`tls` in the users file), on top of its class's.
    pub tls: Option<super::TlsRequirement>,
}

impl Rights {
    pub fn read_only() -> Rights {
        Rights {
            modify: false,
            upload: false,
            download: true,
            drop_box: None,
            tls: None,
        }
    }
}

/// What the gate is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Download,
    List,
    Upload,
    Modify,
}

impl Session {
    pub fn logged_in(&self) -> bool {
        matches!(self.login, Login::LoggedIn { .. })
    }

    /// The login gate: before login only the commands in `runs_before_login` run.
    pub(super) fn admits(&self, cmd: &Command) -> Result<(), Step> {
        if self.logged_in() || runs_before_login(cmd) {
            Ok(())
        } else {
            Err(Step::reply(
                ReplyCode::NotLoggedIn,
                "Please login with USER and PASS.",
            ))
        }
    }

    pub(super) fn rights(&self) -> Option<&Rights> {
        match &self.login {
            Login::LoggedIn { rights, .. } => Some(rights),
            _ => None,
        }
    }

    pub(super) fn in_drop_box(&self, path: &VirtualPath) -> bool {
        let Some(dir) = self.rights().and_then(|r| r.drop_box.as_ref()) else {
            return false;
        };
        let (p, d) = (path.as_bytes(), dir.as_bytes());
        d == b"/" || p == d || (p.starts_with(d) && p.get(d.len()) == Some(&b'/'))
    }

    /// The one permission gate: every command that reads or changes files asks here first.
    pub(super) fn allowed(&self, action: Action, path: &VirtualPath) -> Result<(), Step> {
        let Some(rights) = self.rights() else {
            return Err(Step::reply(
                ReplyCode::NotLoggedIn,
                "Please login with USER and PASS.",
            ));
        };
        let drop_box = rights.drop_box.is_some();
        let ok = match action {
            Action::Download => rights.download && !self.in_drop_box(path),
            Action::List => !self.in_drop_box(path),
            Action::Upload => rights.upload && (!drop_box || self.in_drop_box(path)),
            Action::Modify => rights.modify,
        };
        if ok {
            Ok(())
        } else {
            Err(Step::reply(
                ReplyCode::FileUnavailable,
                "Permission denied.",
            ))
        }
    }

    /// RFC 3659 `perm` facts offer write operations only to users who may modify.
    pub(super) fn writable(&self) -> bool {
        self.rights().is_some_and(|r| r.modify)
    }
}

/// The commands that run before login: logging in, leaving, and asking what the server offers.
fn runs_before_login(cmd: &Command) -> bool {
    matches!(
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
            | Command::Auth { .. }
            | Command::Pbsz { .. }
            | Command::Prot { .. }
            | Command::Ccc
    )
}
