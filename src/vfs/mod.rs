//! The filesystem jail: the only way the server touches files. Every lookup goes through
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to the served root's fd, so the
//! kernel (not string-prefix checks) keeps `..`, absolute symlinks and `/proc` links inside.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, fcntl};
use nix::sys::stat::{fstat, fstatat};

use crate::proto::entry::{Entry, FileKind};
use crate::proto::path::VirtualPath;
use crate::sys::fs;

pub mod link;
mod write;
pub use write::{CreateMode, is_temp_name};

// The type lives in `proto` so the pure session code can name it without depending on `vfs`;
// the errno table that fills it in lives here, next to the syscalls that produce the errnos.
pub use crate::proto::error::FileError;

impl FileError {
    /// The one errno table: every filesystem failure becomes a `FileError` here.
    pub fn from_errno(errno: i32) -> FileError {
        match errno {
            libc::ENOENT => FileError::NotFound,
            libc::EACCES | libc::EPERM => FileError::PermissionDenied,
            libc::ENOTDIR => FileError::NotADirectory,
            libc::EISDIR => FileError::IsADirectory,
            // open(2) of a socket is ENXIO, of a device without a driver ENODEV.
            libc::ENXIO | libc::ENODEV => FileError::NotAFile,
            // EXDEV: RESOLVE_BENEATH refused to leave the root; ELOOP: a magic link was refused
            // (or a symlink loop, which is no more useful to report distinctly).
            libc::EXDEV | libc::ELOOP => FileError::Escapes,
            libc::ENAMETOOLONG => FileError::NameTooLong,
            libc::ENOSPC => FileError::NoSpace,
            libc::EDQUOT => FileError::QuotaExceeded,
            libc::EROFS => FileError::ReadOnly,
            libc::EEXIST => FileError::Exists,
            libc::ENOTEMPTY => FileError::NotEmpty,
            libc::EBUSY | libc::ETXTBSY => FileError::Busy,
            other => FileError::Io(other),
        }
    }

    pub fn from_io(e: &std::io::Error) -> FileError {
        match e.raw_os_error() {
            Some(errno) => FileError::from_errno(errno),
            None => match e.kind() {
                std::io::ErrorKind::NotFound => FileError::NotFound,
                std::io::ErrorKind::PermissionDenied => FileError::PermissionDenied,
                _ => FileError::Io(libc::EIO),
            },
        }
    }
}

impl From<Errno> for FileError {
    fn from(e: Errno) -> FileError {
        FileError::from_errno(e as i32)
    }
}

/// A served root: a directory fd; every path is resolved beneath it with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, never with string-prefix checks.
#[derive(Debug)]
pub struct Root {
    /// Shared with listings in progress, which resolve link targets beneath it.
    fd: Arc<OwnedFd>,
    /// The root directory's device and inode: what a listing shows can depend on the root it is
    /// made under (link targets are shown only where they stay inside it).
    id: (u64, u64),
}

