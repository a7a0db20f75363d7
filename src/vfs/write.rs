//! Writing inside the jail: uploads, deletes, directories, renames, `SITE CHMOD`, `MFMT`.
//!
//! Every operation opens the *parent* directory beneath the root with `openat2(RESOLVE_JAIL)` and then
//! acts on the final name with an `*at()` call relative to that fd. None of those calls follows a
//! final symlink, so a link inside the root that points outside can be removed or replaced, but
//! never written, chmod'ed or timestamped through.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag, RenameFlags, fcntl, renameat2};
use nix::sys::stat::{FchmodatFlags, Mode, UtimensatFlags, fchmodat, fstat, fstatat, mkdirat};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use super::{FileError, Root};
use crate::proto::path::VirtualPath;
use crate::sys::fs;

/// Every temporary upload's name starts with this; listings hide such names and
/// [`Root::clean_temps`] removes them at start-up.
const TEMP_PREFIX: &[u8] = b".ringftpd-tmp.";

/// Longest single file name Linux file systems accept (`NAME_MAX`).
const NAME_MAX_BYTES: usize = 255;

/// Attempts at a fresh random temp name; with 64 random bits a second attempt is already a
/// curiosity, so this only bounds the loop.
const TEMP_ATTEMPTS: usize = 4;

/// `STOU` tries "<base>", "<base>.1", ... "<base>.9999" before giving up with `Exists`.
const MAX_UNIQUE_SUFFIX: u32 = 9999;

/// `clean_temps` does not descend more than this many directories below the root...
const CLEAN_MAX_DEPTH: usize = 64;
/// ...and stops after looking at this many names, so one sweep of a huge tree stays bounded.
const CLEAN_MAX_ENTRIES: usize = 1_000_000;

/// How a new upload is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// `STOR`: overwrite an existing file (`rename(2)` semantics).
    Replace,
    /// `STOU` and anonymous incoming uploads: never overwrite; an existing target is `Exists`.
    Exclusive,
}

/// True for names of our temporary files (listings hide them).
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX)
}

