//! Names as bytes and listings as clients parse them: names that are not UTF-8 (made through FTP
//! and put on disk by other means) through every command that takes a path, with raw control
//! lines and with suppaftp; symbolic link targets inside and outside the root; `ls` options of
//! LIST/NLST/STAT and which dot files each shows, with and without `force_dot_files`.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Cursor, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use common::{Ctrl, TEMP_PREFIX, TIMEOUT, TestServer, UsersServer};
use proptest::prelude::*;

fn rw_users() -> UsersServer {
    common::start_with_users(&[("alice", "access = \"read-write\"")], |_| {})
}

/// `verb name` as a command line, every 0xFF doubled as Telnet asks (RFC 854).
fn line(verb: &str, name: &[u8]) -> Vec<u8> {
    let mut l = verb.as_bytes().to_vec();
    l.push(b' ');
    for &b in name {
        l.push(b);
        if b == 0xff {
            l.push(0xff);
        }
    }
    l
}

/// A reply's text with Telnet's doubled 0xFF made single again.
fn undoubled(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        out.push(text[i]);
        i += if text[i] == 0xff && text.get(i + 1) == Some(&0xff) {
            2
        } else {
            1
        };
    }
    out
}

/// Send `line`, read the reply; check the code, return the text (0xFF undoubled).
#[track_caller]
fn expect(c: &mut Ctrl, line: &[u8], code: u16) -> Vec<u8> {
    c.send_line(line);
    let (got, text) = c.read_reply_bytes();
    assert_eq!(
        got,
        code,
        "{:?} answered {got} {:?}",
        line.escape_ascii().to_string(),
        text.escape_ascii().to_string()
    );
    undoubled(&text)
}

/// Upload `bytes` with the upload command `line`; the 150 text and the 226 text.
#[track_caller]
fn upload(c: &mut Ctrl, line: &[u8], bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut data = common::data_connect(c.epsv());
    let first = expect(c, line, 150);
    data.write_all(bytes).unwrap();
    drop(data);
    (first, expect_226(c))
}

#[track_caller]
fn expect_226(c: &mut Ctrl) -> Vec<u8> {
    let (code, text) = c.read_reply_bytes();
    assert_eq!(code, 226, "{:?}", text.escape_ascii().to_string());
    text
}

/// Download with `line` (RETR, LIST...): the 150 text and the bytes.
#[track_caller]
fn download(c: &mut Ctrl, line: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut data = common::data_connect(c.epsv());
    let first = expect(c, line, 150);
    let bytes = common::read_all(&mut data);
    drop(data);
    expect_226(c);
    (first, bytes)
}

fn listing(c: &mut Ctrl, line: &[u8]) -> Vec<u8> {
    download(c, line).1
}

/// The lines of a listing, CRLF removed.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    assert!(bytes.is_empty() || bytes.ends_with(b"\r\n"), "{bytes:?}");
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_suffix(b"\r").expect("CRLF"))
        .collect()
}

/// The name column of LIST lines (everything after the date, arrow included).
fn list_names(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    common::crlf_lines(&text)
        .into_iter()
        .map(|l| {
            common::parse_list_line(l)
                .unwrap_or_else(|| panic!("not an ls -l line {l:?}"))
                .2
        })
        .collect()
}

