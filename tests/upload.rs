//! Uploads and named users over real TCP: USER/PASS against a users file, STOR (atomic), APPE,
//! REST+STOR, STOU, the directory and rename commands, SITE CHMOD/UMASK, MFMT, and every
//! refusal: read-only users, users without downloads, anonymous with and without a drop box, and
//! jail escapes. Byte-exact checks read the file on disk, not only what the server says.
//!
//! The raw [`Ctrl`] client drives the protocol where reply order matters; `suppaftp` covers the
//! same ground as a client library does. Each test starts its own server, so they run in parallel.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ctrl, OLD_MTIME, OLD_MTIME_VAL, TEMP_PREFIX, TIMEOUT, UsersServer, Watchdog};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpStream, Mode, Status};

const MIB: usize = 1 << 20;

/// The users of most tests: one of each kind of account the users file can describe.
const USERS: &[(&str, &str)] = &[
    ("alice", "access = \"read-write\""),
    ("bob", "access = \"read-only\""),
    ("carol", "access = \"read-only\"\ndownload = false"),
    ("dave", "access = \"read-write\"\ndownload = false"),
    ("erin", "access = \"read-write\"\nupload = false"),
];

fn users() -> UsersServer {
    common::start_with_users(USERS, |_| {})
}

/// Every write command in every spelling the server knows, each aimed at something that exists
/// (or, for creations, at a free name), so a refusal cannot be a mere "not found".
const WRITE_COMMANDS: &[&str] = &[
    "STOR new.bin",
    "STOU",
    "APPE existing.txt",
    "DELE existing.txt",
    "MKD newdir",
    "XMKD newdir",
    "RMD emptydir",
    "XRMD emptydir",
    "RNFR existing.txt",
    "SITE CHMOD 777 existing.txt",
    "MFMT 20010203040506 existing.txt",
];

/// The upload commands among [`WRITE_COMMANDS`], which are also tried with a data connection up.
const UPLOAD_COMMANDS: &[&str] = &["STOR new.bin", "STOU", "APPE existing.txt"];

/// What [`WRITE_COMMANDS`] need in a root.
fn seed_for_writes(root: &Path) {
    fs::write(root.join("existing.txt"), b"existing\n").unwrap();
    fs::create_dir_all(root.join("emptydir")).unwrap();
}

/// Everything observable about a tree: per relative path, kind, mode, mtime and content.
fn tree_state(root: &Path) -> BTreeMap<String, (u32, i64, Option<Vec<u8>>)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, i64, Option<Vec<u8>>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let content = meta.is_file().then(|| fs::read(&p).unwrap());
            out.insert(rel, (meta.mode(), meta.mtime(), content));
            if meta.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Send an upload command with a data connection already made; it must be refused with `code`
/// before any data moves (no 150).
#[track_caller]
fn expect_refused_upload(c: &mut Ctrl, line: &str, code: u16) {
    let addr = c.epsv();
    let data = common::data_connect(addr);
    match c.upload_on(data, line, b"must not be stored") {
        Err((got, text)) => assert_eq!(got, code, "{line:?} answered {got} {text:?}"),
        Ok((first, last)) => {
            panic!("{line:?} was accepted (150 {first:?}, 226 {last:?}), want {code}")
        }
    }
}

/// Every write command is answered 550, with and without a data connection, and the tree under
/// `root` is unchanged afterwards.
#[track_caller]
fn assert_writes_refused(c: &mut Ctrl, root: &Path, who: &str) {
    let before = tree_state(root);
    for line in WRITE_COMMANDS {
        let (code, text) = c.cmd(line);
        assert_eq!(code, 550, "{who}: {line:?} answered {code} {text:?}");
    }
    for line in UPLOAD_COMMANDS {
        expect_refused_upload(c, line, 550);
    }
    c.expect("REST 3", 350);
    expect_refused_upload(c, "STOR existing.txt", 550);
    // RNFR was refused, so RNTO has nothing to rename.
    c.expect("RNTO renamed.txt", 503);
    assert_eq!(
        tree_state(root),
        before,
        "{who}: refused commands changed files"
    );
    c.expect("NOOP", 200);
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// Login

#[test]
fn named_login_right_wrong_and_unknown() {
    let s = users();
    fs::write(s.home("alice").join("mine.txt"), b"alice's file\n").unwrap();
    s.write_file("public.txt", b"anonymous file\n");

    // USER cannot tell a known name from an unknown one.
    let mut wrong = s.connect();
    let mut unknown = s.connect();
    let mut wrong_case = s.connect();
    let user_known = wrong.expect("USER alice", 331);
    let user_unknown = unknown.expect("USER mallory", 331);
    wrong_case.expect("USER Alice", 331);
    assert_eq!(user_known, user_unknown, "USER reveals which names exist");

    // The three failures run at the same time, so their delays overlap.
    let start = Instant::now();
    wrong.send_line(b"PASS not-the-password");
    unknown.send_line(format!("PASS {}", common::USER_PASSWORD).as_bytes());
    wrong_case.send_line(format!("PASS {}", common::USER_PASSWORD).as_bytes());
    let mut texts = Vec::new();
    for (c, what) in [
        (&mut wrong, "wrong password"),
        (&mut unknown, "unknown user"),
        (&mut wrong_case, "name in another case"),
    ] {
        let text = c.expect_reply(530, what);
        // RFC 2577 section 5: failed logins are slowed down, known names and unknown alike.
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{what}: 530 after only {:?}",
            start.elapsed()
        );
        texts.push(text);
    }
    assert_eq!(texts, ["Login incorrect."; 3]);
    wrong.expect("PWD", 530);
    // A failed PASS forgets the USER.
    wrong.expect("PASS pw", 503);

    // The right password, on a connection that failed before.
    wrong.login_as("alice", common::USER_PASSWORD);
    assert_eq!(wrong.expect("PWD", 257), "\"/\" is the current directory.");
    assert_eq!(wrong.listing("NLST"), "mine.txt\r\n");
    assert_eq!(wrong.retr("mine.txt"), b"alice's file\n");
    assert_eq!(wrong.transfer(b"RETR public.txt").unwrap_err().0, 550);
    // Logged in: USER cannot switch to another user.
    wrong.expect("USER bob", 503);
    wrong.expect("NOOP", 200);
}

#[test]
fn named_users_and_anonymous_share_a_server() {
    let s = users();
    s.write_file("public.txt", b"for everyone\n");
    fs::write(s.home("alice").join("a.txt"), b"alice\n").unwrap();
    fs::write(s.home("bob").join("b.txt"), b"bob\n").unwrap();

    let mut anon = s.login();
    let mut alice = s.login_as("alice");
    let mut bob = s.login_as("bob");
    assert_eq!(anon.listing("NLST"), "public.txt\r\n");
    assert_eq!(alice.listing("NLST"), "a.txt\r\n");
    assert_eq!(bob.listing("NLST"), "b.txt\r\n");
    for c in [&mut anon, &mut alice, &mut bob] {
        c.expect("CWD ..", 250);
        assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    }

    // alice's upload lands in her root only.
    alice.stor("STOR new.txt", b"uploaded by alice\n");
    assert_eq!(
        fs::read(s.home("alice").join("new.txt")).unwrap(),
        b"uploaded by alice\n"
    );
    assert!(!s.path("new.txt").exists());
    assert!(!s.home("bob").join("new.txt").exists());
    assert_eq!(anon.transfer(b"RETR new.txt").unwrap_err().0, 550);
    assert_eq!(bob.transfer(b"RETR new.txt").unwrap_err().0, 550);
    assert_eq!(alice.retr("new.txt"), b"uploaded by alice\n");
    // Anonymous is still read-only next to a read-write user.
    anon.expect("MKD x", 550);
    assert_eq!(anon.retr("public.txt"), b"for everyone\n");
}

// ---------------------------------------------------------------------------------------------
// Byte-exact uploads

