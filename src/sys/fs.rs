//! Filesystem syscalls that `std` and `nix` (with this crate's features) do not wrap: `openat2` and
//! `getdents64`, which `vfs` builds the jail on (nothing else should call them directly), and the
//! page-cache residency checks the transfer pump uses (`cachestat`, or `preadv2(RWF_NOWAIT)`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Resolution flags for every jailed lookup: no escaping the directory fd (absolute paths, `..`
/// above it and symlinks leading out all fail with `EXDEV`), and no `/proc` magic links, which
/// would otherwise jump to arbitrary open files.
pub const RESOLVE_JAIL: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// `openat2(2)`: open `path` relative to `dirfd` under the `resolve` restrictions.
///
/// `O_CLOEXEC` is always added so no served file leaks into a child process. `EINTR` (possible
/// when opening FIFOs or on network filesystems) is retried.
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // open_how is `#[non_exhaustive]` in libc, so it cannot be built with a literal; zeroing it
    // also leaves any future extension fields at "unset", as the kernel requires.
    // SAFETY: open_how consists solely of integer fields, for which all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // The flags are reinterpreted bit-for-bit, as the kernel expects (`O_*` fit in 32 bits).
    how.flags = u64::from((flags | libc::O_CLOEXEC) as u32);
    how.mode = u64::from(mode);
    how.resolve = resolve;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a live, initialized open_how whose exact
        // size is passed; both outlive the call. `dirfd` is a borrowed, open descriptor.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // A successful openat2 returns a new descriptor, which fits in RawFd.
            let fd = ret as RawFd;
            // SAFETY: the kernel just returned `fd` as a fresh descriptor nobody else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Byte offsets inside a `struct linux_dirent64`: u64 ino, i64 off, u16 reclen, u8 type, name.
const DIRENT_RECLEN: usize = 16;
const DIRENT_NAME: usize = 19;

/// Call `visit(name, d_type)` for every entry of the directory open as `dir` (fresh: reading
/// starts at its current offset) except "." and "..", in kernel order. `d_type` is one of `libc::DT_*`;
/// `DT_UNKNOWN` means the file system does not say and the caller must `lstat`.
pub fn each_dir_entry(dir: BorrowedFd<'_>, visit: &mut dyn FnMut(&[u8], u8)) -> io::Result<()> {
    let mut buf = vec![0u8; DIR_CHUNK_BYTES];
    while dir_entries_chunk(dir, &mut buf, visit)? {}
    Ok(())
}

/// The buffer size for one `getdents64` call: a few hundred names of a typical directory.
pub const DIR_CHUNK_BYTES: usize = 32 * 1024;

/// Read the next entries of the directory open as `dir` with one `getdents64` call into `buf`
/// (the kernel keeps the position in the open file), calling `visit(name, d_type)` for each
/// except "." and ".."; returns `false` once the directory has no more entries.
///
/// Uses raw `getdents64` rather than `fdopendir`, so no `DIR*` takes ownership of our fd, and the
/// records are parsed from a byte buffer with bounds checks instead of pointer casts.
pub fn dir_entries_chunk(
    dir: BorrowedFd<'_>,
    buf: &mut [u8],
    visit: &mut dyn FnMut(&[u8], u8),
) -> io::Result<bool> {
    loop {
        // SAFETY: `buf` is a live, writable allocation of exactly `buf.len()` bytes, and the
        // kernel writes at most that many; `dir` is an open descriptor borrowed for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let filled = &buf[..(ret as usize).min(buf.len())];
        if filled.is_empty() {
            return Ok(false);
        }
        let mut off = 0;
        while off < filled.len() {
            let bad = || io::Error::from(io::ErrorKind::InvalidData);
            let len_bytes = filled
                .get(off + DIRENT_RECLEN..off + DIRENT_NAME - 1)
                .ok_or_else(bad)?;
            let reclen = usize::from(u16::from_ne_bytes([len_bytes[0], len_bytes[1]]));
            let rec = filled
                .get(off..off + reclen)
                .filter(|_| reclen > DIRENT_NAME)
                .ok_or_else(bad)?;
            // The name is NUL-terminated and then padded to 8-byte alignment.
            let name = rec[DIRENT_NAME..]
                .split(|&b| b == 0)
                .next()
                .unwrap_or_default();
            if name != b"." && name != b".." {
                visit(name, rec[DIRENT_NAME - 1]);
            }
            off += reclen;
        }
        return Ok(true);
    }
}

