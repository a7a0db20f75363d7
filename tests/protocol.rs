//! Raw-socket protocol tests: every reply code the server promises, byte by byte on a real TCP
//! control connection (RFC 959, RFC 2428, RFC 3659), against an in-process server on
//! `127.0.0.1:0`. Each test starts its own server, so the tests run in parallel.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Ctrl, OLD_MTIME, OLD_MTIME_VAL, TIMEOUT, TestServer};
use ringftpd::config::DataPath;

const MIB: usize = 1 << 20;
/// Big enough that the kernel's socket buffers (a few MiB on loopback) cannot hold it all, so a
/// transfer of it is still running when the test acts.
const BIG: u64 = 64 << 20;

fn fixture() -> TestServer {
    let s = common::server();
    s.write_file("hello.txt", b"Hello, world!\n");
    s.mkdir("sub");
    s.write_file("sub/inner.bin", &common::pattern(7, 1000));
    s
}

// ---------------------------------------------------------------------------------------------
// Greeting and login (RFC 959 section 5.4 sequences, RFC 1635 anonymous FTP)

#[test]
fn greeting_is_220() {
    let s = common::server();
    let mut c = Ctrl::connect_raw(s.addr);
    let (code, _) = c.read_reply();
    assert_eq!(code, 220);
}

#[test]
fn anonymous_and_ftp_log_in() {
    let s = common::server();
    for user in ["anonymous", "ftp", "FTP", "Anonymous"] {
        let mut c = s.connect();
        c.expect(&format!("USER {user}"), 331);
        c.expect("PASS whatever@example.com", 230);
        c.expect("PWD", 257);
    }
}

#[test]
fn other_users_get_login_incorrect() {
    let s = common::server();
    let mut c = s.connect();
    c.expect("USER bob", 331);
    let text = c.expect("PASS secret", 530);
    assert_eq!(text, "Login incorrect.");
    // Still not logged in.
    c.expect("PWD", 530);
    // And a proper anonymous login still works on the same connection.
    c.login();
    c.expect("PWD", 257);
}

#[test]
fn pass_before_user_is_503() {
    let s = common::server();
    let mut c = s.connect();
    c.expect("PASS x", 503);
}

#[test]
fn commands_before_login_are_530() {
    let s = fixture();
    let mut c = s.connect();
    for line in [
        "PWD",
        "XPWD",
        "CWD sub",
        "CDUP",
        "LIST",
        "NLST",
        "MLSD",
        "MLST hello.txt",
        "RETR hello.txt",
        "SIZE hello.txt",
        "MDTM hello.txt",
        "PASV",
        "EPSV",
        "PORT 127,0,0,1,200,10",
        "EPRT |1|127.0.0.1|5000|",
        "REST 10",
        "TYPE I",
        "STAT /",
        "STOR x",
    ] {
        let (code, text) = c.cmd(line);
        assert_eq!(code, 530, "{line:?} before login answered {code} {text:?}");
    }
    // The pre-login refusals leave the session usable.
    c.login();
    assert_eq!(c.retr("hello.txt"), b"Hello, world!\n");
}

#[test]
fn acct_after_login_is_202() {
    let s = common::server();
    let mut c = s.login();
    c.expect("ACCT anything", 202);
}

// ---------------------------------------------------------------------------------------------
// Simple informational commands

#[test]
fn syst_is_unix_l8() {
    let s = common::server();
    let mut c = s.login();
    assert_eq!(c.expect("SYST", 215), "UNIX Type: L8");
}

#[test]
fn feat_lists_the_extensions() {
    let s = common::server();
    // FEAT must work before login: clients ask before USER to decide on UTF8 and TLS.
    let mut c = s.connect();
    let text = c.expect("FEAT", 211);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "FEAT must be multi-line: {text:?}");
    assert!(lines.last().unwrap().starts_with("211 "), "{text:?}");
    // RFC 2389 section 3.2: each feature line starts with a single space.
    let feats: Vec<&str> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| l.strip_prefix(' ').unwrap_or("!"))
        .collect();
    for f in &feats {
        assert!(
            !f.starts_with('!') && !f.starts_with(' '),
            "feature line without exactly one leading space in {text:?}"
        );
    }
    for want in [
        "EPRT",
        "EPSV",
        "MDTM",
        "PASV",
        "REST STREAM",
        "SIZE",
        "TVFS",
        "UTF8",
    ] {
        assert!(feats.contains(&want), "FEAT lacks {want:?}: {text:?}");
    }
    let mlst = feats
        .iter()
        .find(|f| f.starts_with("MLST "))
        .unwrap_or_else(|| panic!("FEAT lacks MLST: {text:?}"));
    for fact in [
        "type*;",
        "size*;",
        "modify*;",
        "perm*;",
        "unique*;",
        "UNIX.mode*;",
    ] {
        assert!(mlst.contains(fact), "MLST feature lacks {fact}: {mlst:?}");
    }
}

#[test]
fn opts_utf8_mlst_and_unknown() {
    let s = common::server();
    s.write_file("f.txt", b"12345");
    let mut c = s.login();
    c.expect("OPTS UTF8 ON", 200);
    c.expect("OPTS MLST type;size;", 200);
    c.expect("OPTS FOO", 501);
    // RFC 3659 section 7.9: only the selected facts are returned afterwards.
    let text = c.listing("MLSD");
    let lines = common::crlf_lines(&text);
    let line = lines
        .iter()
        .find(|l| l.ends_with(" f.txt"))
        .unwrap_or_else(|| panic!("no f.txt in {text:?}"));
    let (facts, _) = common::parse_facts(line).unwrap();
    assert_eq!(
        facts.keys().cloned().collect::<Vec<_>>(),
        ["size", "type"],
        "{line:?}"
    );
    assert_eq!(facts["size"], "5");
    // And FEAT marks only those as enabled.
    let feat = c.expect("FEAT", 211);
    let mlst = feat.lines().find(|l| l.starts_with(" MLST ")).unwrap();
    assert!(
        mlst.contains("type*;") && mlst.contains("size*;") && mlst.contains("modify;"),
        "{mlst:?}"
    );
}

#[test]
fn noop_help_and_stat() {
    let s = common::server();
    let mut c = s.login();
    c.expect("NOOP", 200);
    let help = c.expect("HELP", 214);
    assert!(
        help.lines().count() >= 2 && help.lines().last().unwrap().starts_with("214 "),
        "{help:?}"
    );
    assert!(help.contains("RETR") && help.contains("EPSV"), "{help:?}");
    c.expect("HELP RETR", 214);
    let stat = c.expect("STAT", 211);
    assert!(
        stat.lines().count() >= 2 && stat.lines().last().unwrap().starts_with("211 "),
        "{stat:?}"
    );
}

#[test]
fn stat_of_a_path_is_213_with_ls_lines() {
    let s = common::server();
    s.write_file("d/a.txt", b"aaa");
    s.write_file("d/b b.txt", b"bbbbb");
    s.mkdir("d/e");
    let mut c = s.login();
    let text = c.expect("STAT d", 213);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.last().unwrap().starts_with("213 "), "{text:?}");
    let entries: Vec<(String, u64, String)> = lines[1..lines.len() - 1]
        .iter()
        .filter_map(|l| common::parse_list_line(l.trim_start()))
        .collect();
    let find = |n: &str| {
        entries
            .iter()
            .find(|e| e.2 == n)
            .unwrap_or_else(|| panic!("{n} missing in {text:?}"))
    };
    assert_eq!(find("a.txt").1, 3);
    assert!(find("a.txt").0.starts_with('-'));
    assert_eq!(find("b b.txt").1, 5);
    assert!(find("e").0.starts_with('d'));
    // A single file: one ls -l line for it.
    let text = c.expect("STAT d/a.txt", 213);
    assert!(
        text.lines().any(|l| common::parse_list_line(l.trim_start())
            .is_some_and(|e| e.1 == 3 && e.2.ends_with("a.txt"))),
        "{text:?}"
    );
    c.expect("STAT missing", 550);
}

#[test]
fn quit_is_221_and_closes() {
    let s = common::server();
    let mut c = s.login();
    c.expect("QUIT", 221);
    c.assert_closed();
    // Also before login.
    let mut c = s.connect();
    c.expect("QUIT", 221);
    c.assert_closed();
}

#[test]
fn type_mode_stru() {
    let s = common::server();
    let mut c = s.login();
    c.expect("TYPE A", 200);
    c.expect("TYPE A N", 200);
    c.expect("TYPE I", 200);
    c.expect("TYPE L 8", 200);
    c.expect("TYPE E", 504);
    c.expect("TYPE X", 501);
    c.expect("TYPE", 501);
    c.expect("MODE S", 200);
    c.expect("MODE B", 504);
    c.expect("STRU F", 200);
    c.expect("STRU R", 504);
    c.expect("ALLO 1000", 202);
}

#[test]
fn unknown_and_unimplemented_verbs() {
    let s = common::server();
    let mut c = s.login();
    c.expect("XYZZY", 500);
    c.expect("FOO bar", 500);
    c.expect("REIN", 502);
    c.expect("NOOP", 200);
}

#[test]
fn write_commands_are_refused_for_anonymous() {
    let s = fixture();
    let mut c = s.login();
    for line in [
        "STOR new.txt",
        "APPE hello.txt",
        "DELE hello.txt",
        "MKD newdir",
        "RMD sub",
        "RNFR hello.txt",
        "SITE CHMOD 777 hello.txt",
    ] {
        let (code, text) = c.cmd(line);
        assert_eq!(code, 550, "{line:?} answered {code} {text:?}");
    }
    // STOR with a data connection ready: still 550, and nothing was created.
    c.pasv();
    c.expect("STOR new.txt", 550);
    assert!(!s.path("new.txt").exists());
    assert!(s.path("hello.txt").exists() && s.path("sub").is_dir());
}

// ---------------------------------------------------------------------------------------------
// Line framing and hostile input

#[test]
fn overlong_line_is_500_and_the_session_goes_on() {
    let s = common::server();
    let mut c = s.login();
    let mut line = b"NOOP ".to_vec();
    line.resize(5000, b'A');
    c.send_line(&line);
    assert_eq!(c.read_reply(), (500, "Input line too long.".to_string()));
    c.expect("NOOP", 200);
    // A line just under the limit is parsed normally (here: a long missing path).
    let long = format!("CWD {}", "a".repeat(4000));
    c.expect(&long, 550);
    c.expect("PWD", 257);
}

#[test]
fn megabyte_without_newline_gets_one_500() {
    let s = common::server();
    let mut c = s.login();
    // The server must not buffer this; it answers once and drops bytes up to the next LF.
    c.send_raw(&vec![b'X'; MIB]);
    c.send_raw(b"\r\nNOOP\r\n");
    assert_eq!(c.read_reply().0, 500);
    c.expect_reply(200, "NOOP after the overlong line");
    c.expect("SYST", 215);
}