#[test]
fn stor_is_byte_exact_in_passive_mode() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("big.bin", common::pattern(1, 5 * MIB)),
        ("name with  spaces .bin", common::pattern(2, 1000)),
        ("café ünïcødé 日本.txt", "grüße\n".as_bytes().to_vec()),
    ];
    for (name, body) in &cases {
        let text = c.stor(&format!("STOR {name}"), body);
        assert_eq!(text, "Transfer complete.");
        common::assert_bytes_eq(&fs::read(home.join(name)).unwrap(), body, name);
        assert_eq!(common::mode_of(&home.join(name)), 0o644, "{name}");
        assert_eq!(
            c.expect(&format!("SIZE {name}"), 213),
            body.len().to_string()
        );
        common::assert_bytes_eq(&c.retr(name), body, &format!("RETR {name}"));
    }
    // PASV (the uploads above used EPSV).
    let body = common::pattern(3, 2 * MIB + 3);
    let data = common::data_connect(c.pasv());
    c.upload_on(data, "STOR pasv.bin", &body).unwrap();
    common::assert_bytes_eq(&fs::read(home.join("pasv.bin")).unwrap(), &body, "PASV");
    // STOR replaces a longer file completely: no tail of the old content is left.
    fs::write(home.join("shrink.bin"), common::pattern(4, 100_000)).unwrap();
    c.stor("STOR shrink.bin", b"short");
    assert_eq!(fs::read(home.join("shrink.bin")).unwrap(), b"short");
    // Into a subdirectory, by relative and absolute path.
    c.expect("MKD sub", 257);
    c.expect("CWD sub", 250);
    c.stor("STOR rel.bin", b"relative");
    c.stor("STOR /sub/abs.bin", b"absolute");
    assert_eq!(fs::read(home.join("sub/rel.bin")).unwrap(), b"relative");
    assert_eq!(fs::read(home.join("sub/abs.bin")).unwrap(), b"absolute");
    assert!(common::temp_files_under(&home).is_empty());
}

fn active_upload(eprt: bool) {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for (name, body) in [
        ("active.bin", common::pattern(5, 3 * MIB + 17)),
        ("active empty", Vec::new()),
    ] {
        if eprt {
            c.expect(&format!("EPRT {}", common::eprt_arg(addr)), 200);
        } else {
            c.expect(&format!("PORT {}", common::port_arg(addr)), 200);
        }
        c.send_line(format!("STOR {name}").as_bytes());
        let mut data = common::accept_within(&listener);
        assert_eq!(data.peer_addr().unwrap().ip(), s.addr.ip());
        c.expect_reply(150, "STOR in active mode");
        data.write_all(&body).unwrap();
        drop(data);
        c.expect_reply(226, "end of the active upload");
        common::assert_bytes_eq(&fs::read(home.join(name)).unwrap(), &body, name);
    }
}

#[test]
fn stor_in_active_mode_with_port() {
    active_upload(false);
}

#[test]
fn stor_in_active_mode_with_eprt() {
    active_upload(true);
}

#[test]
fn type_a_upload_turns_crlf_into_lf() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    let (lf, crlf) = common::lf_text(6, MIB);
    c.expect("TYPE A", 200);
    c.stor("STOR text.txt", &crlf);
    common::assert_bytes_eq(&fs::read(home.join("text.txt")).unwrap(), &lf, "TYPE A");
    // A CR not followed by LF is data, also at the very end of the file.
    c.stor("STOR cr.txt", b"a\rb\r\n\r\nend\r");
    assert_eq!(fs::read(home.join("cr.txt")).unwrap(), b"a\rb\n\nend\r");
    // Every write ends right after a CR, so the server sees CR and LF in different reads.
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    data.set_nodelay(true).unwrap();
    c.send_line(b"STOR split.txt");
    c.expect_reply(150, "STOR split.txt");
    // About 64 KiB of the text, ending with a whole line.
    let end = crlf[..64 << 10]
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .unwrap()
        + 2;
    let part = &crlf[..end];
    for piece in part.split_inclusive(|&b| b == b'\r') {
        data.write_all(piece).unwrap();
    }
    drop(data);
    c.expect_reply(226, "end of STOR split.txt");
    let lines = part.windows(2).filter(|w| w == b"\r\n").count();
    common::assert_bytes_eq(
        &fs::read(home.join("split.txt")).unwrap(),
        &lf[..end - lines],
        "TYPE A split at CR",
    );
    // TYPE I stores the bytes as sent.
    c.expect("TYPE I", 200);
    c.stor("STOR binary.txt", &crlf);
    common::assert_bytes_eq(&fs::read(home.join("binary.txt")).unwrap(), &crlf, "TYPE I");
}

// ---------------------------------------------------------------------------------------------
// Resume, append, unique names

#[test]
fn rest_stor_completes_a_partial_upload() {
    let s = users();
    let home = s.home("alice");
    let path = home.join("resume.bin");
    let mut c = s.login_as("alice");
    let body = common::pattern(7, 3 * MIB + 123);
    let cut = 1_234_567;
    // The first attempt ends early: only part of the file was sent before the data connection
    // closed, so STOR finishes with a partial file.
    c.stor("STOR resume.bin", &body[..cut]);
    assert_eq!(fs::read(&path).unwrap().len(), cut);
    // A resuming client asks for the size, then sends the rest from there.
    let size: usize = c.expect("SIZE resume.bin", 213).parse().unwrap();
    assert_eq!(size, cut);
    c.expect(&format!("REST {size}"), 350);
    c.stor("STOR resume.bin", &body[size..]);
    common::assert_bytes_eq(&fs::read(&path).unwrap(), &body, "REST + STOR");

    // REST into a longer file writes in place and cuts the file where the upload ends.
    fs::write(home.join("mid.bin"), vec![b'x'; 1000]).unwrap();
    c.expect("REST 10", 350);
    c.stor("STOR mid.bin", b"hello");
    assert_eq!(fs::read(home.join("mid.bin")).unwrap(), b"xxxxxxxxxxhello");
    // REST applies to one transfer only.
    c.stor("STOR mid.bin", b"whole");
    assert_eq!(fs::read(home.join("mid.bin")).unwrap(), b"whole");
}

#[test]
fn interrupted_appe_is_resumed_with_rest_stor() {
    let s = users();
    let home = s.home("alice");
    let path = home.join("log.bin");
    let mut c = s.login_as("alice");
    let body = common::pattern(8, 4 * MIB);
    // APPE writes in place, so what arrived before an ABOR stays.
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    c.send_line(b"APPE log.bin");
    c.expect_reply(150, "APPE log.bin");
    data.write_all(&body[..2 * MIB]).unwrap();
    c.send_line(b"ABOR");
    c.expect_reply(426, "first reply to ABOR during APPE");
    c.expect_reply(226, "second reply to ABOR during APPE");
    common::drain(&mut data);
    let size: usize = c.expect("SIZE log.bin", 213).parse().unwrap();
    assert!(size <= 2 * MIB, "{size} bytes after sending {}", 2 * MIB);
    let on_disk = fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), size);
    common::assert_bytes_eq(&on_disk, &body[..size], "what APPE kept before ABOR");
    c.expect(&format!("REST {size}"), 350);
    c.stor("STOR log.bin", &body[size..]);
    common::assert_bytes_eq(&fs::read(&path).unwrap(), &body, "APPE, ABOR, REST + STOR");
}

#[test]
fn appe_appends_and_creates() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    c.stor("APPE new.log", b"one\n");
    assert_eq!(fs::read(home.join("new.log")).unwrap(), b"one\n");
    c.stor("APPE new.log", b"two\n");
    assert_eq!(fs::read(home.join("new.log")).unwrap(), b"one\ntwo\n");
    let big = common::pattern(9, 2 * MIB + 1);
    c.stor("APPE new.log", &big);
    let mut want = b"one\ntwo\n".to_vec();
    want.extend_from_slice(&big);
    common::assert_bytes_eq(&fs::read(home.join("new.log")).unwrap(), &want, "APPE");
    c.stor("APPE new.log", b"");
    common::assert_bytes_eq(
        &fs::read(home.join("new.log")).unwrap(),
        &want,
        "empty APPE",
    );
    assert!(common::temp_files_under(&home).is_empty());
}

/// The name in "FILE: name" (RFC 1123 section 4.1.2.9) and the one in the 226 text must agree.
fn stou(c: &mut Ctrl, line: &str, body: &[u8]) -> String {
    let (first, last) = c
        .upload(line, body)
        .unwrap_or_else(|(code, t)| panic!("{line:?} failed: {code} {t:?}"));
    let name = first
        .strip_prefix("FILE: ")
        .unwrap_or_else(|| panic!("150 text {first:?} lacks \"FILE: \""))
        .to_string();
    assert_eq!(
        last,
        format!("Transfer complete (unique file name: {name})."),
        "150 said {first:?}"
    );
    name
}