impl Root {
    /// Open `dir` as `O_RDONLY | O_DIRECTORY` (not `O_PATH`), so the fd also works for listing.
    pub fn open(dir: &std::path::Path) -> std::io::Result<Root> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir)?;
        let meta = file.metadata()?;
        Ok(Root {
            id: (meta.dev(), meta.ino()),
            fd: Arc::new(file.into()),
        })
    }

    /// The root directory's device and inode.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open `path` (following symlinks only while they stay beneath the root).
    fn open_at(&self, path: &VirtualPath, flags: i32) -> Result<OwnedFd, FileError> {
        // A NUL cannot reach the kernel; the path layer should already have refused it.
        let c = CString::new(path.relative()).map_err(|_| FileError::Io(libc::EINVAL))?;
        fs::openat2(self.fd(), &c, flags, 0, fs::RESOLVE_JAIL).map_err(|e| FileError::from_io(&e))
    }

    /// Open a regular file for reading; returns it with its `Entry` (from `fstat` on the same fd,
    /// so the check and the use cannot race). A directory is `IsADirectory`, anything else
    /// non-regular `NotAFile`.
    pub fn open_file(&self, path: &VirtualPath) -> Result<(File, Entry), FileError> {
        let fd = self.open_at(path, OPEN_FOR_READ)?;
        opened_for_read(fd, path)
    }

    /// The root's directory fd and `path` as a C string relative to it, for callers that open
    /// with io_uring (flags `OPEN_FOR_READ`, resolve `RESOLVE_JAIL`, then `opened_for_read`).
    pub fn open_args(&self, path: &VirtualPath) -> Result<(BorrowedFd<'_>, CString), FileError> {
        let c = CString::new(path.relative()).map_err(|_| FileError::Io(libc::EINVAL))?;
        Ok((self.fd(), c))
    }
    /// Stat `path`: resolved with `openat2(O_PATH)`, which follows symlinks only beneath the
    /// root, then `fstat`. A symlink leading out is `Escapes`, a dangling one `NotFound`.
    pub fn stat(&self, path: &VirtualPath) -> Result<Entry, FileError> {
        stat_opened(&self.open_at(path, libc::O_PATH)?, path)
    }

    /// List a directory; returns the directory's own `Entry` (for MLSD `cdir`) after calling
    /// `visit` once per child, in the order of `open_listing`. Children are `lstat`ed (a symlink
    /// is listed as `Symlink`, never followed); "." and "..", names that vanished meanwhile and
    /// names containing CR or LF (unsendable on an FTP line) are skipped.
    pub fn read_dir(
        &self,
        path: &VirtualPath,
        visit: &mut dyn FnMut(&Entry),
    ) -> Result<Entry, FileError> {
        let mut cursor = self.open_listing(path, Detail::Full)?;
        while cursor.next_batch(usize::MAX, visit)? {}
        Ok(*cursor.this)
    }

    /// Start listing a directory in batches: names are read from the kernel a bounded number at a
    /// time (a huge directory is read, formatted and sent a piece at a time, so neither a helper
    /// thread nor memory is held for the whole of it). A directory of at most `SORT_MAX_NAMES`
    /// names is listed sorted by name bytes (read whole first); a larger one in the order the
    /// file system returns its names, which is the only order that needs no whole-directory
    /// buffer.
    pub fn open_listing(&self, path: &VirtualPath, detail: Detail) -> Result<DirCursor, FileError> {
        self.open_dir(path)?
            .read_sorted_up_to(detail, SORT_MAX_NAMES, None)
    }

    /// Open `path` as a directory to list, reading no name yet: its own entry and version come
    /// first (a listing cache may make reading the names unnecessary).
    pub fn open_dir(&self, path: &VirtualPath) -> Result<OpenDir, FileError> {
        let dir = self.open_at(path, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let st = fstat(&dir)?;
        Ok(OpenDir {
            this: Box::new(entry_from_stat(display_name(path), &st)),
            version: DirVersion {
                dev: st.st_dev,
                ino: st.st_ino,
                mtime: (st.st_mtime, st.st_mtime_nsec),
                ctime: (st.st_ctime, st.st_ctime_nsec),
            },
            fd: dir,
            root: Arc::clone(&self.fd),
            path: path.clone(),
        })
    }
}

/// What identifies one state of a directory's name list: which directory (device and inode),
/// and its modification and change times to the nanosecond. Creating, removing or renaming an
/// entry changes them; changing an entry's content or attributes does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirVersion {
    pub dev: u64,
    pub ino: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// A directory opened for a listing, its names not read yet.
pub struct OpenDir {
    pub this: Box<Entry>,
    pub version: DirVersion,
    fd: OwnedFd,
    root: Arc<OwnedFd>,
    path: VirtualPath,
}

impl OpenDir {
    /// Read the names `keep` accepts (now and as the listing goes on; no name it drops is ever
    /// stored): all of them, sorted, for a directory of at most [`SORT_MAX_NAMES`]; the first
    /// batch of a larger one (listed in directory order).
    pub fn read_keeping(
        self,
        detail: Detail,
        keep: impl Fn(&[u8]) -> bool + Send + 'static,
    ) -> Result<DirCursor, FileError> {
        self.read_sorted_up_to(detail, SORT_MAX_NAMES, Some(Box::new(keep)))
    }

