//! FTP over TLS (RFC 4217): AUTH TLS, PBSZ, PROT and CCC, and what they leave in the session:
//! whether the control connection is protected and whether data connections must be.

use super::{Effect, Session, Step};
use crate::proto::command::{AuthMechanism, ProtLevel};
use crate::proto::reply::ReplyCode;

/// What TLS a class of users must use (`tls_anonymous`, `tls_named`). Each level includes the
/// ones before it: `Data` also requires TLS for login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsRequirement {
    /// Clear or TLS, as the client likes.
    #[default]
    Optional,
    /// USER and PASS only after AUTH TLS (or on an implicit TLS connection): 534 otherwise.
    Login,
    /// Login over TLS, and every data connection protected (`PROT P`): 534 to `PROT C`, 521
    /// to a data command with data connections in clear.
    Data,
}

impl std::fmt::Display for TlsRequirement {
    /// The spelling `from_str` takes back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsRequirement::Optional => "optional",
            TlsRequirement::Login => "login",
            TlsRequirement::Data => "data",
        })
    }
}

impl std::str::FromStr for TlsRequirement {
    type Err = String;
    fn from_str(s: &str) -> Result<TlsRequirement, String> {
        match s {
            "optional" => Ok(TlsRequirement::Optional),
            "login" => Ok(TlsRequirement::Login),
            "data" => Ok(TlsRequirement::Data),
            _ => Err(format!(
                "unknown TLS requirement {s:?} (expected optional, login or data)"
            )),
        }
    }
}

/// The session's TLS state, as RFC 4217 sequences it: AUTH, then PBSZ, then PROT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TlsState {
    /// AUTH TLS was accepted: the control connection is (about to be) protected.
    pub(super) control: bool,
    /// PBSZ was accepted (RFC 4217 section 9: PROT needs it first).
    pub(super) pbsz: bool,
    /// PROT P: data connections are protected.
    pub(super) private: bool,
}

impl Session {
    /// AUTH TLS: 234, then the server switches the control connection to TLS. The login state
    /// is reset (RFC 2228 section 3: the user must log in again after AUTH), and AUTH is refused
    /// after a login, which would otherwise have gone in clear.
    pub(super) fn auth(&mut self, mechanism: AuthMechanism) -> Step {
        let AuthMechanism::Tls = mechanism;
        if !self.policy.tls.available {
            return Step::reply(
                ReplyCode::NotImplemented,
                "AUTH TLS is not available: no certificate is configured.",
            );
        }
        if self.tls.control {
            return Step::reply(ReplyCode::BadSequence, "Already using TLS.");
        }
        if self.logged_in() {
            return Step::reply(ReplyCode::BadSequence, "AUTH must come before login.");
        }
        self.login = super::Login::AwaitUser;
        self.tls.control = true;
        Step {
            replies: vec![crate::proto::reply::Reply::new(
                ReplyCode::SecurityExchangeComplete,
                "AUTH TLS successful; start the TLS handshake.",
            )],
            effect: Some(Effect::StartTls),
        }
    }

    /// PBSZ: TLS is a stream, so the only buffer size is 0 (RFC 4217 section 8).
    pub(super) fn pbsz(&mut self, size: u64) -> Step {
        if !self.tls.control {
            return Step::reply(ReplyCode::BadSequence, "PBSZ needs AUTH TLS first.");
        }
        self.tls.pbsz = true;
        if size == 0 {
            Step::reply(ReplyCode::CommandOkay, "PBSZ=0")
        } else {
            // RFC 4217 section 8: a larger size is answered with the size that will be used.
            Step::reply(ReplyCode::CommandOkay, "PBSZ=0 (TLS needs no buffer size).")
        }
    }

    /// An implicit TLS connection (its own listener, port 990 style): the control connection is
    /// protected from the first byte, and data connections are protected until the client says
    /// `PROT C`. The implicit FTPS drafts (draft-murray-auth-ftp-ssl) made `PBSZ 0` and
    /// `PROT P` implicit there; curl, lftp and FileZilla send both anyway, which changes nothing.
    pub fn start_implicit_tls(&mut self) {
        self.tls = TlsState {
            control: true,
            pbsz: true,
            private: true,
        };
    }