#[test]
fn stou_twice_gives_two_names() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    let first = stou(&mut c, "STOU", b"first");
    let second = stou(&mut c, "STOU", b"second");
    assert_eq!(first, "ftp-upload");
    assert_eq!(second, "ftp-upload.1");
    assert_eq!(fs::read(home.join(&first)).unwrap(), b"first");
    assert_eq!(fs::read(home.join(&second)).unwrap(), b"second");
    // With a base name, in the current directory; an existing name is never reused.
    fs::create_dir(home.join("sub")).unwrap();
    fs::write(home.join("sub/report.txt"), b"old").unwrap();
    c.expect("CWD sub", 250);
    let third = stou(&mut c, "STOU report.txt", b"third");
    assert_eq!(third, "report.txt.1");
    assert_eq!(fs::read(home.join("sub/report.txt")).unwrap(), b"old");
    assert_eq!(fs::read(home.join("sub/report.txt.1")).unwrap(), b"third");
}

// ---------------------------------------------------------------------------------------------
// Directories, renames, modes and times

#[test]
fn mkd_rmd_dele_and_their_x_forms() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    // RFC 959 appendix II: the quote in a 257 pathname is doubled.
    assert_eq!(c.expect("MKD a \"q\"", 257), "\"/a \"\"q\"\"\" created.");
    assert!(home.join("a \"q\"").is_dir());
    assert_eq!(common::mode_of(&home.join("a \"q\"")), 0o755);
    assert_eq!(c.expect("XMKD x", 257), "\"/x\" created.");
    c.expect("CWD a \"q\"", 250);
    assert_eq!(
        c.expect("MKD inner", 257),
        "\"/a \"\"q\"\"/inner\" created."
    );
    c.expect("CWD /", 250);
    c.expect("MKD x", 550);
    c.expect("MKD missing/parent/dir", 550);
    c.expect("MKD /", 550);

    c.stor("STOR x/file", b"content");
    let text = c.expect("RMD x", 550);
    assert!(text.contains("not empty"), "{text:?}");
    assert!(home.join("x/file").is_file());
    c.expect("RMD x/file", 550);
    c.expect("DELE x", 550);
    c.expect("DELE x/file", 250);
    c.expect("XRMD x", 250);
    assert!(!home.join("x").exists());
    c.expect("DELE x/file", 550);
    c.expect("RMD x", 550);
    c.expect("XRMD a \"q\"/inner", 250);
    c.expect("RMD a \"q\"", 250);
    c.expect("RMD /", 550);
    assert_eq!(fs::read_dir(&home).unwrap().count(), 0);
}

#[test]
fn rename_and_move_across_directories() {
    let s = users();
    let home = s.home("alice");
    fs::create_dir_all(home.join("d1/inner")).unwrap();
    fs::create_dir(home.join("d2")).unwrap();
    let body = common::pattern(10, 100_000);
    fs::write(home.join("d1/f.bin"), &body).unwrap();
    fs::write(home.join("top.txt"), b"top").unwrap();
    let mut c = s.login_as("alice");

    assert_eq!(c.expect("RNFR d1/f.bin", 350), "Ready for RNTO.");
    c.expect("RNTO d2/g é.bin", 250);
    assert!(!home.join("d1/f.bin").exists());
    assert_eq!(fs::read(home.join("d2/g é.bin")).unwrap(), body);
    // A directory moves with its contents.
    c.expect("RNFR /d1", 350);
    c.expect("RNTO /d2/moved dir", 250);
    assert!(home.join("d2/moved dir/inner").is_dir());
    assert!(!home.join("d1").exists());
    // Renaming over an existing file replaces it.
    c.expect("CWD d2", 250);
    c.expect("RNFR ../top.txt", 350);
    c.expect("RNTO g é.bin", 250);
    assert_eq!(fs::read(home.join("d2/g é.bin")).unwrap(), b"top");
    assert!(!home.join("top.txt").exists());
    // Failures leave things where they were.
    c.expect("RNFR missing", 550);
    c.expect("RNTO anything", 503);
    c.expect("RNFR g é.bin", 350);
    c.expect("RNTO no/such/dir/x", 550);
    assert!(home.join("d2/g é.bin").is_file());
    c.expect("RNFR /", 550);
}

#[test]
fn rnfr_must_come_right_before_rnto() {
    let s = users();
    let home = s.home("alice");
    fs::write(home.join("a"), b"a").unwrap();
    let mut c = s.login_as("alice");
    assert_eq!(c.expect("RNTO b", 503), "RNFR required first.");
    c.expect("RNFR a", 350);
    c.expect("NOOP", 200);
    c.expect("RNTO b", 503);
    c.expect("RNFR a", 350);
    c.expect("PWD", 257);
    c.expect("RNTO b", 503);
    assert!(home.join("a").exists() && !home.join("b").exists());
    c.expect("RNFR a", 350);
    c.expect("RNTO b", 250);
    c.expect("RNTO c", 503);
    assert!(home.join("b").exists() && !home.join("c").exists());
}

/// The LIST permission column and the MLSD UNIX.mode fact of `name` in the current directory.
fn list_and_mlsd_mode(c: &mut Ctrl, name: &str) -> (String, String) {
    let list = c.listing("LIST");
    let perms = common::crlf_lines(&list)
        .into_iter()
        .filter_map(common::parse_list_line)
        .find(|(_, _, n)| n == name)
        .unwrap_or_else(|| panic!("{name} not in LIST {list:?}"))
        .0;
    let mlsd = c.listing("MLSD");
    let (facts, _) = common::crlf_lines(&mlsd)
        .into_iter()
        .filter_map(common::parse_facts)
        .find(|(_, n)| n == name)
        .unwrap_or_else(|| panic!("{name} not in MLSD {mlsd:?}"));
    (perms, facts["unix.mode"].clone())
}

#[test]
fn site_chmod_shows_in_list_and_mlsd() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    c.stor("STOR f.txt", b"mode test");
    c.expect("MKD d", 257);
    assert_eq!(
        c.expect("SITE CHMOD 755 f.txt", 200),
        "SITE CHMOD command ok."
    );
    assert_eq!(common::mode_of(&home.join("f.txt")), 0o755);
    assert_eq!(
        list_and_mlsd_mode(&mut c, "f.txt"),
        ("-rwxr-xr-x".to_string(), "0755".to_string())
    );
    c.expect("SITE CHMOD 0600 f.txt", 200);
    assert_eq!(
        list_and_mlsd_mode(&mut c, "f.txt"),
        ("-rw-------".to_string(), "0600".to_string())
    );
    c.expect("site chmod 700 d", 200);
    assert_eq!(
        list_and_mlsd_mode(&mut c, "d"),
        ("drwx------".to_string(), "0700".to_string())
    );
    // Setuid and setgid are never granted; the mode stays as it was.
    c.expect("SITE CHMOD 4755 f.txt", 550);
    c.expect("SITE CHMOD 2755 f.txt", 550);
    assert_eq!(common::mode_of(&home.join("f.txt")), 0o600);
    c.expect("SITE CHMOD 644 missing", 550);
    c.expect("SITE CHMOD 999 f.txt", 501);
    c.expect("SITE CHMOD 644", 501);
    let help = c.expect("SITE HELP", 214);
    assert!(help.contains("CHMOD") && help.contains("UMASK"), "{help:?}");
    c.expect("SITE EXEC ls", 500);
}