#[test]
fn nul_byte_is_501() {
    let s = fixture();
    let mut c = s.login();
    c.send_line(b"CWD s\0ub");
    assert_eq!(c.read_reply().0, 501);
    c.send_line(b"NOOP\0");
    assert_eq!(c.read_reply().0, 501);
    c.expect("PWD", 257);
}

/// Arguments that are not UTF-8 are names like any other (tests/names.rs has the round trips):
/// missing ones are 550, not a syntax error.
#[test]
fn non_utf8_arguments_are_names_not_syntax_errors() {
    let s = fixture();
    let mut c = s.login();
    c.send_line(b"CWD \xff\xfe");
    assert_eq!(c.read_reply().0, 550);
    c.send_line(b"SIZE caf\xe9.txt");
    assert_eq!(c.read_reply().0, 550);
    c.expect("NOOP", 200);
}

#[test]
fn bare_cr_inside_a_line_is_501() {
    let s = fixture();
    let mut c = s.login();
    c.send_raw(b"CWD s\rub\r\n");
    assert_eq!(c.read_reply().0, 501);
    c.expect("NOOP", 200);
}

#[test]
fn bare_lf_terminates_a_line() {
    let s = common::server();
    let mut c = s.connect();
    c.send_raw(b"USER ftp\nPASS x\n");
    c.expect_reply(331, "USER ended by LF");
    c.expect_reply(230, "PASS ended by LF");
    c.send_raw(b"SYST\n");
    c.expect_reply(215, "SYST ended by LF");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let s = fixture();
    let mut c = s.connect();
    c.send_raw(
        b"USER anonymous\r\nPASS x\r\nCWD sub\r\nPWD\r\nSIZE inner.bin\r\nSYST\r\nCDUP\r\nNOOP\r\n",
    );
    let codes: Vec<u16> = (0..8).map(|_| c.read_reply().0).collect();
    assert_eq!(codes, [331, 230, 250, 257, 213, 215, 250, 200]);
}

/// Lookups pipelined with ABOR between them (each answered from its own lookup, however the
/// shard runs them: on its ring or through the helper pool), many times over.
#[test]
fn pipelined_lookups_and_abor_answer_each_in_turn() {
    let s = fixture();
    let mut c = s.login();
    let size = std::fs::metadata(s.path("hello.txt")).unwrap().len();
    for _ in 0..50 {
        c.send_raw(
            b"SIZE sub/inner.bin\r\nABOR\r\nSIZE hello.txt\r\nSIZE nope\r\nCWD sub\r\nCDUP\r\n",
        );
        let inner = std::fs::metadata(s.path("sub/inner.bin")).unwrap().len();
        assert_eq!(c.read_reply(), (213, inner.to_string()));
        assert_eq!(c.read_reply().0, 225);
        assert_eq!(c.read_reply(), (213, size.to_string()));
        assert_eq!(c.read_reply().0, 550);
        assert_eq!(c.read_reply().0, 250);
        assert_eq!(c.read_reply().0, 250);
    }
}

#[test]
fn half_closed_control_gets_its_reply_then_close() {
    let s = common::server();
    let mut c = s.login();
    c.send_line(b"PWD");
    c.shutdown_write();
    assert_eq!(c.read_reply().0, 257);
    c.assert_closed();
    // Before login too.
    let mut c = s.connect();
    c.send_line(b"SYST");
    c.shutdown_write();
    assert_eq!(c.read_reply().0, 215);
    c.assert_closed();
}

// ---------------------------------------------------------------------------------------------
// Directories and the jail

#[test]
fn pwd_text_and_quote_doubling() {
    let s = common::server();
    s.mkdir("a\"b");
    let mut c = s.login();
    assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    assert_eq!(c.expect("XPWD", 257), "\"/\" is the current directory.");
    c.expect("CWD a\"b", 250);
    // RFC 959 Appendix II: a quote inside the name is doubled.
    assert_eq!(
        c.expect("PWD", 257),
        "\"/a\"\"b\" is the current directory."
    );
}

#[test]
fn cwd_cdup_and_their_x_forms() {
    let s = fixture();
    s.mkdir("sub/deeper");
    let mut c = s.login();
    c.expect("CWD sub", 250);
    assert_eq!(c.expect("PWD", 257), "\"/sub\" is the current directory.");
    c.expect("XCWD deeper", 250);
    assert_eq!(
        c.expect("PWD", 257),
        "\"/sub/deeper\" is the current directory."
    );
    c.expect("CDUP", 250);
    assert_eq!(c.expect("PWD", 257), "\"/sub\" is the current directory.");
    c.expect("XCUP", 250);
    assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    c.expect("CDUP", 250); // at the root, CDUP stays there
    assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    c.expect("CWD missing", 550);
    c.expect("CWD hello.txt", 550);
    c.expect("CWD /sub/deeper", 250);
    c.expect("CWD /", 250);
    assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    // A failed CWD leaves the directory unchanged.
    c.expect("CWD sub", 250);
    c.expect("CWD nowhere", 550);
    assert_eq!(c.expect("PWD", 257), "\"/sub\" is the current directory.");
}

#[test]
fn dot_dot_cannot_leave_the_root() {
    let s = fixture();
    let mut c = s.login();
    c.expect("CWD ../../..", 250);
    assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    c.expect("CWD /../../../..", 250);
    assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    c.expect("CWD sub/../../..", 250);
    assert_eq!(c.expect("PWD", 257), "\"/\" is the current directory.");
    for line in [
        "RETR ../../etc/passwd",
        "RETR /../../../etc/passwd",
        "SIZE ../../etc/passwd",
        "MDTM ../../../etc/passwd",
    ] {
        let code = if line.starts_with("RETR") {
            c.transfer(line.as_bytes()).expect_err(line).0
        } else {
            c.cmd(line).0
        };
        assert_eq!(code, 550, "{line:?}");
    }
    // "../hello.txt" from /sub lands on /hello.txt, inside the root.
    c.expect("CWD sub", 250);
    assert_eq!(c.retr("../hello.txt"), b"Hello, world!\n");
    assert_eq!(c.retr("../../../hello.txt"), b"Hello, world!\n");
}

#[test]
fn symlinks_leading_out_of_the_root_are_not_served() {
    let s = fixture();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"top secret").unwrap();
    s.symlink("/etc/passwd", "passwd_link");
    s.symlink("/etc", "etc_link");
    // A relative link climbing out of the root into a sibling directory.
    let sibling = outside.path().file_name().unwrap().to_str().unwrap();
    let rel_target = format!("../{sibling}/secret.txt");
    assert!(
        s.path(&rel_target).exists(),
        "the relative link target must exist for the test to mean anything"
    );
    s.symlink(&rel_target, "rel_link");
    // A link that stays inside is fine.
    s.symlink("hello.txt", "inside_link");

    let mut c = s.login();
    for line in [
        "RETR passwd_link",
        "RETR etc_link/passwd",
        "RETR rel_link",
        "RETR /etc_link/hostname",
    ] {
        let err = c.transfer(line.as_bytes()).expect_err(line);
        assert_eq!(err.0, 550, "{line:?}: {err:?}");
    }
    for line in [
        "SIZE passwd_link",
        "MDTM passwd_link",
        "SIZE rel_link",
        "CWD etc_link",
        "CWD rel_link",
    ] {
        let (code, text) = c.cmd(line);
        assert_eq!(code, 550, "{line:?} answered {code} {text:?}");
    }
    // MLST may refuse, or describe the link itself, but never as a readable file.
    let (code, text) = c.cmd("MLST passwd_link");
    if code == 250 {
        let entry = text.lines().nth(1).unwrap_or("").trim_start();
        let (facts, _) = common::parse_facts(entry).unwrap_or_else(|| panic!("{text:?}"));
        assert!(
            facts.get("type").is_some_and(|t| t != "file") && !facts.contains_key("size"),
            "{text:?}"
        );
    } else {
        assert_eq!(code, 550, "{text:?}");
    }
    // Listing the link to /etc may fail or show the link itself, never what is in /etc.
    for line in ["LIST etc_link", "NLST etc_link", "MLSD etc_link"] {
        match c.transfer(line.as_bytes()) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !["passwd", "hostname", "os-release", "group"]
                        .iter()
                        .any(|n| text.contains(n)),
                    "{line:?} listed the directory outside the root: {text:?}"
                );
            }
            Err((code, text)) => assert!(code == 550 || code == 501, "{line:?}: {code} {text:?}"),
        }
    }
    assert_eq!(c.retr("inside_link"), b"Hello, world!\n");

    // Listed as links, never as retrievable files.
    let mlsd = c.listing("MLSD");
    for name in ["passwd_link", "etc_link", "rel_link"] {
        let line = common::crlf_lines(&mlsd)
            .into_iter()
            .find(|l| common::parse_facts(l).is_some_and(|(_, n)| n == name))
            .unwrap_or_else(|| panic!("{name} not in MLSD {mlsd:?}"));
        let (facts, _) = common::parse_facts(line).unwrap();
        let ty = facts.get("type").map(String::as_str).unwrap_or("");
        assert!(
            ty != "file" && ty != "dir",
            "{name} shown as {ty}: {line:?}"
        );
        assert!(
            !facts
                .get("perm")
                .is_some_and(|p| p.contains('r') || p.contains('e') || p.contains('l')),
            "{line:?}"
        );
        assert!(!facts.contains_key("size"), "{line:?}");
    }
    let list = c.listing("LIST");
    assert!(
        !list.contains("/etc/passwd") && !list.contains(sibling),
        "LIST reveals a link target: {list:?}"
    );
    for l in common::crlf_lines(&list) {
        let (perms, _, name) =
            common::parse_list_line(l).unwrap_or_else(|| panic!("bad LIST line {l:?}"));
        if ["passwd_link", "etc_link", "rel_link"].contains(&name.as_str()) {
            assert!(perms.starts_with('l'), "{l:?}");
        }
    }
}

#[test]
fn names_with_spaces_and_utf8() {
    let s = common::server();
    let body = "un café, s'il vous plaît\n".as_bytes();
    s.write_file("dir with space/é.txt", body);
    s.write_file("dir with space/a;b c.txt", b"semicolon");
    let mut c = s.login();
    c.expect("OPTS UTF8 ON", 200);
    assert_eq!(c.retr("dir with space/é.txt"), body);
    assert_eq!(
        c.expect("SIZE dir with space/é.txt", 213),
        body.len().to_string()
    );
    c.expect("CWD dir with space", 250);
    assert_eq!(
        c.expect("PWD", 257),
        "\"/dir with space\" is the current directory."
    );
    assert_eq!(c.retr("é.txt"), body);
    assert_eq!(c.retr("a;b c.txt"), b"semicolon");
    let names: BTreeSet<String> = common::crlf_lines(&c.listing("NLST"))
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["a;b c.txt".to_string(), "é.txt".to_string()])
    );
    let mlsd = c.listing("MLSD");
    let mlsd_names: BTreeSet<String> = common::crlf_lines(&mlsd)
        .into_iter()
        .filter_map(common::parse_facts)
        .filter(|(f, _)| f.get("type").is_some_and(|t| t == "file"))
        .map(|(_, n)| n)
        .collect();
    assert_eq!(mlsd_names, names, "{mlsd:?}");
    let list = c.listing("LIST");
    let list_names: BTreeSet<String> = common::crlf_lines(&list)
        .into_iter()
        .filter_map(common::parse_list_line)
        .map(|e| e.2)
        .collect();
    assert_eq!(list_names, names, "{list:?}");
    let mlst = c.expect("MLST é.txt", 250);
    assert!(mlst.contains("/dir with space/é.txt"), "{mlst:?}");
}