/// Fill `buf` from the kernel's CSPRNG with `getrandom(2)` (flags 0: blocks only until the pool is
/// seeded early in boot). Used for unguessable temporary-file names; no crate needed for 8 bytes.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a live, writable slice and exactly `rest.len()` bytes are offered, so
        // the kernel cannot write outside it.
        let ret = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // Non-negative and at most `rest.len()`, so the cast and the sum stay in range.
        filled += ret as usize;
    }
    Ok(())
}

/// `fchmodat2(2)` with `AT_SYMLINK_NOFOLLOW` (Linux 6.6+): set the mode of `name` in `dir` without
/// following a final symlink, in one syscall, so a name swapped for a symlink cannot redirect the
/// chmod. A symlink fails with `EOPNOTSUPP`; a kernel without the syscall with `ENOSYS`.
///
/// glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)` before 2.39 emulates this through `/proc/self/fd`,
/// which we do not want to depend on, so the syscall is made directly.
pub fn fchmodat_nofollow(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // libc only defines the number for some architectures; elsewhere callers take the ENOSYS path.
    #[cfg(target_arch = "x86_64")]
    {
        loop {
            // SAFETY: `name` is NUL-terminated and outlives the call; `dir` is an open descriptor
            // borrowed for the call; the other arguments are plain integers.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_fchmodat2,
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    mode,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if ret == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dir, name, mode);
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// Page-cache residency of `len` bytes of `file` from `offset`, as (cached bytes, range bytes),
/// both rounded to pages. Uses `cachestat(2)` (Linux 6.5+); older kernels answer `ENOSYS`.
pub fn cached_bytes(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<(u64, u64)> {
    const PAGE: u64 = 4096;
    if len == 0 {
        return Ok((0, 0));
    }
    let pages = cachestat(file.as_raw_fd(), offset, len)?;
    let first = offset / PAGE;
    let last = (offset + len - 1) / PAGE;
    Ok((pages * PAGE, (last - first + 1) * PAGE))
}

/// `cachestat(2)` on `fd`: pages of the range in the page cache.
fn cachestat(fd: RawFd, offset: u64, len: u64) -> io::Result<u64> {
    /// `struct cachestat_range` and `struct cachestat` from <linux/mman.h>.
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// The syscall number is the same on every architecture (it postdates the unified table).
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off: offset, len };
    let mut stat = Stat::default();
    // A bad fd is reported as EBADF, nothing else.
    // SAFETY: `range` and `stat` are live and repr(C) as the kernel ABI has them for the whole
    // call; the kernel only reads `range` and writes `stat`.
    let ret = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.nr_cache)
}

/// How a shard asks whether a range of a file is in the page cache. Chosen once at start-up
/// ([`Residency::probe`]); every transfer of the server uses the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residency {
    /// `cachestat(2)` (Linux 6.5+): one syscall, no data copied.
    #[default]
    Cachestat,
    /// One-byte `preadv2(RWF_NOWAIT)` probes across the range ([`resident_prefix`]): 17
    /// syscalls per 1 MiB window, about 20 us here. Reading the whole window with RWF_NOWAIT
    /// would be exact but copies it (360 us per MiB measured on this VM, more than sendfile
    /// spends sending it); `mincore(2)` on a mapping copies nothing, but since Linux 5.0 it
    /// reports page-cache residency only to a process that owns or may write the file, so a
    /// read-only server would see every file as cold.
    NowaitRead,
}

impl Residency {
    /// `Cachestat` where the kernel has it, else `NowaitRead`. cachestat on fd -1 answers
    /// `EBADF` where the syscall exists, `ENOSYS` before 6.5 (or `EPERM` under a seccomp
    /// filter that does not know it).
    pub fn probe() -> Residency {
        match cachestat(-1, 0, 1) {
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => Residency::Cachestat,
            Ok(_) => Residency::Cachestat,
            Err(_) => Residency::NowaitRead,
        }
    }