#[test]
fn mfmt_shows_in_mdtm_and_mlsd() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    c.stor("STOR f.bin", b"x");
    assert_eq!(
        c.expect(&format!("MFMT {OLD_MTIME_VAL} f.bin"), 213),
        format!("Modify={OLD_MTIME_VAL}; /f.bin")
    );
    assert_eq!(c.expect("MDTM f.bin", 213), OLD_MTIME_VAL);
    assert_eq!(
        fs::metadata(home.join("f.bin")).unwrap().mtime(),
        OLD_MTIME as i64
    );
    let mlsd = c.listing("MLSD");
    let (facts, _) = common::crlf_lines(&mlsd)
        .into_iter()
        .filter_map(common::parse_facts)
        .find(|(_, n)| n == "f.bin")
        .unwrap();
    assert_eq!(facts["modify"], OLD_MTIME_VAL);
    // In a subdirectory, with the reply naming the full path.
    c.expect("MKD sub dir", 257);
    c.stor("STOR sub dir/g", b"y");
    c.expect("CWD sub dir", 250);
    assert_eq!(
        c.expect("MFMT 20200102030405 g", 213),
        "Modify=20200102030405; /sub dir/g"
    );
    assert_eq!(c.expect("MDTM g", 213), "20200102030405");
    c.expect("MFMT 20200102030405 missing", 550);
    c.expect("MFMT 2020 g", 501);
    c.expect("MFMT 20200102030405", 501);
}

#[test]
fn site_umask_applies_to_new_files_and_directories() {
    let s = users();
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    assert_eq!(c.expect("SITE UMASK", 200), "Your current UMASK is 0022.");
    c.stor("STOR default.bin", b"x");
    c.expect("MKD default.d", 257);
    assert_eq!(common::mode_of(&home.join("default.bin")), 0o644);
    assert_eq!(common::mode_of(&home.join("default.d")), 0o755);

    assert_eq!(c.expect("SITE UMASK 077", 200), "UMASK set to 0077.");
    assert_eq!(c.expect("SITE UMASK", 200), "Your current UMASK is 0077.");
    c.stor("STOR private.bin", b"x");
    c.stor("APPE private.log", b"x");
    let unique = stou(&mut c, "STOU", b"x");
    c.expect("MKD private.d", 257);
    for name in ["private.bin", "private.log", unique.as_str()] {
        assert_eq!(common::mode_of(&home.join(name)), 0o600, "{name}");
    }
    assert_eq!(common::mode_of(&home.join("private.d")), 0o700);
    c.expect("SITE UMASK 027", 200);
    c.stor("STOR group.bin", b"x");
    assert_eq!(common::mode_of(&home.join("group.bin")), 0o640);
    c.expect("SITE UMASK 8", 501);

    // The umask belongs to the session.
    let mut other = s.login_as("alice");
    other.stor("STOR other.bin", b"x");
    assert_eq!(common::mode_of(&home.join("other.bin")), 0o644);
}

// ---------------------------------------------------------------------------------------------
// Atomic STOR: a cut-off upload never replaces the old file

/// alice's home with `keep.bin` holding `old`.
fn keep_fixture() -> (UsersServer, PathBuf, Vec<u8>) {
    let s = users();
    let home = s.home("alice");
    let old = common::pattern(11, 100_000);
    fs::write(home.join("keep.bin"), &old).unwrap();
    fs::write(home.join("other.txt"), b"other").unwrap();
    (s, home, old)
}

/// Start `STOR keep.bin` on a new session and send `len` bytes without closing; the temporary
/// file must exist by then.
fn start_stor(s: &UsersServer, home: &Path, len: usize) -> (Ctrl, TcpStream) {
    let mut c = s.login_as("alice");
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    c.send_line(b"STOR keep.bin");
    c.expect_reply(150, "STOR keep.bin");
    data.write_all(&vec![0xa5; len]).unwrap();
    let temps = common::temp_files_under(home);
    assert_eq!(
        temps.len(),
        1,
        "one temporary file while uploading: {temps:?}"
    );
    (c, data)
}

/// After a cut-off upload: the old content, no temporary file, and a server that still serves.
#[track_caller]
fn assert_old_file_kept(s: &UsersServer, home: &Path, old: &[u8]) {
    common::wait_no_temp_files(home);
    common::assert_bytes_eq(&fs::read(home.join("keep.bin")).unwrap(), old, "keep.bin");
    let mut c = s.login_as("alice");
    common::assert_bytes_eq(&c.retr("keep.bin"), old, "RETR keep.bin");
    assert_eq!(c.listing("NLST"), "keep.bin\r\nother.txt\r\n");
}

/// Kills the child process however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Logs in, starts `STOR <name>` over PASV, sends 1 MiB, says "sent", then waits to be killed.
const VANISHING_CLIENT: &str = r#"
import ftplib, sys, time
ftp = ftplib.FTP(timeout=10)
ftp.connect(sys.argv[1], int(sys.argv[2]))
ftp.login(sys.argv[3], sys.argv[4])
ftp.voidcmd("TYPE I")
conn = ftp.transfercmd("STOR " + sys.argv[5])
conn.sendall(b"\xa5" * (1 << 20))
print("sent", flush=True)
time.sleep(120)
"#;

/// Clients killed at once in [`killed_clients_mid_stor_leave_the_old_files`]: whether the server
/// notices depends on timing, so one kill is a weak test.
const KILLED_CLIENTS: usize = 6;

#[test]
fn killed_clients_mid_stor_leave_the_old_files() {
    let Some(python) = find_tool("python3") else {
        eprintln!("skipping: `python3` is not installed (bash .ci/run installs it)");
        return;
    };
    // The gap between a killed client's two closes is microseconds, unless the dying process is
    // preempted in between: on a loaded 2-core CI host that took more than the default 10 ms.
    let s = common::start_with_users(USERS, |c| {
        c.upload_grace = std::time::Duration::from_secs(1);
    });
    let home = s.home("alice");
    let old = |i: usize| common::pattern(100 + i as u64, 100_000);
    for i in 0..KILLED_CLIENTS {
        fs::write(home.join(format!("keep{i}.bin")), old(i)).unwrap();
    }
    let port = s.addr.port().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut children = Vec::new();
    for i in 0..KILLED_CLIENTS {
        let mut child = KillOnDrop(
            Command::new(&python)
                .args(["-c", VANISHING_CLIENT, "127.0.0.1", &port, "alice"])
                .arg(common::USER_PASSWORD)
                .arg(format!("keep{i}.bin"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start python3"),
        );
        let stdout = child.0.stdout.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        children.push(child);
    }
    for _ in 0..KILLED_CLIENTS {
        let line = rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("a client did not say \"sent\" within {TIMEOUT:?}"));
        assert_eq!(line, "sent\n", "a client failed (its stderr is above)");
    }
    // Mid-upload: the bytes go to temporary files, the old files are untouched.
    let temps = common::temp_files_under(&home);
    assert_eq!(temps.len(), KILLED_CLIENTS, "{temps:?}");
    // SIGKILL: the kernel closes both connections of each client with a FIN, the data
    // connection just as a client that had finished would close it.
    for child in &mut children {
        child.0.kill().unwrap();
        child.0.wait().unwrap();
    }
    common::wait_no_temp_files(&home);
    let replaced: Vec<String> = (0..KILLED_CLIENTS)
        .filter(|&i| fs::read(home.join(format!("keep{i}.bin"))).unwrap() != old(i))
        .map(|i| {
            let len = fs::metadata(home.join(format!("keep{i}.bin")))
                .unwrap()
                .len();
            format!("keep{i}.bin ({len} bytes)")
        })
        .collect();
    assert!(
        replaced.is_empty(),
        "{} of {KILLED_CLIENTS} killed clients' partial uploads replaced the old file: {replaced:?}",
        replaced.len()
    );
    let mut c = s.login_as("alice");
    common::assert_bytes_eq(&c.retr("keep0.bin"), &old(0), "RETR keep0.bin");
}

#[test]
fn abor_mid_stor_leaves_the_old_file() {
    let (s, home, old) = keep_fixture();
    let (mut c, mut data) = start_stor(&s, &home, MIB);
    c.send_line(b"ABOR");
    c.expect_reply(426, "first reply to ABOR during STOR");
    c.expect_reply(226, "second reply to ABOR during STOR");
    common::drain(&mut data);
    c.expect("NOOP", 200);
    assert_old_file_kept(&s, &home, &old);
    // The session goes on, and a complete STOR then does replace the file.
    c.stor("STOR keep.bin", b"new");
    assert_eq!(fs::read(home.join("keep.bin")).unwrap(), b"new");
}

#[test]
fn control_dropped_before_the_data_close_leaves_the_old_file() {
    let (s, home, old) = keep_fixture();
    let (c, mut data) = start_stor(&s, &home, MIB);
    // The client goes away first; only then does its data connection end, normally (FIN), so
    // the server has every byte and a clean end of file, but nobody to confirm the upload to.
    drop(c);
    data.shutdown(std::net::Shutdown::Write).unwrap();
    common::drain(&mut data);
    assert_old_file_kept(&s, &home, &old);
}

#[test]
fn data_reset_mid_stor_is_426_and_leaves_the_old_file() {
    let (s, home, old) = keep_fixture();
    let (mut c, data) = start_stor(&s, &home, MIB);
    // Linger 0: close sends RST instead of FIN.
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data);
    c.expect_reply(426, "after the client reset the data connection");
    c.expect("NOOP", 200);
    assert_old_file_kept(&s, &home, &old);
}

