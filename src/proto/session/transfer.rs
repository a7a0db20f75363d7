//! Transfers over the data connection: REST, RETR, STOR/APPE/STOU, LIST/NLST/MLSD and ABOR, the
//! 150/226/426 replies that frame them, and the 213 a STAT gets while one runs.

use super::replies::transfer_error_reply;
use super::{
    Action, DataPlan, Effect, ListTarget, Pending, Progress, Session, Step, StoreMode,
    TransferError,
};
use crate::proto::command::{Command, ListFormat, TransferType};
use crate::proto::listing::{ListOptions, Visibility};
use crate::proto::path::VirtualPath;
use crate::proto::reply::{Reply, ReplyCode};

/// Base name for STOU when the client gives none.
const UNIQUE_BASE: &[u8] = b"ftp-upload";

/// Which transfer is running; decides the wording of its 150 and 226 replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransferKind {
    Retr,
    List(ListFormat),
    /// STOR, and REST + STOR.
    Store,
    Append,
    Unique,
}

impl TransferKind {
    /// The command that started the transfer, as a STAT reply names it.
    fn verb(self) -> &'static str {
        match self {
            TransferKind::Retr => "RETR",
            TransferKind::List(ListFormat::List) => "LIST",
            TransferKind::List(ListFormat::Nlst) => "NLST",
            TransferKind::List(ListFormat::Mlsd) => "MLSD",
            TransferKind::Store => "STOR",
            TransferKind::Append => "APPE",
            TransferKind::Unique => "STOU",
        }
    }

    /// The name STOU's 150 and 226 replies give: the last component the server picked.
    fn name(self, path: &VirtualPath) -> &[u8] {
        path.file_name().unwrap_or_default()
    }
}

impl Session {
    /// While a transfer runs only ABOR and STAT act (RFC 959 section 4.1.3); STAT asks the server
    /// for the transfer's progress, and the transfer goes on.
    pub(super) fn during_transfer(&mut self, cmd: Command) -> Step {
        match cmd {
            Command::Abor => self.abor(),
            Command::Stat { args: None } => Step::effect(Effect::TransferStatus),
            _ => Step::reply(ReplyCode::SystemStatus, "Transfer in progress."),
        }
    }