    /// The requirement that applies to this session now: its logged-in user's class (with the
    /// user's own requirement on top), or before login the less strict of the two classes (the
    /// user is not known yet; the data command is checked again after login).
    fn requirement(&self) -> TlsRequirement {
        let policy = &self.policy.tls;
        if !self.logged_in() {
            policy.anonymous.min(policy.named)
        } else if self.is_anonymous() {
            policy.anonymous
        } else {
            policy.named.max(
                self.rights()
                    .and_then(|r| r.tls)
                    .unwrap_or(TlsRequirement::Optional),
            )
        }
    }

    /// PROT C or P; S and E are levels TLS does not have (536).
    pub(super) fn prot(&mut self, level: ProtLevel) -> Step {
        if !self.tls.control {
            return Step::reply(ReplyCode::BadSequence, "PROT needs AUTH TLS first.");
        }
        if !self.tls.pbsz {
            return Step::reply(ReplyCode::BadSequence, "PROT needs PBSZ first.");
        }
        match level {
            ProtLevel::Private => {
                self.tls.private = true;
                Step::reply(
                    ReplyCode::CommandOkay,
                    "Data connections will be protected.",
                )
            }
            // RFC 4217 section 9: PROT is answered 534 when policy refuses the level.
            ProtLevel::Clear if self.requirement() == TlsRequirement::Data => Step::reply(
                ReplyCode::DeniedForPolicy,
                "PROT C refused: data connections must be protected; use PROT P.",
            ),
            ProtLevel::Clear => {
                self.tls.private = false;
                Step::reply(ReplyCode::CommandOkay, "Data connections will be in clear.")
            }
            ProtLevel::Safe | ProtLevel::Confidential => Step::reply(
                ReplyCode::ProtLevelNotSupported,
                "Only PROT C and PROT P are supported.",
            ),
        }
    }

    /// CCC is refused: once protected, the control connection stays protected (RFC 4217
    /// section 11 lets a server refuse it with 534; a cleartext control connection after login
    /// would let anyone on the path inject commands).
    pub(super) fn ccc(&self) -> Step {
        if !self.tls.control {
            return Step::reply(ReplyCode::BadSequence, "CCC needs AUTH TLS first.");
        }
        Step::reply(
            ReplyCode::DeniedForPolicy,
            "CCC refused: the control connection stays encrypted.",
        )
    }

    /// Whether this session's data connections go through TLS (PROT P).
    pub fn data_protected(&self) -> bool {
        self.tls.private
    }

    /// Whether USER for this name must wait for TLS: its class requires TLS for login and the
    /// control connection is in clear. Checked before the password crosses the wire.
    pub(super) fn login_needs_tls(&self, anonymous: bool) -> Option<Step> {
        let class = if anonymous {
            self.policy.tls.anonymous
        } else {
            self.policy.tls.named
        };
        (class >= TlsRequirement::Login && !self.tls.control).then(refuse_clear_login)
    }

    /// A data command of a user who must protect data connections, with them in clear: 521
    /// (RFC 4217 section 9: "data connection cannot be opened with this PROT setting").
    pub(super) fn needs_protection(&self) -> Option<Step> {
        let required = self.logged_in() && self.requirement() == TlsRequirement::Data;
        (required && !self.tls.private).then(|| {
            Step::reply(
                ReplyCode::ProtectionRequired,
                "Data connections must be protected: enable data protection \
                 (send PBSZ 0 and PROT P).",
            )
        })
    }
}

/// The refusal of a login in clear where TLS is required for it (534, RFC 2228's "Request
/// denied for policy reasons", as vsftpd and ProFTPD answer it), naming what the client must
/// turn on.
pub(super) fn refuse_clear_login() -> Step {
    Step::reply(
        ReplyCode::DeniedForPolicy,
        "TLS required for login: enable explicit FTP over TLS (AUTH TLS).",
    )
}