/// Wait for the server to close `data` (EOF or reset); `Err` if it is still open after
/// [`TIMEOUT`].
fn closed_by_server(data: &mut TcpStream) -> Result<(), String> {
    use std::io::Read;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match data.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                return Err(format!(
                    "{n} unexpected bytes on an upload's data connection"
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if common::is_timeout(&e) => {
                return Err(format!("still open after {TIMEOUT:?}"));
            }
            Err(_) => return Ok(()),
        }
    }
}

/// ABOR after ABOR in one session, alternating STOR and APPE, with the client keeping its data
/// connection open as RFC 959 clients do: each ABOR is answered 426 + 226 at once, the server
/// then closes the data connection, nothing reaches the file after the 226, and a cut-off STOR
/// never replaces the old file.
#[test]
fn repeated_abor_mid_upload_in_one_session() {
    let (s, home, old) = keep_fixture();
    let mut c = s.login_as("alice");
    for round in 0..20 {
        let line = if round % 2 == 0 {
            "STOR keep.bin"
        } else {
            "APPE log.bin"
        };
        let what = format!("round {round} ({line})");
        let addr = c.epsv();
        let mut data = common::data_connect(addr);
        c.send_line(line.as_bytes());
        c.expect_reply(150, &what);
        data.write_all(&vec![0xa5; MIB]).unwrap();
        c.send_line(b"ABOR");
        match c.try_read_reply() {
            Ok((426, _)) => {}
            other => panic!("{what}: ABOR answered {other:?}, want 426 then 226"),
        }
        c.expect_reply(226, &what);
        let size_at_226 = fs::metadata(home.join("log.bin")).map_or(0, |m| m.len());
        if let Err(e) = closed_by_server(&mut data) {
            panic!("{what}: after 426 + 226 the data connection is {e}");
        }
        if round % 2 == 1 {
            let size: u64 = c.expect("SIZE log.bin", 213).parse().unwrap();
            let now = fs::metadata(home.join("log.bin")).unwrap().len();
            assert!(
                size == size_at_226 && now == size_at_226,
                "{what}: log.bin had {size_at_226} bytes at the 226, SIZE then said {size}, \
                 and it has {now} now: the server wrote after answering ABOR"
            );
        } else {
            common::wait_no_temp_files(&home);
            common::assert_bytes_eq(&fs::read(home.join("keep.bin")).unwrap(), &old, &what);
        }
    }
    c.expect("NOOP", 200);
}

// ---------------------------------------------------------------------------------------------
// A full disk

/// A small tmpfs mounted for one test; unmounted (lazily, in case a helper thread of the stopped
/// server still holds the directory open) when dropped, also when the test panics.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_452_and_leaves_no_temp_file() {
    let homes = tempfile::tempdir().unwrap();
    let root = homes.path().join("alice");
    fs::create_dir(&root).unwrap();
    let _mount = match Tmpfs::mount(&root, "1m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping: needs a 1 MiB tmpfs (root with CAP_SYS_ADMIN): {why}");
            return;
        }
    };
    let users_file = homes.path().join("users.toml");
    common::write_users_file(
        &users_file,
        &[common::UserSpec {
            name: "alice",
            root: &root,
            extra: "access = \"read-write\"",
        }],
    );
    // Declared after the mount guard, so the server stops before the unmount.
    let s = common::start(|c| c.users_file = Some(users_file));
    fs::write(root.join("keep.bin"), b"kept").unwrap();
    let mut c = Ctrl::connect(s.addr);
    c.login_as("alice", common::USER_PASSWORD);

    for line in ["STOR big.bin", "STOR keep.bin"] {
        let addr = c.epsv();
        let mut data = common::data_connect(addr);
        c.send_line(line.as_bytes());
        c.expect_reply(150, line);
        // The server gives up part way; then the rest of the write fails, which is expected.
        let body = common::pattern(12, 4 * MIB);
        let sent = body
            .chunks(64 << 10)
            .take_while(|chunk| data.write_all(chunk).is_ok())
            .count();
        drop(data);
        let (code, text) = c.read_reply();
        assert!(
            code == 452 || code == 552,
            "{line:?} on a full disk answered {code} {text:?} (after {sent} chunks of 64 KiB)"
        );
        common::wait_no_temp_files(&root);
        assert!(!root.join("big.bin").exists());
        assert_eq!(fs::read(root.join("keep.bin")).unwrap(), b"kept");
        c.expect("NOOP", 200);
    }
    // The space of the failed uploads is free again, and the server goes on serving.
    c.stor("STOR small.bin", b"fits");
    assert_eq!(c.retr("small.bin"), b"fits");
    assert_eq!(fs::read(root.join("small.bin")).unwrap(), b"fits");
}

// ---------------------------------------------------------------------------------------------
// Who may write what

#[test]
fn anonymous_without_drop_box_cannot_write() {
    let s = common::server();
    seed_for_writes(s.root.path());
    let mut c = s.login();
    assert_writes_refused(&mut c, s.root.path(), "anonymous");
    assert_eq!(c.retr("existing.txt"), b"existing\n");
}

#[test]
fn read_only_users_cannot_write() {
    let s = users();
    for user in ["bob", "carol"] {
        seed_for_writes(&s.home(user));
        let mut c = s.login_as(user);
        assert_writes_refused(&mut c, &s.home(user), user);
        // Listing is allowed to both.
        let names = c.listing("NLST");
        assert_eq!(names, "emptydir\r\nexisting.txt\r\n", "{user}");
    }
    let mut bob = s.login_as("bob");
    assert_eq!(bob.retr("existing.txt"), b"existing\n");
    // download = false: RETR is refused too.
    let mut carol = s.login_as("carol");
    assert_eq!(carol.transfer(b"RETR existing.txt").unwrap_err().0, 550);
    carol.expect("RETR existing.txt", 550);
}

#[test]
fn users_without_download_or_upload() {
    let s = users();
    // dave: read-write without downloads.
    let mut dave = s.login_as("dave");
    dave.stor("STOR up.bin", b"write only");
    assert_eq!(
        fs::read(s.home("dave").join("up.bin")).unwrap(),
        b"write only"
    );
    assert_eq!(dave.transfer(b"RETR up.bin").unwrap_err().0, 550);
    assert_eq!(dave.listing("NLST"), "up.bin\r\n");
    dave.expect("DELE up.bin", 250);
    // erin: read-write without uploads: no STOR/APPE/STOU, but the other changes.
    seed_for_writes(&s.home("erin"));
    let mut erin = s.login_as("erin");
    for line in UPLOAD_COMMANDS {
        erin.expect(line, 550);
        expect_refused_upload(&mut erin, line, 550);
    }
    assert!(!s.home("erin").join("new.bin").exists());
    assert_eq!(erin.retr("existing.txt"), b"existing\n");
    erin.expect("MKD made", 257);
    erin.expect("DELE existing.txt", 250);
}

/// A server whose anonymous users may drop new files into /incoming.
fn drop_box() -> UsersServer {
    common::start_with_users(USERS, |c| {
        for dir in ["incoming", "incoming/sub", "incomingX", "other"] {
            fs::create_dir(c.root.join(dir)).unwrap();
        }
        fs::write(c.root.join("public.txt"), b"public\n").unwrap();
        fs::write(c.root.join("incoming/existing.txt"), b"left by the admin\n").unwrap();
        c.anonymous_upload = Some("/incoming".into());
    })
}

