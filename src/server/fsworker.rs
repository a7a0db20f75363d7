//! The blocking helper pool: path lookups, opens, directory listings and upload commits run here
//! so a shard never waits on the disk (io_uring has no getdents); password checks have a pool of
//! their own (`logins`). Results go back to the asking shard through its mailbox, whose eventfd
//! wakes the shard's ring.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use nix::sys::eventfd::EventFd;

use super::listcache::{self, ListCache};
use crate::proto::command::ListFormat;
use crate::proto::entry::{Entry, FileKind};
use crate::proto::error::FileError;
use crate::proto::listing::{self, Facts, MlsdRole, Visibility};
use crate::proto::path::VirtualPath;
use crate::proto::session::{FsOp, Rights, StoreMode};
use crate::vfs::{CreateMode, Detail, DirCursor, Root};

/// Directory entries formatted per helper-pool job: a huge directory goes out in pieces of about
/// this many lines, each job giving the helper back to other sessions.
const LIST_BATCH: usize = 4000;
/// A listing piece is split into parts of at least this many entries, offered to idle helpers:
/// `lstat` is nearly all of a listing's cost and the parts are independent.
const MIN_SHARE: usize = 500;
/// STAT <dir> goes out over the control connection in pieces of about this many bytes: the
/// shard holds at most one piece per session, and asks for the next once the client has read it.
pub const CONTROL_PIECE_BYTES: usize = 32 << 10;
/// Entries formatted between checks of a control piece's size (a line is at most a name, a
/// link target and some 60 bytes, so a piece stays far below the control connection's cap).
const CONTROL_STEP: usize = 16;

pub enum Job {
    Stat(VirtualPath),
    Open(VirtualPath),
    Fs(FsOp),
    /// Open the target of an upload (a temporary file for atomic STOR).
    Create {
        path: VirtualPath,
        mode: StoreMode,
        umask: u32,
    },
    /// The upload's bytes are all written: move the temporary file into place, or trim an in-place
    /// resume to where it ended.
    Commit {
        upload: Upload,
        end: u64,
    },
    /// The upload failed: remove its temporary file (no reply).
    Discard {
        upload: Upload,
    },
    List {
        request: ListRequest,
        /// Where a listing sent in pieces goes on.
        cursor: Option<More>,
        /// The buffer of the piece sent before, to format the next one into: one buffer serves
        /// a whole listing (a fresh one per piece, freed on the shard, would be memory the
        /// helper's allocator does not get back at once).
        out: Vec<u8>,
        /// STAT over the control connection: pieces of `CONTROL_PIECE_BYTES`.
        control: bool,
    },
}

/// Where a listing sent in pieces goes on: the directory's cursor, and the buffers the last
/// piece's parts were formatted in (kept with the listing, so each piece reuses them).
pub struct More {
    cursor: DirCursor,
    parts: Vec<Vec<u8>>,
    /// The listing so far, to keep once it is complete (`listcache`), while it stays small
    /// enough to keep.
    capture: Option<Box<Capture>>,
}

struct Capture {
    key: listcache::Key,
    bytes: Vec<u8>,
    started: Instant,
}

impl Capture {
    /// Add a piece; give up once the listing is too large to keep.
    fn add(mut self: Box<Self>, piece: &[u8]) -> Option<Box<Capture>> {
        if self.bytes.len() + piece.len() > listcache::MAX_ENTRY_BYTES {
            return None;
        }
        self.bytes.extend_from_slice(piece);
        Some(self)
    }
}

pub enum Done {
    Stat(Result<Entry, FileError>),
    Open(Result<(File, Entry), FileError>),
    /// A piece of a listing, and the cursor for the next piece if there is more.
    Listing(Result<(Vec<u8>, Option<More>), FileError>),
    /// A password check (from the login pool, `logins`).
    Login(Option<(Rights, Arc<Root>)>),
    Fs(Result<(), FileError>),
    Created(Result<(File, Upload), FileError>),
    Committed(Result<(), FileError>),
    /// Nothing to report (fire-and-forget jobs).
    Nothing,
}