fn on_disk(dir: &std::path::Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

const LATIN1: &[u8] = b"caf\xe9.txt";
const DIR: &[u8] = b"d\xfe\xff";
const RENAMED: &[u8] = b"\x80\xe0 \xff\xfe.bin";

/// Every path-taking command with names that are not UTF-8, created through FTP.
#[test]
fn non_utf8_names_made_through_ftp_round_trip() {
    let s = rw_users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");

    // MKD and PWD quote the bytes as they are (RFC 959 Appendix II).
    assert_eq!(
        expect(&mut c, &line("MKD", DIR), 257),
        b"\"/d\xfe\xff\" created."
    );
    assert!(on_disk(&home, DIR).is_dir());
    expect(&mut c, &line("CWD", DIR), 250);
    assert_eq!(
        expect(&mut c, b"PWD", 257),
        b"\"/d\xfe\xff\" is the current directory."
    );

    let body = common::pattern(9, 70_000);
    upload(&mut c, &line("STOR", LATIN1), &body);
    assert_eq!(
        std::fs::read(on_disk(&on_disk(&home, DIR), LATIN1)).unwrap(),
        body
    );
    expect(&mut c, b"CDUP", 250);

    let mut path = DIR.to_vec();
    path.push(b'/');
    path.extend_from_slice(LATIN1);
    let size = format!("{}", body.len());
    assert_eq!(expect(&mut c, &line("SIZE", &path), 213), size.as_bytes());
    expect(&mut c, &line("MDTM", &path), 213);
    let mlst = expect(&mut c, &line("MLST", &path), 250);
    let mut fact_tail = b" /".to_vec();
    fact_tail.extend_from_slice(&path);
    assert!(
        mlst.windows(fact_tail.len()).any(|w| w == fact_tail),
        "{:?}",
        mlst.escape_ascii().to_string()
    );

    // RETR: byte-exact, and the 150 names the file as sent.
    let (first, got) = download(&mut c, &line("RETR", &path));
    assert_eq!(got, body);
    let mut want = b"Opening BINARY mode data connection for ".to_vec();
    want.extend_from_slice(&path);
    want.extend_from_slice(format!(" ({size} bytes).").as_bytes());
    assert_eq!(first, want);

    // Listings carry the raw bytes.
    let mut dir_arg = DIR.to_vec();
    dir_arg.push(b'/');
    assert_eq!(lines(&listing(&mut c, &line("NLST", DIR))), [LATIN1]);
    let list = listing(&mut c, &line("LIST", &dir_arg));
    assert!(list.ends_with(b" caf\xe9.txt\r\n"), "{list:?}");
    let mlsd = listing(&mut c, &line("MLSD", DIR));
    assert!(
        lines(&mlsd).iter().any(|l| l.ends_with(b"; caf\xe9.txt")),
        "{mlsd:?}"
    );
    let stat = expect(&mut c, &line("STAT", DIR), 213);
    assert!(stat.windows(LATIN1.len()).any(|w| w == LATIN1), "{stat:?}");

    // APPE, SITE CHMOD, MFMT, STOU with such a base.
    upload(&mut c, &line("APPE", &path), b"tail");
    let mut chmod = b"SITE CHMOD 600 ".to_vec();
    chmod.extend_from_slice(&path);
    expect(&mut c, &line_raw(&chmod), 200);
    let mfmt = expect(&mut c, &line("MFMT 20010203040506", &path), 213);
    assert!(mfmt.ends_with(&path), "{mfmt:?}");
    let file = on_disk(&on_disk(&home, DIR), LATIN1);
    assert_eq!(common::mode_of(&file), 0o600);
    assert_eq!(std::fs::read(&file).unwrap().len(), body.len() + 4);
    let (first, _) = upload(&mut c, &line("STOU", b"\xe9t\xe9"), b"u");
    assert!(first.starts_with(b"FILE: \xe9t\xe9"), "{first:?}");

    // RNFR/RNTO, DELE, RMD.
    expect(&mut c, &line("RNFR", &path), 350);
    expect(&mut c, &line("RNTO", RENAMED), 250);
    assert!(!file.exists());
    assert_eq!(
        std::fs::read(on_disk(&home, RENAMED)).unwrap().len(),
        body.len() + 4
    );
    expect(&mut c, &line("DELE", RENAMED), 250);
    assert!(!on_disk(&home, RENAMED).exists());
    expect(&mut c, &line("XRMD", DIR), 250);
    assert!(!on_disk(&home, DIR).exists());
    let unique = first[b"FILE: ".len()..].to_vec();
    assert!(on_disk(&home, &unique).is_file());
    expect(&mut c, &line("DELE", &unique), 250);
}

fn line_raw(l: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in l {
        out.push(b);
        if b == 0xff {
            out.push(0xff);
        }
    }
    out
}

/// A name put in the tree by other means is listed and can be used: sized, read, renamed, deleted.
#[test]
fn non_utf8_names_put_on_disk_are_usable() {
    let s = rw_users();
    let home = s.home("alice");
    std::fs::write(on_disk(&home, LATIN1), b"latin-1 name\n").unwrap();
    std::fs::create_dir(on_disk(&home, b"\xc3\x28dir")).unwrap();
    std::fs::write(on_disk(&home, b"\xc3\x28dir/\xa0"), b"nbsp\n").unwrap();
    let mut c = s.login_as("alice");
    let nlst = listing(&mut c, b"NLST");
    let names: BTreeSet<&[u8]> = lines(&nlst).into_iter().collect();
    assert_eq!(names, BTreeSet::from([LATIN1, &b"\xc3\x28dir"[..]]));
    assert_eq!(expect(&mut c, &line("SIZE", LATIN1), 213), b"13");
    assert_eq!(download(&mut c, &line("RETR", LATIN1)).1, b"latin-1 name\n");
    expect(&mut c, &line("MLST", LATIN1), 250);
    assert_eq!(
        download(&mut c, &line("RETR", b"\xc3\x28dir/\xa0")).1,
        b"nbsp\n"
    );
    expect(&mut c, &line("CWD", b"\xc3\x28dir"), 250);
    // A raw client that does not double 0xFF: a lone 0xFF is a byte like any other.
    std::fs::write(on_disk(&home, b"\xc3\x28dir/y\xff."), b"y").unwrap();
    assert_eq!(download(&mut c, b"RETR y\xff.").1, b"y");
    expect(&mut c, b"DELE y\xff.", 250);
    expect(&mut c, b"CDUP", 250);
    expect(&mut c, &line("RNFR", LATIN1), 350);
    expect(&mut c, &line("RNTO", b"caf\xc3\xa9.txt"), 250);
    assert_eq!(
        std::fs::read(home.join("café.txt")).unwrap(),
        b"latin-1 name\n"
    );
    expect(&mut c, &line("DELE", b"\xc3\x28dir/\xa0"), 250);
    expect(&mut c, &line("RMD", b"\xc3\x28dir"), 250);

    // Anonymous (read-only) users read such names too.
    std::fs::write(s.server.path("").join(OsStr::from_bytes(LATIN1)), b"anon").unwrap();
    let mut a = s.server.login();
    assert_eq!(download(&mut a, &line("RETR", LATIN1)).1, b"anon");
}

/// suppaftp with a Latin-1 encoding: its names are Rust strings, which it encodes to single
/// bytes (and escapes 0xFF, "ÿ", as Telnet asks). The default UTF-8 encoding cannot send bytes
/// that are not UTF-8 at all: `&str` arguments are always valid UTF-8.
#[test]
fn suppaftp_with_latin1_names_round_trips() {
    #[derive(Debug)]
    struct Latin1;
    impl suppaftp::Encoding for Latin1 {
        fn decode(&self, bytes: &[u8]) -> String {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        fn encode(&self, text: &str) -> std::io::Result<Vec<u8>> {
            text.chars()
                .map(|c| u8::try_from(u32::from(c)).map_err(std::io::Error::other))
                .collect()
        }
    }
    let _guard = common::Watchdog::arm("suppaftp latin-1", Duration::from_secs(120));
    let s = rw_users();
    let home = s.home("alice");
    let ctrl = std::net::TcpStream::connect_timeout(&s.addr, TIMEOUT).unwrap();
    ctrl.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut ftp = suppaftp::FtpStream::connect_with_stream(ctrl).expect("greeting");
    ftp.set_encoding(Latin1);
    ftp.login("alice", common::USER_PASSWORD).unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .unwrap();
    ftp.mkdir("répertoire ÿ").unwrap();
    assert!(on_disk(&home, b"r\xe9pertoire \xff").is_dir());
    ftp.cwd("répertoire ÿ").unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/répertoire ÿ");
    let body = common::pattern(5, 10_000);
    ftp.put_file("café ÿ.txt", &mut Cursor::new(body.clone()))
        .unwrap();
    let file = on_disk(&home, b"r\xe9pertoire \xff/caf\xe9 \xff.txt");
    assert!(std::fs::read(&file).unwrap() == body, "stored bytes differ");
    assert_eq!(ftp.nlst(None).unwrap(), ["café ÿ.txt"]);
    let list = ftp.list(None).unwrap();
    assert!(list[0].ends_with(" café ÿ.txt"), "{list:?}");
    assert_eq!(ftp.size("café ÿ.txt").unwrap(), body.len());
    assert!(ftp.retr_as_buffer("café ÿ.txt").unwrap().into_inner() == body);
    ftp.rename("café ÿ.txt", "naïve.txt").unwrap();
    assert!(on_disk(&home, b"r\xe9pertoire \xff/na\xefve.txt").is_file());
    ftp.rm("naïve.txt").unwrap();
    ftp.cdup().unwrap();
    ftp.rmdir("répertoire ÿ").unwrap();
    assert!(!on_disk(&home, b"r\xe9pertoire \xff").exists());
    let _ = ftp.quit();
}

/// `ls -l` shows ` -> target` for links whose target stays inside the root, and nothing that
/// would reveal what lies outside it.
#[test]
fn symlink_targets_inside_are_listed_and_outside_are_not() {
    let s = common::server();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"top secret").unwrap();
    let sibling = outside.path().file_name().unwrap().to_str().unwrap();
    s.write_file("dir1/dir12/dir123/file", b"deep\n");
    s.mkdir("dir3");
    s.symlink("../dir1/dir12/dir123", "dir3/dir32");
    s.symlink("dir32/file", "dir3/via_link");
    s.symlink("missing", "dir3/broken");
    s.symlink("../nowhere/x", "dir3/broken_up");
    s.symlink(format!("../../{sibling}/secret.txt"), "dir3/out_rel");
    s.symlink(format!("../{sibling}/nothing"), "out_missing");
    s.symlink("/etc/passwd", "out_abs");
    s.symlink(s.path("dir1"), "abs_into_root");
    let mut c = s.login();

    let names = list_names(&listing(&mut c, b"LIST dir3"));
    let want: BTreeSet<String> = [
        "broken -> missing",
        "broken_up -> ../nowhere/x",
        "dir32 -> ../dir1/dir12/dir123",
        "out_rel",
        "via_link -> dir32/file",
    ]
    .map(String::from)
    .into();
    assert_eq!(names.into_iter().collect::<BTreeSet<_>>(), want);
    let root = listing(&mut c, b"LIST");
    let text = String::from_utf8_lossy(&root);
    for shown in [" out_missing\r\n", " out_abs\r\n", " abs_into_root\r\n"] {
        assert!(text.contains(shown), "{shown:?} in {text:?}");
    }
    for secret in [sibling, "/etc", "passwd", s.path("").to_str().unwrap()] {
        assert!(!text.contains(secret), "{secret:?} revealed in {text:?}");
    }
    // The target as listed is a path the client can follow.
    assert_eq!(
        download(&mut c, b"RETR dir1/dir12/dir123/file").1,
        b"deep\n"
    );
    assert_eq!(download(&mut c, b"RETR dir3/via_link").1, b"deep\n");

    // STAT <path> lists the same way; NLST and MLSD name the link alone.
    let stat = String::from_utf8_lossy(&expect(&mut c, b"STAT dir3", 213)).into_owned();
    assert!(
        stat.contains(" dir32 -> ../dir1/dir12/dir123\r\n")
            || stat.contains(" dir32 -> ../dir1/dir12/dir123\n"),
        "{stat:?}"
    );
    assert!(!stat.contains(sibling), "{stat:?}");
    let nlst = listing(&mut c, b"NLST dir3");
    assert!(!nlst.windows(4).any(|w| w == b" -> "), "{nlst:?}");
    let mlsd = listing(&mut c, b"MLSD dir3");
    assert!(!mlsd.windows(4).any(|w| w == b" -> "), "{mlsd:?}");
}

/// A tree with dot files, a dot directory, a name starting with '-' and an upload's temporary file.
fn dotted(tweak: impl FnOnce(&mut ringftpd::config::Config)) -> TestServer {
    let s = common::start(tweak);
    s.write_file("visible.txt", b"v");
    s.write_file(".hidden", b"h");
    s.write_file(".dotdir/.inner", b"i");
    s.write_file(".dotdir/shown", b"s");
    s.write_file("-dash", b"d");
    s.mkdir("sub");
    s.write_file(&format!("{TEMP_PREFIX}upload"), b"t");
    s
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn list_set(c: &mut Ctrl, line: &str) -> Vec<String> {
    list_names(&listing(c, line.as_bytes()))
}

fn nlst_set(c: &mut Ctrl, line: &str) -> BTreeSet<String> {
    lines(&listing(c, line.as_bytes()))
        .into_iter()
        .map(|l| String::from_utf8(l.to_vec()).unwrap())
        .collect()
}

#[test]
fn list_options_decide_which_dot_files_show() {
    let s = dotted(|_| {});
    let mut c = s.login();
    let plain = ["-dash", "sub", "visible.txt"];
    let dot_files = ["-dash", ".dotdir", ".hidden", "sub", "visible.txt"];
    let everything = [
        ".",
        "..",
        ".dotdir",
        ".hidden",
        "-dash",
        "sub",
        "visible.txt",
    ];
    let sorted = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(sorted(list_set(&mut c, "LIST")), set(&plain));
    assert_eq!(sorted(list_set(&mut c, "LIST -l")), set(&plain));
    // -a adds "." and "..", first, as ls does.
    for opts in ["LIST -a", "LIST -la", "LIST -al", "LIST -l -a", "LIST -a ."] {
        let names = list_set(&mut c, opts);
        assert_eq!(names[..2], [".", ".."], "{opts}");
        assert_eq!(sorted(names), set(&everything), "{opts}");
    }
    assert_eq!(sorted(list_set(&mut c, "LIST -A")), set(&dot_files));
    assert_eq!(sorted(list_set(&mut c, "LIST -lA")), set(&dot_files));
    // Unknown options and -R (not done) are ignored.
    assert_eq!(sorted(list_set(&mut c, "LIST -R")), set(&plain));
    assert_eq!(sorted(list_set(&mut c, "LIST -laRtF")), set(&everything));
    // -d: the directory itself.
    let d = listing(&mut c, b"LIST -d");
    assert_eq!(list_names(&d), ["."]);
    assert!(d.starts_with(b"d"), "{d:?}");
    assert_eq!(list_set(&mut c, "LIST -ld sub"), ["sub"]);
    assert_eq!(nlst_set(&mut c, "NLST -d sub"), set(&["sub"]));
    // "--" ends the options: "-dash" is a name.
    let dash = list_set(&mut c, "LIST -- -dash");
    assert_eq!(dash, ["-dash"]);
    // A dot file named outright is listed; a dot directory's dot files follow the options.
    assert_eq!(list_set(&mut c, "LIST .hidden"), [".hidden"]);
    assert_eq!(list_set(&mut c, "LIST .dotdir"), ["shown"]);
    assert_eq!(
        sorted(list_set(&mut c, "LIST -A .dotdir")),
        set(&[".inner", "shown"])
    );
    // NLST follows the same rules; NLST -l is a long listing.
    assert_eq!(nlst_set(&mut c, "NLST"), set(&plain));
    assert_eq!(nlst_set(&mut c, "NLST -a"), set(&everything));
    assert_eq!(nlst_set(&mut c, "NLST -A"), set(&dot_files));
    assert_eq!(sorted(list_set(&mut c, "NLST -l")), set(&plain));
    // STAT <path> too.
    let stat = String::from_utf8_lossy(&expect(&mut c, b"STAT -a", 213)).into_owned();
    assert!(
        stat.contains(" .hidden") && stat.contains(" ..\n"),
        "{stat:?}"
    );
    let stat = String::from_utf8_lossy(&expect(&mut c, b"STAT .", 213)).into_owned();
    assert!(
        !stat.contains(" .hidden") && stat.contains(" visible.txt"),
        "{stat:?}"
    );

    // MLSD lists every entry (RFC 3659 section 7.2); MLST finds dot files.
    let mlsd = listing(&mut c, b"MLSD");
    let text = String::from_utf8(mlsd).unwrap();
    let names: BTreeSet<String> = common::crlf_lines(&text)
        .into_iter()
        .filter_map(common::parse_facts)
        .filter(|(f, _)| f["type"] != "cdir")
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, set(&dot_files));
    expect(&mut c, b"MLST .hidden", 250);

    // An upload's temporary file never shows, whatever the options.
    for l in ["LIST -a", "NLST -A", "MLSD", "STAT -a"] {
        let bytes = if l.starts_with("STAT") {
            expect(&mut c, l.as_bytes(), 213)
        } else {
            listing(&mut c, l.as_bytes())
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(TEMP_PREFIX), "{l}: {text:?}");
    }
}

#[test]
fn force_dot_files_shows_dot_files_without_options() {
    let s = dotted(|c| c.force_dot_files = true);
    let mut c = s.login();
    let dot_files = ["-dash", ".dotdir", ".hidden", "sub", "visible.txt"];
    let sorted = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(sorted(list_set(&mut c, "LIST")), set(&dot_files));
    assert_eq!(nlst_set(&mut c, "NLST"), set(&dot_files));
    assert_eq!(sorted(list_set(&mut c, "LIST -A")), set(&dot_files));
    let all = list_set(&mut c, "LIST -a");
    assert_eq!(all[..2], [".", ".."]);
    assert_eq!(all.len(), dot_files.len() + 2);
    let text = String::from_utf8(listing(&mut c, b"LIST -a")).unwrap();
    assert!(!text.contains(TEMP_PREFIX), "{text:?}");
}

/// A name of arbitrary bytes (no NUL, CR, LF or '/'), made with STOR, lists and reads back
/// byte-exact. One server for every case: each case is a few real round trips.
#[test]
fn any_byte_name_stored_lists_and_reads_back() {
    let s = rw_users();
    let home = s.home("alice");
    let c = std::cell::RefCell::new(s.login_as("alice"));
    let name = proptest::collection::vec(
        any::<u8>().prop_filter("not NUL, CR, LF or /", |b| !b"\0\r\n/".contains(b)),
        1..24,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..");
    let mut runner =
        proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(32));
    runner
        .run(&(name, any::<u64>()), |(name, seed)| {
            let c = &mut *c.borrow_mut();
            let body = common::pattern(seed, (seed % 3000) as usize);
            upload(c, &line("STOR", &name), &body);
            prop_assert_eq!(std::fs::read(on_disk(&home, &name)).unwrap(), body.clone());
            let nlst = listing(c, b"NLST -A");
            prop_assert!(lines(&nlst).contains(&&name[..]), "{:?}", nlst);
            let list = listing(c, b"LIST -A");
            let mut tail = vec![b' '];
            tail.extend_from_slice(&name);
            tail.extend_from_slice(b"\r\n");
            prop_assert!(
                list.windows(tail.len()).any(|w| w == &tail[..]),
                "{:?}",
                list
            );
            let (first, got) = download(c, &line("RETR", &name));
            prop_assert_eq!(got, body);
            prop_assert!(first.windows(name.len()).any(|w| w == &name[..]));
            expect(c, &line("DELE", &name), 250);
            prop_assert!(!on_disk(&home, &name).exists());
            Ok(())
        })
        .unwrap();
}
