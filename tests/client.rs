//! The server as a real client library sees it: `suppaftp` (sync `FtpStream`) in passive,
//! extended-passive and active mode, its listing parsers, resume, abort and refused writes.

mod common;

use std::io::{Cursor, Read};
use std::net::TcpStream;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use common::{OLD_MTIME, TIMEOUT, TestServer, Watchdog};
use suppaftp::list::{File, ListParser};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpStream, Mode, Status};

/// suppaftp has no read timeouts of its own: give the control socket and every passive data socket
/// one, and abort the process if a test still hangs (active-mode sockets are accepted inside
/// suppaftp, out of our reach).
fn connect(s: &TestServer) -> FtpStream {
    let ctrl = TcpStream::connect_timeout(&s.addr, TIMEOUT).unwrap();
    ctrl.set_read_timeout(Some(TIMEOUT)).unwrap();
    ctrl.set_write_timeout(Some(TIMEOUT)).unwrap();
    FtpStream::connect_with_stream(ctrl)
        .expect("greeting")
        .passive_stream_builder(|addr| {
            let d =
                TcpStream::connect_timeout(&addr, TIMEOUT).map_err(FtpError::ConnectionError)?;
            d.set_read_timeout(Some(TIMEOUT))
                .map_err(FtpError::ConnectionError)?;
            Ok(d)
        })
}

fn logged_in(s: &TestServer) -> FtpStream {
    let mut ftp = connect(s);
    ftp.login("anonymous", "suppaftp@example.com")
        .expect("anonymous login");
    ftp
}

fn guard() -> Watchdog {
    Watchdog::arm("a suppaftp test", Duration::from_secs(120))
}

fn status_of(e: &FtpError) -> Option<u32> {
    match e {
        FtpError::UnexpectedResponse(r) => Some(r.status.code()),
        _ => None,
    }
}

fn tree() -> TestServer {
    let s = common::server();
    s.write_file("readme.txt", b"read me\n");
    s.write_file("data/one.bin", &common::pattern(1, 1));
    s.write_file("data/medium.bin", &common::pattern(2, 300_000));
    s.write_file("data/large.bin", &common::pattern(3, 3 << 20));
    s.write_file("data/empty", b"");
    s.mkdir("data/nested");
    s.write_file("old.bin", &common::pattern(4, 4096));
    s.set_mtime("old.bin", OLD_MTIME);
    s
}

#[test]
fn welcome_login_and_bad_login() {
    let _g = guard();
    let s = tree();
    let mut ftp = connect(&s);
    assert!(ftp.get_welcome_msg().is_some());
    ftp.login("ftp", "x").unwrap();
    ftp.quit().unwrap();

    let mut ftp = connect(&s);
    let err = ftp
        .login("alice", "wonderland")
        .expect_err("named users cannot log in");
    assert_eq!(status_of(&err), Some(530), "{err}");
}

#[test]
fn pwd_cwd_cdup() {
    let _g = guard();
    let s = tree();
    let mut ftp = logged_in(&s);
    assert_eq!(ftp.pwd().unwrap(), "/");
    ftp.cwd("data").unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/data");
    ftp.cwd("nested").unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/data/nested");
    ftp.cdup().unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/data");
    let err = ftp.cwd("missing").expect_err("CWD to a missing directory");
    assert_eq!(status_of(&err), Some(550), "{err}");
    ftp.cwd("/").unwrap();
    assert_eq!(ftp.pwd().unwrap(), "/");
    ftp.noop().unwrap();
}

#[test]
fn feat_is_parsed() {
    let _g = guard();
    let s = tree();
    let mut ftp = logged_in(&s);
    let feat = ftp.feat().unwrap();
    for key in ["EPSV", "EPRT", "MDTM", "SIZE", "MLST", "UTF8", "REST"] {
        assert!(
            feat.contains_key(key),
            "FEAT as parsed by suppaftp lacks {key}: {feat:?}"
        );
    }
    ftp.opts("UTF8", Some("ON")).unwrap();
}

