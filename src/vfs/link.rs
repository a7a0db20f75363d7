//! Symbolic link targets as LIST shows them (`name -> target`), only when the target stays inside
//! the served root: the kernel decides that, resolving the link beneath the root fd with the same
//! jail rules as every other lookup (`RESOLVE_BENEATH`), never a string-prefix check.

use std::ffi::CString;
use std::os::fd::BorrowedFd;

use crate::proto::path::VirtualPath;
use crate::sys::fs;

/// Longest target shown (PATH_MAX, terminator included); a longer one is shown as no target.
pub const MAX_LINK_TARGET: usize = libc::PATH_MAX as usize;

/// The target of the symbolic link `name` in the directory `dir` (open as `dir_fd`), as
/// `readlink` gives it, if showing it reveals nothing outside the root whose fd is `root`:
///
/// - absolute targets are never shown: the jail refuses to follow them (they behave as broken
///   links to a client), and telling one that points inside the root from one that does not
///   would mean comparing host paths, which the client must not see either;
/// - a target the kernel resolves beneath the root is shown;
/// - a dangling target (a component missing) is shown when its leading `..`s stay beneath the
///   root and nothing after them climbs: what follows a missing component is never walked, so
///   a `..` there could name anything;
/// - anything else (escapes, loops, magic links, unreadable, too long, CR/LF) shows no target.
pub fn target(
    root: BorrowedFd<'_>,
    dir: &VirtualPath,
    dir_fd: BorrowedFd<'_>,
    name: &[u8],
) -> Option<Vec<u8>> {
    let target = nix::fcntl::readlinkat(dir_fd, name)
        .ok()?
        .into_encoded_bytes();
    let framable = !target.contains(&b'\r') && !target.contains(&b'\n');
    if target.is_empty() || target.len() >= MAX_LINK_TARGET || target[0] == b'/' || !framable {
        return None;
    }
    let link = dir.join(name).ok()?;
    match open_beneath(root, link.relative(), libc::O_PATH) {
        Ok(()) => Some(target),
        Err(libc::ENOENT | libc::ENOTDIR) => {
            let ups = descending_after_ups(&target)?;
            if ups > 0 {
                let mut up = dir.relative().to_vec();
                up.extend(b"/..".repeat(ups));
                open_beneath(root, &up, libc::O_PATH | libc::O_DIRECTORY).ok()?;
            }
            Some(target)
        }
        Err(_) => None,
    }
}

/// `openat2(root, rel, flags, RESOLVE_JAIL)`, the fd closed at once; the errno on failure.
fn open_beneath(root: BorrowedFd<'_>, rel: &[u8], flags: i32) -> Result<(), i32> {
    let c = CString::new(rel).map_err(|_| libc::EINVAL)?;
    fs::openat2(root, &c, flags, 0, fs::RESOLVE_JAIL)
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// For a relative target made of `..`s and then only names (`.` and empty components aside):
/// how many `..`s it starts with. `None` if a `..` follows a name.
fn descending_after_ups(target: &[u8]) -> Option<usize> {
    let mut ups = 0;
    let mut named = false;
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." if named => return None,
            b".." => ups += 1,
            _ => named = true,
        }
    }
    Some(ups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    #[test]
    fn descending_shapes() {
        assert_eq!(descending_after_ups(b"a/b"), Some(0));
        assert_eq!(descending_after_ups(b"../../a/./b/"), Some(2));
        assert_eq!(descending_after_ups(b"./../a"), Some(1));
        assert_eq!(descending_after_ups(b"a/../b"), None);
        assert_eq!(descending_after_ups(b"../a/.."), None);
    }

    /// `outer/root` is served; `outer/secret` is not.
    #[test]
    fn targets_inside_are_shown_and_outside_never() {
        let outer = tempfile::tempdir().unwrap();
        let o = outer.path();
        std::fs::write(o.join("secret"), b"x").unwrap();
        let r = o.join("root");
        std::fs::create_dir_all(r.join("d/e")).unwrap();
        std::fs::write(r.join("f"), b"x").unwrap();
        let abs_inside = r.join("f");
        let links: &[(&str, &str)] = &[
            ("d/in", "../f"),
            ("d/e/deep", "../../f"),
            ("d/e/dir", ".."),
            ("d/dangling", "../missing/x"),
            ("d/climb_after_missing", "missing/../../secret"),
            ("d/out", "../../secret"),
            ("d/out_missing", "../../nothing"),
            ("d/abs", "/etc/passwd"),
            ("d/abs_inside", abs_inside.to_str().unwrap()),
            ("d/loop", "loop"),
            ("d/via_out", "../outlink/x"),
            ("outlink", "/etc"),
            ("d/e/up", "../.."),
            // "up" is the root: climbing from it is out, even though the text looks local.
            ("d/e/via_up", "up/../missing"),
        ];
        for (link, to) in links {
            symlink(to, r.join(link)).unwrap();
        }
        let root = std::fs::File::open(&r).unwrap();
        let look = |link: &str| {
            let vp = VirtualPath::root().join(link.as_bytes()).unwrap();
            let dir = vp.parent();
            let rel = std::ffi::OsStr::from_bytes(dir.relative());
            let dir_fd = std::fs::File::open(r.join(rel)).unwrap();
            target(root.as_fd(), &dir, dir_fd.as_fd(), vp.file_name().unwrap())
                .map(|t| String::from_utf8(t).unwrap())
        };
        assert_eq!(look("d/in").as_deref(), Some("../f"));
        assert_eq!(look("d/e/deep").as_deref(), Some("../../f"));
        assert_eq!(look("d/e/dir").as_deref(), Some(".."));
        assert_eq!(look("d/dangling").as_deref(), Some("../missing/x"));
        assert_eq!(look("d/e/up").as_deref(), Some("../.."));
        for hidden in [
            "d/climb_after_missing",
            "d/out",
            "d/out_missing",
            "d/abs",
            "d/abs_inside",
            "d/loop",
            "d/via_out",
            "outlink",
            "d/e/via_up",
            "f",
        ] {
            assert_eq!(look(hidden), None, "{hidden}");
        }
    }
}