impl Root {
    /// STOR (atomic): create a hidden temporary file next to `path` (same directory, so the final
    /// rename never crosses a file system), `O_WRONLY | O_CREAT | O_EXCL`, mode `0o666 & !umask`.
    /// Returns the open file and the temp name. A `path` that is a directory is `IsADirectory`.
    pub fn create_temp(
        &self,
        path: &VirtualPath,
        umask: u32,
    ) -> Result<(File, Vec<u8>), FileError> {
        let (dir, name) = self.parent_and_name(path)?;
        refuse_temp_target(name)?;
        // Fail before the client sends the data, not at the rename after it.
        match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(FileError::IsADirectory);
            }
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let mut random = [0u8; 8];
        for _ in 0..TEMP_ATTEMPTS {
            fs::fill_random(&mut random).map_err(|e| FileError::from_io(&e))?;
            let temp = temp_name_for(name, u64::from_ne_bytes(random));
            match open_name(dir.as_fd(), &temp, flags, file_mode(umask)) {
                Ok(fd) => return Ok((File::from(fd), temp)),
                Err(FileError::Exists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(FileError::Exists)
    }

    /// Move a finished temp file into place. `Replace` overwrites an existing file (a directory
    /// target is `IsADirectory`); `Exclusive` uses `RENAME_NOREPLACE` (an existing target is
    /// `Exists`, its content untouched). On error the temp file is left for `discard_temp`.
    pub fn commit_temp(
        &self,
        path: &VirtualPath,
        temp_name: &[u8],
        mode: CreateMode,
    ) -> Result<(), FileError> {
        check_temp_name(temp_name)?;
        let (dir, name) = self.parent_and_name(path)?;
        refuse_temp_target(name)?;
        match mode {
            CreateMode::Replace => {
                renameat2(&dir, temp_name, &dir, name, RenameFlags::empty())?;
                Ok(())
            }
            CreateMode::Exclusive => {
                match renameat2(&dir, temp_name, &dir, name, RenameFlags::RENAME_NOREPLACE) {
                    Ok(()) => Ok(()),
                    // EINVAL: this file system has no RENAME_NOREPLACE (older NFS, some FUSE).
                    Err(Errno::EINVAL | Errno::ENOSYS) => {
                        link_exclusive(dir.as_fd(), temp_name, name)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Remove a temp file after a failed upload. Already gone is fine; anything else is only logged,
    /// as the client's reply is about the upload, and `clean_temps` sweeps leftovers at start-up.
    pub fn discard_temp(&self, path: &VirtualPath, temp_name: &[u8]) {
        let r = check_temp_name(temp_name)
            .and_then(|()| self.parent_and_name(path))
            .and_then(|(dir, _)| Ok(unlinkat(&dir, temp_name, UnlinkatFlags::NoRemoveDir)?));
        match r {
            Ok(()) | Err(FileError::NotFound) => {}
            Err(e) => log::warn!(
                "could not remove temporary upload {:?} next to {:?}: {e}",
                String::from_utf8_lossy(temp_name),
                String::from_utf8_lossy(path.as_bytes()),
            ),
        }
    }

    /// APPE / REST+STOR: open `path` for writing in place, creating it (mode `0o666 & !umask`) if
    /// missing; `append` sets `O_APPEND`, otherwise the caller writes at its offset (nothing is
    /// truncated). A final symlink is `Escapes` (`O_NOFOLLOW`), a directory `IsADirectory`, any other
    /// non-regular file `NotAFile`. Returns the file and its current size.
    pub fn open_for_write(
        &self,
        path: &VirtualPath,
        append: bool,
        umask: u32,
    ) -> Result<(File, u64), FileError> {
        let (dir, name) = self.parent_and_name(path)?;
        refuse_temp_target(name)?;
        // Look before opening: opening a device or FIFO for writing can itself have effects (a
        // tape rewinds, a FIFO reader wakes up), so refuse those without touching them...
        match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => check_regular(st.st_mode)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        // O_NONBLOCK: a FIFO put there since the look fails with ENXIO instead of hanging.
        let mut flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK;
        if append {
            flags |= libc::O_APPEND;
        }
        let fd = open_name(dir.as_fd(), name, flags, file_mode(umask))?;
        // ...and check what was actually opened, which closes the race with a rename in between.
        let st = fstat(&fd)?;
        check_regular(st.st_mode)?;
        let fl = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(fl - OFlag::O_NONBLOCK))?;
        Ok((File::from(fd), u64::try_from(st.st_size).unwrap_or(0)))
    }

    /// STOU: create "<base>", else "<base>.1", "<base>.2", ... up to ".9999" in `dir`, each with
    /// `O_CREAT | O_EXCL`, so two sessions can never be handed the same file. Returns the file and
    /// its path; all names taken is `Exists`.
    pub fn create_unique(
        &self,
        dir: &VirtualPath,
        base: &[u8],
        umask: u32,
    ) -> Result<(File, VirtualPath), FileError> {
        // `base` must be one plain component, or `dir.join` would resolve it somewhere else.
        if base.is_empty() || base == b"." || base == b".." || base.contains(&b'/') {
            return Err(FileError::Io(libc::EINVAL));
        }
        refuse_temp_target(base)?;
        let parent = self.open_at(dir, libc::O_PATH | libc::O_DIRECTORY)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY;
        let mut name = Vec::with_capacity(base.len() + 5);
        for n in 0..=MAX_UNIQUE_SUFFIX {
            name.clear();
            name.extend_from_slice(base);
            if n > 0 {
                // Writing into a Vec cannot fail.
                let _ = write!(name, ".{n}");
            }
            // Joined before creating, so a path too long to name is refused without a file left behind.
            let path = dir.join(&name).map_err(|_| FileError::NameTooLong)?;
            match open_name(parent.as_fd(), &name, flags, file_mode(umask)) {
                Ok(fd) => return Ok((File::from(fd), path)),
                Err(FileError::Exists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(FileError::Exists)
    }

    /// DELE: `unlinkat(parent, name, 0)`; a directory is `IsADirectory`, a symlink is removed itself.
    pub fn remove_file(&self, path: &VirtualPath) -> Result<(), FileError> {
        let (dir, name) = self.parent_and_name(path)?;
        unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)?;
        Ok(())
    }

    /// MKD: `mkdirat` with mode `0o777 & !umask`; an existing name is `Exists`.
    pub fn make_dir(&self, path: &VirtualPath, umask: u32) -> Result<(), FileError> {
        let (dir, name) = self.parent_and_name(path)?;
        refuse_temp_target(name)?;
        let mode = Mode::from_bits_truncate(0o777 & !umask);
        mkdirat(&dir, name, mode)?;
        Ok(())
    }

    /// RMD: `unlinkat(AT_REMOVEDIR)`; not empty is `NotEmpty`, a file `NotADirectory`.
    pub fn remove_dir(&self, path: &VirtualPath) -> Result<(), FileError> {
        let (dir, name) = self.parent_and_name(path)?;
        unlinkat(&dir, name, UnlinkatFlags::RemoveDir)?;
        Ok(())
    }

    /// RNFR/RNTO: `renameat2(from_parent, from_name, to_parent, to_name, 0)`, which replaces a file
    /// target as rename(2) does. Neither name's final symlink is followed (a symlink moves itself).
    pub fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<(), FileError> {
        let (from_dir, from_name) = self.parent_and_name(from)?;
        let (to_dir, to_name) = self.parent_and_name(to)?;
        refuse_temp_target(to_name)?;
        renameat2(&from_dir, from_name, &to_dir, to_name, RenameFlags::empty()).map_err(|e| {
            match e {
                // From rename(2) EXDEV means two mounts beneath the root, not an escape: both
                // parents were already resolved inside.
                Errno::EXDEV => FileError::Io(libc::EXDEV),
                e => e.into(),
            }
        })
    }

    /// SITE CHMOD: set `mode & 0o7777` on the final name without following a final symlink; a
    /// symlink is `PermissionDenied`. Uses `fchmodat2(AT_SYMLINK_NOFOLLOW)` (one race-free call);
    /// on kernels before 6.6 it falls back to look-then-`fchmodat`.
    pub fn chmod(&self, path: &VirtualPath, mode: u32) -> Result<(), FileError> {
        let (dir, name) = self.parent_and_name(path)?;
        let mode = mode & 0o7777;
        let c = CString::new(name).map_err(|_| FileError::Io(libc::EINVAL))?;
        match fs::fchmodat_nofollow(dir.as_fd(), &c, mode) {
            Ok(()) => Ok(()),
            // The kernel's answer for a symlink: Linux has no symlink modes to set.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Err(FileError::PermissionDenied)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                chmod_checked(dir.as_fd(), name, mode)
            }
            Err(e) => Err(FileError::from_io(&e)),
        }
    }

    /// MFMT: set the modification time to `unix_secs` (whole seconds, UTC), leaving atime alone.
    /// A final symlink gets its own time set; its target is never touched.
    pub fn set_mtime(&self, path: &VirtualPath, unix_secs: i64) -> Result<(), FileError> {
        let (dir, name) = self.parent_and_name(path)?;
        let secs = libc::time_t::try_from(unix_secs).map_err(|_| FileError::Io(libc::EOVERFLOW))?;
        let mtime = TimeSpec::new(secs, 0);
        utimensat_nofollow(dir.as_fd(), name, &mtime)?;
        Ok(())
    }

    /// Start-up cleanup: remove stray temporary uploads (regular files named ".ringftpd-tmp.*")
    /// left by a crash, anywhere beneath the root, that were last written before `before`.
    /// Symlinks are neither followed nor removed; at most [`CLEAN_MAX_DEPTH`] levels and
    /// [`CLEAN_MAX_ENTRIES`] names are visited. Errors skip the entry. Returns how many files
    /// were removed.
    ///
    /// With `before` = the server's start this runs beside live uploads: their temporary files
    /// are written after the start. Only an upload by another server process on the same tree
    /// that has been stalled since before this start would lose its temporary file.
    pub fn clean_temps(&self, before: std::time::SystemTime) -> usize {
        // A fresh fd: getdents reads from the fd's offset, which the root fd should keep at 0.
        let Ok(top) = self.open_at(&VirtualPath::root(), libc::O_RDONLY | libc::O_DIRECTORY) else {
            return 0;
        };
        let before = before
            .duration_since(std::time::UNIX_EPOCH)
            .map_or((0, 0), |d| {
                (d.as_secs() as i64, i64::from(d.subsec_nanos()))
            });
        let mut sweep = Sweep {
            before,
            visited: 0,
            removed: 0,
        };
        sweep.dir(top.as_fd(), 0);
        sweep.removed
    }

    /// The parent directory of `path` (an `O_PATH` fd resolved beneath the root) and the final
    /// name. The root has no name to act on, and removing, renaming or chmod'ing it is not for a
    /// client: `PermissionDenied`.
    fn parent_and_name<'p>(&self, path: &'p VirtualPath) -> Result<(OwnedFd, &'p [u8]), FileError> {
        let name = path.file_name().ok_or(FileError::PermissionDenied)?;
        let dir = self.open_at(&path.parent(), libc::O_PATH | libc::O_DIRECTORY)?;
        Ok((dir, name))
    }
}

/// `0o666 & !umask`, the mode a new upload gets (the process umask still applies on top).
fn file_mode(umask: u32) -> u32 {
    0o666 & !umask
}

/// ".ringftpd-tmp.<16 hex>.<name>", with `name` cut so the whole stays within `NAME_MAX`. The
/// final name is kept (where it fits) so an administrator can tell what a stray temp file was.
fn temp_name_for(name: &[u8], random: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(NAME_MAX_BYTES);
    out.extend_from_slice(TEMP_PREFIX);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{random:016x}.");
    let room = NAME_MAX_BYTES - out.len();
    out.extend_from_slice(&name[..name.len().min(room)]);
    out
}

/// A client may not create a name that looks like one of our temp files: it would be hidden from
/// listings (a stash only the uploader knows about) and deleted at the next start.
fn refuse_temp_target(name: &[u8]) -> Result<(), FileError> {
    if is_temp_name(name) {
        Err(FileError::PermissionDenied)
    } else {
        Ok(())
    }
}

/// `temp_name` goes to `*at()` calls relative to the parent fd without `RESOLVE_BENEATH`, so it
/// must be one of ours and a single component: a '/' could walk out of the directory.
fn check_temp_name(temp_name: &[u8]) -> Result<(), FileError> {
    if is_temp_name(temp_name) && !temp_name.contains(&b'/') {
        Ok(())
    } else {
        Err(FileError::Io(libc::EINVAL))
    }
}

/// Open the single component `name` in `dir`. `RESOLVE_JAIL` still applies, though with one
/// component only the final symlink matters, and callers pass `O_NOFOLLOW` or `O_EXCL` for it.
fn open_name(
    dir: BorrowedFd<'_>,
    name: &[u8],
    flags: i32,
    mode: u32,
) -> Result<OwnedFd, FileError> {
    let c = CString::new(name).map_err(|_| FileError::Io(libc::EINVAL))?;
    fs::openat2(dir, &c, flags, mode, fs::RESOLVE_JAIL).map_err(|e| FileError::from_io(&e))
}

/// Only regular files are written in place: a directory is `IsADirectory`, a symlink `Escapes`
/// (what `O_NOFOLLOW` would say), anything else `NotAFile`.
fn check_regular(st_mode: libc::mode_t) -> Result<(), FileError> {
    match st_mode & libc::S_IFMT {
        libc::S_IFREG => Ok(()),
        libc::S_IFDIR => Err(FileError::IsADirectory),
        libc::S_IFLNK => Err(FileError::Escapes),
        _ => Err(FileError::NotAFile),
    }
}

/// Exclusive commit where `RENAME_NOREPLACE` is missing: `link(2)` fails atomically with `EEXIST`
/// if the target exists, then the temp name is dropped.
fn link_exclusive(dir: BorrowedFd<'_>, temp_name: &[u8], name: &[u8]) -> Result<(), FileError> {
    linkat(dir, temp_name, dir, name, AtFlags::empty())?;
    if let Err(e) = unlinkat(dir, temp_name, UnlinkatFlags::NoRemoveDir) {
        // The upload is in place; a leftover second name is swept by `clean_temps`.
        log::warn!(
            "could not remove temporary upload {:?} after linking it: {e}",
            String::from_utf8_lossy(temp_name)
        );
    }
    Ok(())
}

/// `chmod` before `fchmodat2`: `fchmodat` always follows a final symlink, so look first. A local
/// user swapping the name for a symlink between the two calls could still redirect it; only
/// kernels older than 6.6 reach this.
fn chmod_checked(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<(), FileError> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(FileError::PermissionDenied);
    }
    fchmodat(
        dir,
        name,
        Mode::from_bits_truncate(mode),
        FchmodatFlags::FollowSymlink,
    )?;
    Ok(())
}

/// `utimensat(dir, name, {UTIME_OMIT, mtime}, AT_SYMLINK_NOFOLLOW)`.
fn utimensat_nofollow(dir: BorrowedFd<'_>, name: &[u8], mtime: &TimeSpec) -> Result<(), Errno> {
    nix::sys::stat::utimensat(
        dir,
        name,
        &TimeSpec::UTIME_OMIT,
        mtime,
        UtimensatFlags::NoFollowSymlink,
    )
}

/// The bounded walk behind [`Root::clean_temps`].
struct Sweep {
    /// Only temporary files last modified before this (seconds, nanoseconds) go.
    before: (i64, i64),
    visited: usize,
    removed: usize,
}

impl Sweep {
    /// Only subdirectories and temporary files are kept from a directory's listing (the kernel's
    /// `d_type` says which without an `lstat`), so a huge tree costs `getdents` and little memory.
    fn dir(&mut self, dir: BorrowedFd<'_>, depth: usize) {
        let mut wanted: Vec<Vec<u8>> = Vec::new();
        let mut seen = 0;
        let listed = fs::each_dir_entry(dir, &mut |name, kind| {
            seen += 1;
            let keep = match kind {
                libc::DT_DIR => depth < CLEAN_MAX_DEPTH,
                libc::DT_REG => is_temp_name(name),
                libc::DT_UNKNOWN => true,
                _ => false,
            };
            if keep && self.visited + seen <= CLEAN_MAX_ENTRIES {
                wanted.push(name.to_vec());
            }
        });
        self.visited += seen;
        if listed.is_err() {
            return;
        }
        for name in wanted {
            // Look again: the entry may have been replaced since getdents (and DT_UNKNOWN says
            // nothing). A directory is opened with O_NOFOLLOW, so a symlink is never entered.
            let Ok(st) = fstatat(dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            match st.st_mode & libc::S_IFMT {
                // The libc field types differ by architecture; the casts widen.
                #[allow(clippy::unnecessary_cast)]
                libc::S_IFREG
                    if is_temp_name(&name)
                        && (st.st_mtime as i64, st.st_mtime_nsec as i64) < self.before =>
                {
                    let gone = unlinkat(dir, name.as_slice(), UnlinkatFlags::NoRemoveDir);
                    self.removed += usize::from(gone.is_ok());
                }
                libc::S_IFDIR if depth < CLEAN_MAX_DEPTH => {
                    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                    if let Ok(child) = open_name(dir, &name, flags, 0) {
                        self.dir(child.as_fd(), depth + 1);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::entry::FileKind;
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::path::{Path, PathBuf};

    /// `outer/root` is served; `outer/outside` (a directory with a file) must never change.
    /// `root/out` leads there, `root/link` to the outside file.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root: Root,
        dir: PathBuf,
        outside: PathBuf,
    }

    fn setup() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(outside.join("d")).unwrap();
        std::fs::write(outside.join("x"), b"outside").unwrap();
        std::fs::write(outside.join("d/y"), b"deep").unwrap();
        std::fs::write(dir.join("a.txt"), b"old").unwrap();
        symlink(&outside, dir.join("out")).unwrap();
        symlink(outside.join("x"), dir.join("link")).unwrap();
        let root = Root::open(&dir).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            dir,
            outside,
        }
    }

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().join(s.as_bytes()).unwrap()
    }

    fn read(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    /// Everything observable about a tree: names, kinds, modes, mtimes, contents.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, i64, i64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let md = std::fs::symlink_metadata(&p).unwrap();
                let content = if md.is_file() { read(&p) } else { Vec::new() };
                if md.is_dir() {
                    todo.push(p.clone());
                }
                out.push((p, md.mode(), md.mtime(), md.mtime_nsec(), content));
            }
        }
        out.sort();
        out
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn stor_replace_commits_atomically() {
        let f = setup();
        let (mut file, temp) = f.root.create_temp(&vp("a.txt"), 0o022).unwrap();
        file.write_all(b"new content").unwrap();
        drop(file);
        // Until the commit, the old file is what everyone sees.
        assert_eq!(read(&f.dir.join("a.txt")), b"old");
        f.root
            .commit_temp(&vp("a.txt"), &temp, CreateMode::Replace)
            .unwrap();
        assert_eq!(read(&f.dir.join("a.txt")), b"new content");
        assert!(!names_in(&f.dir).iter().any(|n| n.starts_with(".ringftpd")));
        assert_eq!(f.root.stat(&vp("a.txt")).unwrap().mode & 0o777, 0o644);

        // A new file in a subdirectory.
        let (mut file, temp) = f.root.create_temp(&vp("sub/new"), 0o077).unwrap();
        file.write_all(b"n").unwrap();
        f.root
            .commit_temp(&vp("sub/new"), &temp, CreateMode::Replace)
            .unwrap();
        assert_eq!(read(&f.dir.join("sub/new")), b"n");
        assert_eq!(f.root.stat(&vp("sub/new")).unwrap().mode & 0o777, 0o600);
    }

    #[test]
    fn stor_exclusive_refuses_existing() {
        let f = setup();
        let (mut file, temp) = f.root.create_temp(&vp("a.txt"), 0).unwrap();
        file.write_all(b"intruder").unwrap();
        let r = f
            .root
            .commit_temp(&vp("a.txt"), &temp, CreateMode::Exclusive);
        assert_eq!(r, Err(FileError::Exists));
        assert_eq!(read(&f.dir.join("a.txt")), b"old");
        f.root.discard_temp(&vp("a.txt"), &temp);
        assert_eq!(names_in(&f.dir), ["a.txt", "link", "out", "sub"]);

        let (_, temp) = f.root.create_temp(&vp("fresh"), 0).unwrap();
        f.root
            .commit_temp(&vp("fresh"), &temp, CreateMode::Exclusive)
            .unwrap();
        assert_eq!(f.root.stat(&vp("fresh")).unwrap().kind, FileKind::File);
    }

    #[test]
    fn exclusive_fallback_without_noreplace() {
        // The path taken where RENAME_NOREPLACE is unsupported, exercised directly.
        let f = setup();
        let dir = f.root.open_at(&VirtualPath::root(), libc::O_PATH).unwrap();
        let (mut file, temp) = f.root.create_temp(&vp("a.txt"), 0).unwrap();
        file.write_all(b"intruder").unwrap();
        let r = link_exclusive(dir.as_fd(), &temp, b"a.txt");
        assert_eq!(r, Err(FileError::Exists));
        assert_eq!(read(&f.dir.join("a.txt")), b"old");
        link_exclusive(dir.as_fd(), &temp, b"b.txt").unwrap();
        assert_eq!(read(&f.dir.join("b.txt")), b"intruder");
        assert!(!names_in(&f.dir).iter().any(|n| n.starts_with(".ringftpd")));
    }

    #[test]
    fn replace_over_directory_and_temp_in_directory() {
        let f = setup();
        assert_eq!(
            f.root.create_temp(&vp("sub"), 0).unwrap_err(),
            FileError::IsADirectory
        );
        // The directory may appear while the upload runs.
        let (_, temp) = f.root.create_temp(&vp("later"), 0).unwrap();
        std::fs::create_dir(f.dir.join("later")).unwrap();
        let r = f.root.commit_temp(&vp("later"), &temp, CreateMode::Replace);
        assert_eq!(r, Err(FileError::IsADirectory));
        f.root.discard_temp(&vp("later"), &temp);
        assert_eq!(names_in(&f.dir), ["a.txt", "later", "link", "out", "sub"]);
        assert_eq!(
            f.root.create_temp(&vp("nope/x"), 0).unwrap_err(),
            FileError::NotFound
        );
        assert_eq!(
            f.root.create_temp(&vp("a.txt/x"), 0).unwrap_err(),
            FileError::NotADirectory
        );
    }

    #[test]
    fn discard_leaves_nothing() {
        let f = setup();
        let before = names_in(&f.dir);
        let (mut file, temp) = f.root.create_temp(&vp("up"), 0).unwrap();
        file.write_all(b"partial").unwrap();
        assert!(names_in(&f.dir).contains(&String::from_utf8(temp.clone()).unwrap()));
        f.root.discard_temp(&vp("up"), &temp);
        assert_eq!(names_in(&f.dir), before);
        // Twice is harmless; a name that is not ours is never unlinked.
        f.root.discard_temp(&vp("up"), &temp);
        f.root.discard_temp(&vp("a.txt"), b"a.txt");
        f.root.discard_temp(&vp("a.txt"), b".ringftpd-tmp./../x");
        assert_eq!(names_in(&f.dir), before);
        assert_eq!(
            f.root.commit_temp(&vp("x"), b"a.txt", CreateMode::Replace),
            Err(FileError::Io(libc::EINVAL))
        );
    }

    #[test]
    fn temp_names_are_hidden_unique_and_bounded() {
        let f = setup();
        let (_, t1) = f.root.create_temp(&vp("a.txt"), 0).unwrap();
        let (_, t2) = f.root.create_temp(&vp("a.txt"), 0).unwrap();
        assert_ne!(t1, t2);
        for t in [&t1, &t2] {
            assert!(is_temp_name(t));
            assert!(t.starts_with(b".ringftpd-tmp."));
            assert!(t.ends_with(b".a.txt"));
            assert_eq!(t.len(), ".ringftpd-tmp.".len() + 16 + ".a.txt".len());
        }
        let long = "é".repeat(127) + "x"; // 255 bytes, the longest legal name
        let (mut file, temp) = f.root.create_temp(&vp(&long), 0).unwrap();
        assert_eq!(temp.len(), NAME_MAX_BYTES);
        file.write_all(b"L").unwrap();
        f.root
            .commit_temp(&vp(&long), &temp, CreateMode::Exclusive)
            .unwrap();
        assert_eq!(read(&f.dir.join(&long)), b"L");
        assert!(!is_temp_name(b"a.txt"));
        assert!(!is_temp_name(b".ringftpd-tmp"));
        // Clients cannot make names that would be hidden and swept.
        for r in [
            f.root.create_temp(&vp(".ringftpd-tmp.x"), 0).map(drop),
            f.root
                .open_for_write(&vp(".ringftpd-tmp.x"), true, 0)
                .map(drop),
            f.root.make_dir(&vp(".ringftpd-tmp.x"), 0),
            f.root.rename(&vp("a.txt"), &vp(".ringftpd-tmp.x")),
            f.root
                .create_unique(&vp("/"), b".ringftpd-tmp.x", 0)
                .map(drop),
        ] {
            assert_eq!(r, Err(FileError::PermissionDenied));
        }
    }

    #[test]
    fn open_for_write_append_in_place_and_create() {
        let f = setup();
        let (mut file, size) = f.root.open_for_write(&vp("a.txt"), true, 0).unwrap();
        assert_eq!(size, 3);
        file.write_all(b"+more").unwrap();
        assert_eq!(read(&f.dir.join("a.txt")), b"old+more");

        // REST 1 + STOR: write at an offset, nothing truncated.
        let (mut file, size) = f.root.open_for_write(&vp("a.txt"), false, 0).unwrap();
        assert_eq!(size, 8);
        file.seek(SeekFrom::Start(1)).unwrap();
        file.write_all(b"XY").unwrap();
        assert_eq!(read(&f.dir.join("a.txt")), b"oXY+more");

        let (mut file, size) = f.root.open_for_write(&vp("sub/c"), true, 0o027).unwrap();
        assert_eq!(size, 0);
        file.write_all(b"c").unwrap();
        assert_eq!(read(&f.dir.join("sub/c")), b"c");
        assert_eq!(f.root.stat(&vp("sub/c")).unwrap().mode & 0o777, 0o640);
        // Write-only: reading it back through the same file fails.
        assert!(file.read(&mut [0u8; 1]).is_err());
    }

    #[test]
    fn open_for_write_refuses_other_kinds() {
        let f = setup();
        let err = |p: &str| f.root.open_for_write(&vp(p), true, 0).unwrap_err();
        assert_eq!(err("sub"), FileError::IsADirectory);
        assert_eq!(err("/"), FileError::PermissionDenied);
        nix::unistd::mkfifo(&f.dir.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(err("fifo"), FileError::NotAFile);
        std::fs::write(f.dir.join("target"), b"t").unwrap();
        symlink("target", f.dir.join("inlink")).unwrap();
        assert_eq!(err("inlink"), FileError::Escapes);
        assert_eq!(read(&f.dir.join("target")), b"t");
    }

    #[test]
    fn create_unique_counts_up() {
        let f = setup();
        let mut got = Vec::new();
        for i in 0..3 {
            let (mut file, path) = f.root.create_unique(&vp("sub"), b"ftp-upload", 0).unwrap();
            write!(file, "{i}").unwrap();
            got.push(String::from_utf8(path.as_bytes().to_vec()).unwrap());
        }
        assert_eq!(
            got,
            ["/sub/ftp-upload", "/sub/ftp-upload.1", "/sub/ftp-upload.2"]
        );
        assert_eq!(read(&f.dir.join("sub/ftp-upload.1")), b"1");
        // A gap is filled first; an existing name is never reused.
        std::fs::remove_file(f.dir.join("sub/ftp-upload.1")).unwrap();
        let (_, p) = f.root.create_unique(&vp("sub"), b"ftp-upload", 0).unwrap();
        assert_eq!(p, vp("/sub/ftp-upload.1"));
        let (_, p) = f.root.create_unique(&vp("/"), b"a.txt", 0).unwrap();
        assert_eq!(p, vp("/a.txt.1"));
        assert_eq!(read(&f.dir.join("a.txt")), b"old");
        for bad in [&b""[..], b".", b"..", b"a/b"] {
            let r = f.root.create_unique(&vp("sub"), bad, 0).map(drop);
            assert_eq!(r, Err(FileError::Io(libc::EINVAL)), "{bad:?}");
        }
        let r = f.root.create_unique(&vp("a.txt"), b"x", 0).map(drop);
        assert_eq!(r, Err(FileError::NotADirectory));
    }

    #[test]
    fn remove_file_and_dir() {
        let f = setup();
        std::fs::write(f.dir.join("sub/f"), b"").unwrap();
        std::fs::create_dir(f.dir.join("empty")).unwrap();
        assert_eq!(
            f.root.remove_file(&vp("sub")).unwrap_err(),
            FileError::IsADirectory
        );
        assert_eq!(
            f.root.remove_dir(&vp("sub")).unwrap_err(),
            FileError::NotEmpty
        );
        assert_eq!(
            f.root.remove_dir(&vp("a.txt")).unwrap_err(),
            FileError::NotADirectory
        );
        assert_eq!(
            f.root.remove_file(&vp("nope")).unwrap_err(),
            FileError::NotFound
        );
        f.root.remove_file(&vp("sub/f")).unwrap();
        f.root.remove_dir(&vp("sub")).unwrap();
        f.root.remove_dir(&vp("empty")).unwrap();
        f.root.remove_file(&vp("a.txt")).unwrap();
        // Removing the link removes the link, not what it points at.
        f.root.remove_file(&vp("link")).unwrap();
        assert_eq!(names_in(&f.dir), ["out"]);
        assert_eq!(read(&f.outside.join("x")), b"outside");
    }

    #[test]
    fn make_dir_and_exists() {
        let f = setup();
        f.root.make_dir(&vp("sub/new"), 0o022).unwrap();
        let e = f.root.stat(&vp("sub/new")).unwrap();
        assert_eq!((e.kind, e.mode & 0o777), (FileKind::Dir, 0o755));
        assert_eq!(
            f.root.make_dir(&vp("sub/new"), 0).unwrap_err(),
            FileError::Exists
        );
        assert_eq!(
            f.root.make_dir(&vp("a.txt"), 0).unwrap_err(),
            FileError::Exists
        );
        assert_eq!(
            f.root.make_dir(&vp("nope/x"), 0).unwrap_err(),
            FileError::NotFound
        );
    }

    #[test]
    fn rename_within_root() {
        let f = setup();
        f.root.rename(&vp("a.txt"), &vp("sub/b.txt")).unwrap();
        assert_eq!(read(&f.dir.join("sub/b.txt")), b"old");
        assert!(!f.dir.join("a.txt").exists());
        // Over an existing file, as rename(2) does.
        std::fs::write(f.dir.join("c"), b"c").unwrap();
        f.root.rename(&vp("c"), &vp("sub/b.txt")).unwrap();
        assert_eq!(read(&f.dir.join("sub/b.txt")), b"c");
        f.root.rename(&vp("sub"), &vp("renamed")).unwrap();
        assert_eq!(read(&f.dir.join("renamed/b.txt")), b"c");
        assert_eq!(
            f.root.rename(&vp("missing"), &vp("x")).unwrap_err(),
            FileError::NotFound
        );
        // Renaming the outward link moves the link; the outside is untouched.
        let before = snapshot(&f.outside);
        f.root.rename(&vp("link"), &vp("renamed/l")).unwrap();
        assert_eq!(snapshot(&f.outside), before);
    }

    #[test]
    fn chmod_sets_mode_and_refuses_symlinks() {
        let f = setup();
        f.root.chmod(&vp("a.txt"), 0o100_640).unwrap();
        assert_eq!(f.root.stat(&vp("a.txt")).unwrap().mode, 0o640);
        f.root.chmod(&vp("sub"), 0o1750).unwrap();
        assert_eq!(f.root.stat(&vp("sub")).unwrap().mode, 0o1750);
        let before = snapshot(&f.outside);
        assert_eq!(
            f.root.chmod(&vp("link"), 0o777),
            Err(FileError::PermissionDenied)
        );
        assert_eq!(snapshot(&f.outside), before);
        assert_eq!(f.root.chmod(&vp("nope"), 0o600), Err(FileError::NotFound));
        // Which path ran above: fchmodat2 (Linux 6.6+) answers EOPNOTSUPP for a symlink.
        let dir = f.root.open_at(&VirtualPath::root(), libc::O_PATH).unwrap();
        let link = CString::new("link").unwrap();
        let errno = fs::fchmodat_nofollow(dir.as_fd(), &link, 0o777)
            .unwrap_err()
            .raw_os_error();
        if errno == Some(libc::ENOSYS) {
            eprintln!("no fchmodat2 (Linux < 6.6): chmod used the look-then-fchmodat fallback");
        } else {
            assert_eq!(errno, Some(libc::EOPNOTSUPP));
        }
    }

    #[test]
    fn chmod_fallback_before_fchmodat2() {
        // The path taken on kernels without fchmodat2, exercised directly.
        let f = setup();
        let dir = f.root.open_at(&VirtualPath::root(), libc::O_PATH).unwrap();
        chmod_checked(dir.as_fd(), b"a.txt", 0o604).unwrap();
        let mode = std::fs::metadata(f.dir.join("a.txt"))
            .unwrap()
            .permissions();
        assert_eq!(mode.mode() & 0o7777, 0o604);
        let before = snapshot(&f.outside);
        assert_eq!(
            chmod_checked(dir.as_fd(), b"link", 0o777),
            Err(FileError::PermissionDenied)
        );
        assert_eq!(snapshot(&f.outside), before);
    }

    #[test]
    fn set_mtime_is_visible() {
        let f = setup();
        f.root.set_mtime(&vp("a.txt"), 1_000_000_000).unwrap();
        assert_eq!(f.root.stat(&vp("a.txt")).unwrap().mtime, 1_000_000_000);
        f.root.set_mtime(&vp("sub"), 86_400).unwrap();
        assert_eq!(f.root.stat(&vp("sub")).unwrap().mtime, 86_400);
        // Through a final symlink only the link's own time changes.
        let before = snapshot(&f.outside);
        f.root.set_mtime(&vp("link"), 1234).unwrap();
        assert_eq!(snapshot(&f.outside), before);
        let link = std::fs::symlink_metadata(f.dir.join("link")).unwrap();
        assert_eq!(link.mtime(), 1234);
        assert_eq!(
            f.root.set_mtime(&vp("nope"), 1).unwrap_err(),
            FileError::NotFound
        );
    }

    #[test]
    fn parent_symlink_leading_out_is_refused_everywhere() {
        let f = setup();
        let before = snapshot(&f.outside);
        let p = vp("out/x");
        let newp = vp("out/new");
        let results: Vec<(&str, Result<(), FileError>)> = vec![
            ("create_temp", f.root.create_temp(&newp, 0).map(drop)),
            ("create_temp existing", f.root.create_temp(&p, 0).map(drop)),
            (
                "commit_temp",
                f.root
                    .commit_temp(&p, b".ringftpd-tmp.0.x", CreateMode::Replace),
            ),
            (
                "open_for_write",
                f.root.open_for_write(&p, true, 0).map(drop),
            ),
            (
                "open_for_write new",
                f.root.open_for_write(&newp, false, 0).map(drop),
            ),
            (
                "create_unique",
                f.root.create_unique(&vp("out"), b"u", 0).map(drop),
            ),
            (
                "create_unique deep",
                f.root.create_unique(&vp("out/d"), b"u", 0).map(drop),
            ),
            ("remove_file", f.root.remove_file(&p)),
            ("remove_dir", f.root.remove_dir(&vp("out/d"))),
            ("make_dir", f.root.make_dir(&newp, 0)),
            ("rename from", f.root.rename(&p, &vp("stolen"))),
            ("rename to", f.root.rename(&vp("a.txt"), &newp)),
            ("rename over", f.root.rename(&vp("a.txt"), &p)),
            ("chmod", f.root.chmod(&p, 0o777)),
            ("chmod dir", f.root.chmod(&vp("out/d"), 0o777)),
            ("set_mtime", f.root.set_mtime(&p, 1)),
        ];
        for (what, r) in results {
            assert_eq!(r, Err(FileError::Escapes), "{what}");
        }
        f.root.discard_temp(&p, b".ringftpd-tmp.0.x");
        assert_eq!(snapshot(&f.outside), before);
        assert_eq!(read(&f.dir.join("a.txt")), b"old");
        assert!(!f.dir.join("stolen").exists());
        // `..` cannot be smuggled in either: the path layer resolves it lexically.
        assert_eq!(vp("../outside/x"), vp("/outside/x"));
    }

    #[test]
    fn final_symlink_leading_out_is_not_written_through() {
        let f = setup();
        let before = snapshot(&f.outside);
        for append in [true, false] {
            let r = f.root.open_for_write(&vp("link"), append, 0).map(drop);
            assert_eq!(r, Err(FileError::Escapes));
        }
        // An atomic STOR replaces the link itself, never the file it names.
        let (mut file, temp) = f.root.create_temp(&vp("link"), 0).unwrap();
        file.write_all(b"mine").unwrap();
        let r = f
            .root
            .commit_temp(&vp("link"), &temp, CreateMode::Exclusive);
        assert_eq!(r, Err(FileError::Exists));
        f.root
            .commit_temp(&vp("link"), &temp, CreateMode::Replace)
            .unwrap();
        assert_eq!(snapshot(&f.outside), before);
        assert_eq!(read(&f.dir.join("link")), b"mine");
        assert!(
            std::fs::symlink_metadata(f.dir.join("link"))
                .unwrap()
                .is_file()
        );
    }

    #[test]
    fn the_root_itself_is_refused() {
        let f = setup();
        let root = VirtualPath::root();
        let results = [
            f.root.create_temp(&root, 0).map(drop),
            f.root
                .commit_temp(&root, b".ringftpd-tmp.0.x", CreateMode::Replace),
            f.root.open_for_write(&root, true, 0).map(drop),
            f.root.remove_file(&root),
            f.root.make_dir(&root, 0),
            f.root.remove_dir(&root),
            f.root.rename(&root, &vp("x")),
            f.root.rename(&vp("a.txt"), &root),
            f.root.chmod(&root, 0o777),
            f.root.set_mtime(&root, 1),
        ];
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r, Err(FileError::PermissionDenied), "case {i}");
        }
        assert_eq!(names_in(&f.dir), ["a.txt", "link", "out", "sub"]);
    }

    #[test]
    fn clean_temps_removes_only_stray_temps() {
        let f = setup();
        let d = &f.dir;
        std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
        for p in [
            ".ringftpd-tmp.0123456789abcdef.a.txt",
            "sub/.ringftpd-tmp.1.x",
            "sub/deeper/.ringftpd-tmp.2.y",
        ] {
            std::fs::write(d.join(p), b"stray").unwrap();
        }
        // Kept: ordinary files, a directory and a symlink with the prefix, and temps outside
        // reached only through the `out` symlink.
        std::fs::write(d.join("sub/deeper/keep"), b"k").unwrap();
        std::fs::create_dir(d.join("sub/.ringftpd-tmp.dir")).unwrap();
        symlink("../a.txt", d.join("sub/.ringftpd-tmp.link")).unwrap();
        std::fs::write(f.outside.join(".ringftpd-tmp.3.z"), b"not ours").unwrap();
        let before = snapshot(&f.outside);

        // Written just now: still an upload in progress as far as a sweep started earlier knows.
        let started = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(f.root.clean_temps(started), 0);
        let now = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(f.root.clean_temps(now), 3);
        assert_eq!(names_in(d), ["a.txt", "link", "out", "sub"]);
        assert_eq!(
            names_in(&d.join("sub")),
            [".ringftpd-tmp.dir", ".ringftpd-tmp.link", "deeper"]
        );
        assert_eq!(names_in(&d.join("sub/deeper")), ["keep"]);
        assert_eq!(snapshot(&f.outside), before);
        assert_eq!(f.root.clean_temps(now), 0);
    }

    #[test]
    fn clean_temps_stops_at_the_depth_limit() {
        let f = setup();
        let mut p = f.dir.clone();
        for _ in 0..=CLEAN_MAX_DEPTH {
            p.push("d");
            std::fs::create_dir(&p).unwrap();
        }
        // `p` is CLEAN_MAX_DEPTH + 1 levels down: beyond the limit. Its parent is at the limit.
        std::fs::write(p.join(".ringftpd-tmp.too-deep"), b"").unwrap();
        std::fs::write(p.parent().unwrap().join(".ringftpd-tmp.ok"), b"").unwrap();
        assert_eq!(
            f.root
                .clean_temps(std::time::SystemTime::now() + std::time::Duration::from_secs(1)),
            1
        );
        assert!(p.join(".ringftpd-tmp.too-deep").exists());
    }
}