    /// The answer to STAT during a transfer (RFC 959 section 4.1.3: "the status of the operation
    /// being in progress is returned"): 213, as the BSD ftpd and wu-ftpd have it, with their
    /// "Status: N of M bytes transferred" line, plus the command, the percentage and the rate.
    pub fn transfer_status(&self, p: Progress) -> Reply {
        let Some(Pending::Transfer { path, kind, .. }) = &self.pending else {
            return self.status_reply();
        };
        let mut what = format!(" {} ", kind.verb()).into_bytes();
        what.extend_from_slice(path.as_bytes());
        let count = match p.total {
            Some(total) => format!(
                " Status: {} of {total} bytes transferred ({}%)",
                p.bytes,
                percent(p.bytes, total)
            ),
            None => format!(" Status: {} bytes transferred", p.bytes),
        };
        let nanos = p.elapsed.as_nanos();
        let rate = match nanos {
            0 => 0,
            n => u64::try_from(u128::from(p.bytes) * 1_000_000_000 / n).unwrap_or(u64::MAX),
        };
        let rate = format!(
            " Average rate: {rate} bytes/s over {:.3} s",
            p.elapsed.as_secs_f64()
        );
        let mut lines = vec![what, count.into_bytes(), rate.into_bytes()];
        if let Some(protection) = p.protection {
            lines.push(format!(" Data connection protected by {protection}").into_bytes());
        }
        Reply::multi(
            ReplyCode::FileStatus,
            "Status of transfer:",
            lines,
            "End of status",
        )
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

    /// RETR `path`; `named` is the argument as the client sent it, for the 150 reply (vsftpd and
    /// ProFTPD echo it too, so a client matching replies to requests sees its own words).
    pub(super) fn retr(&mut self, path: VirtualPath, named: &[u8]) -> Step {
        let offset = std::mem::take(&mut self.rest);
        if let Err(denied) = self.allowed(Action::Download, &path) {
            return denied;
        }
        if let Some(step) = self.needs_data() {
            return step;
        }
        self.pending = Some(Pending::Transfer {
            path: path.clone(),
            named: named.to_vec(),
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
        let kind = match mode {
            StoreMode::Unique { .. } => TransferKind::Unique,
            StoreMode::Append => TransferKind::Append,
            StoreMode::Atomic { .. } | StoreMode::At(_) => TransferKind::Store,
        };
        self.pending = Some(Pending::Transfer {
            path: path.clone(),
            named: Vec::new(),
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

    /// LIST/NLST/MLSD `path`; `arg` is the path as the client sent it (for `-d`).
    pub(super) fn list(
        &mut self,
        format: ListFormat,
        options: ListOptions,
        path: VirtualPath,
        arg: &[u8],
    ) -> Step {
        if let Err(denied) = self.allowed(Action::List, &path) {
            return denied;
        }
        if let Some(step) = self.needs_data() {
            return step;
        }
        let format = match format {
            ListFormat::Nlst if options.long => ListFormat::List,
            f => f,
        };
        let (show, itself) = self.list_view(format, options, arg);
        self.pending = Some(Pending::Transfer {
            path: path.clone(),
            named: Vec::new(),
            kind: TransferKind::List(format),
            started: false,
        });
        Step::effect(Effect::List {
            path,
            format,
            facts: self.facts,
            target: ListTarget::Data,
            writable: self.writable(),
            show,
            itself,
        })
    }

    /// Which entries a listing shows, and for `-d` the name the directory itself is listed under
    /// (the argument as sent, "." without one, as `ls -d` prints it). MLSD shows every entry
    /// (RFC 3659 section 7.2); LIST and NLST hide dot files unless `-a`/`-A` or `force_dot_files`.
    pub(super) fn list_view(
        &self,
        format: ListFormat,
        options: ListOptions,
        arg: &[u8],
    ) -> (Visibility, Option<Vec<u8>>) {
        match format {
            ListFormat::Mlsd => (Visibility::EVERY_ENTRY, None),
            ListFormat::List | ListFormat::Nlst => {
                let itself = options.directory.then(|| match arg {
                    b"" => b".".to_vec(),
                    a => a.to_vec(),
                });
                (options.visibility(self.policy.force_dot_files), itself)
            }
        }
    }

    /// The data connection is up: 150, naming the file (and for STOU the name the server picked).
    pub(super) fn transfer_starting(
        &mut self,
        mut path: VirtualPath,
        named: Vec<u8>,
        kind: TransferKind,
        size: Option<u64>,
        unique: Option<VirtualPath>,
    ) -> Step {
        let mut text = match (kind, self.ty) {
            (TransferKind::List(_), _) => b"Here comes the directory listing".to_vec(),
            (TransferKind::Store | TransferKind::Append, _) => b"Ok to send data".to_vec(),
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
            path = unique;
        }
        match kind {
            TransferKind::Retr => text.extend_from_slice(&named),
            TransferKind::Unique => text.extend_from_slice(kind.name(&path)),
            TransferKind::List(_) | TransferKind::Store | TransferKind::Append => {}
        }
        if let Some(size) = size {
            text.extend_from_slice(format!(" ({size} bytes)").as_bytes());
        }
        if kind != TransferKind::Unique {
            text.push(b'.');
        }
        self.pending = Some(Pending::Transfer {
            path,
            named,
            kind,
            started: true,
        });
        Step::reply(ReplyCode::FileStatusOkay, text)
    }

    /// The data connection closed after a complete transfer: 226.
    pub(super) fn transfer_done(&mut self, kind: TransferKind, path: &VirtualPath) -> Step {
        self.data = DataPlan::None;
        let text = match kind {
            TransferKind::List(_) => b"Directory send OK.".to_vec(),
            TransferKind::Unique => {
                let mut t = b"Transfer complete (unique file name: ".to_vec();
                t.extend_from_slice(kind.name(path));
                t.extend_from_slice(b").");
                t
            }
            TransferKind::Retr | TransferKind::Store | TransferKind::Append => {
                b"Transfer complete.".to_vec()
            }
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

/// How much of `total` `bytes` is, in whole percent (an empty file is done at once).
fn percent(bytes: u64, total: u64) -> u64 {
    match total {
        0 => 100,
        t => (u128::from(bytes.min(t)) * 100 / u128::from(t)) as u64,
    }
}