#[test]
fn list_nlst_mlsd_parse() {
    let _g = guard();
    let s = tree();
    let mut ftp = logged_in(&s);
    let mut names = ftp.nlst(Some("data")).unwrap();
    names
        .iter_mut()
        .for_each(|n| *n = n.trim_start_matches("data/").to_string());
    names.sort();
    assert_eq!(
        names,
        ["empty", "large.bin", "medium.bin", "nested", "one.bin"]
    );

    let list = ftp.list(Some("data")).unwrap();
    let files: Vec<File> = list
        .iter()
        .map(|l| File::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e:?}")))
        .collect();
    let get = |n: &str| {
        files
            .iter()
            .find(|f| f.name() == n)
            .unwrap_or_else(|| panic!("{n} not in {list:?}"))
    };
    assert!(get("large.bin").is_file());
    assert_eq!(get("large.bin").size(), 3 << 20);
    assert_eq!(get("medium.bin").size(), 300_000);
    assert!(get("nested").is_directory());

    let root = ftp.list(None).unwrap();
    let old = root
        .iter()
        .map(|l| File::from_str(l).unwrap())
        .find(|f| f.name() == "old.bin")
        .unwrap();
    assert_eq!(
        old.modified(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(OLD_MTIME - OLD_MTIME % 86_400)
    );

    let mlsd = ftp.mlsd(Some("data")).unwrap();
    let entries: Vec<File> = mlsd
        .iter()
        .map(|l| ListParser::parse_mlsd(l).unwrap_or_else(|e| panic!("{l:?}: {e:?}")))
        .collect();
    let get = |n: &str| {
        entries
            .iter()
            .find(|f| f.name() == n)
            .unwrap_or_else(|| panic!("{n} not in {mlsd:?}"))
    };
    assert_eq!(get("one.bin").size(), 1);
    assert!(get("one.bin").is_file());
    assert_eq!(get("empty").size(), 0);
    assert!(get("nested").is_directory());

    let mlst = ftp.mlst(Some("old.bin")).unwrap();
    let f = ListParser::parse_mlst(&mlst).unwrap_or_else(|e| panic!("{mlst:?}: {e:?}"));
    assert_eq!(f.size(), 4096);
    assert_eq!(
        f.modified(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(OLD_MTIME)
    );
}

#[test]
fn size_and_mdtm() {
    let _g = guard();
    let s = tree();
    let mut ftp = logged_in(&s);
    assert_eq!(ftp.size("data/large.bin").unwrap(), 3 << 20);
    assert_eq!(ftp.size("data/empty").unwrap(), 0);
    let err = ftp.size("data").expect_err("SIZE of a directory");
    assert_eq!(status_of(&err), Some(550), "{err}");
    let t = ftp.mdtm("old.bin").unwrap();
    assert_eq!(t.format("%Y%m%d%H%M%S").to_string(), common::OLD_MTIME_VAL);
}

fn retr_everything(mode: Mode) {
    let s = tree();
    let mut ftp = logged_in(&s);
    ftp.set_mode(mode);
    ftp.transfer_type(FileType::Binary).unwrap();
    for (name, want) in [
        ("data/one.bin", common::pattern(1, 1)),
        ("data/medium.bin", common::pattern(2, 300_000)),
        ("data/large.bin", common::pattern(3, 3 << 20)),
        ("data/empty", Vec::new()),
        ("readme.txt", b"read me\n".to_vec()),
    ] {
        let got = ftp
            .retr_as_buffer(name)
            .unwrap_or_else(|e| panic!("{mode:?} RETR {name}: {e}"))
            .into_inner();
        common::assert_bytes_eq(&got, &want, &format!("{mode:?} {name}"));
    }
    // Streaming read with the closure API, then a listing on the same session.
    let n = ftp
        .retr("data/large.bin", |r| {
            let mut total = 0usize;
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf).map_err(FtpError::ConnectionError)? {
                    0 => return Ok(total),
                    k => total += k,
                }
            }
        })
        .unwrap();
    assert_eq!(n, 3 << 20);
    assert!(!ftp.nlst(None).unwrap().is_empty());
    let err = ftp
        .retr_as_buffer("data/missing")
        .expect_err("RETR of a missing file");
    assert_eq!(status_of(&err), Some(550), "{err}");
    ftp.quit().unwrap();
}

#[test]
fn retr_passive() {
    let _g = guard();
    retr_everything(Mode::Passive);
}

#[test]
fn retr_extended_passive() {
    let _g = guard();
    retr_everything(Mode::ExtendedPassive);
}

#[test]
fn retr_active() {
    let _g = guard();
    retr_everything(Mode::Active);
}