// ---------------------------------------------------------------------------------------------
// SIZE, MDTM, listings

#[test]
fn size_and_mdtm() {
    let s = fixture();
    s.write_file("old.bin", &common::pattern(1, 4321));
    s.set_mtime("old.bin", OLD_MTIME);
    let mut c = s.login();
    assert_eq!(c.expect("SIZE old.bin", 213), "4321");
    assert_eq!(c.expect("SIZE /sub/inner.bin", 213), "1000");
    c.expect("SIZE sub", 550);
    c.expect("SIZE missing", 550);
    assert_eq!(c.expect("MDTM old.bin", 213), OLD_MTIME_VAL);
    c.expect("MDTM missing", 550);
    let now = c.expect("MDTM hello.txt", 213);
    assert!(
        now.len() == 14 && now.bytes().all(|b| b.is_ascii_digit()),
        "{now:?}"
    );
}

#[test]
fn list_is_ls_l_with_crlf() {
    let s = fixture();
    s.write_file("old.bin", &common::pattern(1, 4321));
    s.set_mtime("old.bin", OLD_MTIME);
    let mut c = s.login();
    let text = c.listing("LIST");
    let lines = common::crlf_lines(&text);
    let entries: Vec<(String, u64, String)> = lines
        .iter()
        .map(|l| common::parse_list_line(l).unwrap_or_else(|| panic!("not an ls -l line: {l:?}")))
        .collect();
    let get = |n: &str| {
        entries
            .iter()
            .find(|e| e.2 == n)
            .unwrap_or_else(|| panic!("{n} missing from {text:?}"))
            .clone()
    };
    assert_eq!(get("hello.txt").1, 14);
    assert_eq!(get("hello.txt").0, "-rw-r--r--");
    assert_eq!(get("sub").0, "drwxr-xr-x");
    assert_eq!(get("old.bin").1, 4321);
    let old = lines.iter().find(|l| l.ends_with(" old.bin")).unwrap();
    assert!(
        old.contains("Feb  3  2001"),
        "old files show the year like ls: {old:?}"
    );
    assert!(
        !entries.iter().any(|e| e.2 == "." || e.2 == ".."),
        "{text:?}"
    );
    // -l changes nothing (LIST is long already), -a adds "." and ".." first (tests/names.rs has
    // the rest of the options); a path argument lists that directory.
    assert_eq!(c.listing("LIST -l"), text);
    let all = c.listing("LIST -la");
    let names: Vec<String> = common::crlf_lines(&all)
        .into_iter()
        .filter_map(common::parse_list_line)
        .map(|e| e.2)
        .collect();
    assert_eq!(names[..2], [".", ".."], "{all:?}");
    assert_eq!(names.len(), entries.len() + 2, "{all:?}");
    let sub = c.listing("LIST sub");
    let sub_entries: Vec<_> = common::crlf_lines(&sub)
        .into_iter()
        .filter_map(common::parse_list_line)
        .collect();
    assert_eq!(sub_entries.len(), 1, "{sub:?}");
    assert_eq!(
        (sub_entries[0].1, sub_entries[0].2.as_str()),
        (1000, "inner.bin")
    );
    let err = c
        .transfer(b"LIST missing")
        .expect_err("LIST of a missing directory");
    assert_eq!(err.0, 550, "{err:?}");
}

#[test]
fn nlst_is_bare_names() {
    let s = fixture();
    let mut c = s.login();
    let text = c.listing("NLST");
    let names: BTreeSet<&str> = common::crlf_lines(&text).into_iter().collect();
    assert_eq!(names, BTreeSet::from(["hello.txt", "sub"]), "{text:?}");
    let text = c.listing("NLST sub");
    let lines = common::crlf_lines(&text);
    assert!(
        lines == ["inner.bin"] || lines == ["sub/inner.bin"],
        "{text:?}"
    );
}

#[test]
fn mlsd_facts() {
    let s = fixture();
    s.write_file("old.bin", &common::pattern(1, 4321));
    s.set_mtime("old.bin", OLD_MTIME);
    let mut c = s.login();
    let text = c.listing("MLSD");
    let mut seen = BTreeSet::new();
    for line in common::crlf_lines(&text) {
        let (facts, name) =
            common::parse_facts(line).unwrap_or_else(|| panic!("bad MLSD line {line:?}"));
        let ty = facts
            .get("type")
            .unwrap_or_else(|| panic!("no type fact: {line:?}"));
        if ty == "cdir" || ty == "pdir" {
            continue;
        }
        assert!(
            !line.starts_with(' '),
            "MLSD lines have no leading space: {line:?}"
        );
        for key in ["modify", "perm", "unique", "unix.mode"] {
            assert!(facts.contains_key(key), "{key} missing: {line:?}");
        }
        assert_eq!(facts["modify"].len(), 14, "{line:?}");
        match name.as_str() {
            "old.bin" => {
                assert_eq!(ty, "file");
                assert_eq!(facts["size"], "4321");
                assert_eq!(facts["modify"], OLD_MTIME_VAL);
                assert_eq!(facts["perm"], "r");
                assert_eq!(facts["unix.mode"], "0644");
            }
            "hello.txt" => {
                assert_eq!(ty, "file");
                assert_eq!(facts["size"], "14");
            }
            "sub" => {
                assert_eq!(ty, "dir");
                assert!(
                    facts["perm"].contains('e') && facts["perm"].contains('l'),
                    "{line:?}"
                );
                assert_eq!(facts["unix.mode"], "0755");
            }
            other => panic!("unexpected entry {other:?} in {text:?}"),
        }
        seen.insert(name);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["hello.txt".into(), "old.bin".into(), "sub".into()])
    );
    // The unique fact tells the two files apart.
    let uniques: BTreeSet<String> = common::crlf_lines(&text)
        .into_iter()
        .filter_map(common::parse_facts)
        .filter_map(|(f, _)| f.get("unique").cloned())
        .collect();
    assert!(uniques.len() >= 3, "{text:?}");
    // MLSD of a file is 501 (RFC 3659 section 7.2.1), of a missing path 550.
    let err = c.transfer(b"MLSD hello.txt").expect_err("MLSD of a file");
    assert_eq!(err.0, 501, "{err:?}");
    let err = c
        .transfer(b"MLSD missing")
        .expect_err("MLSD of a missing path");
    assert_eq!(err.0, 550, "{err:?}");
}

#[test]
fn mlst_is_250_multi_line() {
    let s = fixture();
    s.write_file("old.bin", &common::pattern(1, 4321));
    s.set_mtime("old.bin", OLD_MTIME);
    let mut c = s.login();
    let text = c.expect("MLST old.bin", 250);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert!(lines[2].starts_with("250 "), "{text:?}");
    // RFC 3659 section 7.2: the facts line starts with one space and names the full path.
    let entry = lines[1]
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no leading space: {text:?}"));
    let (facts, name) = common::parse_facts(entry).unwrap();
    assert_eq!(name, "/old.bin");
    assert_eq!(facts["type"], "file");
    assert_eq!(facts["size"], "4321");
    assert_eq!(facts["modify"], OLD_MTIME_VAL);
    let text = c.expect("MLST sub", 250);
    let entry = text.lines().nth(1).unwrap().trim_start();
    assert_eq!(common::parse_facts(entry).unwrap().0["type"], "dir");
    c.expect("CWD sub", 250);
    let text = c.expect("MLST", 250);
    assert!(
        text.lines().nth(1).unwrap().ends_with(" /sub"),
        "MLST without argument describes the cwd: {text:?}"
    );
    c.expect("MLST missing", 550);
}

// ---------------------------------------------------------------------------------------------
// Data connections: PASV, EPSV, PORT, EPRT

#[test]
fn pasv_and_epsv_replies() {
    let s = fixture();
    let mut c = s.login();
    let text = c.expect("PASV", 227);
    let addr = common::parse_pasv(&text)
        .unwrap_or_else(|| panic!("227 without (h1,h2,h3,h4,p1,p2): {text:?}"));
    // The passive listener is on the address the client already reached.
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    let text = c.expect("EPSV", 229);
    assert!(text.contains("(|||") && text.ends_with("|)"), "{text:?}");
    let port = common::parse_epsv(&text).unwrap();
    assert_ne!(port, 0);
    c.expect("EPSV 1", 229);
    c.expect("EPSV 2", 522);
    // Each setup works for a transfer.
    let a = c.pasv();
    let d = common::data_connect(a);
    assert_eq!(
        c.transfer_on(d, b"RETR hello.txt").unwrap(),
        b"Hello, world!\n"
    );
}

#[test]
fn epsv_all_locks_out_other_setups() {
    let s = fixture();
    let mut c = s.login();
    c.expect("EPSV ALL", 200);
    c.expect("PASV", 503);
    c.expect("PORT 127,0,0,1,200,10", 503);
    c.expect("EPRT |1|127.0.0.1|5000|", 503);
    assert_eq!(c.retr("hello.txt"), b"Hello, world!\n");
}

#[test]
fn bounce_and_malformed_port_arguments() {
    let s = fixture();
    let mut c = s.login();
    c.expect("PORT 10,0,0,1,200,10", 504);
    c.expect("PORT 127,0,0,2,200,10", 504);
    c.expect("PORT 127,0,0,1,0,21", 504);
    c.expect("PORT 127,0,0,1,3,255", 504); // 1023
    c.expect("EPRT |1|10.0.0.1|5000|", 504);
    c.expect("EPRT |1|127.0.0.1|80|", 504);
    c.expect("EPRT |2|::1|5000|", 504);
    c.expect("PORT 127,0,0,1", 501);
    c.expect("PORT 127,0,0,1,300,10", 501);
    c.expect("PORT a,b,c,d,e,f", 501);
    c.expect("PORT", 501);
    c.expect("EPRT |1|127.0.0.1|", 501);
    c.expect("EPRT |3|127.0.0.1|5000|", 522);
    // None of the refused commands set up a data channel.
    c.expect("RETR hello.txt", 425);
}