#[test]
fn anonymous_drop_box_takes_new_files_only() {
    let s = drop_box();
    let root = s.root.path();
    let mut c = s.login();
    c.stor("STOR incoming/new.bin", b"dropped");
    assert_eq!(fs::read(root.join("incoming/new.bin")).unwrap(), b"dropped");
    c.stor("STOR /incoming/sub/deeper.bin", b"deeper");
    assert_eq!(
        fs::read(root.join("incoming/sub/deeper.bin")).unwrap(),
        b"deeper"
    );
    let before = tree_state(root);
    // Never over an existing file, refused before any data moves.
    expect_refused_upload(&mut c, "STOR incoming/new.bin", 550);
    expect_refused_upload(&mut c, "STOR incoming/existing.txt", 550);
    // No appending, resuming, deleting, renaming or other changes.
    expect_refused_upload(&mut c, "APPE incoming/new.bin", 550);
    expect_refused_upload(&mut c, "APPE incoming/fresh.bin", 550);
    c.expect("REST 3", 350);
    expect_refused_upload(&mut c, "STOR incoming/fresh.bin", 550);
    for line in [
        "DELE incoming/new.bin",
        "RNFR incoming/new.bin",
        "MKD incoming/dir",
        "RMD incoming/sub",
        "SITE CHMOD 777 incoming/new.bin",
        "MFMT 20010203040506 incoming/new.bin",
    ] {
        c.expect(line, 550);
    }
    // Nothing in it can be read or listed.
    for line in [
        "RETR incoming/new.bin",
        "RETR incoming/existing.txt",
        "LIST incoming",
        "NLST incoming",
        "MLSD incoming",
        "LIST incoming/new.bin",
        "NLST /incoming/sub",
    ] {
        let err = c
            .transfer(line.as_bytes())
            .expect_err(&format!("{line} must be refused"));
        assert_eq!(err.0, 550, "{line:?}: {err:?}");
    }
    // Uploads outside the drop box are refused, however the path is spelt.
    for line in [
        "STOR new.bin",
        "STOR /other/new.bin",
        "STOR incomingX/new.bin",
        "STOR incoming/../new.bin",
        "STOU",
    ] {
        expect_refused_upload(&mut c, line, 550);
    }
    assert_eq!(tree_state(root), before, "refused commands changed files");
    // The REST above was used up by the refused STOR: this is a plain new upload.
    c.stor("STOR incoming/fresh.bin", b"fresh");
    assert_eq!(fs::read(root.join("incoming/fresh.bin")).unwrap(), b"fresh");
    // Inside the drop box by CWD: relative uploads work, listing does not.
    c.expect("CWD incoming", 250);
    c.stor("STOR relative.bin", b"relative");
    assert_eq!(
        fs::read(root.join("incoming/relative.bin")).unwrap(),
        b"relative"
    );
    assert_eq!(c.transfer(b"LIST").unwrap_err().0, 550);
    assert_eq!(c.transfer(b"NLST").unwrap_err().0, 550);
    // Public files outside stay readable; a named user on the same server is unaffected.
    c.expect("CWD /", 250);
    assert_eq!(c.retr("public.txt"), b"public\n");
    let mut alice = s.login_as("alice");
    alice.stor("STOR mine.bin", b"alice");
    alice.stor("STOR mine.bin", b"alice again");
    assert_eq!(
        fs::read(s.home("alice").join("mine.bin")).unwrap(),
        b"alice again"
    );
    assert!(common::temp_files_under(root).is_empty());
}