#[test]
fn resume_transfer() {
    let _g = guard();
    let s = tree();
    let body = common::pattern(3, 3 << 20);
    let mut ftp = logged_in(&s);
    for mode in [Mode::Passive, Mode::ExtendedPassive, Mode::Active] {
        ftp.set_mode(mode);
        for offset in [1usize, 12_345, 2 << 20] {
            ftp.resume_transfer(offset).unwrap();
            let got = ftp.retr_as_buffer("data/large.bin").unwrap().into_inner();
            common::assert_bytes_eq(
                &got,
                &body[offset..],
                &format!("{mode:?} resume at {offset}"),
            );
        }
        // The offset is used up.
        let got = ftp.retr_as_buffer("data/large.bin").unwrap().into_inner();
        common::assert_bytes_eq(&got, &body, &format!("{mode:?} after resume"));
    }
}

#[test]
fn ascii_type_download() {
    let _g = guard();
    let s = common::server();
    s.write_file("unix.txt", b"a\nbb\nccc\n");
    let mut ftp = logged_in(&s);
    ftp.transfer_type(FileType::Ascii(suppaftp::types::FormatControl::Default))
        .unwrap();
    assert_eq!(
        ftp.retr_as_buffer("unix.txt").unwrap().into_inner(),
        b"a\r\nbb\r\nccc\r\n"
    );
    ftp.transfer_type(FileType::Image).unwrap();
    assert_eq!(
        ftp.retr_as_buffer("unix.txt").unwrap().into_inner(),
        b"a\nbb\nccc\n"
    );
    let err = ftp
        .transfer_type(FileType::Ebcdic(suppaftp::types::FormatControl::Default))
        .expect_err("TYPE E");
    assert_eq!(status_of(&err), Some(504), "{err}");
}

#[test]
fn abort_a_download() {
    let _g = guard();
    let s = common::server();
    s.sparse_file("huge", 64 << 20);
    s.write_file("small", b"ok");
    let mut ftp = logged_in(&s);
    let mut stream = ftp.retr_as_stream("huge").unwrap();
    let mut buf = vec![0u8; 100_000];
    stream.read_exact(&mut buf).unwrap();
    // suppaftp's abort reads "426 then 226" (or a lone 226) and leaves the session usable.
    ftp.abort(stream).unwrap();
    ftp.noop().unwrap();
    assert_eq!(ftp.retr_as_buffer("small").unwrap().into_inner(), b"ok");
}

#[test]
fn write_operations_are_refused() {
    let _g = guard();
    let s = tree();
    let mut ftp = logged_in(&s);
    let err = ftp
        .put_file("upload.txt", &mut Cursor::new(b"nope".to_vec()))
        .expect_err("STOR");
    assert_eq!(status_of(&err), Some(550), "STOR: {err}");
    let err = ftp
        .append_file("readme.txt", &mut Cursor::new(b"nope".to_vec()))
        .expect_err("APPE");
    assert_eq!(status_of(&err), Some(550), "APPE: {err}");
    let err = ftp.mkdir("newdir").expect_err("MKD");
    assert_eq!(status_of(&err), Some(550), "MKD: {err}");
    let err = ftp.rmdir("data/nested").expect_err("RMD");
    assert_eq!(status_of(&err), Some(550), "RMD: {err}");
    let err = ftp.rm("readme.txt").expect_err("DELE");
    assert_eq!(status_of(&err), Some(550), "DELE: {err}");
    let err = ftp.rename("readme.txt", "x.txt").expect_err("RNFR");
    assert_eq!(status_of(&err), Some(550), "RNFR: {err}");
    let err = ftp.site("CHMOD 777 readme.txt").expect_err("SITE");
    assert_eq!(status_of(&err), Some(550), "SITE: {err}");
    // Nothing changed on disk and the session is still fine.
    assert!(
        !s.path("upload.txt").exists() && !s.path("newdir").exists() && !s.path("x.txt").exists()
    );
    assert_eq!(std::fs::read(s.path("readme.txt")).unwrap(), b"read me\n");
    assert!(s.path("data/nested").is_dir());
    assert_eq!(
        ftp.retr_as_buffer("readme.txt").unwrap().into_inner(),
        b"read me\n"
    );
    let r = ftp.custom_command("NOOP", &[Status::CommandOk]).unwrap();
    assert_eq!(r.status.code(), 200);
}
