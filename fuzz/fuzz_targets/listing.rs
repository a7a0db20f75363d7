//! The listing formatters on arbitrary entries (names with CR, LF, NUL, very long, not UTF-8;
//! any size, time and mode): no panic; every line ends in the name and CRLF, with a fixed ASCII
//! prefix that holds no line break, so a name without CR/LF is one line on the wire; the MLSx
//! `modify` fact and the OPTS MLST fact list read back to what was formatted.

#![no_main]

use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringftpd::proto::entry::{Entry, FileKind};
use ringftpd::proto::listing::{
    Facts, MlsdRole, format_time_val, list_line, mlsx_line, nlst_line, parse_time_val,
};

/// Longest name tried.
const MAX_NAME: usize = 64 << 10;

#[derive(Debug)]
struct Input {
    entry: Entry,
    now: i64,
    facts: Facts,
    role: MlsdRole,
    writable: bool,
    raw_time: Vec<u8>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Input> {
        let kind = *u.choose(&[
            FileKind::File,
            FileKind::Dir,
            FileKind::Symlink,
            FileKind::Other,
        ])?;
        let facts = Facts {
            type_: u.arbitrary()?,
            size: u.arbitrary()?,
            modify: u.arbitrary()?,
            perm: u.arbitrary()?,
            unique: u.arbitrary()?,
            unix_mode: u.arbitrary()?,
        };
        let role = *u.choose(&[MlsdRole::Entry, MlsdRole::Cdir, MlsdRole::Pdir])?;
        let entry_fields = (
            u.arbitrary::<u64>()?,
            u.arbitrary::<i64>()?,
            u.arbitrary::<u32>()?,
            u.arbitrary::<u64>()?,
            u.arbitrary::<u32>()?,
            u.arbitrary::<u32>()?,
            u.arbitrary::<u64>()?,
            u.arbitrary::<u64>()?,
        );
        let now = u.arbitrary()?;
        let writable = u.arbitrary()?;
        let repeat = 1 + usize::from(u.arbitrary::<u8>()?) * 64;
        let time_len = u.int_in_range(0..=20)?;
        let raw_time = u.bytes(time_len)?.to_vec();
        // A symlink's target as vfs fills it in (any bytes: the formatter must cope).
        let link: Option<Vec<u8>> = u.arbitrary()?;
        // The rest is the name, repeated for very long names: up to 64 KiB, far past NAME_MAX
        // and PATH_MAX (larger only costs allocation time).
        let rest = u.bytes(u.len())?;
        let name = rest.repeat(repeat.min(MAX_NAME / rest.len().max(1)).max(1));
        let (size, mtime, mode, nlink, uid, gid, dev, ino) = entry_fields;
        Ok(Input {
            entry: Entry {
                name,
                kind,
                size,
                mtime,
                mode,
                nlink,
                uid,
                gid,
                dev,
                ino,
                link,
            },
            now,
            facts,
            role,
            writable,
            raw_time,
        })
    }
}

/// The line's prefix before `name` and CRLF, which must be printable ASCII without a break.
fn prefix<'a>(line: &'a [u8], name: &[u8]) -> &'a [u8] {
    assert!(line.ends_with(b"\r\n"), "no CRLF at the end");
    let body = &line[..line.len() - 2];
    assert!(body.ends_with(name), "the line does not end with the name");
    let p = &body[..body.len() - name.len()];
    assert!(
        p.iter().all(|&b| (b' '..=b'~').contains(&b)),
        "prefix {p:?}"
    );
    p
}

fuzz_target!(|input: Input| {
    let Input {
        entry,
        now,
        facts,
        role,
        writable,
        raw_time,
    } = input;
    let name = &entry.name;
    let breaks = |b: &[u8]| b.contains(&b'\r') || b.contains(&b'\n');
    // LIST shows a symlink's target after the name, as `ls -l` does (vfs fills `link` in only
    // for links, and never with CR or LF; the formatter passes what it is given).
    let mut shown = name.clone();
    if let (FileKind::Symlink, Some(target)) = (entry.kind, &entry.link) {
        shown.extend_from_slice(b" -> ");
        shown.extend_from_slice(target);
    }
    let one_line = !breaks(&shown);

    let mut out = Vec::new();
    list_line(&mut out, &entry, now);
    let p = prefix(&out, &shown);
    assert!(p.ends_with(b" "), "LIST prefix {p:?}");
    assert!(b"dl-".contains(&p[0]), "LIST type letter {}", p[0]);
    if one_line {
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }
    let one_line = !breaks(name);

    out.clear();
    nlst_line(&mut out, &entry);
    assert!(prefix(&out, name).is_empty());

    out.clear();
    mlsx_line(&mut out, &entry, name, role, facts, writable);
    let p = prefix(&out, name);
    let facts_text = p.strip_suffix(b" ").expect("one space before the name");
    assert!(
        !facts_text.contains(&b' '),
        "space inside facts {facts_text:?}"
    );
    for fact in facts_text.split(|&b| b == b';').filter(|f| !f.is_empty()) {
        let eq = fact.iter().position(|&b| b == b'=').expect("fact=value");
        let (key, value) = (&fact[..eq], &fact[eq + 1..]);
        if key == b"modify" {
            // The time-val reads back to the entry's time, clamped to the years 1000-9999.
            let secs = parse_time_val(value).expect("modify parses");
            assert_eq!(format_time_val(secs).as_bytes(), value);
            assert_eq!(format_time_val(entry.mtime).as_bytes(), value);
        }
    }
    if one_line {
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    // OPTS MLST: what the server echoes selects the same facts again.
    assert_eq!(Facts::from_opts(facts.enabled_list().as_bytes()), facts);
    // Any time-val that parses formats to one that parses to the same second.
    if let Some(secs) = parse_time_val(&raw_time) {
        assert_eq!(parse_time_val(format_time_val(secs).as_bytes()), Some(secs));
    }
});
