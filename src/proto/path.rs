//! Virtual paths: what the client sees, normalised so that it can never name anything outside the served root.
//!
//! The client's view is a tree rooted at "/" (RFC 959 section 2.2 leaves pathname syntax to the server).
//! We resolve every argument lexically against the current directory here, before any file-system call,
//! so ".." can never climb above the root; the kernel side (`openat2` with `RESOLVE_BENEATH`) then guards
//! against symlinks, which a purely lexical check cannot see.

use std::fmt;

/// Longest virtual path accepted, in bytes (PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a client path argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The argument contains a NUL byte, which no Unix file name can hold (and which would truncate a C string).
    Nul,
    /// The argument or the resolved path is longer than [`MAX_PATH_BYTES`].
    TooLong,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Nul => "path contains a NUL byte",
            PathError::TooLong => "path too long",
        })
    }
}

impl std::error::Error for PathError {}

/// An absolute, normalised path inside the served root: starts with '/', no empty, "." or ".." components,
/// no trailing '/' (except the root itself "/"). Names are raw bytes.
///
/// The only constructors are [`VirtualPath::root`] and [`VirtualPath::join`], so the invariant always holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualPath(Vec<u8>);

impl Default for VirtualPath {
    fn default() -> Self {
        VirtualPath::root()
    }
}

impl VirtualPath {
    /// The served root, "/".
    pub fn root() -> VirtualPath {
        VirtualPath(b"/".to_vec())
    }