/// STAT with a path and MLST are listings on the control connection: the drop box must not be
/// readable through them either.
#[test]
fn anonymous_drop_box_is_not_listed_by_stat_or_mlst() {
    let s = drop_box();
    let mut c = s.login();
    c.stor("STOR incoming/secret-name.bin", b"dropped");
    let mut leaks = Vec::new();
    for line in [
        "STAT incoming",
        "STAT /incoming/",
        "STAT incoming/secret-name.bin",
        "MLST incoming/secret-name.bin",
    ] {
        let (code, text) = c.cmd(line);
        if code != 550 || text.contains("secret-name") {
            leaks.push(format!("{line:?} answered {code} {text:?}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "the drop box is readable (want 550 without the name):\n{}",
        leaks.join("\n")
    );
}

#[test]
fn jail_holds_for_writes() {
    let s = users();
    let homes = s.homes.path();
    let home = s.home("alice");
    fs::write(homes.join("outside.bin"), b"outside").unwrap();
    fs::create_dir_all(homes.join("outside_dir/sub")).unwrap();
    fs::write(homes.join("outside_dir/victim.txt"), b"victim").unwrap();
    fs::write(s.home("bob").join("b.txt"), b"bob's").unwrap();
    std::os::unix::fs::symlink(homes.join("outside_dir"), home.join("link_dir")).unwrap();
    std::os::unix::fs::symlink("../outside_dir", home.join("rel_link")).unwrap();
    std::os::unix::fs::symlink(homes.join("outside.bin"), home.join("link_file")).unwrap();
    fs::write(home.join("mine.txt"), b"mine").unwrap();
    let outside_before = {
        let mut t = tree_state(homes);
        // alice's own tree may change; everything else must not.
        t.retain(|k, _| !k.starts_with("alice"));
        t
    };
    let mut c = s.login_as("alice");
    let abs = homes.join("outside_dir").display().to_string();

    for line in [
        format!("STOR {abs}/victim.txt"),
        format!("STOR {abs}/new.txt"),
        "STOR ../bob/b.txt".to_string(),
        "STOR ../../bob/new.txt".to_string(),
        "STOR link_dir/victim.txt".to_string(),
        "STOR link_dir/new.txt".to_string(),
        "STOR rel_link/new.txt".to_string(),
        "APPE link_file".to_string(),
        "APPE link_dir/victim.txt".to_string(),
    ] {
        expect_refused_upload(&mut c, &line, 550);
    }
    c.expect("REST 1", 350);
    expect_refused_upload(&mut c, "STOR link_file", 550);
    for line in [
        "DELE link_dir/victim.txt",
        "DELE ../outside.bin",
        "MKD link_dir/newdir",
        "MKD rel_link/newdir",
        "RMD link_dir/sub",
        "RNFR link_dir/victim.txt",
        "SITE CHMOD 777 link_file",
        "SITE CHMOD 777 link_dir/victim.txt",
        "MFMT 20010203040506 link_dir/victim.txt",
        "CWD link_dir",
    ] {
        c.expect(line, 550);
    }
    c.expect("RNFR mine.txt", 350);
    c.expect("RNTO link_dir/stolen.txt", 550);
    c.expect("RNFR mine.txt", 350);
    c.expect("RNTO rel_link/stolen.txt", 550);
    // ".." stops at alice's root: these land inside it.
    c.expect("RNFR mine.txt", 350);
    c.expect("RNTO ../../moved.txt", 250);
    assert_eq!(fs::read(home.join("moved.txt")).unwrap(), b"mine");
    c.stor("STOR ../../../up.txt", b"up");
    assert_eq!(fs::read(home.join("up.txt")).unwrap(), b"up");
    c.expect("MKD ../made", 257);
    assert!(home.join("made").is_dir());
    // MFMT on a symlink sets the link's own time, never the target's.
    c.cmd("MFMT 20010203040506 link_file");
    // STOR onto a symlink's name may replace the link, but never writes through it.
    if c.upload("STOR link_file", b"through?").is_ok() {
        let meta = fs::symlink_metadata(home.join("link_file")).unwrap();
        assert!(meta.is_file(), "STOR link_file succeeded but left {meta:?}");
        assert_eq!(fs::read(home.join("link_file")).unwrap(), b"through?");
    }
    // DELE of a symlink removes the link itself.
    c.expect("DELE link_dir", 250);
    assert!(fs::symlink_metadata(home.join("link_dir")).is_err());

    let mut outside_after = tree_state(homes);
    outside_after.retain(|k, _| !k.starts_with("alice"));
    assert_eq!(
        outside_after, outside_before,
        "files outside alice's root changed"
    );
}

// ---------------------------------------------------------------------------------------------
// Out-of-order commands and bad names

#[test]
fn bad_sequences() {
    let s = users();
    let mut c = s.connect();
    assert_eq!(c.expect("PASS pw", 503), "Login with USER first.");
    c.login_as("alice", common::USER_PASSWORD);
    for line in ["STOR x", "APPE x", "STOU"] {
        let text = c.expect(line, 425);
        assert!(text.contains("PASV") || text.contains("PORT"), "{text:?}");
    }
    c.expect("RNTO x", 503);
    // One transfer per PASV: the channel is used up by the first STOR.
    c.stor("STOR first", b"1");
    c.expect("STOR second", 425);
    assert!(!s.home("alice").join("second").exists());
    assert!(!s.home("alice").join("x").exists());
}

#[test]
fn overlong_names_are_553() {
    let s = users();
    let mut c = s.login_as("alice");
    let long = "n".repeat(300);
    expect_refused_upload(&mut c, &format!("STOR {long}"), 553);
    c.expect(&format!("MKD {long}"), 553);
    c.stor("STOR short", b"x");
    c.expect("RNFR short", 350);
    c.expect(&format!("RNTO {long}"), 553);
    c.expect("DELE short", 250);
    c.expect("NOOP", 200);
    assert_eq!(fs::read_dir(s.home("alice")).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Temporary files stay out of sight

/// Start `STOR upload.bin` as alice and send 256 KiB; returns the session, the data socket and
/// the temporary file's name.
fn upload_in_progress(s: &UsersServer) -> (Ctrl, TcpStream, String) {
    let home = s.home("alice");
    let mut c = s.login_as("alice");
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    c.send_line(b"STOR upload.bin");
    c.expect_reply(150, "STOR upload.bin");
    data.write_all(&common::pattern(13, 256 << 10)).unwrap();
    let temps = common::temp_files_under(&home);
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert!(temps[0].starts_with(TEMP_PREFIX), "{temps:?}");
    (c, data, temps[0].clone())
}

/// Finish the upload begun by [`upload_in_progress`] and check it arrived whole.
fn finish_upload(s: &UsersServer, mut c: Ctrl, mut data: TcpStream) {
    let body = common::pattern(13, 512 << 10);
    data.write_all(&body[256 << 10..]).unwrap();
    drop(data);
    c.expect_reply(226, "end of STOR upload.bin");
    let home = s.home("alice");
    common::assert_bytes_eq(
        &fs::read(home.join("upload.bin")).unwrap(),
        &body,
        "upload.bin",
    );
    // The rename happened before the 226.
    assert!(common::temp_files_under(&home).is_empty());
}

#[test]
fn temp_files_are_hidden_from_listings() {
    let s = users();
    fs::write(s.home("alice").join("visible.txt"), b"v").unwrap();
    let (c, data, temp) = upload_in_progress(&s);
    let mut other = s.login_as("alice");
    for line in ["LIST", "NLST", "MLSD", "LIST -a", "NLST -a"] {
        let text = other.listing(line);
        assert!(
            !text.contains(TEMP_PREFIX) && !text.contains("upload.bin"),
            "{line} shows an upload in progress: {text:?}"
        );
        assert!(text.contains("visible.txt"), "{line}: {text:?}");
    }
    let stat = other.expect("STAT /", 213);
    assert!(!stat.contains(TEMP_PREFIX), "{stat:?}");
    for line in ["RETR", "LIST", "MLSD"] {
        let err = other
            .transfer(format!("{line} {temp}").as_bytes())
            .expect_err(line);
        assert_eq!(err.0, 550, "{line} {temp}: {err:?}");
    }
    for line in ["SIZE", "MDTM", "MLST", "STAT", "CWD", "RNFR"] {
        other.expect(&format!("{line} {temp}"), 550);
    }
    assert_eq!(
        other.expect("SIZE upload.bin", 550),
        "No such file or directory."
    );
    finish_upload(&s, c, data);
}

/// Temporary names are the server's own: no client may create, change or remove one.
#[test]
fn temp_names_cannot_be_created_or_touched() {
    let s = users();
    let home = s.home("alice");
    fs::write(home.join("plain.txt"), b"plain").unwrap();
    let mut c = s.login_as("alice");
    let fake = format!("{TEMP_PREFIX}0123456789abcdef.x");
    expect_refused_upload(&mut c, &format!("STOR {fake}"), 550);
    expect_refused_upload(&mut c, &format!("APPE {fake}"), 550);
    expect_refused_upload(&mut c, &format!("STOU {fake}"), 550);
    c.expect(&format!("MKD {fake}"), 550);
    c.expect("RNFR plain.txt", 350);
    c.expect(&format!("RNTO {fake}"), 550);
    assert!(home.join("plain.txt").is_file());
    assert!(common::temp_files_under(&home).is_empty());

    // A real upload's temporary file, named by another session of the same user.
    let (mut up, mut data, temp) = upload_in_progress(&s);
    let mut problems = Vec::new();
    // DELE last: it would take the file away from the other two.
    for line in [
        format!("SITE CHMOD 600 {temp}"),
        format!("MFMT 20010203040506 {temp}"),
        format!("DELE {temp}"),
    ] {
        let (code, text) = c.cmd(&line);
        if code != 550 {
            problems.push(format!("{line:?} answered {code} {text:?}, want 550"));
        }
    }
    if !home.join(&temp).exists() {
        problems.push(format!("{temp} was removed by another session"));
    }
    // The upload must still complete.
    let body = common::pattern(13, 512 << 10);
    data.write_all(&body[256 << 10..]).unwrap();
    drop(data);
    let (code, text) = up.read_reply();
    if code != 226 {
        problems.push(format!("the upload then ended with {code} {text:?}"));
    } else if fs::read(home.join("upload.bin")).ok().as_deref() != Some(&body[..]) {
        problems.push("the upload then got 226 but upload.bin is not what was sent".into());
    }
    assert!(
        problems.is_empty(),
        "the temporary file of an upload in progress can be touched by name:\n{}",
        problems.join("\n")
    );
}

#[test]
fn stray_temp_files_are_removed_at_start_up() {
    let homes = tempfile::tempdir().unwrap();
    let root = homes.path().join("alice");
    fs::create_dir_all(root.join("sub")).unwrap();
    let stray = format!("{TEMP_PREFIX}00000000deadbeef.crashed.bin");
    // Left by a server that crashed a while ago.
    let crashed = std::time::SystemTime::now() - Duration::from_secs(600);
    for dir in [root.clone(), root.join("sub")] {
        let mut f = fs::File::create(dir.join(&stray)).unwrap();
        f.write_all(b"half").unwrap();
        f.set_modified(crashed).unwrap();
    }
    fs::write(root.join("real.bin"), b"real").unwrap();
    let users_file = homes.path().join("users.toml");
    common::write_users_file(
        &users_file,
        &[common::UserSpec {
            name: "alice",
            root: &root,
            extra: "access = \"read-write\"",
        }],
    );
    let s = common::start(|c| c.users_file = Some(users_file));
    // The sweep runs beside the listeners, so it may finish after the server is up.
    common::wait_no_temp_files(&root);
    assert_eq!(fs::read(root.join("real.bin")).unwrap(), b"real");
    let mut c = Ctrl::connect(s.addr);
    c.login_as("alice", common::USER_PASSWORD);
    assert_eq!(c.retr("real.bin"), b"real");
}

// ---------------------------------------------------------------------------------------------
// MLSD perm facts follow the user's rights (RFC 3659 section 7.5.5)

#[test]
fn mlsd_perm_facts_follow_the_users_rights() {
    let s = users();
    for user in ["alice", "bob"] {
        fs::write(s.home(user).join("f.txt"), b"f").unwrap();
        fs::create_dir(s.home(user).join("d")).unwrap();
    }
    for (user, file_perm, dir_perm) in [("alice", "adfrw", "cdeflmp"), ("bob", "r", "el")] {
        let mut c = s.login_as(user);
        let mlsd = c.listing("MLSD");
        let facts: BTreeMap<String, String> = common::crlf_lines(&mlsd)
            .into_iter()
            .filter_map(common::parse_facts)
            .map(|(f, n)| (n, f["perm"].clone()))
            .collect();
        assert_eq!(
            (facts["f.txt"].as_str(), facts["d"].as_str()),
            (file_perm, dir_perm),
            "{user}: MLSD perm facts {mlsd:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// suppaftp

/// suppaftp has no read timeouts of its own: give the control socket and every passive data socket
/// one; the watchdog catches hangs in active mode, where suppaftp accepts the data socket itself.
fn suppaftp_login(s: &UsersServer, user: &str) -> FtpStream {
    let ctrl = TcpStream::connect_timeout(&s.addr, TIMEOUT).unwrap();
    ctrl.set_read_timeout(Some(TIMEOUT)).unwrap();
    ctrl.set_write_timeout(Some(TIMEOUT)).unwrap();
    let mut ftp = FtpStream::connect_with_stream(ctrl)
        .expect("greeting")
        .passive_stream_builder(|addr| {
            let d =
                TcpStream::connect_timeout(&addr, TIMEOUT).map_err(FtpError::ConnectionError)?;
            d.set_read_timeout(Some(TIMEOUT))
                .map_err(FtpError::ConnectionError)?;
            d.set_write_timeout(Some(TIMEOUT))
                .map_err(FtpError::ConnectionError)?;
            Ok(d)
        });
    ftp.login(user, common::USER_PASSWORD).expect("login");
    ftp
}

fn status_of(e: &FtpError) -> Option<u32> {
    match e {
        FtpError::UnexpectedResponse(r) => Some(r.status.code()),
        _ => None,
    }
}

fn suppaftp_round_trip(mode: Mode) {
    let _watchdog = Watchdog::arm("a suppaftp upload test", Duration::from_secs(120));
    let s = users();
    let home = s.home("alice");
    let mut ftp = suppaftp_login(&s, "alice");
    ftp.set_mode(mode);
    ftp.transfer_type(FileType::Binary).unwrap();

    let body = common::pattern(14, 3 * MIB + 5);
    let n = ftp.put_file("up.bin", &mut Cursor::new(&body)).unwrap();
    assert_eq!(n, body.len() as u64);
    common::assert_bytes_eq(&fs::read(home.join("up.bin")).unwrap(), &body, "put_file");
    ftp.put_file("empty", &mut Cursor::new(b"")).unwrap();
    assert_eq!(fs::read(home.join("empty")).unwrap(), b"");
    ftp.put_file("ünï côdé.bin", &mut Cursor::new(b"names"))
        .unwrap();
    assert_eq!(fs::read(home.join("ünï côdé.bin")).unwrap(), b"names");

    ftp.append_file("up.bin", &mut Cursor::new(b"tail"))
        .unwrap();
    let mut want = body.clone();
    want.extend_from_slice(b"tail");
    common::assert_bytes_eq(
        &fs::read(home.join("up.bin")).unwrap(),
        &want,
        "append_file",
    );

    let cut = 1_000_003;
    ftp.put_file("resumed.bin", &mut Cursor::new(&body[..cut]))
        .unwrap();
    assert_eq!(ftp.size("resumed.bin").unwrap(), cut);
    ftp.resume_transfer(cut).unwrap();
    ftp.put_file("resumed.bin", &mut Cursor::new(&body[cut..]))
        .unwrap();
    common::assert_bytes_eq(
        &fs::read(home.join("resumed.bin")).unwrap(),
        &body,
        "resume_transfer + put_file",
    );

    ftp.mkdir("dir").unwrap();
    ftp.rename("up.bin", "dir/moved.bin").unwrap();
    assert!(!home.join("up.bin").exists());
    common::assert_bytes_eq(
        &fs::read(home.join("dir/moved.bin")).unwrap(),
        &want,
        "after rename",
    );
    let err = ftp.rmdir("dir").expect_err("RMD of a non-empty directory");
    assert_eq!(status_of(&err), Some(550), "{err}");
    ftp.rm("dir/moved.bin").unwrap();
    ftp.rmdir("dir").unwrap();
    assert!(!home.join("dir").exists());

    ftp.site("CHMOD 640 empty").unwrap();
    assert_eq!(common::mode_of(&home.join("empty")), 0o640);
    ftp.site("UMASK 077").unwrap();
    ftp.put_file("private", &mut Cursor::new(b"p")).unwrap();
    assert_eq!(common::mode_of(&home.join("private")), 0o600);
    let r = ftp
        .custom_command(format!("MFMT {OLD_MTIME_VAL} private"), &[Status::File])
        .unwrap();
    assert_eq!(r.status.code(), 213);
    let t = ftp.mdtm("private").unwrap();
    assert_eq!(t.format("%Y%m%d%H%M%S").to_string(), OLD_MTIME_VAL);

    // An aborted upload leaves the old file.
    let mut stream = ftp.put_with_stream("resumed.bin").unwrap();
    stream.write_all(&vec![0u8; MIB]).unwrap();
    ftp.abort(stream).unwrap();
    common::wait_no_temp_files(&home);
    common::assert_bytes_eq(
        &fs::read(home.join("resumed.bin")).unwrap(),
        &body,
        "after an aborted put",
    );

    // ASCII: suppaftp sends CRLF, the file gets LF.
    ftp.transfer_type(FileType::Ascii(suppaftp::types::FormatControl::Default))
        .unwrap();
    ftp.put_file("text.txt", &mut Cursor::new(b"one\ntwo\n"))
        .unwrap();
    assert_eq!(fs::read(home.join("text.txt")).unwrap(), b"one\ntwo\n");

    let mut names = ftp.nlst(None).unwrap();
    names.sort();
    assert_eq!(
        names,
        [
            "empty",
            "private",
            "resumed.bin",
            "text.txt",
            "ünï côdé.bin"
        ]
    );
    ftp.quit().unwrap();
}

#[test]
fn suppaftp_uploads_passive() {
    suppaftp_round_trip(Mode::Passive);
}

#[test]
fn suppaftp_uploads_extended_passive() {
    suppaftp_round_trip(Mode::ExtendedPassive);
}

#[test]
fn suppaftp_uploads_active() {
    suppaftp_round_trip(Mode::Active);
}

#[test]
fn suppaftp_refusals() {
    let _watchdog = Watchdog::arm("a suppaftp upload test", Duration::from_secs(120));
    let s = users();
    fs::write(s.home("bob").join("f.txt"), b"f").unwrap();
    let mut ftp = suppaftp_login(&s, "bob");
    ftp.transfer_type(FileType::Binary).unwrap();
    let err = ftp
        .put_file("x", &mut Cursor::new(b"x"))
        .expect_err("STOR by a read-only user");
    assert_eq!(status_of(&err), Some(550), "{err}");
    let err = ftp.mkdir("d").expect_err("MKD by a read-only user");
    assert_eq!(status_of(&err), Some(550), "{err}");
    let err = ftp.rename("f.txt", "g.txt").expect_err("RNFR");
    assert_eq!(status_of(&err), Some(550), "{err}");
    assert_eq!(ftp.retr_as_buffer("f.txt").unwrap().into_inner(), b"f");

    let ctrl = TcpStream::connect_timeout(&s.addr, TIMEOUT).unwrap();
    ctrl.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut ftp = FtpStream::connect_with_stream(ctrl).unwrap();
    let err = ftp.login("alice", "wrong").expect_err("wrong password");
    assert_eq!(status_of(&err), Some(530), "{err}");
}

/// Temporary files left by a crash (written before the start) are swept in the background after
/// the listeners are up; a temporary file written since the start (an upload in progress as far
/// as the sweep can tell) is left alone.
#[test]
fn stray_temps_from_before_the_start_are_swept() {
    let stale = ".ringftpd-tmp.00000000000000aa.old.bin";
    let fresh = ".ringftpd-tmp.00000000000000bb.new.bin";
    let s = common::start(|c| {
        let dir = c.root.join("sub");
        std::fs::create_dir(&dir).unwrap();
        let f = std::fs::File::create(dir.join(stale)).unwrap();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        f.set_modified(hour_ago).unwrap();
        // Already there when the sweep looks, but last written after the start (as an upload
        // in progress would be): the time is set ahead so the order cannot be in doubt.
        let f = std::fs::File::create(dir.join(fresh)).unwrap();
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        f.set_modified(soon).unwrap();
    });
    let mut c = s.login();
    // Hidden from clients whether or not the sweep has run yet.
    assert_eq!(c.listing("NLST sub"), "");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.path("sub").join(stale).exists() {
        assert!(
            Instant::now() < deadline,
            "the stale temporary file was never swept"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The sweep is one pass; once the stale file is gone it has looked at the fresh one too.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        s.path("sub").join(fresh).exists(),
        "a fresh temporary file was removed"
    );
}