    /// Page-cache residency of `len` bytes of `file` from `offset`, as (resident bytes, range
    /// bytes): the first is less than the second when some of the range is not in the page
    /// cache (or lies past the end of the file). Errors mean "cannot tell".
    pub fn cached_bytes(
        self,
        file: BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> io::Result<(u64, u64)> {
        match self {
            Residency::Cachestat => cached_bytes(file, offset, len),
            Residency::NowaitRead => Ok((resident_prefix(file, offset, len)?, len)),
        }
    }
}

/// Distance between the probes of [`resident_prefix`].
pub const PROBE_STRIDE: u64 = 64 << 10;

/// How much of `len` bytes of `file` from `offset` is resident, as far as one-byte
/// `preadv2(RWF_NOWAIT)` probes every [`PROBE_STRIDE`] bytes and at the range's last byte can
/// tell: `len` when every probe found its page present and up to date, else the distance to
/// the last probe that did. A hole smaller than the stride between two probes goes unseen (the
/// send then waits for that read); readahead and eviction work on runs of pages, and a file
/// found cold once is read in off the shard from then on, so that is rare. Filesystems without
/// non-blocking buffered reads answer `EOPNOTSUPP`.
pub fn resident_prefix(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let mut byte = [0u8; 1];
    let probes = (0..len)
        .step_by(PROBE_STRIDE as usize)
        .chain(std::iter::once(len - 1));
    let mut known = 0;
    for at in probes {
        let pos = libc::off_t::try_from(offset + at)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let n = loop {
            // SAFETY: `iov` points at `byte`, live and otherwise untouched for the duration of
            // the call; the kernel writes at most its one byte, which is never read.
            let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, pos, libc::RWF_NOWAIT) };
            if n >= 0 {
                break n;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // That page is not resident (or not up to date yet).
                Some(libc::EAGAIN) => break 0,
                _ => return Err(err),
            }
        };
        if n == 0 {
            // Not resident, or past the end of the file.
            return Ok(known);
        }
        known = at;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    /// A 2 MiB + 100 byte file written to disk and dropped from the page cache. `None` where
    /// the cache cannot be dropped (tmpfs keeps its pages: they are the file).
    fn cold_file() -> Option<std::fs::File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; (2 << 20) + 100]).unwrap();
        f.sync_all().unwrap();
        nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .unwrap();
        let (cached, _) = Residency::NowaitRead
            .cached_bytes(f.as_fd(), 0, 4096)
            .unwrap();
        (cached == 0).then_some(f)
    }

    #[test]
    fn both_checks_see_a_cold_file_then_a_warm_one() {
        let Some(f) = cold_file() else {
            eprintln!("skipped: the temporary directory keeps its pages in memory (tmpfs)");
            return;
        };
        let len = (2 << 20) + 100;
        let mut checks = vec![Residency::NowaitRead];
        if Residency::probe() == Residency::Cachestat {
            checks.push(Residency::Cachestat);
        }
        for r in &checks {
            let (cached, total) = r.cached_bytes(f.as_fd(), 0, len).unwrap();
            assert!(
                cached < total,
                "{r:?}: {cached} of {total} bytes of a cold file"
            );
        }
        // Read the first MiB in: that part is warm, the rest still cold.
        let mut buf = vec![0u8; 1 << 20];
        nix::sys::uio::pread(&f, &mut buf, 0).unwrap();
        for r in &checks {
            let (cached, total) = r.cached_bytes(f.as_fd(), 0, 1 << 20).unwrap();
            assert_eq!(cached, total, "{r:?}: the first MiB was just read");
        }
        // (Readahead may have brought in more than was read.)
        assert!(resident_prefix(f.as_fd(), 0, len).unwrap() >= (1 << 20) - PROBE_STRIDE);
        // Read the whole file: warm, including the partial last page.
        let mut rest = vec![0u8; len as usize];
        nix::sys::uio::pread(&f, &mut rest, 0).unwrap();
        for r in &checks {
            let (cached, total) = r.cached_bytes(f.as_fd(), 0, len).unwrap();
            assert_eq!(cached, total, "{r:?}: the whole file was read");
        }
        // A hole of a few strides in the middle: where cachestat sees it, the probes do too.
        nix::fcntl::posix_fadvise(
            &f,
            1 << 20,
            (8 * PROBE_STRIDE) as i64,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .unwrap();
        if let Ok((cached, total)) = cached_bytes(f.as_fd(), 0, len) {
            if cached < total {
                let prefix = resident_prefix(f.as_fd(), 0, len).unwrap();
                assert!(
                    prefix <= 1 << 20,
                    "a hole at 1 MiB, {prefix} bytes seen resident"
                );
            }
        }
        // Past the end of the file nothing can be resident.
        assert_eq!(resident_prefix(f.as_fd(), len, 4096).unwrap(), 0);
    }

    #[test]
    fn probe_agrees_with_the_kernel() {
        let has_cachestat = cached_bytes(tempfile::tempfile().unwrap().as_fd(), 0, 1).is_ok();
        let want = if has_cachestat {
            Residency::Cachestat
        } else {
            Residency::NowaitRead
        };
        assert_eq!(Residency::probe(), want);
    }
}
