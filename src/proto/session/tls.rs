//! FTP over TLS (RFC 4217): AUTH TLS, PBSZ, PROT and CCC, and what they leave in the session:
//! whether the control connection is protected and whether data connections must be.

use super::{Effect, Session, Step};
use crate::proto::command::{AuthMechanism, ProtLevel};
use crate::proto::reply::ReplyCode;

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

    /// A data command of a user who must use TLS, with data connections in clear: 521.
    pub(super) fn needs_protection(&self) -> Option<Step> {
        let required = self.policy.tls.required && self.logged_in() && !self.is_anonymous();
        (required && !self.tls.private).then(|| {
            Step::reply(
                ReplyCode::ProtectionRequired,
                "Data connections must be protected: send PBSZ 0 and PROT P.",
            )
        })
    }
}
