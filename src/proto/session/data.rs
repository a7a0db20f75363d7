//! Transfer parameters (RFC 959 section 4.1.2): where the data connection comes from
//! (PORT/EPRT/PASV/EPSV) and how it is read (TYPE).

use std::net::{SocketAddr, SocketAddrV4};

use super::{Effect, Pending, Session, Step};
use crate::proto::addr::{self, EpsvArg};
use crate::proto::command::TransferType;
use crate::proto::reply::{Reply, ReplyCode};

/// How the next transfer's data connection will be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlan {
    None,
    /// The server listens (PASV/EPSV); the client connects.
    Passive,
    /// The server connects to the client (PORT/EPRT).
    Active(SocketAddr),
}

impl Session {
    pub(super) fn set_type(&mut self, ty: TransferType) -> Step {
        self.ty = ty;
        match ty {
            TransferType::Ascii => Step::reply(ReplyCode::CommandOkay, "Switching to ASCII mode."),
            TransferType::Image => Step::reply(ReplyCode::CommandOkay, "Switching to Binary mode."),
        }
    }

    pub(super) fn pasv(&mut self) -> Step {
        if self.epsv_all {
            return Step::reply(
                ReplyCode::BadSequence,
                "Only EPSV is allowed after EPSV ALL.",
            );
        }
        if addr::net_prt(self.peer) != 1 {
            return Step::reply(
                ReplyCode::CantOpenDataConnection,
                "PASV is IPv4 only; use EPSV.",
            );
        }
        self.pending = Some(Pending::Passive { extended: false });
        Step::effect(Effect::Passive)
    }

    pub(super) fn epsv(&mut self, arg: EpsvArg) -> Step {
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

    /// RFC 2428 section 4: EPSV ALL tells the server that only EPSV will follow.
    pub(super) fn enter_epsv_all(&mut self) -> Step {
        self.epsv_all = true;
        Step::reply(ReplyCode::CommandOkay, "EPSV ALL ok.")
    }

    /// PORT and EPRT.
    pub(super) fn active(&mut self, target: SocketAddr) -> Step {
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

    /// A transfer's first check: PORT, EPRT, PASV or EPSV must have come before it (and `PROT P`
    /// for users who must use TLS).
    pub(super) fn needs_data(&self) -> Option<Step> {
        if let Some(refused) = self.needs_protection() {
            return Some(refused);
        }
        match self.data {
            DataPlan::None => Some(Step::reply(
                ReplyCode::CantOpenDataConnection,
                "Use PORT, EPRT, PASV or EPSV first.",
            )),
            _ => None,
        }
    }

    /// The passive listener is up: advertise it in the reply format the client asked for.
    pub(super) fn passive_ready(&mut self, extended: bool, at: SocketAddr) -> Step {
        self.data = DataPlan::Passive;
        match (extended, at) {
            (false, SocketAddr::V4(v4)) => {
                Step::reply(ReplyCode::EnteringPassiveMode, addr::format_pasv(v4))
            }
            (false, SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => Step::reply(
                    ReplyCode::EnteringPassiveMode,
                    addr::format_pasv(SocketAddrV4::new(v4, v6.port())),
                ),
                None => Step::reply(
                    ReplyCode::CantOpenDataConnection,
                    "PASV is IPv4 only; use EPSV.",
                ),
            },
            (true, at) => Step::reply(
                ReplyCode::EnteringExtendedPassiveMode,
                addr::format_epsv(at.port()),
            ),
        }
    }

    pub(super) fn passive_failed(&mut self) -> Step {
        self.data = DataPlan::None;
        Step::reply(
            ReplyCode::CantOpenDataConnection,
            "Could not open a passive port.",
        )
    }
}