    fn read_sorted_up_to(
        self,
        detail: Detail,
        sort_max: usize,
        keep: Option<Keep>,
    ) -> Result<DirCursor, FileError> {
        let mut cursor = DirCursor {
            dir: Arc::new(Dir {
                fd: self.fd,
                root: self.root,
                path: self.path,
                detail,
            }),
            names: Names::default(),
            more: true,
            keep,
            this: self.this,
        };
        cursor.fill(sort_max.saturating_add(1))?;
        if !cursor.more {
            cursor.names.sort();
        }
        Ok(cursor)
    }
}

/// A directory of at most this many names is listed sorted (as `ls` does); a larger one in
/// directory order, so a listing never holds more than about this many names in memory.
pub const SORT_MAX_NAMES: usize = 10_000;

/// How much a listing needs to know about each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Names only (NLST): no `lstat` per entry; the other `Entry` fields are zero.
    Names,
    /// `lstat` every entry (MLSD, and STAT <dir>'s long form without link targets).
    Full,
    /// `lstat`, and symbolic links get `Entry::link` where their target stays inside the root
    /// (LIST shows them).
    LinkTargets,
}

/// The directory a cursor lists, shared by the cursors split off it.
struct Dir {
    fd: OwnedFd,
    /// The served root and the directory's path in it, for checking where link targets lead.
    root: Arc<OwnedFd>,
    path: VirtualPath,
    detail: Detail,
}

/// Which names a listing keeps (applied as names are read, so a hidden entry costs no `lstat`).
type Keep = Box<dyn Fn(&[u8]) -> bool + Send>;

/// A directory being listed: its fd, the names read from it and not yet visited, and whether the
/// kernel has more.
pub struct DirCursor {
    /// Shared with the cursors `take` splits off, so parts can be `lstat`ed on several threads.
    dir: Arc<Dir>,
    names: Names,
    /// The directory may have names not read yet (only the cursor `open_listing` returned reads
    /// them; the parts split off it hold what they were given).
    more: bool,
    keep: Option<Keep>,
    /// The directory itself (for MLSD `cdir`); boxed so a cursor stays small in the messages
    /// that carry it between pieces of a listing.
    pub this: Box<Entry>,
}

impl std::fmt::Debug for DirCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DirCursor({} read, {})",
            self.names.len(),
            if self.more { "more" } else { "end" }
        )
    }
}

impl DirCursor {
    /// Names read and not yet visited (the directory may hold more: see `finished`).
    pub fn remaining(&self) -> usize {
        self.names.len()
    }

    /// Every name of the directory has been read (it was small enough to read at once and
    /// sort, or the last batch is in).
    pub fn all_read(&self) -> bool {
        !self.more
    }

    /// Every name has been visited or handed to a part.
    pub fn finished(&self) -> bool {
        self.names.len() == 0 && !self.more
    }

    /// Read names from the kernel until `want` are buffered or the directory ends.
    fn fill(&mut self, want: usize) -> Result<(), FileError> {
        if !self.more || self.names.len() >= want {
            return Ok(());
        }
        let mut buf = vec![0u8; fs::DIR_CHUNK_BYTES];
        while self.more && self.names.len() < want {
            let (names, keep) = (&mut self.names, &self.keep);
            self.more = fs::dir_entries_chunk(self.dir.fd.as_fd(), &mut buf, &mut |name, _| {
                // A name longer than NAME_MAX could not be opened by name anyway.
                let sendable =
                    name.len() <= NAME_MAX && !name.iter().any(|&b| b == b'\r' || b == b'\n');
                if sendable && keep.as_ref().is_none_or(|k| k(name)) {
                    names.push(name);
                }
            })
            .map_err(|e| FileError::from_io(&e))?;
        }
        Ok(())
    }

    /// Split off a cursor over the next `n` names (fewer at the end), reading them from the
    /// directory as needed, for another thread to visit; this cursor goes on after them.
    pub fn take(&mut self, n: usize) -> Result<DirCursor, FileError> {
        self.fill(n)?;
        let names = self.names.split_off_front(n);
        // Read ahead a little, so `finished` is exact once the directory's last name is taken.
        self.fill(1)?;
        Ok(DirCursor {
            dir: Arc::clone(&self.dir),
            names,
            more: false,
            keep: None,
            this: self.this.clone(),
        })
    }

