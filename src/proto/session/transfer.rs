//! Transfers over the data connection: REST, RETR, STOR/APPE/STOU, LIST/NLST/MLSD and ABOR, and
//! the 150/226/426 replies that frame them.

use super::replies::transfer_error_reply;
use super::{
    Action, DataPlan, Effect, ListTarget, Pending, Session, Step, StoreMode, TransferError,
};
use crate::proto::command::{Command, ListFormat, TransferType};
use crate::proto::path::VirtualPath;
use crate::proto::reply::{Reply, ReplyCode};

/// Base name for STOU when the client gives none.
const UNIQUE_BASE: &[u8] = b"ftp-upload";

/// Which transfer is running; decides the wording of its 150 and 226 replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferKind {
    Retr,
    List(ListFormat),
    Store,
    Unique,
}

impl Session {
    /// While a transfer runs only ABOR acts; anything else let in (STAT) is told to wait.
    pub(super) fn during_transfer(&mut self, cmd: Command) -> Step {
        match cmd {
            Command::Abor => self.abor(),
            _ => Step::reply(ReplyCode::SystemStatus, "Transfer in progress."),
        }
    }

    pub(super) fn rest(&mut self, offset: u64) -> Step {
        self.rest = offset;
        Step::reply(
            ReplyCode::FileActionPending,
            format!("Restart position accepted ({offset})."),
        )
    }

    pub(super) fn abor(&mut self) -> Step {
        self.pending = Some(Pending::Abort);
        Step::effect(Effect::Abort)
    }

    pub(super) fn retr(&mut self, path: VirtualPath) -> Step {
        let offset = std::mem::take(&mut self.rest);
        if let Err(denied) = self.allowed(Action::Download, &path) {
            return denied;
        }
        if let Some(step) = self.needs_data() {
            return step;
        }
        let name = path.file_name().unwrap_or(b"/").to_vec();
        self.pending = Some(Pending::Transfer {
            name,
            kind: TransferKind::Retr,
            started: false,
        });
        Step::effect(Effect::Retr {
            path,
            offset,
            ascii: self.ty == TransferType::Ascii,
        })
    }

    /// STOR: atomic unless a REST offset resumes the upload in place.
    pub(super) fn stor(&mut self, path: VirtualPath) -> Step {
        let mode = match std::mem::take(&mut self.rest) {
            0 => StoreMode::Atomic {
                exclusive: self.in_drop_box(&path),
            },
            n => StoreMode::At(n),
        };
        self.store(path, mode)
    }

    pub(super) fn stou(&mut self, base: Option<Vec<u8>>) -> Step {
        let base = base.unwrap_or_else(|| UNIQUE_BASE.to_vec());
        // The unique file is made in the current directory; only the base's last component counts.
        let base = base
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or(UNIQUE_BASE)
            .to_vec();
        if base.is_empty() || base == b"." || base == b".." {
            return Step::reply(
                ReplyCode::NameNotAllowed,
                "Unique file name base not allowed.",
            );
        }
        let dir = self.cwd.clone();
        self.store(dir, StoreMode::Unique { base })
    }

    pub(super) fn store(&mut self, path: VirtualPath, mode: StoreMode) -> Step {
        if let Err(denied) = self.allowed(Action::Upload, &path) {
            self.rest = 0;
            return denied;
        }
        // The drop box only takes new files: no appending, resuming or replacing.
        if self.rights().is_some_and(|r| r.drop_box.is_some())
            && !matches!(
                mode,
                StoreMode::Atomic { exclusive: true } | StoreMode::Unique { .. }
            )
        {
            return Step::reply(ReplyCode::FileUnavailable, "Permission denied.");
        }
        if path.is_root() && !matches!(mode, StoreMode::Unique { .. }) {
            return Step::reply(
                ReplyCode::NameNotAllowed,
                "Cannot store over the root directory.",
            );
        }
        if let Some(step) = self.needs_data() {
            return step;
        }
        let kind = if matches!(mode, StoreMode::Unique { .. }) {
            TransferKind::Unique
        } else {
            TransferKind::Store
        };
        let name = path.file_name().unwrap_or_default().to_vec();
        self.pending = Some(Pending::Transfer {
            name,
            kind,
            started: false,
        });
        let ascii = self.ty == TransferType::Ascii;
        Step::effect(Effect::Store {
            path,
            mode,
            ascii,
            umask: self.umask,
        })
    }

    pub(super) fn list(&mut self, format: ListFormat, path: VirtualPath) -> Step {
        if let Err(denied) = self.allowed(Action::List, &path) {
            return denied;
        }
        if let Some(step) = self.needs_data() {
            return step;
        }
        self.pending = Some(Pending::Transfer {
            name: Vec::new(),
            kind: TransferKind::List(format),
            started: false,
        });
        Step::effect(Effect::List {
            path,
            format,
            facts: self.facts,
            target: ListTarget::Data,
            writable: self.writable(),
        })
    }

    /// The data connection is up: 150, naming the file (and for STOU the name the server picked).
    pub(super) fn transfer_starting(
        &mut self,
        mut name: Vec<u8>,
        kind: TransferKind,
        size: Option<u64>,
        unique: Option<VirtualPath>,
    ) -> Step {
        let mut text = match (kind, self.ty) {
            (TransferKind::List(_), _) => b"Here comes the directory listing".to_vec(),
            (TransferKind::Store, _) => b"Ok to send data".to_vec(),
            // RFC 1123 section 4.1.2.9: "150 FILE: pppp" names the file STOU created.
            (TransferKind::Unique, _) => b"FILE: ".to_vec(),
            (TransferKind::Retr, TransferType::Ascii) => {
                b"Opening ASCII mode data connection for ".to_vec()
            }
            (TransferKind::Retr, TransferType::Image) => {
                b"Opening BINARY mode data connection for ".to_vec()
            }
        };
        if let Some(unique) = unique {
            name = unique.file_name().unwrap_or_default().to_vec();
        }
        match kind {
            TransferKind::Retr | TransferKind::Unique => text.extend_from_slice(&name),
            TransferKind::List(_) | TransferKind::Store => {}
        }
        if let Some(size) = size {
            text.extend_from_slice(format!(" ({size} bytes)").as_bytes());
        }
        if kind != TransferKind::Unique {
            text.push(b'.');
        }
        self.pending = Some(Pending::Transfer {
            name,
            kind,
            started: true,
        });
        Step::reply(ReplyCode::FileStatusOkay, text)
    }

    /// The data connection closed after a complete transfer: 226.
    pub(super) fn transfer_done(&mut self, kind: TransferKind, name: &[u8]) -> Step {
        self.data = DataPlan::None;
        let text = match kind {
            TransferKind::List(_) => b"Directory send OK.".to_vec(),
            TransferKind::Unique => {
                let mut t = b"Transfer complete (unique file name: ".to_vec();
                t.extend_from_slice(name);
                t.extend_from_slice(b").");
                t
            }
            TransferKind::Retr | TransferKind::Store => b"Transfer complete.".to_vec(),
        };
        Step::reply(ReplyCode::ClosingDataConnection, text)
    }

    pub(super) fn transfer_failed(&mut self, kind: TransferKind, e: TransferError) -> Step {
        self.data = DataPlan::None;
        Step {
            replies: vec![transfer_error_reply(e, kind)],
            effect: None,
        }
    }

    /// ABOR ran: 426 then 226 if it cut a transfer short, else 225 (RFC 959 section 4.1.3).
    pub(super) fn aborted(&mut self, transfer_was_active: bool) -> Step {
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
}