#[test]
fn retr_without_data_setup_is_425() {
    let s = fixture();
    let mut c = s.login();
    c.expect("RETR hello.txt", 425);
    c.expect("LIST", 425);
    // A PASV channel is used up by one transfer.
    assert_eq!(c.retr("hello.txt"), b"Hello, world!\n");
    c.expect("RETR hello.txt", 425);
}

#[test]
fn retr_errors() {
    let s = fixture();
    let mut c = s.login();
    let err = c.transfer(b"RETR missing.txt").expect_err("missing file");
    assert_eq!(err.0, 550, "{err:?}");
    let err = c.transfer(b"RETR sub").expect_err("directory");
    assert_eq!(err.0, 550, "{err:?}");
    let err = c.transfer(b"RETR /").expect_err("root");
    assert_eq!(err.0, 550, "{err:?}");
    assert_eq!(c.retr("hello.txt"), b"Hello, world!\n");
}

fn active_download(eprt: bool) {
    let s = common::server();
    let body = common::pattern(11, 3 * MIB + 17);
    s.write_file("active.bin", &body);
    let mut c = s.login();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    if eprt {
        c.expect(&format!("EPRT {}", common::eprt_arg(addr)), 200);
    } else {
        c.expect(&format!("PORT {}", common::port_arg(addr)), 200);
    }
    c.send_line(b"RETR active.bin");
    let mut data = common::accept_within(&listener);
    // The server connects from the address the client reached it on.
    assert_eq!(data.peer_addr().unwrap().ip(), s.addr.ip());
    c.expect_reply(150, "RETR in active mode");
    let got = common::read_all(&mut data);
    drop(data);
    c.expect_reply(226, "end of the active transfer");
    common::assert_bytes_eq(&got, &body, "active-mode RETR");
    // Listings work actively too.
    c.expect(&format!("PORT {}", common::port_arg(addr)), 200);
    c.send_line(b"NLST");
    let mut data = common::accept_within(&listener);
    c.expect_reply(150, "NLST in active mode");
    assert_eq!(common::read_all(&mut data), b"active.bin\r\n");
    drop(data);
    c.expect_reply(226, "end of the active listing");
}

#[test]
fn port_active_download() {
    active_download(false);
}

#[test]
fn eprt_active_download() {
    active_download(true);
}

#[test]
fn active_connect_refused_is_425() {
    let s = fixture();
    let mut c = s.login();
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    c.expect(
        &format!("PORT 127,0,0,1,{},{}", port >> 8, port & 0xff),
        200,
    );
    c.send_line(b"RETR hello.txt");
    let (code, text) = c.read_reply();
    let (code, text) = if code == 150 {
        c.read_reply()
    } else {
        (code, text)
    };
    assert_eq!(code, 425, "{text:?}");
    c.expect("NOOP", 200);
}

#[test]
fn passive_connection_never_made_times_out_with_425() {
    let s = common::start(|c| c.data_timeout = std::time::Duration::from_secs(1));
    s.write_file("f", b"x");
    let mut c = s.login();
    c.pasv();
    c.send_line(b"RETR f");
    // data_timeout is 1 s; TIMEOUT (10 s) bounds the wait.
    let (code, text) = c.read_reply();
    let (code, text) = if code == 150 {
        c.read_reply()
    } else {
        (code, text)
    };
    assert_eq!(code, 425, "{text:?}");
    c.expect("NOOP", 200);
}

/// A passive port is reachable by anyone who can reach the server; a connection from an address
/// other than the control connection's peer must not get the file (RFC 2577 section 5, "port
/// stealing"). On loopback, every 127.0.0.0/8 address is local, so binding the thief's socket to
/// 127.0.0.2 makes an honest foreign peer.
#[test]
fn data_connection_from_another_ip_is_refused() {
    let s = common::server();
    let body = common::pattern(5, 100_000);
    s.write_file("f.bin", &body);
    let mut c = s.login();
    let pasv = c.pasv();
    let thief = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Err(e) = thief.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into()) {
        eprintln!(
            "skipping: cannot bind 127.0.0.2 ({e}); no second local address to steal the port from"
        );
        return;
    }
    thief
        .connect_timeout(&pasv.into(), TIMEOUT)
        .expect("the TCP handshake completes from the backlog");
    let mut thief: TcpStream = thief.into();
    thief.set_read_timeout(Some(TIMEOUT)).unwrap();
    // The legitimate client connects after the thief.
    let mut data = common::data_connect(pasv);
    c.send_line(b"RETR f.bin");
    let (code, text) = c.read_reply();
    if code == 150 {
        let got = common::read_all(&mut data);
        drop(data);
        c.expect_reply(226, "transfer to the legitimate peer");
        common::assert_bytes_eq(&got, &body, "RETR after a refused thief");
    } else {
        // Refusing the whole transfer (as vsftpd does: "425 Security: Bad IP connecting.") is fine too.
        assert_eq!(code, 425, "{text:?}");
    }
    let mut stolen = Vec::new();
    match thief.read_to_end(&mut stolen) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) if common::is_timeout(&e) => {} // never accepted and never closed: still no data
        Err(e) => panic!("thief read: {e}"),
    }
    assert!(
        stolen.is_empty(),
        "a foreign peer received {} bytes of the file",
        stolen.len()
    );
    c.expect("NOOP", 200);
}

// ---------------------------------------------------------------------------------------------
// Transfers: sizes, data paths, REST, TYPE A

#[test]
fn zero_byte_file() {
    let s = common::server();
    s.write_file("empty", b"");
    let mut c = s.login();
    assert_eq!(c.retr("empty"), b"");
    assert_eq!(c.expect("SIZE empty", 213), "0");
    c.expect("TYPE A", 200);
    assert_eq!(c.retr("empty"), b"");
}

fn byte_exact(path: DataPath) {
    let s = common::start(|c| c.data_path = path);
    let sizes = [1, 4095, 4096, 4097, 65_536, 1 << 20, 5 * MIB + 123];
    for (i, &len) in sizes.iter().enumerate() {
        s.write_file(&format!("f{i}.bin"), &common::pattern(i as u64, len));
    }
    let mut c = s.login();
    for (i, &len) in sizes.iter().enumerate() {
        let got = c.retr(&format!("f{i}.bin"));
        common::assert_bytes_eq(
            &got,
            &common::pattern(i as u64, len),
            &format!("{path:?} f{i}.bin"),
        );
    }
    // With PASV as well as EPSV.
    let a = c.pasv();
    let d = common::data_connect(a);
    let got = c.transfer_on(d, b"RETR f6.bin").unwrap();
    common::assert_bytes_eq(&got, &common::pattern(6, sizes[6]), "PASV RETR");
}

#[test]
fn sendfile_path_is_byte_exact() {
    byte_exact(DataPath::Sendfile);
}

#[test]
fn copy_path_is_byte_exact() {
    byte_exact(DataPath::Copy);
}

fn rest_resume(path: DataPath) {
    let s = common::start(|c| c.data_path = path);
    let body = common::pattern(3, 2 * MIB + 5);
    s.write_file("r.bin", &body);
    let mut c = s.login();
    for offset in [0usize, 1, 1000, MIB + 7, body.len() - 1, body.len()] {
        let addr = c.epsv();
        let d = common::data_connect(addr);
        c.expect(&format!("REST {offset}"), 350);
        let got = c
            .transfer_on(d, b"RETR r.bin")
            .unwrap_or_else(|e| panic!("REST {offset}: {e:?}"));
        common::assert_bytes_eq(&got, &body[offset..], &format!("{path:?} REST {offset}"));
    }
    // REST applies to the next RETR only.
    c.expect("REST 100", 350);
    common::assert_bytes_eq(&c.retr("r.bin"), &body[100..], "RETR right after REST 100");
    common::assert_bytes_eq(&c.retr("r.bin"), &body, "the RETR after that");
    c.expect("REST abc", 501);
    c.expect("REST -5", 501);
}

#[test]
fn rest_resume_sendfile() {
    rest_resume(DataPath::Sendfile);
}

#[test]
fn rest_resume_copy() {
    rest_resume(DataPath::Copy);
}

#[test]
fn ascii_mode_converts_lf_to_crlf() {
    let s = common::server();
    s.write_file("small.txt", b"line1\nline2\n\nend");
    // Big enough to span many send chunks, so a conversion bug at a chunk edge shows up.
    let (lf, crlf) = common::lf_text(9, 3 * MIB);
    s.write_file("big.txt", &lf);
    let mut c = s.login();
    c.expect("TYPE A", 200);
    assert_eq!(c.retr("small.txt"), b"line1\r\nline2\r\n\r\nend");
    common::assert_bytes_eq(&c.retr("big.txt"), &crlf, "TYPE A RETR of 3 MiB");
    c.expect("TYPE I", 200);
    assert_eq!(c.retr("small.txt"), b"line1\nline2\n\nend");
    // Listings are sent with CRLF whatever the type.
    c.expect("TYPE A", 200);
    assert_eq!(c.listing("NLST"), "big.txt\r\nsmall.txt\r\n");
}

#[test]
fn ascii_mode_with_the_copy_path() {
    let s = common::start(|c| c.data_path = DataPath::Copy);
    let (lf, crlf) = common::lf_text(10, MIB + 3);
    s.write_file("t.txt", &lf);
    let mut c = s.login();
    c.expect("TYPE A", 200);
    common::assert_bytes_eq(&c.retr("t.txt"), &crlf, "TYPE A RETR, copy path");
}

// ---------------------------------------------------------------------------------------------
// Aborts, disconnects, files that change underneath

/// Start RETR of a big file and read `first` bytes of it; returns the data socket.
fn start_big_retr(c: &mut Ctrl, name: &str, first: usize) -> TcpStream {
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    c.send_line(format!("RETR {name}").as_bytes());
    c.expect_reply(150, "RETR of the big file");
    let mut buf = vec![0u8; first];
    data.read_exact(&mut buf)
        .expect("read the start of the transfer");
    data
}

fn abor_mid_transfer(path: DataPath) {
    let s = common::start(|c| c.data_path = path);
    s.sparse_file("big", BIG);
    s.write_file("small", b"after abort");
    let mut c = s.login();
    let mut data = start_big_retr(&mut c, "big", 64 << 10);
    c.send_line(b"ABOR");
    // RFC 959 section 4.1.3: 426 for the aborted transfer, then 226 for the ABOR.
    c.expect_reply(426, "first reply to ABOR during a transfer");
    c.expect_reply(226, "second reply to ABOR during a transfer");
    let rest = common::drain(&mut data);
    assert!(
        ((64 << 10) + rest as u64) < BIG,
        "the whole file arrived despite ABOR"
    );
    c.expect("NOOP", 200);
    assert_eq!(c.retr("small"), b"after abort");
}

#[test]
fn abor_mid_transfer_sendfile() {
    abor_mid_transfer(DataPath::Sendfile);
}

#[test]
fn abor_mid_transfer_copy() {
    abor_mid_transfer(DataPath::Copy);
}