    /// Visit up to `max` more entries (`lstat`ed unless the listing wants names only); returns
    /// whether any are left. One `Entry` is filled in for each visit in turn, so visiting costs
    /// no allocation per name.
    pub fn next_batch(
        &mut self,
        max: usize,
        visit: &mut dyn FnMut(&Entry),
    ) -> Result<bool, FileError> {
        let mut e = Entry::named(Vec::new());
        let mut left = max;
        while left > 0 {
            if self.names.len() == 0 {
                self.fill(1)?;
            }
            let Some(name) = self.names.pop_front() else {
                break;
            };
            left -= 1;
            e.name.clear();
            e.name.extend_from_slice(name);
            // Relative to the directory fd: no path re-resolution, so no escape or rename race.
            let dir = &*self.dir;
            if dir.detail == Detail::Names {
                visit(&e);
                continue;
            }
            match fstatat(&dir.fd, e.name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    set_from_stat(&mut e, &st);
                    if dir.detail == Detail::LinkTargets && e.kind == FileKind::Symlink {
                        e.link = link::target(dir.root.as_fd(), &dir.path, dir.fd.as_fd(), &e.name);
                    }
                    visit(&e)
                }
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(!self.finished())
    }
}

/// The longest name a Linux file system hands out for lookup (`NAME_MAX`): a name's length then
/// fits the one byte that `Names` keeps before it.
const NAME_MAX: usize = 255;

/// Names read from a directory and not yet listed, one after another in one buffer, each after
/// a byte holding its length: a batch costs one allocation, not one per name, finding the next
/// name needs no scan, and the buffer is reused as the listing goes on.
#[derive(Default)]
struct Names {
    bytes: Vec<u8>,
    /// Where the first name not yet taken starts.
    start: usize,
    count: usize,
}

/// The names stored in `bytes` (length byte, name, ...), `count` of them.
struct NameIter<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Iterator for NameIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.count == 0 {
            return None;
        }
        let (&len, rest) = self.bytes.split_first()?;
        let (name, rest) = rest.split_at(usize::from(len));
        self.bytes = rest;
        self.count -= 1;
        Some(name)
    }
}

impl Names {
    fn len(&self) -> usize {
        self.count
    }

    /// Add `name` (at most `NAME_MAX` bytes: the caller skips longer ones).
    fn push(&mut self, name: &[u8]) {
        if self.start > 0 && self.start >= self.bytes.len() / 2 {
            // Reuse the front of the buffer rather than growing it.
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        debug_assert!(name.len() <= NAME_MAX);
        self.bytes.push(name.len() as u8);
        self.bytes.extend_from_slice(name);
        self.count += 1;
    }

    fn iter(&self) -> NameIter<'_> {
        NameIter {
            bytes: &self.bytes[self.start..],
            count: self.count,
        }
    }

    fn pop_front(&mut self) -> Option<&[u8]> {
        if self.count == 0 {
            return None;
        }
        let at = self.start;
        let len = usize::from(self.bytes[at]);
        self.start += 1 + len;
        self.count -= 1;
        Some(&self.bytes[at + 1..at + 1 + len])
    }

    /// The first `n` names (fewer if there are fewer), as a buffer of their own; all of them
    /// move without a copy.
    fn split_off_front(&mut self, n: usize) -> Names {
        if n >= self.count {
            return std::mem::take(self);
        }
        let len: usize = self.iter().take(n).map(|name| name.len() + 1).sum();
        let front = Names {
            bytes: self.bytes[self.start..self.start + len].to_vec(),
            start: 0,
            count: n,
        };
        self.start += len;
        self.count -= n;
        front
    }

    fn rebuild<'a>(&self, names: impl Iterator<Item = &'a [u8]>) -> Names {
        let mut out = Names {
            bytes: Vec::with_capacity(self.bytes.len() - self.start),
            ..Names::default()
        };
        for name in names {
            out.push(name);
        }
        out
    }

    fn sort(&mut self) {
        let mut sorted: Vec<&[u8]> = self.iter().collect();
        sorted.sort_unstable();
        *self = self.rebuild(sorted.into_iter());
    }
}

/// Flags for opening a file to send. O_NONBLOCK so that opening a FIFO without a writer returns
/// at once instead of hanging; O_NOCTTY so a tty can never become our controlling terminal.
pub const OPEN_FOR_READ: i32 = libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK;
pub use crate::sys::fs::RESOLVE_JAIL;