    /// Resolve a client argument against `self` (the cwd). Absolute args (starting '/') start from the root.
    /// ".." at the root stays at the root (it can never escape). "//", "./", trailing '/' are normalised.
    /// An empty arg yields self. A NUL byte is [`PathError::Nul`]; a result longer than [`MAX_PATH_BYTES`]
    /// is [`PathError::TooLong`] (the input length is checked too, so a huge input is rejected before work).
    pub fn join(&self, arg: &[u8]) -> Result<VirtualPath, PathError> {
        // Length first: it is O(1) and bounds the work of everything after it.
        if arg.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        if arg.contains(&0) {
            return Err(PathError::Nul);
        }
        if arg.is_empty() {
            return Ok(self.clone());
        }
        // `out` holds "/name" per component, so the root is the empty buffer while we work.
        let mut out = if arg[0] == b'/' || self.is_root() {
            Vec::with_capacity(arg.len() + 1)
        } else {
            let mut v = Vec::with_capacity(self.0.len() + arg.len() + 1);
            v.extend_from_slice(&self.0);
            v
        };
        for comp in arg.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                // Popping the empty buffer is a no-op: ".." at the root stays at the root,
                // as a chroot'ed process would see it.
                b".." => {
                    let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    out.truncate(cut);
                }
                name => {
                    out.push(b'/');
                    out.extend_from_slice(name);
                }
            }
        }
        if out.is_empty() {
            return Ok(VirtualPath::root());
        }
        if out.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        Ok(VirtualPath(out))
    }

    /// The path as the client sees it, e.g. b"/pub/file".
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path relative to the root directory fd: without the leading '/'; the root itself is ".".
    /// Used for `openat2(rootfd, rel, RESOLVE_BENEATH)`, where an absolute path would be refused.
    pub fn relative(&self) -> &[u8] {
        if self.is_root() { b"." } else { &self.0[1..] }
    }

    /// The containing directory; the parent of "/" is "/" (like "CDUP" at the root, RFC 959 section 4.1.1).
    pub fn parent(&self) -> VirtualPath {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(0) | None => VirtualPath::root(),
            Some(i) => VirtualPath(self.0[..i].to_vec()),
        }
    }

    /// The last component; `None` for the root, which has no name.
    pub fn file_name(&self) -> Option<&[u8]> {
        if self.is_root() {
            return None;
        }
        let i = self.0.iter().rposition(|&b| b == b'/')?;
        Some(&self.0[i + 1..])
    }

    /// Whether this is the served root "/".
    pub fn is_root(&self) -> bool {
        self.0 == b"/"
    }

    /// RFC 959 Appendix II: the path inside a 257 reply, wrapped in double quotes with embedded '"' doubled,
    /// so a client can find the end of the name even when it contains quotes. E.g. b"\"/a \"\"b\"\"\"".
    pub fn quoted(&self) -> Vec<u8> {
        let quotes = self.0.iter().filter(|&&b| b == b'"').count();
        let mut out = Vec::with_capacity(self.0.len() + quotes + 2);
        out.push(b'"');
        for &b in &self.0 {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::root().join(s.as_bytes()).unwrap()
    }

    #[test]
    fn join_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("/", "", "/"),
            ("/a/b", "", "/a/b"),
            ("/", "../../etc/passwd", "/etc/passwd"),
            ("/", "..", "/"),
            ("/", "/..", "/"),
            ("/a/b", "..", "/a"),
            ("/a/b", "../..", "/"),
            ("/a/b", "../../../../x", "/x"),
            ("/a", "b//c/./d/", "/a/b/c/d"),
            ("/a", "/x", "/x"),
            ("/a", "//x//", "/x"),
            ("/a", "/", "/"),
            ("/a", ".", "/a"),
            ("/a", "./", "/a"),
            ("/a", "b/../c", "/a/c"),
            ("/a", "...", "/a/..."),
            ("/a", "..../.x/..y", "/a/..../.x/..y"),
            ("/", "my file.txt", "/my file.txt"),
            ("/dir with space", " lead", "/dir with space/ lead"),
            ("/", "héllo/日本語", "/héllo/日本語"),
            ("/", "a\"b", "/a\"b"),
            ("/", "back\\slash", "/back\\slash"),
        ];
        for &(cwd, arg, want) in cases {
            let got = vp(cwd).join(arg.as_bytes()).unwrap();
            assert_eq!(got.as_bytes(), want.as_bytes(), "cwd={cwd:?} arg={arg:?}");
        }
    }

    #[test]
    fn raw_non_utf8_names_are_kept() {
        let p = VirtualPath::root().join(b"\xff\xfe/x").unwrap();
        assert_eq!(p.as_bytes(), b"/\xff\xfe/x");
    }

    #[test]
    fn nul_is_rejected() {
        assert_eq!(vp("/a").join(b"b\0c"), Err(PathError::Nul));
        assert_eq!(vp("/a").join(b"\0"), Err(PathError::Nul));
    }

    #[test]
    fn too_long_is_rejected() {
        let huge = vec![b'a'; MAX_PATH_BYTES + 1];
        assert_eq!(VirtualPath::root().join(&huge), Err(PathError::TooLong));
        // Huge input is refused even if it would normalise to something short.
        let dots = b"/.".repeat(MAX_PATH_BYTES);
        assert_eq!(VirtualPath::root().join(&dots), Err(PathError::TooLong));
        // Exactly MAX_PATH_BYTES of result is fine, one more is not.
        let ok = vec![b'a'; MAX_PATH_BYTES - 1];
        assert_eq!(
            VirtualPath::root().join(&ok).unwrap().as_bytes().len(),
            MAX_PATH_BYTES
        );
        // Each piece fits, but cwd + arg does not.
        let cwd = VirtualPath::root().join(&ok[..3000]).unwrap();
        assert_eq!(cwd.join(&ok[..2000]), Err(PathError::TooLong));
    }

    #[test]
    fn accessors() {
        let root = VirtualPath::root();
        assert!(root.is_root());
        assert_eq!(root, VirtualPath::default());
        assert_eq!(root.relative(), b".");
        assert_eq!(root.parent(), root);
        assert_eq!(root.file_name(), None);

        let p = vp("/a/b c");
        assert!(!p.is_root());
        assert_eq!(p.relative(), b"a/b c");
        assert_eq!(p.parent(), vp("/a"));
        assert_eq!(p.parent().parent(), root);
        assert_eq!(p.file_name(), Some(&b"b c"[..]));
        assert_eq!(vp("/x").file_name(), Some(&b"x"[..]));
        assert_eq!(vp("/x").parent(), root);
    }

    #[test]
    fn quoting() {
        assert_eq!(VirtualPath::root().quoted(), b"\"/\"");
        assert_eq!(vp("/a \"b\"").quoted(), b"\"/a \"\"b\"\"\"");
        assert_eq!(vp("/\"\"").quoted(), b"\"/\"\"\"\"\"");
    }

    /// Arguments built from the tricky pieces, so ".." and "//" show up far more often than in random bytes.
    fn tricky_arg() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"/".to_vec()),
            Just(b"..".to_vec()),
            Just(b".".to_vec()),
            Just(b"...".to_vec()),
            Just(b"a".to_vec()),
            Just(b" ".to_vec()),
            proptest::collection::vec(1u8..=255, 1..4),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn any_arg() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![proptest::collection::vec(1u8..=255, 0..64), tricky_arg()]
    }

    fn check_invariant(p: &VirtualPath) {
        let b = p.as_bytes();
        assert_eq!(b.first(), Some(&b'/'));
        assert!(b.len() <= MAX_PATH_BYTES);
        assert!(!b.contains(&0));
        assert!(!b.windows(2).any(|w| w == b"//"));
        if !p.is_root() {
            assert_ne!(b.last(), Some(&b'/'));
            for comp in b[1..].split(|&c| c == b'/') {
                assert!(comp != b"." && comp != b".." && !comp.is_empty(), "{b:?}");
            }
        }
        assert_ne!(p.relative().first(), Some(&b'/'));
    }

    proptest! {
        #[test]
        fn join_keeps_invariant(cwd in any_arg(), arg in any_arg()) {
            let cwd = VirtualPath::root().join(&cwd).unwrap();
            check_invariant(&cwd);
            let p = cwd.join(&arg).unwrap();
            check_invariant(&p);
            check_invariant(&p.parent());
            // Normal form is a fixed point: re-resolving it changes nothing, from any cwd.
            prop_assert_eq!(&VirtualPath::root().join(p.as_bytes()).unwrap(), &p);
            prop_assert_eq!(&cwd.join(p.as_bytes()).unwrap(), &p);
            if let Some(name) = p.file_name() {
                prop_assert_eq!(&p.parent().join(name).unwrap(), &p);
            }
        }

        #[test]
        fn join_never_panics(arg in proptest::collection::vec(any::<u8>(), 0..128)) {
            let r = VirtualPath::root().join(&arg);
            prop_assert_eq!(r.is_err(), arg.contains(&0));
        }
    }
}
