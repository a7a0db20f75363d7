//! Verbs that change the file system without a data connection: DELE, MKD, RMD, RNFR/RNTO,
//! MFMT and SITE (CHMOD, UMASK, HELP), and their replies once the change ran.

use super::{Action, Effect, FsOp, Pending, Session, Step, file_error_reply};
use crate::proto::command::Site;
use crate::proto::entry::Entry;
use crate::proto::error::FileError;
use crate::proto::listing;
use crate::proto::path::VirtualPath;
use crate::proto::reply::{Reply, ReplyCode};

/// How a finished `FsOp` is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FsReply {
    Deleted,
    Created(VirtualPath),
    Removed,
    Renamed,
    Chmod,
    Mtime(VirtualPath, i64),
}

impl Session {
    pub(super) fn dele(&mut self, path: VirtualPath) -> Step {
        self.fs(Action::Modify, FsReply::Deleted, FsOp::Delete(path))
    }

    pub(super) fn mkd(&mut self, path: VirtualPath) -> Step {
        let umask = self.umask;
        self.fs(
            Action::Modify,
            FsReply::Created(path.clone()),
            FsOp::Mkdir { path, umask },
        )
    }

    pub(super) fn rmd(&mut self, path: VirtualPath) -> Step {
        self.fs(Action::Modify, FsReply::Removed, FsOp::Rmdir(path))
    }

    /// RNFR checks that the source exists; the rename itself waits for RNTO.
    pub(super) fn rnfr(&mut self, path: VirtualPath) -> Step {
        if let Err(denied) = self.allowed(Action::Modify, &path) {
            return denied;
        }
        if path.is_root() {
            return Step::reply(ReplyCode::FileUnavailable, "Cannot rename the root.");
        }
        self.stat_for(Pending::Rnfr(path.clone()), path)
    }

    /// RNTO, with the source the command before it (RNFR) left, if any.
    pub(super) fn rnto(&mut self, from: Option<VirtualPath>, path: &[u8]) -> Step {
        match from {
            None => Step::reply(ReplyCode::BadSequence, "RNFR required first."),
            Some(from) => self.with_path(path, |s, to| {
                s.fs(Action::Modify, FsReply::Renamed, FsOp::Rename { from, to })
            }),
        }
    }

    pub(super) fn mfmt(&mut self, secs: i64, path: VirtualPath) -> Step {
        self.fs(
            Action::Modify,
            FsReply::Mtime(path.clone(), secs),
            FsOp::SetMtime { path, secs },
        )
    }

    pub(super) fn site(&mut self, site: Site) -> Step {
        match site {
            // A setuid or setgid file made by a remote user is a privilege escalation waiting to happen.
            Site::Chmod { mode, .. } if mode & 0o6000 != 0 => Step::reply(
                ReplyCode::FileUnavailable,
                "Setuid and setgid bits are not allowed.",
            ),
            Site::Chmod { mode, path } => self.with_path(&path, |s, p| {
                s.fs(
                    Action::Modify,
                    FsReply::Chmod,
                    FsOp::Chmod { path: p, mode },
                )
            }),
            Site::Umask { mode: None } => Step::reply(
                ReplyCode::CommandOkay,
                format!("Your current UMASK is {:04o}.", self.umask),
            ),
            Site::Umask { mode: Some(m) } => {
                self.umask = m & 0o777;
                Step::reply(
                    ReplyCode::CommandOkay,
                    format!("UMASK set to {:04o}.", self.umask),
                )
            }
            Site::Help => Step {
                replies: vec![Reply::multi(
                    ReplyCode::HelpMessage,
                    "SITE commands:",
                    vec![
                        b" CHMOD <octal mode> <path>".to_vec(),
                        b" UMASK [<octal mask>]".to_vec(),
                        b" HELP".to_vec(),
                    ],
                    "End",
                )],
                effect: None,
            },
        }
    }

    pub(super) fn fs(&mut self, action: Action, reply: FsReply, op: FsOp) -> Step {
        let path = match &op {
            FsOp::Delete(p) | FsOp::Rmdir(p) => p,
            FsOp::Mkdir { path, .. } | FsOp::Chmod { path, .. } | FsOp::SetMtime { path, .. } => {
                path
            }
            FsOp::Rename { to, .. } => to,
        };
        if let Err(denied) = self.allowed(action, path) {
            return denied;
        }
        if path.is_root() {
            return Step::reply(
                ReplyCode::FileUnavailable,
                "Permission denied on the root directory.",
            );
        }
        self.pending = Some(Pending::Fs(reply));
        Step::effect(Effect::Fs(op))
    }

    pub(super) fn rnfr_checked(&mut self, path: VirtualPath, r: Result<Entry, FileError>) -> Step {
        match r {
            Ok(_) => {
                self.rename_from = Some(path);
                Step::reply(ReplyCode::FileActionPending, "Ready for RNTO.")
            }
            Err(e) => Step {
                replies: vec![file_error_reply(e)],
                effect: None,
            },
        }
    }

    pub(super) fn fs_done(&mut self, done: FsReply, r: Result<(), FileError>) -> Step {
        match r {
            Err(e) => Step {
                replies: vec![file_error_reply(e)],
                effect: None,
            },
            Ok(()) => match done {
                FsReply::Deleted => {
                    Step::reply(ReplyCode::FileActionOkay, "Delete operation successful.")
                }
                FsReply::Created(path) => {
                    let mut text = path.quoted();
                    text.extend_from_slice(b" created.");
                    Step::reply(ReplyCode::PathCreated, text)
                }
                FsReply::Removed => Step::reply(
                    ReplyCode::FileActionOkay,
                    "Remove directory operation successful.",
                ),
                FsReply::Renamed => Step::reply(ReplyCode::FileActionOkay, "Rename successful."),
                FsReply::Chmod => Step::reply(ReplyCode::CommandOkay, "SITE CHMOD command ok."),
                FsReply::Mtime(path, secs) => {
                    let mut text =
                        format!("Modify={}; ", listing::format_time_val(secs)).into_bytes();
                    text.extend_from_slice(path.as_bytes());
                    Step::reply(ReplyCode::FileStatus, text)
                }
            },
        }
    }
}