/// The `Entry` of `path` from `fd`, opened for it with `O_PATH` under `RESOLVE_JAIL` (by
/// `Root::stat`, or on io_uring with the arguments of `Root::open_args`).
pub fn stat_opened(fd: &OwnedFd, path: &VirtualPath) -> Result<Entry, FileError> {
    Ok(entry_from_stat(display_name(path), &fstat(fd)?))
}

/// Check a file opened with `OPEN_FOR_READ` (from `fstat` on the same fd, so the check and the
/// use cannot race): a directory is `IsADirectory`, anything else non-regular `NotAFile`.
pub fn opened_for_read(fd: OwnedFd, path: &VirtualPath) -> Result<(File, Entry), FileError> {
    let entry = entry_from_stat(display_name(path), &fstat(&fd)?);
    match entry.kind {
        FileKind::File => {}
        FileKind::Dir => return Err(FileError::IsADirectory),
        FileKind::Symlink | FileKind::Other => return Err(FileError::NotAFile),
    }
    // Readers get ordinary blocking semantics back (harmless on regular files, but
    // sendfile/splice users should not see a surprising flag).
    let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok((File::from(fd), entry))
}

/// The name an `Entry` for `path` carries: its last component, or "/" for the root.
fn display_name(path: &VirtualPath) -> Vec<u8> {
    path.file_name().unwrap_or(b"/").to_vec()
}

/// Build an Entry from a stat buffer: kind from `S_IFMT`, size, mtime, `mode & 0o7777`, nlink,
/// uid, gid, dev, ino.
pub fn entry_from_stat(name: Vec<u8>, st: &libc::stat) -> Entry {
    let mut e = Entry::named(name);
    set_from_stat(&mut e, st);
    e
}