/// Where an upload goes and how it is finished.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The tree the upload lands in (kept so a cut-off upload can be cleaned up after its session).
    pub root: Arc<Root>,
    /// The final path (for STOU: the name the server picked).
    pub path: VirtualPath,
    /// The temporary name next to `path` (atomic STOR only).
    pub temp: Option<Vec<u8>>,
    pub exclusive: bool,
    /// Where writing starts (REST offset, or the current size for APPE).
    pub offset: u64,
    /// REST+STOR in place: cut the file where the upload ends.
    pub truncate: bool,
    /// The open file, kept for `set_len` on commit.
    pub file: Option<Arc<File>>,
}

/// What to list and how.
#[derive(Clone)]
pub struct ListRequest {
    pub path: VirtualPath,
    pub format: ListFormat,
    pub facts: Facts,
    /// For the LIST date format (recent files show the time, older ones the year).
    pub now: i64,
    /// MLSD `perm` facts offer write operations.
    pub writable: bool,
    /// Which entries appear (dot files, `.` and `..`); upload temporary files never do.
    pub show: Visibility,
    /// `ls -d`: list `path` itself, under this name.
    pub itself: Option<Vec<u8>>,
    /// How long a kept listing of the same directory may be sent instead (`listcache`);
    /// zero: never.
    pub cache_ttl: Duration,
}

/// A way into a shard from another thread: a channel plus the eventfd that wakes the shard's
/// ring. The shard drains its channels whenever the eventfd fires.
pub struct Mailbox<T> {
    pub tx: Sender<T>,
    pub wake: Arc<EventFd>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Mailbox<T> {
        Mailbox {
            tx: self.tx.clone(),
            wake: Arc::clone(&self.wake),
        }
    }
}

impl<T> Mailbox<T> {
    /// Deliver `msg` and wake the shard; the message comes back if the shard has stopped.
    pub fn post(&self, msg: T) -> Result<(), T> {
        self.tx.send(msg).map_err(|e| e.0)?;
        let _ = self.wake.write(1);
        Ok(())
    }
}

struct Request {
    root: Arc<Root>,
    job: Job,
    token: u64,
    reply_to: usize,
}

/// Part of a listing piece, offered to the pool by the helper formatting the piece (fork-join).
/// Whoever claims it first formats it; the owner claims it back if no helper got there first, so
/// it never waits for work that has not started and a busy pool cannot deadlock.
struct Share {
    request: ListRequest,
    state: Mutex<ShareState>,
    finished: Condvar,
}

enum ShareState {
    /// The part's names, and the buffer to format them into.
    Offered(DirCursor, Vec<u8>),
    /// Claimed; a helper is formatting it, or the owner has taken the result.
    Taken,
    Finished(Result<Vec<u8>, FileError>),
}