#[test]
fn abor_without_transfer_is_225() {
    let s = common::server();
    let mut c = s.login();
    c.expect("ABOR", 225);
    c.pasv();
    c.expect("ABOR", 225);
    c.expect("NOOP", 200);
}

/// RFC 959 section 4.1.3: ABOR may come after Telnet IP and Synch.
#[test]
fn abor_after_telnet_ip_and_synch() {
    let s = common::server();
    s.sparse_file("big", BIG);
    let mut c = s.login();
    let mut data = start_big_retr(&mut c, "big", 64 << 10);
    c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n");
    c.expect_reply(426, "first reply to IAC IP IAC DM ABOR");
    c.expect_reply(226, "second reply to IAC IP IAC DM ABOR");
    common::drain(&mut data);
    c.expect("NOOP", 200);
}

/// Python's ftplib (and other clients) send "ABOR\r\n" with MSG_OOB, which makes the final LF
/// TCP urgent data; a server that does not read urgent data inline never sees the end of the line.
#[test]
fn abor_sent_as_urgent_data() {
    let s = common::server();
    s.sparse_file("big", BIG);
    let mut c = s.login();
    let mut data = start_big_retr(&mut c, "big", 64 << 10);
    socket2::SockRef::from(c.stream())
        .send_out_of_band(b"ABOR\r\n")
        .unwrap();
    c.expect_reply(426, "first reply to an urgent ABOR");
    c.expect_reply(226, "second reply to an urgent ABOR");
    common::drain(&mut data);
    c.expect("NOOP", 200);
}

#[test]
fn data_connection_reset_mid_transfer_is_426() {
    let s = common::server();
    s.sparse_file("big", BIG);
    s.write_file("small", b"still here");
    let mut c = s.login();
    let data = start_big_retr(&mut c, "big", 64 << 10);
    // Closing with unread data makes the kernel send RST: the server's next send fails.
    drop(data);
    c.expect_reply(426, "after the client reset the data connection");
    c.expect("NOOP", 200);
    assert_eq!(c.retr("small"), b"still here");
}

#[test]
fn client_vanishing_mid_transfer_does_not_hurt_the_server() {
    let s = common::server();
    s.sparse_file("big", BIG);
    s.write_file("small", b"next session");
    for _ in 0..2 {
        let mut c = s.login();
        let data = start_big_retr(&mut c, "big", 64 << 10);
        drop(data);
        drop(c);
    }
    // Control connection gone, data connection still open and unread.
    let mut c = s.login();
    let data = start_big_retr(&mut c, "big", 1 << 10);
    drop(c);
    let mut c = s.login();
    assert_eq!(c.retr("small"), b"next session");
    drop(data);
    let mut c2 = s.login();
    assert_eq!(c2.retr("small"), b"next session");
    c.expect("QUIT", 221);
    // Stopping with everything torn down must not hang (the watchdog in TestServer aborts if so).
    s.stop();
}

fn shrinking_file(path: DataPath) {
    let s = common::start(|c| c.data_path = path);
    let file = s.sparse_file("shrinks", BIG);
    let mut c = s.login();
    let pasv = c.epsv();
    // A small receive window keeps the server far behind the end of the file.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&pasv.into(), TIMEOUT).unwrap();
    let mut data: TcpStream = sock.into();
    data.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send_line(b"RETR shrinks");
    c.expect_reply(150, "RETR of the file that will shrink");
    let mut buf = vec![0u8; 16 << 10];
    data.read_exact(&mut buf).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    let rest = common::drain(&mut data);
    let total = buf.len() as u64 + rest as u64;
    let (code, text) = c.read_reply();
    if total == BIG {
        assert_eq!(code, 226, "all data arrived: {text:?}");
    } else {
        assert_eq!(
            code, 451,
            "{path:?}: file shrank after {total} of {BIG} bytes, reply {text:?}"
        );
    }
    c.expect("NOOP", 200);
}

#[test]
fn file_shrinking_during_transfer_is_451_sendfile() {
    shrinking_file(DataPath::Sendfile);
}

#[test]
fn file_shrinking_during_transfer_is_451_copy() {
    shrinking_file(DataPath::Copy);
}

#[test]
fn commands_sent_during_a_transfer_are_answered_after_it() {
    let s = common::server();
    let body = common::pattern(21, 4 * MIB);
    s.write_file("f.bin", &body);
    let mut c = s.login();
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    c.send_line(b"RETR f.bin");
    c.expect_reply(150, "RETR");
    // Queued behind the transfer; RFC 959 replies keep their order.
    c.send_line(b"NOOP");
    c.send_line(b"PWD");
    let got = common::read_all(&mut data);
    drop(data);
    common::assert_bytes_eq(&got, &body, "RETR with commands queued behind it");
    c.expect_reply(226, "end of transfer");
    c.expect_reply(200, "queued NOOP");
    c.expect_reply(257, "queued PWD");
}

// ---------------------------------------------------------------------------------------------
// Sessions, shards, limits

#[test]
fn many_concurrent_sessions_across_shards() {
    let s = common::server();
    for i in 0..8u64 {
        s.write_file(
            &format!("f{i}"),
            &common::pattern(100 + i, 256 * 1024 + i as usize),
        );
    }
    let addr = s.addr;
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            scope.spawn(move || {
                let mut c = Ctrl::connect(addr);
                c.login();
                for k in 0..4u64 {
                    let i = (t + k) % 8;
                    let got = c.retr(&format!("f{i}"));
                    common::assert_bytes_eq(
                        &got,
                        &common::pattern(100 + i, 256 * 1024 + i as usize),
                        "concurrent RETR",
                    );
                }
                c.expect("QUIT", 221);
            });
        }
    });
}

#[test]
fn idle_session_is_closed_with_421() {
    let s = common::start(|c| c.idle_timeout = std::time::Duration::from_secs(1));
    let mut c = s.connect();
    // No command: the server must close within idle_timeout plus its timer granularity.
    let (code, text) = c.read_reply();
    assert_eq!(code, 421, "{text:?}");
    c.assert_closed();
}

#[test]
fn sessions_over_the_limit_get_421() {
    let s = common::start(|c| c.max_sessions = 2);
    let mut a = s.login();
    let mut b = s.login();
    let mut third = Ctrl::connect_raw(s.addr);
    let (code, text) = third.read_reply();
    assert_eq!(code, 421, "{text:?}");
    third.assert_closed();
    a.expect("NOOP", 200);
    b.expect("NOOP", 200);
}

#[test]
fn ipv6_login_epsv_eprt_retr() {
    if !common::ipv6_loopback_available() {
        eprintln!("skipping: cannot bind [::1]:0 on this machine (no IPv6 loopback)");
        return;
    }
    let s = common::start(|c| c.listen = vec!["[::1]:0".parse().unwrap()]);
    assert!(s.addr.is_ipv6(), "{}", s.addr);
    let body = common::pattern(6, 700_000);
    s.write_file("v6.bin", &body);
    let mut c = Ctrl::connect(s.addr);
    c.login();
    c.expect("EPSV 1", 522);
    let addr = c.epsv();
    assert!(addr.is_ipv6());
    let d = common::data_connect(addr);
    common::assert_bytes_eq(
        &c.transfer_on(d, b"RETR v6.bin").unwrap(),
        &body,
        "RETR over IPv6 EPSV",
    );
    // Active mode over IPv6 with EPRT |2|.
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let la = listener.local_addr().unwrap();
    c.expect(&format!("EPRT {}", common::eprt_arg(la)), 200);
    c.send_line(b"RETR v6.bin");
    let mut data = common::accept_within(&listener);
    c.expect_reply(150, "RETR over IPv6 EPRT");
    let got = common::read_all(&mut data);
    drop(data);
    c.expect_reply(226, "end of the IPv6 active transfer");
    common::assert_bytes_eq(&got, &body, "RETR over IPv6 EPRT");
    c.expect("EPRT |1|127.0.0.1|5000|", 504);
}

#[test]
fn both_listeners_serve_when_two_are_configured() {
    let s = common::start(|c| {
        c.listen = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ]
    });
    s.write_file("f", b"two");
    let addrs: BTreeSet<SocketAddr> = s.local_addrs().into_iter().collect();
    assert_eq!(
        addrs.len(),
        2,
        "two listen entries, two distinct addresses: {addrs:?}"
    );
    for a in addrs {
        let mut c = Ctrl::connect(a);
        c.login();
        assert_eq!(c.retr("f"), b"two");
    }
}

#[test]
fn stop_with_open_sessions_returns() {
    let s = common::server();
    s.sparse_file("big", BIG);
    let mut idle = s.login();
    let mut busy = s.login();
    let _data = start_big_retr(&mut busy, "big", 4096);
    idle.send_raw(b"NO"); // half a command line
    s.stop();
    // The shard threads are gone, so their sessions must be closed (a 421 first is allowed).
    let mut rest = Vec::new();
    let r = idle.stream().try_clone().unwrap().read_to_end(&mut rest);
    assert!(
        r.is_ok() || r.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "idle session left open after stop: {r:?}"
    );
    let _ = busy.stream().write_all(b"NOOP\r\n");
}

/// What suppaftp's `abort` does: send ABOR, then close the data socket at once (with unread data,
/// so the kernel resets it). The ABOR is on the wire first; the client still gets 426 then 226.
#[test]
fn abor_then_immediate_data_close() {
    let s = common::server();
    s.sparse_file("big", BIG);
    let mut c = s.login();
    for round in 0..20 {
        let data = start_big_retr(&mut c, "big", 64 << 10);
        c.send_line(b"ABOR");
        drop(data);
        let first = c.read_reply();
        let second = c.read_reply();
        assert_eq!(
            (first.0, second.0),
            (426, 226),
            "round {round}: {first:?} then {second:?}"
        );
        c.expect("NOOP", 200);
    }
}

/// A configured passive range is honoured, split between the shards, and keeps working after each
/// of its ports has carried a transfer (the server's side of a finished data connection lingers in
/// TIME_WAIT on that port).
#[test]
fn pasv_port_range_is_honoured_and_reusable() {
    // Below the usual ephemeral range (32768-60999), offset by the pid so parallel runs differ.
    let (lo, hi) = common::free_port_range(20_000, 10);
    let s = common::start(|c| c.pasv_ports = (lo, hi));
    s.write_file("f", b"range");
    let mut sessions: Vec<Ctrl> = (0..3).map(|_| s.login()).collect();
    for round in 0..8 {
        for c in sessions.iter_mut() {
            let a = if round % 2 == 0 { c.pasv() } else { c.epsv() };
            assert!(
                (lo..=hi).contains(&a.port()),
                "passive port {} outside {lo}-{hi}",
                a.port()
            );
            let d = common::data_connect(a);
            let got = c
                .transfer_on(d, b"RETR f")
                .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            assert_eq!(got, b"range");
        }
    }
}

