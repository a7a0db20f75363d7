//! Logging in: USER, PASS and ACCT, anonymous logins (RFC 1635), and the answer to a password check.

use super::tls::{TlsRequirement, refuse_clear_login};
use super::{Effect, Pending, Rights, Session, Step};
use crate::proto::path::VirtualPath;
use crate::proto::reply::ReplyCode;

/// Names that log in anonymously (RFC 1635).
const ANONYMOUS_NAMES: [&[u8]; 2] = [b"anonymous", b"ftp"];

/// Longest anonymous password kept for the logs: RFC 1635 asks for an e-mail address (RFC 5321
/// caps a path at 256 octets); the command line itself may be up to `MAX_LINE_BYTES`.
pub const MAX_ANONYMOUS_PASSWORD_BYTES: usize = 256;

/// Who may log in, as far as the protocol core needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allow_anonymous: bool,
    /// Write-only upload directory for anonymous users.
    pub anonymous_upload: Option<VirtualPath>,
    /// LIST and NLST show dot files without `-a` (vsftpd's `force_dot_files`).
    pub force_dot_files: bool,
    pub tls: TlsPolicy,
}

/// What the session knows of TLS: whether AUTH TLS can be offered, and what each class of
/// users must use (a named user's own `tls` in the users file can only add to its class).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// A certificate is configured: FEAT lists AUTH TLS, PBSZ and PROT, and AUTH TLS works.
    pub available: bool,
    /// Anonymous users (USER anonymous or ftp).
    pub anonymous: TlsRequirement,
    /// Users of the users file.
    pub named: TlsRequirement,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            allow_anonymous: true,
            anonymous_upload: None,
            force_dot_files: false,
            tls: TlsPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Login {
    AwaitUser,
    AwaitPass {
        user: Vec<u8>,
        anonymous: bool,
    },
    LoggedIn {
        user: Vec<u8>,
        anonymous: bool,
        /// What an anonymous user gave as password (their e-mail address, by convention), at
        /// most [`MAX_ANONYMOUS_PASSWORD_BYTES`]; empty for named users, whose password is
        /// never kept.
        identity: Vec<u8>,
        rights: Rights,
    },
}

impl Session {
    pub(super) fn user_cmd(&mut self, name: Vec<u8>) -> Step {
        if self.logged_in() {
            return Step::reply(
                ReplyCode::BadSequence,
                "Already logged in; USER cannot change user.",
            );
        }
        let anonymous = ANONYMOUS_NAMES
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&name));
        if let Some(refused) = self.login_needs_tls(anonymous) {
            // Before the password crosses the wire in clear.
            self.login = Login::AwaitUser;
            return refused;
        }
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

    pub(super) fn pass_cmd(&mut self, password: Vec<u8>) -> Step {
        match std::mem::replace(&mut self.login, Login::AwaitUser) {
            Login::AwaitUser => Step::reply(ReplyCode::BadSequence, "Login with USER first."),
            login @ Login::LoggedIn { .. } => {
                self.login = login;
                Step::reply(ReplyCode::UserLoggedIn, "Already logged in.")
            }
            Login::AwaitPass {
                user,
                anonymous: true,
            } => {
                if !self.policy.allow_anonymous {
                    return Step::reply(ReplyCode::NotLoggedIn, "Login incorrect.");
                }
                let rights = match &self.policy.anonymous_upload {
                    Some(dir) => Rights {
                        upload: true,
                        drop_box: Some(dir.clone()),
                        ..Rights::read_only()
                    },
                    None => Rights::read_only(),
                };
                self.login = Login::LoggedIn {
                    user,
                    anonymous: true,
                    identity: bounded_identity(password),
                    rights,
                };
                Step::reply(ReplyCode::UserLoggedIn, "Login successful.")
            }
            // Named users are checked off the shard (password hashing is slow on purpose); the
            // server answers unknown users and wrong passwords the same way, after the same delay.
            Login::AwaitPass {
                user,
                anonymous: false,
            } => {
                self.login = Login::AwaitPass {
                    user: user.clone(),
                    anonymous: false,
                };
                self.pending = Some(Pending::Login);
                Step::effect(Effect::Authenticate { user, password })
            }
        }
    }

    /// ACCT: no account is ever needed; superfluous (202) after login, not implemented (502) before.
    pub(super) fn acct(&self) -> Step {
        if self.logged_in() {
            Step::reply(ReplyCode::CommandSuperfluous, "No account needed.")
        } else {
            Step::reply(ReplyCode::NotImplemented, "ACCT not implemented.")
        }
    }

    /// The password check of a named user came back: `rights` or a failed login.
    pub(super) fn login_checked(&mut self, rights: Option<Rights>) -> Step {
        match (&self.login, rights) {
            // The user's own requirement, known only now: the password has crossed in clear
            // once, but the account is never used in clear.
            (Login::AwaitPass { .. }, Some(rights))
                if rights.tls >= Some(TlsRequirement::Login) && !self.tls.control =>
            {
                self.login = Login::AwaitUser;
                refuse_clear_login()
            }
            (Login::AwaitPass { user, .. }, Some(rights)) => {
                self.login = Login::LoggedIn {
                    user: user.clone(),
                    anonymous: false,
                    identity: Vec::new(),
                    rights,
                };
                Step::reply(ReplyCode::UserLoggedIn, "Login successful.")
            }
            _ => {
                self.login = Login::AwaitUser;
                Step::reply(ReplyCode::NotLoggedIn, "Login incorrect.")
            }
        }
    }
}

/// An anonymous password cut to [`MAX_ANONYMOUS_PASSWORD_BYTES`]; a cut that would split a UTF-8
/// sequence backs off to its start, so valid UTF-8 stays valid in the logs.
fn bounded_identity(mut password: Vec<u8>) -> Vec<u8> {
    if password.len() > MAX_ANONYMOUS_PASSWORD_BYTES {
        let mut end = MAX_ANONYMOUS_PASSWORD_BYTES;
        // At most 3 continuation bytes precede the byte that would start the next character.
        for _ in 0..3 {
            if password[end] & 0xc0 != 0x80 {
                break;
            }
            end -= 1;
        }
        password.truncate(end);
        password.shrink_to_fit();
    }
    password
}
