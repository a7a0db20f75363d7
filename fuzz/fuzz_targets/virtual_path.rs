//! Virtual path resolution on arbitrary (cwd, argument) pairs: the result is always absolute and
//! normalised (no empty, "." or ".." component, no trailing '/', no NUL, within the length cap),
//! so it can never name anything above the root; the root-relative form handed to openat2 is
//! never absolute; and resolving a result again, from anywhere, gives the same path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringftpd::proto::path::{MAX_PATH_BYTES, VirtualPath};

fn check(p: &VirtualPath) {
    let b = p.as_bytes();
    assert!(b.starts_with(b"/"), "not absolute: {b:?}");
    assert!(b.len() <= MAX_PATH_BYTES, "{} bytes", b.len());
    assert!(!b.contains(&0), "NUL in {b:?}");
    if p.is_root() {
        assert_eq!(b, b"/");
        assert_eq!(p.relative(), b".");
        assert_eq!(p.file_name(), None);
    } else {
        assert!(!b.ends_with(b"/"), "trailing slash: {b:?}");
        for comp in b[1..].split(|&c| c == b'/') {
            assert!(
                !comp.is_empty() && comp != b"." && comp != b"..",
                "component {comp:?} in {b:?}"
            );
        }
        let rel = p.relative();
        assert!(!rel.starts_with(b"/"), "absolute relative form: {rel:?}");
        assert_eq!(rel, &b[1..]);
        let name = p.file_name().expect("a non-root path has a name");
        assert!(!name.contains(&b'/'));
        let parent = p.parent();
        assert!(
            b.starts_with(parent.as_bytes()),
            "{parent:?} is not above {p:?}"
        );
    }
}

fuzz_target!(|input: &[u8]| {
    // "cwd argument \0 argument": the first part is resolved from the root to make a cwd.
    let mut parts = input.splitn(2, |&b| b == 0xff);
    let cwd_arg = parts.next().unwrap_or_default();
    let arg = parts.next().unwrap_or_default();
    let Ok(cwd) = VirtualPath::root().join(cwd_arg) else {
        return;
    };
    check(&cwd);
    let Ok(p) = cwd.join(arg) else {
        return;
    };
    check(&p);
    // Absolute results resolve to themselves from any cwd; the relative form from the root.
    assert_eq!(cwd.join(p.as_bytes()).as_ref(), Ok(&p));
    assert_eq!(VirtualPath::root().join(p.as_bytes()).as_ref(), Ok(&p));
    assert_eq!(VirtualPath::root().join(p.relative()).as_ref(), Ok(&p));
    // However many ".." are added, the result stays inside the root.
    let mut up = p.as_bytes().to_vec();
    up.extend_from_slice(b"/../../..");
    if let Ok(q) = cwd.join(&up) {
        check(&q);
    }
});