/// A new session goes to the shard holding the fewest, whichever shard's listener the kernel's
/// hash gave it to, and is served there in full. With the hash alone, 12 sessions on 3 shards
/// would almost never stay within one of each other after every connect.
#[test]
fn sessions_are_spread_over_the_shards() {
    let s = common::start(|c| c.shards = 3);
    s.write_file("f", b"spread");
    let mut sessions = Vec::new();
    for n in 1..=12 {
        sessions.push(s.login());
        let counts = s.sessions_per_shard();
        let (lo, hi) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        assert_eq!(counts.iter().sum::<usize>(), n, "{counts:?}");
        assert!(hi - lo <= 1, "after {n} sessions: {counts:?}");
    }
    for c in sessions.iter_mut() {
        assert_eq!(c.retr("f"), b"spread");
    }
    for mut c in sessions {
        assert_eq!(c.cmd("QUIT").0, 221);
    }
    let deadline = Instant::now() + TIMEOUT;
    while s.sessions_per_shard().iter().any(|&n| n > 0) {
        assert!(
            Instant::now() < deadline,
            "sessions still counted after QUIT: {:?}",
            s.sessions_per_shard()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Shards left to the scheduler (`--no-pin`) serve as pinned ones do.
#[test]
fn unpinned_shards_serve() {
    let s = common::start(|c| c.pin_shards = false);
    s.write_file("f", b"free");
    let mut sessions: Vec<Ctrl> = (0..4).map(|_| s.login()).collect();
    for c in sessions.iter_mut() {
        assert_eq!(c.retr("f"), b"free");
    }
}

/// With no range configured, passive ports come from the IANA dynamic range (never from a kernel
/// port-0 search) and successive PASVs do not simply count up from one port.
#[test]
fn default_passive_ports_are_in_the_dynamic_range() {
    let s = common::start(|_| {});
    s.write_file("f", b"dyn");
    let mut c = s.login();
    let mut ports = Vec::new();
    for _ in 0..4 {
        let a = c.epsv();
        assert!(
            (49152..=65534).contains(&a.port()),
            "passive port {} outside the default range",
            a.port()
        );
        ports.push(a.port());
        let d = common::data_connect(a);
        assert_eq!(c.transfer_on(d, b"RETR f").unwrap(), b"dyn");
    }
    ports.dedup();
    assert_eq!(ports.len(), 4, "each PASV gets a fresh port: {ports:?}");
}

/// The style rule "226 only after the data socket closed": on loopback a FIN sent before the 226
/// is queued on the client's data socket before the 226 reaches the control socket, so once 226
/// has been read the data socket must already be at EOF (a read cannot block).
#[test]
fn reply_226_comes_after_the_data_connection_closed() {
    for path in [DataPath::Sendfile, DataPath::Copy] {
        let s = common::start(|c| c.data_path = path);
        s.write_file("small.bin", &common::pattern(8, 3000));
        let mut c = s.login();
        for line in ["RETR small.bin", "NLST", "MLSD", "LIST"] {
            let addr = c.epsv();
            let mut data = common::data_connect(addr);
            c.send_line(line.as_bytes());
            c.expect_reply(150, line);
            c.expect_reply(226, line);
            data.set_nonblocking(true).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match data.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        panic!(
                            "{path:?} {line}: 226 arrived while the data connection was still open ({} bytes read)",
                            got.len()
                        )
                    }
                    Err(e) => panic!("{path:?} {line}: {e}"),
                }
            }
            if line.starts_with("RETR") {
                common::assert_bytes_eq(&got, &common::pattern(8, 3000), line);
            }
        }
    }
}

/// RFC 959 section 4.1.3: STAT during a transfer answers at once with the transfer's status,
/// and an ABOR after it still cuts the transfer short.
#[test]
fn stat_during_a_transfer_answers_at_once() {
    let s = common::server();
    s.sparse_file("big", BIG);
    let mut c = s.login();
    let mut data = start_big_retr(&mut c, "big", 64 << 10);
    let text = c.expect("STAT", 213);
    assert!(text.contains("RETR /big"), "{text:?}");
    c.send_line(b"ABOR");
    c.expect_reply(426, "ABOR after STAT");
    c.expect_reply(226, "ABOR after STAT");
    common::drain(&mut data);
    c.expect("NOOP", 200);
}

/// The "Status: N [of M] bytes transferred" line of a 213 answer to STAT during a transfer.
fn transfer_status(text: &str) -> (u64, Option<u64>) {
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Status: "))
        .unwrap_or_else(|| panic!("no Status line in {text:?}"));
    let words: Vec<&str> = line.split(' ').collect();
    let number = |w: &str| {
        w.parse()
            .unwrap_or_else(|e| panic!("{w:?} in {text:?}: {e}"))
    };
    let total = (words.get(1) == Some(&"of")).then(|| number(words[2]));
    (number(words[0]), total)
}

/// STAT while the client holds a download back (nothing read between the STAT and its reply):
/// 213 with the bytes sent so far and the file size less the REST offset; the transfer then
/// goes on to the last byte and ends with 226.
fn stat_during_a_download(path: DataPath) {
    let s = common::start(|c| c.data_path = path);
    let body = common::pattern(33, BIG as usize);
    s.write_file("big.bin", &body);
    let mut c = s.login();
    let offset = MIB;
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    c.expect(&format!("REST {offset}"), 350);
    c.send_line(b"RETR big.bin");
    c.expect_reply(150, "RETR of the big file");
    let mut got = vec![0u8; 4 * MIB];
    data.read_exact(&mut got)
        .expect("read the start of the transfer");
    let text = c.expect("STAT", 213);
    assert!(text.contains("RETR /big.bin"), "{text:?}");
    assert!(text.contains(" bytes/s "), "{text:?}");
    let (sent, total) = transfer_status(&text);
    let size = BIG - offset as u64;
    assert_eq!(total, Some(size), "{text:?}");
    // More than the socket buffers can hold is still to come, so the transfer cannot be over.
    assert!(
        sent >= got.len() as u64 && sent < size,
        "{path:?}: {sent} bytes sent after {} were read, of {size}: {text:?}",
        got.len()
    );
    got.extend(common::read_all(&mut data));
    drop(data);
    common::assert_bytes_eq(&got, &body[offset..], "RETR with a STAT during it");
    c.expect_reply(226, "end of the transfer after STAT");
    c.expect("STAT", 211);
}

#[test]
fn stat_during_a_download_sendfile() {
    stat_during_a_download(DataPath::Sendfile);
}

#[test]
fn stat_during_a_download_copy() {
    stat_during_a_download(DataPath::Copy);
}

/// STAT during an upload: 213 with the bytes received so far (the size is not known); the
/// upload then completes byte-exact with 226.
#[test]
fn stat_during_an_upload_reports_bytes_received() {
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |_| {});
    let mut c = s.login_as("alice");
    let body = common::pattern(34, 8 * MIB);
    let addr = c.epsv();
    let mut data = common::data_connect(addr);
    c.send_line(b"STOR up.bin");
    c.expect_reply(150, "STOR");
    data.write_all(&body[..MIB]).expect("send the first MiB");
    // The server reads at its own pace: ask again until it has counted some of what was sent.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = c.expect("STAT", 213);
        assert!(text.contains("STOR /up.bin"), "{text:?}");
        let (received, total) = transfer_status(&text);
        assert_eq!(total, None, "an upload's size is not known: {text:?}");
        assert!(received <= MIB as u64, "{text:?}");
        if received > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no byte of the upload counted within {TIMEOUT:?}"
        );
    }
    data.write_all(&body[MIB..]).expect("send the rest");
    drop(data);
    c.expect_reply(226, "STOR with a STAT during it");
    let stored = std::fs::read(s.home("alice").join("up.bin")).expect("read the upload");
    common::assert_bytes_eq(&stored, &body, "STOR with a STAT during it");
}

/// Config::data_timeout also bounds a transfer that makes no progress (the client stopped reading).
#[test]
fn stalled_transfer_is_ended_by_the_data_timeout() {
    let s = common::start(|c| c.data_timeout = std::time::Duration::from_secs(1));
    s.sparse_file("big", BIG);
    let mut c = s.login();
    let _data = start_big_retr(&mut c, "big", 4096);
    // No more reads: the socket buffers fill and the transfer stalls.
    let (code, text) = c.read_reply();
    assert!(
        (400..500).contains(&code),
        "a stalled transfer must end with a 4xx reply, got {code} {text:?}"
    );
    c.expect("NOOP", 200);
}

#[test]
fn abor_while_waiting_for_the_data_connection() {
    let s = fixture();
    let mut c = s.login();
    c.pasv();
    c.send_line(b"RETR hello.txt"); // nobody connects
    c.send_line(b"ABOR");
    let (first, text) = c.read_reply();
    match first {
        426 => {
            c.expect_reply(226, "after 426");
        }
        225 | 226 => {}
        _ => panic!("ABOR of a transfer waiting for its connection: {first} {text:?}"),
    }
    // Nothing else about that transfer may follow (no late 425 or 150).
    c.expect("NOOP", 200);
    assert_eq!(c.retr("hello.txt"), b"Hello, world!\n");
}

#[test]
fn pasv_and_retr_pipelined_in_one_write() {
    let s = fixture();
    let mut c = s.login();
    c.send_raw(b"PASV\r\nRETR hello.txt\r\n");
    let text = c.expect_reply(227, "pipelined PASV");
    let addr = common::parse_pasv(&text).unwrap();
    let d = common::data_connect(addr.into());
    let mut d = d;
    c.expect_reply(150, "pipelined RETR");
    assert_eq!(common::read_all(&mut d), b"Hello, world!\n");
    drop(d);
    c.expect_reply(226, "pipelined RETR");
}

#[test]
fn port_after_epsv_replaces_it() {
    let s = fixture();
    let mut c = s.login();
    c.epsv();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    c.expect(
        &format!("PORT {}", common::port_arg(listener.local_addr().unwrap())),
        200,
    );
    c.send_line(b"RETR hello.txt");
    let mut d = common::accept_within(&listener);
    c.expect_reply(150, "RETR after EPSV then PORT");
    assert_eq!(common::read_all(&mut d), b"Hello, world!\n");
    drop(d);
    c.expect_reply(226, "RETR after EPSV then PORT");
}

/// Each PASV/EPSV replaces the previous listener; with two ports per shard, leaked listeners
/// would exhaust the range within a few commands.
#[test]
fn repeated_pasv_without_transfers_does_not_leak_ports() {
    let (lo, hi) = common::free_port_range(25_000, 4);
    let s = common::start(|c| c.pasv_ports = (lo, hi));
    s.write_file("f", b"ok");
    let mut c = s.login();
    for i in 0..20 {
        let line = if i % 2 == 0 { "PASV" } else { "EPSV" };
        let (code, text) = c.cmd(line);
        assert!(
            code == 227 || code == 229,
            "{line} number {i}: {code} {text:?}"
        );
    }
    assert_eq!(c.retr("f"), b"ok");
}