impl Share {
    fn lock(&self) -> MutexGuard<'_, ShareState> {
        // A panic while formatting cannot leave the state half-written: it is replaced whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(&self) -> Option<(DirCursor, Vec<u8>)> {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, ShareState::Taken) {
            ShareState::Offered(cursor, buf) => Some((cursor, buf)),
            other => {
                *state = other;
                None
            }
        }
    }

    /// A helper's side: format the part if nobody has claimed it yet.
    fn help(&self) {
        let Some((cursor, buf)) = self.claim() else {
            return;
        };
        // If formatting panics, the owner still gets an answer instead of waiting forever.
        struct Guard<'a>(&'a Share, Option<Result<Vec<u8>, FileError>>);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                let result = self.1.take().unwrap_or(Err(FileError::Io(libc::EIO)));
                *self.0.lock() = ShareState::Finished(result);
                self.0.finished.notify_all();
            }
        }
        let mut guard = Guard(self, None);
        guard.1 = Some(format_part(&self.request, cursor, buf));
    }

    /// The owner's side: the part's lines, formatted here if no helper claimed it.
    fn join(&self) -> Result<Vec<u8>, FileError> {
        if let Some((cursor, buf)) = self.claim() {
            return format_part(&self.request, cursor, buf);
        }
        let mut state = self.lock();
        loop {
            match std::mem::replace(&mut *state, ShareState::Taken) {
                ShareState::Finished(result) => return result,
                other => {
                    *state = other;
                    state = self.finished.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }
}

/// A handle to submit jobs; cheap to clone into every shard.
#[derive(Clone)]
pub struct Pool {
    /// Jobs a command starts, bounded (`fs_queue_max`): a full queue refuses the command.
    tx: Sender<Request>,
    /// Jobs that must not be refused: upload commits and discards (refusing a commit would lose
    /// an upload the client sent whole) and the next piece of a listing under way (its 150 is
    /// out). A session waits for at most one job at a time, so this queue holds at most one
    /// per session (and one discard per upload), and helpers take from it first.
    reserved: Sender<Request>,
}

/// The helper threads, joined at shutdown once every `Pool` handle is gone (so the last jobs,
/// such as removing a cut-off upload's temporary file, run before the process exits).
pub struct Workers(Vec<thread::JoinHandle<()>>);

impl Workers {
    pub(super) fn new(threads: Vec<thread::JoinHandle<()>>) -> Workers {
        Workers(threads)
    }

    pub fn join(self) {
        for t in self.0 {
            let _ = t.join();
        }
    }
}

/// Where a helper offers parts of the listing it is formatting to the other helpers.
struct Helpers {
    tx: Sender<Arc<Share>>,
    /// The other helpers: at most this many parts are worth offering.
    others: usize,
    /// Listings kept for reuse, shared by every helper.
    cache: Arc<ListCache>,
}

impl Pool {
    pub fn start(
        workers: usize,
        queue_max: usize,
        mailboxes: Vec<Mailbox<(u64, Done)>>,
    ) -> std::io::Result<(Pool, Workers)> {
        let (tx, rx) = crossbeam_channel::bounded::<Request>(queue_max);
        let (reserved, reserved_rx) = crossbeam_channel::unbounded::<Request>();
        let mut threads = Vec::new();
        let (help_tx, help_rx) = crossbeam_channel::unbounded::<Arc<Share>>();
        let mailboxes = Arc::new(mailboxes);
        let cache = Arc::new(ListCache::default());
        for i in 0..workers {
            let (rx, reserved_rx, help_rx): (Receiver<Request>, Receiver<Request>, _) =
                (rx.clone(), reserved_rx.clone(), help_rx.clone());
            let helpers = Helpers {
                tx: help_tx.clone(),
                others: workers - 1,
                cache: Arc::clone(&cache),
            };
            let mailboxes = Arc::clone(&mailboxes);
            let t = thread::Builder::new()
                .name(format!("ringftpd-fs{i}"))
                .spawn(move || {
                    // Ends when every shard (and so every Pool handle) is gone; the helpers'
                    // own senders of listing parts do not keep it alive. Parts come first: a
                    // helper is waiting for them.
                    let mut open = true;
                    loop {
                        while let Ok(share) = help_rx.try_recv() {
                            share.help();
                        }
                        let req = if let Ok(req) = reserved_rx.try_recv() {
                            req
                        } else if !open {
                            // Every Pool handle is gone: finish the reserved jobs, then stop.
                            break;
                        } else {
                            crossbeam_channel::select! {
                                recv(help_rx) -> share => {
                                    if let Ok(share) = share {
                                        share.help();
                                    }
                                    continue;
                                }
                                recv(reserved_rx) -> req => match req {
                                    Ok(req) => req,
                                    Err(_) => {
                                        open = false;
                                        continue;
                                    }
                                },
                                recv(rx) -> req => match req {
                                    Ok(req) => req,
                                    Err(_) => {
                                        open = false;
                                        continue;
                                    }
                                },
                            }
                        };
                        let done = run(&req.root, &helpers, req.job);
                        if let Done::Nothing = done {
                            continue;
                        }
                        let _ = mailboxes[req.reply_to].post((req.token, done));
                    }
                })?;
            threads.push(t);
        }
        Ok((Pool { tx, reserved }, Workers::new(threads)))
    }

    /// Queue `job`; its `Done` comes back to shard `shard` with `token`. A job a command starts
    /// is given back when the queue is full (the command is answered 450, nothing was tried);
    /// reserved jobs (see `Pool::reserved`) are always taken.
    pub fn submit(
        &self,
        shard: usize,
        root: &Arc<Root>,
        token: u64,
        job: Job,
    ) -> Result<(), Box<Job>> {
        let request = Request {
            root: Arc::clone(root),
            job,
            token,
            reply_to: shard,
        };
        let reserved = matches!(
            request.job,
            Job::Commit { .. }
                | Job::Discard { .. }
                | Job::List {
                    cursor: Some(_),
                    ..
                }
        );
        let sent = if reserved {
            self.reserved.send(request).map_err(|e| e.0)
        } else {
            self.tx.try_send(request).map_err(|e| match e {
                TrySendError::Full(r) | TrySendError::Disconnected(r) => r,
            })
        };
        sent.map_err(|r| Box::new(r.job))
    }
}

fn fs_op_paths(op: &FsOp) -> Vec<&VirtualPath> {
    match op {
        FsOp::Delete(p) | FsOp::Rmdir(p) => vec![p],
        FsOp::Mkdir { path, .. } | FsOp::Chmod { path, .. } | FsOp::SetMtime { path, .. } => {
            vec![path]
        }
        FsOp::Rename { from, to } => vec![from, to],
    }
}

/// Uploads in progress live under hidden temporary names; to clients they do not exist.
fn hidden(path: &VirtualPath) -> bool {
    path.file_name().is_some_and(crate::vfs::is_temp_name)
}

fn run(root: &Arc<Root>, helpers: &Helpers, job: Job) -> Done {
    // Whatever this server changes shows in the next listing at once: kept listings go.
    if matches!(
        job,
        Job::Fs(_) | Job::Create { .. } | Job::Commit { .. } | Job::Discard { .. }
    ) {
        helpers.cache.clear();
    }
    match job {
        Job::Stat(path) if hidden(&path) => Done::Stat(Err(FileError::NotFound)),
        Job::Open(path) if hidden(&path) => Done::Open(Err(FileError::NotFound)),
        Job::List { request, .. } if hidden(&request.path) => {
            Done::Listing(Err(FileError::NotFound))
        }
        Job::Stat(path) => Done::Stat(root.stat(&path)),
        Job::Open(path) => Done::Open(root.open_file(&path)),
        // Another session's upload in progress cannot be deleted, renamed or changed by name.
        Job::Fs(op) if fs_op_paths(&op).into_iter().any(hidden) => {
            Done::Fs(Err(FileError::NotFound))
        }
        Job::Fs(op) => Done::Fs(match op {
            FsOp::Delete(p) => root.remove_file(&p),
            FsOp::Mkdir { path, umask } => root.make_dir(&path, umask),
            FsOp::Rmdir(p) => root.remove_dir(&p),
            FsOp::Rename { from, to } => root.rename(&from, &to),
            FsOp::Chmod { path, mode } => root.chmod(&path, mode),
            FsOp::SetMtime { path, secs } => root.set_mtime(&path, secs),
        }),
        Job::Create { path, mode, umask } => Done::Created(create(root, path, mode, umask)),
        Job::Commit { upload, end } => Done::Committed(commit(root, &upload, end)),
        Job::Discard { mut upload } => {
            // Close this job's handle first: once the name is gone, so is the space (a client
            // told 452 can retry at once), unless a write in flight still holds the file.
            drop(upload.file.take());
            if let Some(temp) = &upload.temp {
                upload.root.discard_temp(&upload.path, temp);
            }
            Done::Nothing
        }
        Job::List {
            request,
            cursor,
            out,
            control,
        } => Done::Listing(list(root, helpers, &request, cursor, out, control)),
    }
}

fn create(
    root: &Arc<Root>,
    path: VirtualPath,
    mode: StoreMode,
    umask: u32,
) -> Result<(File, Upload), FileError> {
    let upload = |path, temp, exclusive, offset, truncate| Upload {
        root: Arc::clone(root),
        path,
        temp,
        exclusive,
        offset,
        truncate,
        file: None,
    };
    let (file, upload) = match mode {
        StoreMode::Atomic { exclusive } => {
            // Refuse before any data moves; the rename with RENAME_NOREPLACE still closes the race.
            if exclusive && root.stat(&path).is_ok() {
                return Err(FileError::Exists);
            }
            let (file, temp) = root.create_temp(&path, umask)?;
            (file, upload(path, Some(temp), exclusive, 0, false))
        }
        StoreMode::Append => {
            let (file, size) = root.open_for_write(&path, true, umask)?;
            (file, upload(path, None, false, size, false))
        }
        StoreMode::At(offset) => {
            let (file, _) = root.open_for_write(&path, false, umask)?;
            (file, upload(path, None, false, offset, true))
        }
        StoreMode::Unique { base } => {
            let (file, path) = root.create_unique(&path, &base, umask)?;
            (file, upload(path, None, false, 0, false))
        }
    };
    Ok((file, upload))
}

fn commit(root: &Root, upload: &Upload, end: u64) -> Result<(), FileError> {
    if upload.truncate {
        if let Some(file) = &upload.file {
            file.set_len(end).map_err(|e| FileError::from_io(&e))?;
        }
    }
    match &upload.temp {
        Some(temp) => {
            let mode = if upload.exclusive {
                CreateMode::Exclusive
            } else {
                CreateMode::Replace
            };
            let result = root.commit_temp(&upload.path, temp, mode);
            if result.is_err() {
                root.discard_temp(&upload.path, temp);
            }
            result
        }
        None => Ok(()),
    }
}

/// Format the next piece of a listing. A path naming a file lists that one file (as `ls` does),
/// except for MLSD, which RFC 3659 section 7.2 reserves for directories.
fn list(
    root: &Root,
    helpers: &Helpers,
    request: &ListRequest,
    more: Option<More>,
    mut out: Vec<u8>,
    control: bool,
) -> Result<(Vec<u8>, Option<More>), FileError> {
    let ListRequest {
        path,
        format,
        facts,
        writable,
        ..
    } = request;
    let (format, facts, writable) = (*format, *facts, *writable);
    out.clear();
    if let Some(name) = &request.itself {
        // `ls -d`: the directory (or file) itself, one line.
        let mut e = root.stat(path)?;
        e.name.clone_from(name);
        list_line(&mut out, request, &e);
        return Ok((out, None));
    }
    let (mut cursor, mut spares, capture) = match more {
        Some(More {
            cursor,
            parts,
            capture,
        }) => (cursor, parts, capture),
        None => match root.open_dir(path) {
            Ok(dir) => {
                let started = Instant::now();
                let key = (!control && !request.cache_ttl.is_zero()).then_some(listcache::Key {
                    root: root.id(),
                    dir: dir.version,
                    format,
                    facts,
                    writable,
                    show: request.show,
                });
                if let Some(kept) =
                    key.and_then(|k| helpers.cache.get(&k, request.cache_ttl, started))
                {
                    out.extend_from_slice(&kept);
                    return Ok((out, None));
                }
                // Hidden names are dropped as they are read, before they cost an lstat; uploads
                // in progress are nobody's business, whatever the options.
                let show = request.show;
                let c = dir.read_keeping(detail(format), move |n| {
                    show.shows(n) && !crate::vfs::is_temp_name(n)
                })?;
                if format == ListFormat::Mlsd && facts.type_ {
                    // RFC 3659 section 7.5.1.2: describe the listed directory itself as "cdir".
                    listing::mlsx_line(&mut out, &c.this, b".", MlsdRole::Cdir, facts, writable);
                }
                if show.dot_dirs && format != ListFormat::Mlsd {
                    // `ls -a`: "." is the directory, ".." its parent (the root's parent is the
                    // root itself, as a chroot'ed ls shows it).
                    let mut dot = c.this.clone();
                    dot.name = b".".to_vec();
                    list_line(&mut out, request, &dot);
                    if let Ok(mut up) = root.stat(&path.parent()) {
                        up.name = b"..".to_vec();
                        list_line(&mut out, request, &up);
                    }
                }
                // Only a directory read whole (sorted, at most `SORT_MAX_NAMES`) is kept: a larger
                // one streams in bounded memory, and a copy of it would not be.
                let capture = key.filter(|_| c.all_read()).map(|key| {
                    Box::new(Capture {
                        key,
                        bytes: Vec::new(),
                        started,
                    })
                });
                (c, Vec::new(), capture)
            }
            Err(FileError::NotADirectory) if format != ListFormat::Mlsd => {
                let e = root.stat(path)?;
                if e.kind == FileKind::Dir {
                    return Err(FileError::NotADirectory);
                }
                list_line(&mut out, request, &e);
                return Ok((out, None));
            }
            Err(e) => return Err(e),
        },
    };
    if control {
        // Over the control connection: one small piece at a time (the shard asks for the next
        // once the client has read this one), formatted here without splitting.
        while out.len() < CONTROL_PIECE_BYTES {
            let visit = &mut |e: &Entry| list_line(&mut out, request, e);
            if !cursor.next_batch(CONTROL_STEP, visit)? {
                return Ok((out, None));
            }
        }
        let parts = spares;
        return Ok((
            out,
            Some(More {
                cursor,
                parts,
                capture: None,
            }),
        ));
    }
    let mut piece = cursor.take(LIST_BATCH)?;
    // Offer all but the first part to the other helpers, format the first here, then collect the
    // rest in order (formatting any part no helper has started). NLST needs no `lstat`, so its
    // parts are not worth a hand-over.
    let share = if format == ListFormat::Nlst {
        usize::MAX
    } else {
        MIN_SHARE
    };
    let parts = (piece.remaining() / share).clamp(1, helpers.others + 1);
    let per = piece.remaining().div_ceil(parts);
    let first = piece.take(per)?;
    let mut shares: Vec<Arc<Share>> = Vec::with_capacity(parts - 1);
    for _ in 1..parts {
        let share = Arc::new(Share {
            request: request.clone(),
            state: Mutex::new(ShareState::Offered(
                piece.take(per)?,
                spares.pop().unwrap_or_default(),
            )),
            finished: Condvar::new(),
        });
        let _ = helpers.tx.send(Arc::clone(&share));
        shares.push(share);
    }
    let mut result = format_into(&mut out, request, first);
    for share in shares {
        // Every part is joined, even after a failure, so none is left for a helper to format.
        let part = share.join();
        if result.is_ok() {
            result = part.map(|lines| {
                out.extend_from_slice(&lines);
                spares.push(lines);
            });
        }
    }
    result?;
    let parts = spares;
    let capture = capture.and_then(|c| c.add(&out));
    if cursor.finished() {
        if let Some(c) = capture {
            helpers.cache.put(c.key, c.bytes, c.started);
        }
        return Ok((out, None));
    }
    Ok((
        out,
        Some(More {
            cursor,
            parts,
            capture,
        }),
    ))
}

/// What a listing format needs to know of each entry.
fn detail(format: ListFormat) -> Detail {
    match format {
        ListFormat::List => Detail::LinkTargets,
        ListFormat::Nlst => Detail::Names,
        ListFormat::Mlsd => Detail::Full,
    }
}

/// One listing line for `e` in the request's format.
fn list_line(out: &mut Vec<u8>, request: &ListRequest, e: &Entry) {
    match request.format {
        ListFormat::List => listing::list_line(out, e, request.now),
        ListFormat::Nlst => listing::nlst_line(out, e),
        ListFormat::Mlsd => listing::mlsx_line(
            out,
            e,
            &e.name,
            MlsdRole::Entry,
            request.facts,
            request.writable,
        ),
    }
}

/// `lstat` and format every entry of `part`.
fn format_part(
    request: &ListRequest,
    part: DirCursor,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, FileError> {
    out.clear();
    out.reserve(part.remaining() * 80);
    format_into(&mut out, request, part)?;
    Ok(out)
}

/// `lstat` every entry of `part` and append its line to `out`.
fn format_into(
    out: &mut Vec<u8>,
    request: &ListRequest,
    mut part: DirCursor,
) -> Result<(), FileError> {
    // Hidden names and upload temporary files were dropped when the listing was opened.
    part.next_batch(usize::MAX, &mut |e: &Entry| list_line(out, request, e))?;
    Ok(())
}
