//! The blocking helper pool: path lookups, opens and directory listings run here so a shard never
//! waits on the disk (io_uring has no getdents). Results go back to the asking shard through its
//! mailbox, whose eventfd wakes the shard's ring.

use std::fs::File;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};
use nix::sys::eventfd::EventFd;

use crate::proto::command::ListFormat;
use crate::proto::entry::{Entry, FileKind};
use crate::proto::error::FileError;
use crate::proto::listing::{self, Facts, MlsdRole};
use crate::proto::path::VirtualPath;
use crate::vfs::Root;

pub enum Job {
    Stat(VirtualPath),
    Open(VirtualPath),
    List {
        path: VirtualPath,
        format: ListFormat,
        facts: Facts,
        now: i64,
    },
}

pub enum Done {
    Stat(Result<Entry, FileError>),
    Open(Result<(File, Entry), FileError>),
    Listing(Result<Vec<u8>, FileError>),
}

/// Where a shard receives finished jobs.
pub struct Mailbox {
    pub tx: Sender<(u64, Done)>,
    pub wake: Arc<EventFd>,
}

struct Request {
    root: Arc<Root>,
    job: Job,
    token: u64,
    reply_to: usize,
}

/// A handle to submit jobs; cheap to clone into every shard.
#[derive(Clone)]
pub struct Pool {
    tx: Sender<Request>,
}

impl Pool {
    pub fn start(workers: usize, mailboxes: Vec<Mailbox>) -> std::io::Result<Pool> {
        let (tx, rx) = crossbeam_channel::unbounded::<Request>();
        let mailboxes = Arc::new(mailboxes);
        for i in 0..workers {
            let rx: Receiver<Request> = rx.clone();
            let mailboxes = Arc::clone(&mailboxes);
            thread::Builder::new()
                .name(format!("ringftpd-fs{i}"))
                .spawn(move || {
                    // Ends when every shard (and so every Pool handle) is gone.
                    for req in rx {
                        let done = run(&req.root, req.job);
                        let mailbox = &mailboxes[req.reply_to];
                        if mailbox.tx.send((req.token, done)).is_ok() {
                            let _ = mailbox.wake.write(1);
                        }
                    }
                })?;
        }
        Ok(Pool { tx })
    }

    pub fn submit(&self, shard: usize, root: &Arc<Root>, token: u64, job: Job) {
        let _ = self.tx.send(Request {
            root: Arc::clone(root),
            job,
            token,
            reply_to: shard,
        });
    }
}

fn run(root: &Root, job: Job) -> Done {
    match job {
        Job::Stat(path) => Done::Stat(root.stat(&path)),
        Job::Open(path) => Done::Open(root.open_file(&path)),
        Job::List {
            path,
            format,
            facts,
            now,
        } => Done::Listing(list(root, &path, format, facts, now)),
    }
}

/// Format a whole listing. A path naming a file lists that one file (as `ls` does), except for MLSD,
/// which RFC 3659 section 7.2 reserves for directories.
fn list(
    root: &Root,
    path: &VirtualPath,
    format: ListFormat,
    facts: Facts,
    now: i64,
) -> Result<Vec<u8>, FileError> {
    let mut body = Vec::new();
    let line = |out: &mut Vec<u8>, e: &Entry| match format {
        ListFormat::List => listing::list_line(out, e, now),
        ListFormat::Nlst => listing::nlst_line(out, e),
        ListFormat::Mlsd => listing::mlsx_line(out, e, &e.name, MlsdRole::Entry, facts, false),
    };
    match root.read_dir(path, &mut |e| line(&mut body, &e)) {
        Ok(dir) => {
            if format == ListFormat::Mlsd && facts.type_ {
                // RFC 3659 section 7.5.1.2: describe the listed directory itself as "cdir".
                let mut out = Vec::with_capacity(body.len() + 128);
                listing::mlsx_line(&mut out, &dir, b".", MlsdRole::Cdir, facts, false);
                out.extend_from_slice(&body);
                return Ok(out);
            }
            Ok(body)
        }
        Err(FileError::NotADirectory) if format != ListFormat::Mlsd => {
            let e = root.stat(path)?;
            if e.kind == FileKind::Dir {
                return Err(FileError::NotADirectory);
            }
            line(&mut body, &e);
            Ok(body)
        }
        Err(e) => Err(e),
    }
}