/// Large listings go out in pieces, each piece's entries statted in parts by several helpers:
/// every entry must come exactly once, in order.
#[test]
fn large_directory_listings() {
    let s = common::server();
    let n = 9001;
    let mut expected: Vec<String> = (0..n)
        .map(|i| format!("file-{i:05} with a longish name.dat"))
        .collect();
    for name in &expected {
        s.write_file(&format!("many/{name}"), b"");
    }
    expected.sort();
    let mut c = s.login();
    let nlst = c.listing("NLST many");
    let names = common::crlf_lines(&nlst);
    assert_eq!(names.len(), n, "NLST of {n} entries");
    let bare: Vec<&str> = names
        .iter()
        .map(|l| l.rsplit('/').next().unwrap_or(l))
        .collect();
    assert!(bare == expected, "NLST lists every entry once, sorted");
    let mlsd = c.listing("MLSD many");
    assert_eq!(
        common::crlf_lines(&mlsd)
            .into_iter()
            .filter(|l| l.contains("type=file;"))
            .count(),
        n
    );
    let list = c.listing("LIST many");
    assert_eq!(common::crlf_lines(&list).len(), n);
    let stat = c.expect("STAT many", 213);
    assert!(
        stat.lines().count() >= n,
        "STAT of {n} entries has {} lines",
        stat.lines().count()
    );
}

#[test]
fn hundreds_of_idle_sessions() {
    // All from 127.0.0.1: the per-address caps are tested in tests/limits.rs.
    let s = common::start(|c| {
        c.max_sessions_per_ip = 0;
        c.max_connects_per_ip_per_sec = 0;
    });
    s.write_file("hello.txt", b"Hello, world!\n");
    let mut sessions: Vec<Ctrl> = (0..200).map(|_| s.login()).collect();
    for c in sessions.iter_mut() {
        c.expect("NOOP", 200);
    }
    assert_eq!(sessions[123].retr("hello.txt"), b"Hello, world!\n");
}

/// Fairness on one shard: a session pulling a resident file as fast as the client can drain it
/// spends only its per-turn budget at a time, so a small RETR on another session of the same
/// shard still completes at once (whole-file residency checks must not let one send run on).
#[test]
fn small_retr_beside_a_bulk_download_answers_quickly() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = common::start(|c| c.shards = 1);
    s.sparse_file("bulk.bin", BIG);
    let small = common::pattern(9, 4096);
    s.write_file("small.bin", &small);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut bulk = s.login();
    // The first bulk transfer is under way before the small RETRs start.
    let first = start_big_retr(&mut bulk, "bulk.bin", 64 << 10);
    let flag = std::sync::Arc::clone(&stop);
    let puller = std::thread::spawn(move || {
        // Bulk downloads back to back, drained as fast as this thread can, until told to stop.
        let mut data = first;
        let mut pulls = 0u32;
        loop {
            common::drain(&mut data);
            bulk.expect_reply(226, "bulk RETR");
            pulls += 1;
            if flag.load(Ordering::Relaxed) {
                return pulls;
            }
            data = start_big_retr(&mut bulk, "bulk.bin", 0);
        }
    });
    let mut c = s.login();
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let t0 = Instant::now();
        common::assert_bytes_eq(&c.retr("small.bin"), &small, &format!("small RETR {i}"));
        slowest = slowest.max(t0.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let pulls = puller.join().unwrap();
    // Generous for a loaded CI box; a small RETR queued behind whole bulk sends would take
    // about as long as a 64 MiB pull.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest small RETR {slowest:?} ({pulls} bulk pulls)"
    );
}

/// A file that is not in the page cache is read in asynchronously (io_uring READ) before it is
/// sent; the bytes must be the same on every data path.
#[test]
fn cold_file_is_read_in_then_sent_byte_exact() {
    cold_file_on_every_data_path(None);
}

/// The same with the residency check of kernels before 6.5 (no cachestat):
/// preadv2(RWF_NOWAIT).
#[test]
fn cold_file_without_cachestat_is_read_in_then_sent_byte_exact() {
    cold_file_on_every_data_path(Some(ringftpd::sys::fs::Residency::NowaitRead));
}

fn cold_file_on_every_data_path(residency: Option<ringftpd::sys::fs::Residency>) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    for data_path in [
        DataPath::Sendfile,
        DataPath::Copy,
        DataPath::Splice,
        DataPath::Mmap,
    ] {
        let s = common::start(|c| {
            c.data_path = data_path;
            c.residency = residency;
        });
        // Several read-in windows (1 MiB each), the last one partial.
        let content = common::pattern(77, (3 << 20) + 12345);
        s.write_file("cold.bin", &content);
        let file = std::fs::File::open(s.path("cold.bin")).unwrap();
        file.sync_all().unwrap();
        let drop_cache = || {
            posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
        };
        drop_cache();
        let check = residency.unwrap_or_else(ringftpd::sys::fs::Residency::probe);
        let (cached, total) = check
            .cached_bytes(std::os::fd::AsFd::as_fd(&file), 0, 3 << 20)
            .unwrap_or((0, 1));
        eprintln!("{data_path:?}, {check:?}: {cached} of {total} bytes cached before RETR");
        let mut c = s.login();
        common::assert_bytes_eq(&c.retr("cold.bin"), &content, &format!("{data_path:?}"));
        // From an offset inside a window, cold again.
        drop_cache();
        c.expect("REST 1500000", 350);
        common::assert_bytes_eq(
            &c.retr("cold.bin"),
            &content[1_500_000..],
            &format!("{data_path:?} REST 1500000"),
        );
    }
}

/// A resident file with a few evicted pages: those windows are read in (a sendfile transfer
/// moves onto a pipe for them) and the rest is sent as usual (sendfile again once the pipe is
/// empty); the bytes must be exact on every path.
#[test]
fn file_with_evicted_holes_is_sent_byte_exact() {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    for data_path in [DataPath::Sendfile, DataPath::Splice, DataPath::Copy] {
        let s = common::start(|c| {
            c.data_path = data_path;
            c.shards = 1;
        });
        let content = common::pattern(31, (40 << 20) + 4321);
        s.write_file("holey.bin", &content);
        let file = std::fs::File::open(s.path("holey.bin")).unwrap();
        file.sync_all().unwrap();
        // Resident first (read it), then holes near the start and far beyond readahead's reach.
        drop(std::fs::read(s.path("holey.bin")).unwrap());
        let mut c = s.login();
        for round in 0..3 {
            for hole in [MIB + 4096, 2 * MIB + 77, 36 * MIB] {
                posix_fadvise(
                    &file,
                    hole as i64,
                    256 << 10,
                    PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                )
                .unwrap();
            }
            let what = format!("{data_path:?} round {round}");
            common::assert_bytes_eq(&c.retr("holey.bin"), &content, &what);
        }
    }
}

/// A transfer of a cold file aborted (or cut off) while a window is being brought into its pipe
/// must not hand that pipe to the next transfer: bytes still arriving in it would be sent as
/// part of another file. One shard, so the pool's pipes are reused.
#[test]
fn aborted_cold_transfers_leave_no_stale_pipe_data() {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    for data_path in [DataPath::Sendfile, DataPath::Splice] {
        let s = common::start(|c| {
            c.data_path = data_path;
            c.shards = 1;
        });
        let a = common::pattern(5, 8 << 20);
        let b = common::pattern(6, (3 << 20) + 777);
        s.write_file("a.bin", &a);
        s.write_file("b.bin", &b);
        let drop_cache = |name: &str| {
            let f = std::fs::File::open(s.path(name)).unwrap();
            f.sync_all().unwrap();
            posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
        };
        let mut c = s.login();
        for round in 0..4 {
            drop_cache("a.bin");
            drop_cache("b.bin");
            let data = start_big_retr(&mut c, "a.bin", 1000);
            if round % 2 == 0 {
                c.send_line(b"ABOR");
                c.expect_reply(426, "first reply to ABOR");
                c.expect_reply(226, "second reply to ABOR");
                drop(data);
            } else {
                // The client goes away from the data connection instead.
                drop(data.shutdown(std::net::Shutdown::Both));
                drop(data);
                let (code, _) = c.read_reply();
                assert!(code == 426 || code == 226, "round {round}: {code}");
            }
            common::assert_bytes_eq(
                &c.retr("b.bin"),
                &b,
                &format!("{data_path:?} round {round}: the next transfer after an aborted one"),
            );
        }
    }
}

// The splice and mmap data paths get the same checks as sendfile and copy.

#[test]
fn splice_path_is_byte_exact() {
    byte_exact(DataPath::Splice);
}

#[test]
fn mmap_path_is_byte_exact() {
    byte_exact(DataPath::Mmap);
}

#[test]
fn rest_resume_splice() {
    rest_resume(DataPath::Splice);
}

#[test]
fn rest_resume_mmap() {
    rest_resume(DataPath::Mmap);
}

#[test]
fn abor_mid_transfer_splice() {
    abor_mid_transfer(DataPath::Splice);
}

#[test]
fn abor_mid_transfer_mmap() {
    abor_mid_transfer(DataPath::Mmap);
}

#[test]
fn file_shrinking_during_transfer_is_451_splice() {
    shrinking_file(DataPath::Splice);
}

/// The mapping is never read in user space: a truncated file makes the kernel's send fail with
/// EFAULT, which is a 451, not a SIGBUS that would kill the server.
#[test]
fn file_shrinking_during_transfer_is_451_mmap() {
    shrinking_file(DataPath::Mmap);
}

/// Pipes go back to the shard's pool after each transfer; a pipe handed out again must be empty,
/// or the next file would start with the previous one's bytes.
#[test]
fn many_splice_transfers_through_pooled_pipes_stay_byte_exact() {
    let s = common::start(|c| c.data_path = DataPath::Splice);
    let a = common::pattern(5, 200_000);
    let b = common::pattern(6, 70_000);
    s.write_file("a", &a);
    s.write_file("b", &b);
    let mut c = s.login();
    for _ in 0..50 {
        assert_eq!(c.retr("a"), a);
        assert_eq!(c.retr("b"), b);
    }
}

/// ABOR cuts in ahead of commands pipelined behind a running transfer; those are answered after.
#[test]
fn abor_overtakes_commands_queued_behind_a_transfer() {
    let s = common::server();
    s.sparse_file("big", BIG);
    let mut c = s.login();
    let mut data = start_big_retr(&mut c, "big", 64 << 10);
    c.send_raw(b"PWD\r\nABOR\r\n");
    c.expect_reply(426, "ABOR must not wait behind PWD");
    c.expect_reply(226, "second reply to ABOR");
    c.expect_reply(257, "the queued PWD, answered after the transfer ended");
    common::drain(&mut data);
    c.expect("NOOP", 200);
}