/// Everything of `e` but its name from a stat buffer (see `entry_from_stat`); `link` is cleared.
// The libc field types differ by architecture (nlink_t is u32 on aarch64, time_t i32 on 32-bit),
// so the widening casts are only no-ops on x86_64.
#[allow(clippy::unnecessary_cast)]
fn set_from_stat(e: &mut Entry, st: &libc::stat) {
    e.kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::File,
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    };
    e.size = u64::try_from(st.st_size).unwrap_or(0);
    e.mtime = st.st_mtime as i64;
    e.mode = st.st_mode & 0o7777;
    e.nlink = st.st_nlink as u64;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.dev = st.st_dev as u64;
    e.ino = st.st_ino as u64;
    e.link = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    /// `outer/outside` is the secret; `outer/root` is served.
    fn setup() -> (tempfile::TempDir, Root) {
        let outer = tempfile::tempdir().unwrap();
        let o = outer.path();
        std::fs::write(o.join("outside"), b"secret").unwrap();
        let r = o.join("root");
        std::fs::create_dir_all(r.join("sub")).unwrap();
        std::fs::write(r.join("a.txt"), b"hello").unwrap();
        std::fs::write(r.join("with space.txt"), b"").unwrap();
        std::fs::write(r.join("ünïcødé.txt"), b"").unwrap();
        std::fs::write(r.join("bad\nname"), b"").unwrap();
        symlink("/etc/passwd", r.join("abs")).unwrap();
        symlink(o.join("outside"), r.join("abs2")).unwrap();
        symlink("../../outside", r.join("sub/rel")).unwrap();
        symlink("../outside", r.join("rel2")).unwrap();
        symlink("sub/../a.txt", r.join("inside")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let root = Root::open(&r).unwrap();
        (outer, root)
    }

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().join(s.as_bytes()).unwrap()
    }

    #[test]
    fn open_and_stat() {
        let (_t, root) = setup();
        let (mut f, e) = root.open_file(&vp("/a.txt")).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), e.kind, e.size), ("hello", FileKind::File, 5));
        assert_eq!(e.name, b"a.txt");
        let d = root.stat(&vp("sub")).unwrap();
        assert_eq!((d.kind, d.name.as_slice()), (FileKind::Dir, &b"sub"[..]));
        assert_eq!(root.stat(&VirtualPath::root()).unwrap().name, b"/");
        assert_eq!(root.stat(&vp("a.txt")).unwrap().mode & 0o400, 0o400);
    }

    #[test]
    fn read_dir_lists_sorted_and_skips_crlf() {
        let (_t, root) = setup();
        let mut got = Vec::new();
        let own = root
            .read_dir(&VirtualPath::root(), &mut |e| got.push(e.clone()))
            .unwrap();
        assert_eq!((own.kind, own.name.as_slice()), (FileKind::Dir, &b"/"[..]));
        let names: Vec<&[u8]> = got.iter().map(|e| e.name.as_slice()).collect();
        let want: &[&[u8]] = &[
            b"a.txt",
            b"abs",
            b"abs2",
            b"inside",
            b"loop",
            b"rel2",
            b"sub",
            b"with space.txt",
            "ünïcødé.txt".as_bytes(),
        ];
        assert_eq!(names, want);
        assert_eq!(got[1].kind, FileKind::Symlink);
        assert_eq!(got[6].kind, FileKind::Dir);
        let err = root.read_dir(&vp("a.txt"), &mut |_| {}).unwrap_err();
        assert_eq!(err, FileError::NotADirectory);
    }

    #[test]
    fn symlinks_cannot_escape() {
        let (_t, root) = setup();
        for p in ["abs", "abs2", "sub/rel", "rel2"] {
            let r = root.open_file(&vp(p)).map(|(_, e)| e);
            assert!(r == Err(FileError::Escapes), "{p}: {r:?}");
            let s = root.stat(&vp(p));
            assert_eq!(s, Err(FileError::Escapes), "{p}");
        }
        assert_eq!(root.stat(&vp("loop")), Err(FileError::Escapes));
    }

    #[test]
    fn symlink_inside_works() {
        let (_t, root) = setup();
        let (mut f, e) = root.open_file(&vp("inside")).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!((s.as_str(), e.kind), ("hello", FileKind::File));
    }

    #[test]
    fn wrong_kinds_and_missing() {
        let (t, root) = setup();
        assert_eq!(
            root.open_file(&vp("sub")).unwrap_err(),
            FileError::IsADirectory
        );
        assert_eq!(
            root.open_file(&vp("nope")).unwrap_err(),
            FileError::NotFound
        );
        assert_eq!(root.stat(&vp("sub/nope")).unwrap_err(), FileError::NotFound);
        let fifo = t.path().join("root/fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Run on a thread so a blocking open fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(root.open_file(&vp("fifo")).map(|(_, e)| e));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("opening a FIFO blocked");
        assert_eq!(r.unwrap_err(), FileError::NotAFile);
    }

    #[test]
    fn read_dir_spans_many_getdents_buffers() {
        let (t, root) = setup();
        let big = t.path().join("root/big");
        std::fs::create_dir(&big).unwrap();
        for i in 0..3000 {
            std::fs::write(big.join(format!("file-with-a-longish-name-{i:05}")), b"").unwrap();
        }
        let mut n = 0;
        let mut last = Vec::new();
        root.read_dir(&vp("big"), &mut |e| {
            assert!(e.name > last, "sorted");
            last = e.name.clone();
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 3000);
    }

    #[test]
    fn cursor_parts_cover_every_name_once_in_order() {
        let (dir, root) = setup();
        for i in 0..10 {
            std::fs::write(dir.path().join(format!("root/p{i}")), b"").unwrap();
        }
        let mut cursor = root.open_listing(&vp("/"), Detail::Full).unwrap();
        let total = cursor.remaining();
        let mut parts = vec![cursor.take(3).unwrap(), cursor.take(4).unwrap()];
        assert_eq!(cursor.remaining(), total - 7);
        parts.push(cursor.take(usize::MAX).unwrap());
        assert!(cursor.finished());
        assert_eq!(cursor.take(5).unwrap().remaining(), 0);
        let mut seen = Vec::new();
        for mut part in parts {
            while part
                .next_batch(2, &mut |e| seen.push(e.name.clone()))
                .unwrap()
            {}
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "in order, no repeats");
        assert_eq!(seen.len(), total);
    }

    #[test]
    fn a_large_directory_is_read_in_batches_in_directory_order() {
        let (t, root) = setup();
        let big = t.path().join("root/big");
        std::fs::create_dir(&big).unwrap();
        for i in 0..3000 {
            std::fs::write(big.join(format!("n{i:05}")), b"").unwrap();
            std::fs::write(big.join(format!(".h{i:05}")), b"").unwrap();
        }
        let shown: Keep = Box::new(|n: &[u8]| !n.starts_with(b"."));
        let mut cursor = root
            .open_dir(&vp("big"))
            .unwrap()
            .read_sorted_up_to(Detail::Names, 100, Some(shown))
            .unwrap();
        assert!(!cursor.finished());
        // Read one getdents buffer (some 1,300 short names) beyond the sort limit, not 6,000.
        assert!(cursor.remaining() < 2000, "{}", cursor.remaining());
        let mut seen = Vec::new();
        let mut most = 0;
        while !cursor.finished() {
            let mut part = cursor.take(250).unwrap();
            most = most.max(cursor.remaining() + part.remaining());
            while part
                .next_batch(64, &mut |e| seen.push(e.name.clone()))
                .unwrap()
            {}
        }
        assert!(most < 2000, "names held at once: {most}");
        let want: Vec<Vec<u8>> = (0..3000).map(|i| format!("n{i:05}").into_bytes()).collect();
        seen.sort();
        assert_eq!(seen, want, "every shown name once, hidden ones never");
        // The same directory under the default limit is read whole and sorted.
        let mut names = Vec::new();
        root.read_dir(&vp("big"), &mut |e| names.push(e.name.clone()))
            .unwrap();
        assert_eq!(names.len(), 6000);
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn names_only_listing_does_not_stat() {
        let (_t, root) = setup();
        let mut cursor = root
            .open_listing(&VirtualPath::root(), Detail::Names)
            .unwrap();
        let mut got = Vec::new();
        while cursor.next_batch(3, &mut |e| got.push(e.clone())).unwrap() {}
        assert!(got.iter().all(|e| e.kind == FileKind::Other && e.size == 0));
        assert!(got.iter().any(|e| e.name == b"a.txt"));
    }

    #[test]
    fn names_keep_every_length_up_to_name_max() {
        let all: Vec<Vec<u8>> = (0..=NAME_MAX)
            .map(|n| vec![b'a' + (n % 26) as u8; n])
            .collect();
        let mut names = Names::default();
        for n in &all {
            names.push(n);
        }
        assert_eq!(names.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(), all);
        let front = names.split_off_front(100);
        assert_eq!(
            front.iter().collect::<Vec<_>>(),
            all[..100].iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        assert_eq!(names.pop_front(), Some(all[100].as_slice()));
        let rest = names.split_off_front(usize::MAX);
        assert_eq!(rest.len(), all.len() - 101);
        assert_eq!(rest.iter().last(), Some(all[NAME_MAX].as_slice()));
        assert_eq!(names.len(), 0);
        assert_eq!(names.pop_front(), None);
    }

    #[test]
    fn errno_table() {
        use FileError::*;
        let rows = [
            (libc::ENOENT, NotFound),
            (libc::EACCES, PermissionDenied),
            (libc::EPERM, PermissionDenied),
            (libc::ENOTDIR, NotADirectory),
            (libc::EISDIR, IsADirectory),
            (libc::ENXIO, NotAFile),
            (libc::ENODEV, NotAFile),
            (libc::EXDEV, Escapes),
            (libc::ELOOP, Escapes),
            (libc::ENAMETOOLONG, NameTooLong),
            (libc::ENOSPC, NoSpace),
            (libc::EDQUOT, QuotaExceeded),
            (libc::EROFS, ReadOnly),
            (libc::EEXIST, Exists),
            (libc::ENOTEMPTY, NotEmpty),
            (libc::EBUSY, Busy),
            (libc::ETXTBSY, Busy),
            (libc::EIO, Io(libc::EIO)),
            (libc::EINVAL, Io(libc::EINVAL)),
        ];
        for (errno, want) in rows {
            assert_eq!(FileError::from_errno(errno), want, "errno {errno}");
            let io = std::io::Error::from_raw_os_error(errno);
            assert_eq!(FileError::from_io(&io), want, "io errno {errno}");
        }
        let custom = std::io::Error::new(std::io::ErrorKind::NotFound, "x");
        assert_eq!(FileError::from_io(&custom), NotFound);
    }
}
