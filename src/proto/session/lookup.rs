//! Questions about one path that change nothing: PWD/CWD/CDUP, SIZE, MDTM, MLST and STAT <path>,
//! each a stat or control-channel listing and its reply.

use super::{Action, Effect, ListTarget, Pending, Session, Step, file_error_reply};
use crate::proto::command::ListFormat;
use crate::proto::entry::{Entry, FileKind};
use crate::proto::error::FileError;
use crate::proto::listing::{self, ListOptions, MlsdRole};
use crate::proto::path::VirtualPath;
use crate::proto::reply::{Reply, ReplyCode};

impl Session {
    pub(super) fn pwd(&self) -> Step {
        let mut text = self.cwd.quoted();
        text.extend_from_slice(b" is the current directory.");
        Step::reply(ReplyCode::PathCreated, text)
    }

    /// CWD and CDUP: the directory becomes current once a stat says it is one.
    pub(super) fn change_dir(&mut self, path: VirtualPath) -> Step {
        self.stat_for(Pending::Cwd(path.clone()), path)
    }

    pub(super) fn size(&mut self, path: VirtualPath) -> Step {
        self.look_up(Pending::Size, path)
    }

    pub(super) fn mdtm(&mut self, path: VirtualPath) -> Step {
        self.look_up(Pending::Mdtm, path)
    }

    pub(super) fn mlst(&mut self, path: VirtualPath) -> Step {
        self.look_up(Pending::Mlst(path.clone()), path)
    }

    /// STAT <path>: a LIST-style listing sent inline on the control connection, with the same
    /// `ls` options as LIST (`arg` is the path as sent, for `-d`).
    pub(super) fn stat_path(
        &mut self,
        path: VirtualPath,
        options: ListOptions,
        arg: &[u8],
    ) -> Step {
        if let Err(denied) = self.allowed(Action::List, &path) {
            return denied;
        }
        let (show, itself) = self.list_view(ListFormat::List, options, arg);
        self.pending = Some(Pending::StatPath(path.clone()));
        Step::effect(Effect::List {
            path,
            format: ListFormat::List,
            facts: self.facts,
            target: ListTarget::Control,
            writable: self.writable(),
            show,
            itself,
        })
    }

    /// What the drop box holds is nobody's business: no sizes, times or facts either.
    fn look_up(&mut self, pending: Pending, path: VirtualPath) -> Step {
        if let Err(denied) = self.allowed(Action::List, &path) {
            return denied;
        }
        self.stat_for(pending, path)
    }

    pub(super) fn stat_for(&mut self, pending: Pending, path: VirtualPath) -> Step {
        self.pending = Some(pending);
        Step::effect(Effect::Stat(path))
    }

    pub(super) fn cwd_checked(&mut self, path: VirtualPath, r: Result<Entry, FileError>) -> Step {
        match r {
            Ok(e) if e.kind == FileKind::Dir => {
                self.cwd = path;
                Step::reply(ReplyCode::FileActionOkay, "Directory successfully changed.")
            }
            Err(FileError::Overloaded) => Step {
                replies: vec![file_error_reply(FileError::Overloaded)],
                effect: None,
            },
            _ => Step::reply(ReplyCode::FileUnavailable, "Failed to change directory."),
        }
    }

    pub(super) fn size_checked(&self, r: Result<Entry, FileError>) -> Step {
        match r {
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
        }
    }

    pub(super) fn mdtm_checked(&self, r: Result<Entry, FileError>) -> Step {
        match r {
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
        }
    }

    pub(super) fn mlst_checked(&self, path: VirtualPath, r: Result<Entry, FileError>) -> Step {
        match r {
            Ok(e) => {
                // RFC 3659 section 7.2: the entry line starts with a single space.
                let mut line = vec![b' '];
                listing::mlsx_line(
                    &mut line,
                    &e,
                    path.as_bytes(),
                    MlsdRole::Entry,
                    self.facts,
                    self.writable(),
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
        }
    }

    /// The end of STAT <path>: its first line and body went out as the listing was read.
    pub(super) fn stat_listed(&self, r: Result<(), FileError>) -> Step {
        match r {
            Ok(()) => Step::reply(ReplyCode::FileStatus, "End of status"),
            Err(e) => Step {
                replies: vec![file_error_reply(e)],
                effect: None,
            },
        }
    }
}

/// STAT <path> over the control connection, streamed: the reply's first line.
pub fn stat_listing_head(path: &VirtualPath, out: &mut Vec<u8>) {
    let mut first = b"Status of ".to_vec();
    first.extend_from_slice(path.as_bytes());
    first.push(b':');
    Reply::encode_head(ReplyCode::FileStatus, &first, out);
}

/// STAT <path>: a piece of LIST lines (each ending in CRLF) as body lines of the reply.
pub fn stat_listing_body(piece: &[u8], out: &mut Vec<u8>) {
    for line in piece.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Reply::encode_body_line(ReplyCode::FileStatus, line, out);
    }
}