#[test]
fn sessions_over_the_per_ip_limit_get_421() {
    let s = common::start(|c| c.max_sessions_per_ip = 2);
    let _a = s.login();
    let mut b = s.login();
    let mut third = Ctrl::connect_raw(s.addr);
    let (code, text) = third.read_reply();
    assert_eq!(code, 421, "{text:?}");
    third.assert_closed();
    // The server releases the slot when it closes a session, before it accepts anything newer.
    b.expect("QUIT", 221);
    b.assert_closed();
    let mut again = Ctrl::connect_raw(s.addr);
    assert_eq!(
        again.read_reply().0,
        220,
        "the freed slot is available again"
    );
}

/// Behind NAT, PASV announces the configured public address while the listener stays local;
/// EPSV (port only) is unaffected.
#[test]
fn pasv_announces_the_configured_public_address() {
    let s = common::start(|c| c.pasv_address = Some("203.0.113.7".parse().unwrap()));
    s.write_file("f", b"nat");
    let mut c = s.login();
    let text = c.expect("PASV", 227);
    let announced = common::parse_pasv(&text).expect("a PASV address");
    assert_eq!(
        *announced.ip(),
        std::net::Ipv4Addr::new(203, 0, 113, 7),
        "{text:?}"
    );
    // The listener is on the control connection's local address: connect there.
    let local = SocketAddr::new(c.stream().peer_addr().unwrap().ip(), announced.port());
    let mut data = common::data_connect(local);
    c.send_line(b"RETR f");
    c.expect_reply(150, "RETR over the NAT-announced port");
    assert_eq!(common::read_all(&mut data), b"nat");
    c.expect_reply(226, "end of RETR");
}

/// A full helper-pool queue refuses the command at once with 450 (nothing tried, the client may
/// retry) instead of building a backlog; every command that got in completes as usual. One
/// helper thread and a queue of one: the first listing (10,000 names read and sorted) keeps the
/// helper busy while the others arrive.
#[test]
fn a_full_job_queue_answers_450_at_once() {
    let s = common::start(|c| {
        c.shards = 1;
        c.fs_workers = 1;
        c.fs_queue_max = 1;
        c.max_sessions_per_ip = 0;
        c.max_connects_per_ip_per_sec = 0;
    });
    let dir = s.mkdir("many");
    for i in 0..10_000 {
        std::fs::File::create(dir.join(format!("entry-{i:05}"))).unwrap();
    }
    let mut sessions: Vec<(Ctrl, std::net::TcpStream)> = (0..16)
        .map(|_| {
            let mut c = s.login();
            let data = common::data_connect(c.epsv());
            (c, data)
        })
        .collect();
    for (c, _) in &mut sessions {
        c.send_line(b"NLST many");
    }
    let (mut busy, mut listed) = (0, 0);
    for (c, data) in &mut sessions {
        let (code, text) = c.read_reply();
        match code {
            450 => {
                assert_eq!(text, "Server busy, try again.");
                busy += 1;
            }
            150 => {
                let mut names = Vec::new();
                data.read_to_end(&mut names).unwrap();
                assert_eq!(
                    common::crlf_lines(&String::from_utf8(names).unwrap()).len(),
                    10_000
                );
                c.expect_reply(226, "NLST many");
                listed += 1;
            }
            other => panic!("NLST many: {other} {text:?}"),
        }
        // The session goes on: the next command is served.
        c.expect("NOOP", 200);
    }
    assert!(busy > 0, "no command found the queue full");
    assert!(listed > 0, "no listing got through");
}

/// STAT <dir> streams the same lines LIST sends (as reply body lines, byte for byte), and a
/// directory above the sort limit (10,000 names) is listed whole, every name once, by NLST,
/// LIST and STAT alike, in the directory's order.
#[test]
fn stat_streams_list_lines_and_large_directories_list_every_name_once() {
    let s = common::server();
    s.write_file("d/a.txt", b"aaa");
    s.write_file("d/b b.txt", b"bb");
    s.mkdir("d/sub");
    s.symlink("a.txt", "d/link");
    let mut c = s.login();
    let list = c.listing("LIST d");
    let (code, stat) = c.cmd("STAT d");
    assert_eq!(code, 213);
    let body: Vec<&str> = stat.lines().skip(1).collect();
    let (last, body) = body.split_last().unwrap();
    assert_eq!(*last, "213 End of status");
    assert_eq!(body, common::crlf_lines(&list).as_slice(), "{stat:?}");
    assert_eq!(stat.lines().next().unwrap(), "Status of /d:");

    const N: usize = 10_050;
    let dir = s.mkdir("big");
    for i in 0..N {
        std::fs::File::create(dir.join(format!("e{i:05}"))).unwrap();
    }
    let mut want: Vec<String> = (0..N).map(|i| format!("e{i:05}")).collect();
    want.sort();
    let nlst = c.listing("NLST big");
    let mut names: Vec<String> = common::crlf_lines(&nlst)
        .iter()
        .map(|l| l.rsplit('/').next().unwrap().to_string())
        .collect();
    let listed_in = names.clone();
    names.sort();
    assert_eq!(names, want, "NLST big: every name once");
    let list = c.listing("LIST big");
    let list_names: Vec<String> = common::crlf_lines(&list)
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(
        list_names, listed_in,
        "LIST and NLST list in the same order"
    );
    // STAT's reply is larger than the test client's 1 MiB reply cap: count its lines instead.
    c.send_line(b"STAT big");
    let mut reader = std::io::BufReader::new(c.stream().try_clone().unwrap());
    let mut lines = 0;
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        lines += 1;
        if line.starts_with("213 ") {
            break;
        }
    }
    assert_eq!(lines, N + 2);
}

/// The listing cache (`listing_cache_secs`): a directory whose entries nobody created, removed
/// or renamed is listed from memory, so an in-place change made outside the server shows only
/// after the TTL; a new entry shows at once; this server's own writes (an in-place APPE, which
/// leaves the directory's times alone) show at once; the bytes from memory are the bytes read;
/// 0 turns it off.
#[test]
fn listings_come_from_memory_until_the_directory_or_this_server_changes_them() {
    let s = common::start_with_users(&[("alice", "access = \"read-write\"")], |c| {
        c.listing_cache = Duration::from_secs(3600);
    });
    let home = s.home("alice");
    std::fs::create_dir(home.join("d")).unwrap();
    std::fs::write(home.join("d/a"), b"12345").unwrap();
    let mut c = s.login_as("alice");
    let size_of_a = |listing: &str| {
        common::crlf_lines(listing)
            .into_iter()
            .filter_map(common::parse_list_line)
            .find(|(_, _, name)| name == "a")
            .map(|(_, size, _)| size)
    };
    let first = c.listing("LIST d");
    assert_eq!(size_of_a(&first), Some(5), "{first}");
    let (nlst, mlsd) = (c.listing("NLST d"), c.listing("MLSD d"));
    // Grown in place by someone else: the directory's times stay, so the kept listing is sent.
    std::fs::write(home.join("d/a"), b"1234567890").unwrap();
    assert_eq!(c.listing("LIST d"), first, "from memory");
    assert_eq!(c.listing("NLST d"), nlst);
    assert_eq!(c.listing("MLSD d"), mlsd);
    // A new entry changes the directory: read afresh, the grown file included.
    std::fs::write(home.join("d/b"), b"b").unwrap();
    let fresh = c.listing("LIST d");
    assert_eq!(size_of_a(&fresh), Some(10), "{fresh}");
    assert!(fresh.contains(" b\r\n"), "{fresh}");
    assert!(c.listing("NLST d").contains("b\r\n"));
    // Our own in-place append: shown at once although the directory did not change.
    c.stor("APPE d/a", b"+");
    assert_eq!(size_of_a(&c.listing("LIST d")), Some(11));
    // The bytes from memory are exactly what reading the directory gives.
    let off = common::start(|c| {
        c.root = home.clone();
        c.listing_cache = Duration::ZERO;
    });
    let mut o = off.login();
    let (list, nlst, mlsd) = (
        c.listing("LIST d"),
        c.listing("NLST d"),
        c.listing("MLSD d"),
    );
    assert_eq!(list, c.listing("LIST d"));
    assert_eq!(nlst, o.listing("NLST d"));
    // MLSD's perm facts differ between alice (read-write) and anonymous: compare names only.
    let names = |m: &str| -> Vec<String> {
        common::crlf_lines(m)
            .into_iter()
            .filter_map(common::parse_facts)
            .map(|(_, name)| name)
            .collect()
    };
    assert_eq!(names(&mlsd), names(&o.listing("MLSD d")));
    // Off: an in-place change shows at once.
    let before = o.listing("LIST d");
    std::fs::write(home.join("d/a"), b"x").unwrap();
    let after = o.listing("LIST d");
    assert_ne!(before, after);
    assert_eq!(size_of_a(&after), Some(1), "{after}");
}

/// The TTL bounds how long an in-place change made outside the server stays unseen.
#[test]
fn a_kept_listing_expires_after_listing_cache_secs() {
    let s = common::start(|c| c.listing_cache = Duration::from_secs(2));
    s.mkdir("d");
    s.write_file("d/a", b"12345");
    let mut c = s.login();
    let first = c.listing("LIST d");
    s.write_file("d/a", b"1234567890");
    // Still within the TTL (both listings take milliseconds).
    assert_eq!(c.listing("LIST d"), first);
    // Waiting out the TTL is the behaviour under test, not a synchronisation.
    std::thread::sleep(Duration::from_millis(2100));
    let later = c.listing("LIST d");
    assert_ne!(later, first, "expired: read afresh");
    assert!(later.contains(" 10 "), "{later}");
}

/// A directory listed under one root is never sent from memory under another: LIST shows a
/// link's target only where it stays inside the root, so the same directory lists differently
/// for anonymous users (root `/`, the target inside) and for alice (root `/pub`, outside hers).
#[test]
fn a_kept_listing_is_never_sent_under_another_root() {
    let s = common::start(|c| {
        c.listing_cache = Duration::from_secs(3600);
        let pub_dir = c.root.join("pub");
        std::fs::create_dir(&pub_dir).unwrap();
        std::fs::create_dir(c.root.join("other")).unwrap();
        std::os::unix::fs::symlink("../other", pub_dir.join("up")).unwrap();
        let users = c.root.join("users.toml");
        common::write_users_file(
            &users,
            &[common::UserSpec {
                name: "alice",
                root: &pub_dir,
                extra: "access = \"read-only\"",
            }],
        );
        c.users_file = Some(users);
    });
    let mut anon = s.login();
    let theirs = anon.listing("LIST pub");
    assert!(theirs.contains("up -> ../other"), "{theirs}");
    let mut alice = s.connect();
    alice.login_as("alice", common::USER_PASSWORD);
    let hers = alice.listing("LIST");
    assert!(hers.contains(" up\r\n") && !hers.contains("->"), "{hers}");
}
