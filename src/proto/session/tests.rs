//! Unit tests of the session state machine, every multi-command sequence driven end to end.

use std::net::IpAddr;
use std::time::Duration;

use super::TlsRequirement;
use super::{
    Effect, FsOp, ListTarget, MAX_ANONYMOUS_PASSWORD_BYTES, Outcome, Policy, Progress, Rights,
    Session, Step, StoreMode, TransferError,
};
use crate::proto::command::{ListFormat, parse};
use crate::proto::entry::{Entry, FileKind};
use crate::proto::error::FileError;
use crate::proto::listing::Visibility;
use crate::proto::path::VirtualPath;

fn peer() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn run(s: &mut Session, line: &str) -> Step {
    s.on_command(parse(line.as_bytes()))
}

fn codes(step: &Step) -> Vec<u16> {
    step.replies.iter().map(|r| r.code.as_u16()).collect()
}

fn logged_in() -> Session {
    let mut s = Session::new(peer(), Policy::default());
    assert_eq!(codes(&run(&mut s, "USER anonymous")), [331]);
    assert_eq!(codes(&run(&mut s, "PASS a@b")), [230]);
    s
}

fn file(size: u64) -> Entry {
    Entry {
        name: b"f".to_vec(),
        kind: FileKind::File,
        size,
        mtime: 0,
        mode: 0o644,
        nlink: 1,
        uid: 0,
        gid: 0,
        dev: 1,
        ino: 2,
        link: None,
    }
}

#[test]
fn login_sequence() {
    let mut s = Session::new(peer(), Policy::default());
    assert_eq!(codes(&run(&mut s, "PASS x")), [503]);
    assert_eq!(codes(&run(&mut s, "PWD")), [530]);
    assert_eq!(codes(&run(&mut s, "USER bob")), [331]);
    let step = run(&mut s, "PASS x");
    assert_eq!(
        step.effect,
        Some(Effect::Authenticate {
            user: b"bob".to_vec(),
            password: b"x".to_vec()
        })
    );
    assert!(
        !s.accepts_now(&parse(b"NOOP")),
        "commands wait for the password check"
    );
    assert_eq!(codes(&s.on_outcome(Outcome::Login(None))), [530]);
    assert_eq!(codes(&run(&mut s, "USER FTP")), [331]);
    assert_eq!(codes(&run(&mut s, "PASS ")), [230]);
    assert_eq!(codes(&run(&mut s, "USER other")), [503]);
    assert_eq!(codes(&run(&mut s, "ACCT x")), [202]);
}

#[test]
fn anonymous_password_is_kept_for_the_logs_and_bounded() {
    let mut s = Session::new(peer(), Policy::default());
    assert!(!s.is_anonymous());
    assert_eq!(s.anonymous_password(), None);
    run(&mut s, "USER anonymous");
    // Not logged in yet: the password is known only once it has been accepted.
    assert_eq!(s.anonymous_password(), None);
    assert_eq!(codes(&run(&mut s, "PASS guest@example.org")), [230]);
    assert!(s.is_anonymous());
    assert_eq!(s.anonymous_password(), Some(&b"guest@example.org"[..]));
    assert_eq!(s.user(), Some(&b"anonymous"[..]));

    // An empty password is kept as given (the log shows it as `*`).
    let mut s = Session::new(peer(), Policy::default());
    run(&mut s, "USER ftp");
    run(&mut s, "PASS ");
    assert_eq!(s.anonymous_password(), Some(&b""[..]));

    // A long one is cut to the cap; a cut inside a UTF-8 character backs off to its start.
    let mut s = Session::new(peer(), Policy::default());
    run(&mut s, "USER anonymous");
    let long = format!(
        "{}é{}",
        "a".repeat(MAX_ANONYMOUS_PASSWORD_BYTES - 1),
        "b".repeat(3000)
    );
    assert_eq!(codes(&run(&mut s, &format!("PASS {long}"))), [230]);
    let kept = s.anonymous_password().unwrap();
    assert_eq!(kept.len(), MAX_ANONYMOUS_PASSWORD_BYTES - 1);
    assert!(kept.iter().all(|&b| b == b'a'));
    let mut s = Session::new(peer(), Policy::default());
    run(&mut s, "USER anonymous");
    run(&mut s, &format!("PASS {}", "x".repeat(4000)));
    assert_eq!(
        s.anonymous_password().map(<[u8]>::len),
        Some(MAX_ANONYMOUS_PASSWORD_BYTES)
    );
}

#[test]
fn named_users_passwords_are_not_kept() {
    let s = user_with(Rights::read_only());
    assert!(!s.is_anonymous());
    assert_eq!(s.anonymous_password(), None);
    assert_eq!(s.user(), Some(&b"alice"[..]));
}

fn user_with(rights: Rights) -> Session {
    let mut s = Session::new(peer(), Policy::default());
    run(&mut s, "USER alice");
    run(&mut s, "PASS pw");
    assert_eq!(codes(&s.on_outcome(Outcome::Login(Some(rights)))), [230]);
    s
}

fn read_write() -> Rights {
    Rights {
        modify: true,
        upload: true,
        download: true,
        drop_box: None,
        tls: None,
    }
}

fn with_pasv(s: &mut Session) {
    run(s, "PASV");
    s.on_outcome(Outcome::PassiveReady("127.0.0.1:50000".parse().unwrap()));
}

#[test]
fn one_gate_refuses_every_write_spelling_for_read_only_users() {
    for rights in [
        Rights::read_only(),
        Rights {
            upload: true,
            ..Rights::read_only()
        },
    ] {
        let mut s = user_with(rights.clone());
        for cmd in [
            "DELE f",
            "MKD d",
            "XMKD d",
            "RMD d",
            "XRMD d",
            "RNFR f",
            "SITE CHMOD 644 f",
            "MFMT 20200101000000 f",
        ] {
            assert_eq!(codes(&run(&mut s, cmd)), [550], "{cmd} with {rights:?}");
        }
    }
    let mut s = user_with(Rights::read_only());
    for cmd in ["STOR f", "APPE f", "STOU"] {
        assert_eq!(codes(&run(&mut s, cmd)), [550], "{cmd}");
    }
    let mut s = user_with(Rights {
        download: false,
        ..read_write()
    });
    with_pasv(&mut s);
    assert_eq!(codes(&run(&mut s, "RETR f")), [550]);
}

#[test]
fn uploads_and_their_modes() {
    let mut s = user_with(read_write());
    assert_eq!(codes(&run(&mut s, "STOR f")), [425], "no data channel yet");
    with_pasv(&mut s);
    let step = run(&mut s, "STOR f");
    assert_eq!(
        step.effect,
        Some(Effect::Store {
            path: VirtualPath::root().join(b"f").unwrap(),
            mode: StoreMode::Atomic { exclusive: false },
            ascii: false,
            umask: 0o022
        })
    );
    assert_eq!(
        s.on_outcome(Outcome::TransferStarting {
            size: None,
            name: None
        })
        .replies[0]
            .to_bytes(),
        b"150 Ok to send data.\r\n"
    );
    assert_eq!(codes(&s.on_outcome(Outcome::TransferDone)), [226]);
    with_pasv(&mut s);
    run(&mut s, "REST 10");
    assert!(matches!(
        run(&mut s, "STOR f").effect,
        Some(Effect::Store {
            mode: StoreMode::At(10),
            ..
        })
    ));
    assert_eq!(
        codes(&s.on_outcome(Outcome::TransferFailed(TransferError::File(
            FileError::NoSpace
        )))),
        [452]
    );
    with_pasv(&mut s);
    assert!(matches!(
        run(&mut s, "APPE f").effect,
        Some(Effect::Store {
            mode: StoreMode::Append,
            ..
        })
    ));
    assert_eq!(
        codes(&s.on_outcome(Outcome::TransferFailed(TransferError::ConnectionLost))),
        [426]
    );
    with_pasv(&mut s);
    assert!(matches!(
        run(&mut s, "STOU").effect,
        Some(Effect::Store {
            mode: StoreMode::Unique { .. },
            ..
        })
    ));
    let unique = VirtualPath::root().join(b"ftp-upload.1").unwrap();
    let r = s.on_outcome(Outcome::TransferStarting {
        size: None,
        name: Some(unique),
    });
    assert_eq!(r.replies[0].to_bytes(), b"150 FILE: ftp-upload.1\r\n");
    assert_eq!(
        s.on_outcome(Outcome::TransferDone).replies[0].to_bytes(),
        b"226 Transfer complete (unique file name: ftp-upload.1).\r\n"
    );
}

#[test]
fn rename_needs_rnfr_immediately_before() {
    let mut s = user_with(read_write());
    assert_eq!(codes(&run(&mut s, "RNTO b")), [503]);
    assert_eq!(
        run(&mut s, "RNFR a").effect,
        Some(Effect::Stat(VirtualPath::root().join(b"a").unwrap()))
    );
    assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(file(1))))), [350]);
    let step = run(&mut s, "RNTO b");
    let (from, to) = (
        VirtualPath::root().join(b"a").unwrap(),
        VirtualPath::root().join(b"b").unwrap(),
    );
    assert_eq!(step.effect, Some(Effect::Fs(FsOp::Rename { from, to })));
    assert_eq!(codes(&s.on_outcome(Outcome::Fs(Ok(())))), [250]);
    run(&mut s, "RNFR a");
    s.on_outcome(Outcome::Stat(Ok(file(1))));
    assert_eq!(codes(&run(&mut s, "NOOP")), [200]);
    assert_eq!(
        codes(&run(&mut s, "RNTO b")),
        [503],
        "NOOP in between forgets RNFR"
    );
    run(&mut s, "RNFR missing");
    assert_eq!(
        codes(&s.on_outcome(Outcome::Stat(Err(FileError::NotFound)))),
        [550]
    );
}

#[test]
fn mkd_rmd_dele_chmod_mfmt_replies() {
    let mut s = user_with(read_write());
    run(&mut s, "MKD a \"b\"");
    assert_eq!(
        s.on_outcome(Outcome::Fs(Ok(()))).replies[0].to_bytes(),
        b"257 \"/a \"\"b\"\"\" created.\r\n"
    );
    run(&mut s, "MKD a");
    assert_eq!(
        codes(&s.on_outcome(Outcome::Fs(Err(FileError::Exists)))),
        [550]
    );
    run(&mut s, "RMD a");
    assert_eq!(codes(&s.on_outcome(Outcome::Fs(Ok(())))), [250]);
    run(&mut s, "RMD a");
    assert_eq!(
        codes(&s.on_outcome(Outcome::Fs(Err(FileError::NotEmpty)))),
        [550]
    );
    run(&mut s, "DELE f");
    assert_eq!(codes(&s.on_outcome(Outcome::Fs(Ok(())))), [250]);
    assert_eq!(
        run(&mut s, "SITE CHMOD 600 f").effect,
        Some(Effect::Fs(FsOp::Chmod {
            path: VirtualPath::root().join(b"f").unwrap(),
            mode: 0o600
        }))
    );
    assert_eq!(codes(&s.on_outcome(Outcome::Fs(Ok(())))), [200]);
    run(&mut s, "MFMT 20200102030405 f");
    assert_eq!(
        s.on_outcome(Outcome::Fs(Ok(()))).replies[0].to_bytes(),
        b"213 Modify=20200102030405; /f\r\n"
    );
    assert_eq!(codes(&run(&mut s, "SITE UMASK 027")), [200]);
    assert_eq!(
        run(&mut s, "SITE UMASK").replies[0].to_bytes(),
        b"200 Your current UMASK is 0027.\r\n"
    );
    assert!(matches!(
        run(&mut s, "MKD x").effect,
        Some(Effect::Fs(FsOp::Mkdir { umask: 0o027, .. }))
    ));
    s.on_outcome(Outcome::Fs(Ok(())));
    assert_eq!(codes(&run(&mut s, "SITE HELP")), [214]);
    assert_eq!(codes(&run(&mut s, "SITE CHMOD 4755 f")), [550]);
    assert_eq!(codes(&run(&mut s, "SITE EXEC x")), [500]);
    assert_eq!(codes(&run(&mut s, "DELE /")), [550]);
}

#[test]
fn anonymous_drop_box_is_write_only() {
    let policy = Policy {
        allow_anonymous: true,
        anonymous_upload: Some(VirtualPath::root().join(b"incoming").unwrap()),
        ..Policy::default()
    };
    let mut s = Session::new(peer(), policy);
    run(&mut s, "USER anonymous");
    assert_eq!(codes(&run(&mut s, "PASS x")), [230]);
    with_pasv(&mut s);
    assert_eq!(codes(&run(&mut s, "STOR elsewhere")), [550]);
    assert!(matches!(
        run(&mut s, "STOR incoming/new").effect,
        Some(Effect::Store {
            mode: StoreMode::Atomic { exclusive: true },
            ..
        })
    ));
    s.on_outcome(Outcome::TransferDone);
    with_pasv(&mut s);
    assert_eq!(codes(&run(&mut s, "APPE incoming/new")), [550]);
    assert_eq!(codes(&run(&mut s, "RETR incoming/new")), [550]);
    assert_eq!(codes(&run(&mut s, "LIST incoming")), [550]);
    assert_eq!(codes(&run(&mut s, "DELE incoming/new")), [550]);
    run(&mut s, "REST 5");
    assert_eq!(codes(&run(&mut s, "STOR incoming/new")), [550]);
    assert!(matches!(
        run(&mut s, "RETR pub.txt").effect,
        Some(Effect::Retr { .. })
    ));
}

#[test]
fn anonymous_can_be_disabled() {
    let mut s = Session::new(
        peer(),
        Policy {
            allow_anonymous: false,
            ..Policy::default()
        },
    );
    run(&mut s, "USER anonymous");
    assert_eq!(codes(&run(&mut s, "PASS x")), [530]);
}

#[test]
fn retr_needs_a_data_channel_then_runs() {
    let mut s = logged_in();
    assert_eq!(codes(&run(&mut s, "RETR f")), [425]);
    let step = run(&mut s, "PASV");
    assert_eq!(step.effect, Some(Effect::Passive));
    let step = s.on_outcome(Outcome::PassiveReady("127.0.0.1:50000".parse().unwrap()));
    assert_eq!(
        step.replies[0].to_bytes(),
        b"227 Entering Passive Mode (127,0,0,1,195,80).\r\n"
    );
    assert_eq!(codes(&run(&mut s, "REST 10")), [350]);
    let step = run(&mut s, "RETR /d/f");
    assert_eq!(
        step.effect,
        Some(Effect::Retr {
            path: VirtualPath::root().join(b"/d/f").unwrap(),
            offset: 10,
            ascii: false
        })
    );
    assert!(!s.accepts_now(&parse(b"NOOP")));
    assert!(s.accepts_now(&parse(b"ABOR")));
    let step = s.on_outcome(Outcome::TransferStarting {
        size: Some(5),
        name: None,
    });
    // The 150 names the file as the client sent it, as vsftpd and ProFTPD do.
    assert_eq!(
        step.replies[0].to_bytes(),
        b"150 Opening BINARY mode data connection for /d/f (5 bytes).\r\n"
    );
    assert_eq!(codes(&s.on_outcome(Outcome::TransferDone)), [226]);
    // The passive channel is used up and REST applies to one transfer only.
    assert_eq!(codes(&run(&mut s, "RETR f")), [425]);
}

#[test]
fn abort_mid_transfer_gives_426_then_226() {
    let mut s = logged_in();
    run(&mut s, "EPSV");
    assert_eq!(
        s.on_outcome(Outcome::PassiveReady("127.0.0.1:50001".parse().unwrap()))
            .replies[0]
            .to_bytes(),
        b"229 Entering Extended Passive Mode (|||50001|)\r\n"
    );
    run(&mut s, "RETR f");
    s.on_outcome(Outcome::TransferStarting {
        size: None,
        name: None,
    });
    assert_eq!(run(&mut s, "ABOR").effect, Some(Effect::Abort));
    // The transfer's own end racing with ABOR is ignored.
    assert!(s.on_outcome(Outcome::TransferDone).replies.is_empty());
    assert_eq!(
        codes(&s.on_outcome(Outcome::Aborted {
            transfer_was_active: true
        })),
        [426, 226]
    );
    assert!(codes(&run(&mut s, "ABOR")).is_empty());
    assert_eq!(
        codes(&s.on_outcome(Outcome::Aborted {
            transfer_was_active: false
        })),
        [225]
    );
}

/// RFC 959 section 4.1.3: STAT during a transfer reports its progress and leaves it running.
#[test]
fn stat_mid_transfer_reports_progress_and_the_transfer_goes_on() {
    let mut s = logged_in();
    with_pasv(&mut s);
    run(&mut s, "REST 10");
    run(&mut s, "RETR /d/big.bin");
    // Before the data connection is up the answer is the same, with nothing sent yet.
    assert!(s.accepts_now(&parse(b"STAT")));
    assert!(!s.accepts_now(&parse(b"STAT /d")), "STAT with a path waits");
    let step = run(&mut s, "STAT");
    assert!(step.replies.is_empty());
    assert_eq!(step.effect, Some(Effect::TransferStatus));
    assert_eq!(
        codes(&s.on_outcome(Outcome::TransferStarting {
            size: Some(90),
            name: None,
        })),
        [150]
    );
    let step = run(&mut s, "STAT");
    assert!(
        step.replies.is_empty(),
        "the server answers, from its counters"
    );
    assert_eq!(step.effect, Some(Effect::TransferStatus));
    let progress = Progress {
        bytes: 45,
        total: Some(90),
        elapsed: Duration::from_millis(1500),
        protection: None,
    };
    assert_eq!(
        String::from_utf8(s.transfer_status(progress).to_bytes()).unwrap(),
        "213-Status of transfer:\r\n \
         RETR /d/big.bin\r\n \
         Status: 45 of 90 bytes transferred (50%)\r\n \
         Average rate: 30 bytes/s over 1.500 s\r\n\
         213 End of status\r\n"
    );
    // Still the same transfer: commands still wait, and its end is a 226.
    assert!(s.in_transfer());
    assert!(!s.accepts_now(&parse(b"NOOP")));
    assert_eq!(
        s.on_outcome(Outcome::TransferDone).replies[0].to_bytes(),
        b"226 Transfer complete.\r\n"
    );
    assert_eq!(
        codes(&run(&mut s, "STAT")),
        [211],
        "no transfer: server status"
    );
}

#[test]
fn stat_mid_upload_names_the_command_and_has_no_total() {
    let mut s = user_with(read_write());
    with_pasv(&mut s);
    run(&mut s, "STOR up.bin");
    s.on_outcome(Outcome::TransferStarting {
        size: None,
        name: None,
    });
    assert_eq!(run(&mut s, "STAT").effect, Some(Effect::TransferStatus));
    let progress = Progress {
        bytes: 3 << 20,
        total: None,
        elapsed: Duration::from_secs(2),
        protection: Some("kernel TLS"),
    };
    let text = s.transfer_status(progress).to_bytes();
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "213-Status of transfer:\r\n \
         STOR /up.bin\r\n \
         Status: 3145728 bytes transferred\r\n \
         Average rate: 1572864 bytes/s over 2.000 s\r\n \
         Data connection protected by kernel TLS\r\n\
         213 End of status\r\n"
    );
    assert_eq!(codes(&s.on_outcome(Outcome::TransferDone)), [226]);

    // APPE and STOU are named as such; STOU by the name the server picked.
    with_pasv(&mut s);
    run(&mut s, "APPE log");
    let r = String::from_utf8(s.transfer_status(Progress::default()).to_bytes()).unwrap();
    assert!(r.contains(" APPE /log\r\n"), "{r:?}");
    assert_eq!(
        codes(&s.on_outcome(Outcome::TransferFailed(TransferError::ConnectionLost))),
        [426]
    );
    with_pasv(&mut s);
    run(&mut s, "STOU");
    s.on_outcome(Outcome::TransferStarting {
        size: None,
        name: Some(VirtualPath::root().join(b"ftp-upload.1").unwrap()),
    });
    let r = String::from_utf8(s.transfer_status(Progress::default()).to_bytes()).unwrap();
    assert!(r.contains(" STOU /ftp-upload.1\r\n"), "{r:?}");
    assert!(
        r.contains(" rate: 0 bytes/s over 0.000 s"),
        "no time, no rate: {r:?}"
    );
}

#[test]
fn stat_mid_transfer_percent_edges() {
    let mut s = logged_in();
    with_pasv(&mut s);
    run(&mut s, "RETR empty");
    let status = |s: &Session, bytes, total| {
        let p = Progress {
            bytes,
            total: Some(total),
            elapsed: Duration::from_secs(1),
            protection: None,
        };
        String::from_utf8(s.transfer_status(p).to_bytes()).unwrap()
    };
    assert!(status(&s, 0, 0).contains(" Status: 0 of 0 bytes transferred (100%)"));
    assert!(status(&s, 1, 3).contains("(33%)"));
    assert!(status(&s, u64::MAX, u64::MAX).contains("(100%)"));
}

#[test]
fn transfer_failures_map_to_rfc_codes() {
    for (err, code) in [
        (TransferError::File(FileError::NotFound), 550),
        (TransferError::NoDataConnection, 425),
        (TransferError::ConnectionLost, 426),
        (TransferError::FileChanged, 451),
        (TransferError::Local(5), 451),
    ] {
        let mut s = logged_in();
        run(&mut s, "PASV");
        s.on_outcome(Outcome::PassiveReady("127.0.0.1:50000".parse().unwrap()));
        run(&mut s, "RETR f");
        assert_eq!(
            codes(&s.on_outcome(Outcome::TransferFailed(err))),
            [code],
            "{err:?}"
        );
    }
}

#[test]
fn mlsd_on_a_file_is_501() {
    let mut s = logged_in();
    run(&mut s, "PASV");
    s.on_outcome(Outcome::PassiveReady("127.0.0.1:50000".parse().unwrap()));
    run(&mut s, "MLSD f");
    assert_eq!(
        codes(&s.on_outcome(Outcome::TransferFailed(TransferError::File(
            FileError::NotADirectory
        )))),
        [501]
    );
}

#[test]
fn port_refuses_bounce_and_low_ports() {
    let mut s = logged_in();
    assert_eq!(codes(&run(&mut s, "PORT 10,0,0,1,200,10")), [504]);
    assert_eq!(codes(&run(&mut s, "PORT 127,0,0,1,0,21")), [504]);
    assert_eq!(codes(&run(&mut s, "PORT 127,0,0,1")), [501]);
    let step = run(&mut s, "PORT 127,0,0,1,200,10");
    assert_eq!(codes(&step), [200]);
    assert_eq!(
        step.effect,
        Some(Effect::Active("127.0.0.1:51210".parse().unwrap()))
    );
    assert_eq!(codes(&run(&mut s, "EPRT |2|::1|5000|")), [504]);
    assert_eq!(codes(&run(&mut s, "EPRT |1|127.0.0.1|5000|")), [200]);
    assert_eq!(codes(&run(&mut s, "EPRT |9|x|5000|")), [522]);
}

#[test]
fn epsv_all_locks_out_other_setups() {
    let mut s = logged_in();
    assert_eq!(codes(&run(&mut s, "EPSV ALL")), [200]);
    assert_eq!(codes(&run(&mut s, "PASV")), [503]);
    assert_eq!(codes(&run(&mut s, "PORT 127,0,0,1,200,10")), [503]);
    assert_eq!(run(&mut s, "EPSV").effect, Some(Effect::Passive));
}

#[test]
fn epsv_protocol_mismatch_is_522() {
    let mut s = logged_in();
    assert_eq!(codes(&run(&mut s, "EPSV 2")), [522]);
    assert_eq!(run(&mut s, "EPSV 1").effect, Some(Effect::Passive));
}

#[test]
fn ipv6_peer_pasv_is_refused() {
    let mut s = Session::new("::1".parse().unwrap(), Policy::default());
    run(&mut s, "USER ftp");
    run(&mut s, "PASS x");
    assert_eq!(codes(&run(&mut s, "PASV")), [425]);
}

#[test]
fn cwd_pwd_cdup() {
    let mut s = logged_in();
    assert_eq!(
        run(&mut s, "PWD").replies[0].to_bytes(),
        b"257 \"/\" is the current directory.\r\n"
    );
    let step = run(&mut s, "CWD a \"q\"");
    assert_eq!(
        step.effect,
        Some(Effect::Stat(VirtualPath::root().join(b"a \"q\"").unwrap()))
    );
    let mut dir = file(0);
    dir.kind = FileKind::Dir;
    assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(dir.clone())))), [250]);
    assert_eq!(
        run(&mut s, "PWD").replies[0].to_bytes(),
        b"257 \"/a \"\"q\"\"\" is the current directory.\r\n"
    );
    run(&mut s, "CWD f");
    assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(file(1))))), [550]);
    run(&mut s, "CWD missing");
    assert_eq!(
        codes(&s.on_outcome(Outcome::Stat(Err(FileError::NotFound)))),
        [550]
    );
    assert_eq!(
        run(&mut s, "CDUP").effect,
        Some(Effect::Stat(VirtualPath::root()))
    );
    assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(dir)))), [250]);
    assert_eq!(s.cwd(), &VirtualPath::root());
}

#[test]
fn size_mdtm_mlst() {
    let mut s = logged_in();
    run(&mut s, "SIZE f");
    assert_eq!(
        s.on_outcome(Outcome::Stat(Ok(file(1234)))).replies[0].to_bytes(),
        b"213 1234\r\n"
    );
    run(&mut s, "MDTM f");
    assert_eq!(
        s.on_outcome(Outcome::Stat(Ok(file(1)))).replies[0].to_bytes(),
        b"213 19700101000000\r\n"
    );
    run(&mut s, "SIZE d");
    let mut dir = file(0);
    dir.kind = FileKind::Dir;
    assert_eq!(codes(&s.on_outcome(Outcome::Stat(Ok(dir)))), [550]);
    run(&mut s, "MLST f");
    let r = s.on_outcome(Outcome::Stat(Ok(file(3)))).replies[0].to_bytes();
    let text = String::from_utf8(r).unwrap();
    assert!(
        text.starts_with("250-Listing /f\r\n type=file;size=3;"),
        "{text}"
    );
    assert!(text.ends_with(" /f\r\n250 End\r\n"), "{text}");
}

#[test]
fn simple_commands() {
    let mut s = logged_in();
    assert_eq!(
        run(&mut s, "SYST").replies[0].to_bytes(),
        b"215 UNIX Type: L8\r\n"
    );
    assert_eq!(codes(&run(&mut s, "TYPE A")), [200]);
    assert_eq!(codes(&run(&mut s, "TYPE E")), [504]);
    assert_eq!(codes(&run(&mut s, "MODE S")), [200]);
    assert_eq!(codes(&run(&mut s, "STRU F")), [200]);
    assert_eq!(codes(&run(&mut s, "NOOP")), [200]);
    assert_eq!(codes(&run(&mut s, "ALLO 100")), [202]);
    assert_eq!(codes(&run(&mut s, "HELP")), [214]);
    assert_eq!(codes(&run(&mut s, "HELP RETR")), [214]);
    assert_eq!(codes(&run(&mut s, "STAT")), [211]);
    assert_eq!(codes(&run(&mut s, "OPTS UTF8 ON")), [200]);
    assert_eq!(codes(&run(&mut s, "OPTS FOO")), [501]);
    assert_eq!(codes(&run(&mut s, "STOR x")), [550]);
    assert_eq!(codes(&run(&mut s, "DELE x")), [550]);
    assert_eq!(codes(&run(&mut s, "XYZZY")), [500]);
    assert_eq!(codes(&run(&mut s, "REIN")), [502]);
    let quit = run(&mut s, "QUIT");
    assert_eq!(codes(&quit), [221]);
    assert_eq!(quit.effect, Some(Effect::Close));
}

#[test]
fn feat_lists_extensions() {
    let mut s = Session::new(peer(), Policy::default());
    let text = String::from_utf8(run(&mut s, "FEAT").replies[0].to_bytes()).unwrap();
    for ext in [
        "EPSV",
        "EPRT",
        "MDTM",
        "MLST type*;",
        "REST STREAM",
        "SIZE",
        "UTF8",
    ] {
        assert!(text.contains(&format!(" {ext}")), "{ext} missing in {text}");
    }
    assert!(text.starts_with("211-") && text.ends_with("211 End\r\n"));
}

/// The `ls` options of LIST/NLST/STAT decide which entries the server lists; MLSD lists all.
#[test]
fn list_options_choose_what_is_shown() {
    let hidden = Visibility {
        dot_files: false,
        dot_dirs: false,
    };
    let dot_files = Visibility {
        dot_files: true,
        dot_dirs: false,
    };
    let everything = Visibility {
        dot_files: true,
        dot_dirs: true,
    };
    let list = |force: bool, line: &str| {
        let mut s = Session::new(
            peer(),
            Policy {
                force_dot_files: force,
                ..Policy::default()
            },
        );
        run(&mut s, "USER anonymous");
        run(&mut s, "PASS x");
        with_pasv(&mut s);
        match run(&mut s, line).effect {
            Some(Effect::List {
                path,
                format,
                show,
                itself,
                ..
            }) => (path.as_bytes().to_vec(), format, show, itself),
            other => panic!("{line}: {other:?}"),
        }
    };
    use ListFormat::{List, Mlsd, Nlst};
    assert_eq!(list(false, "LIST"), (b"/".to_vec(), List, hidden, None));
    assert_eq!(
        list(false, "LIST -la"),
        (b"/".to_vec(), List, everything, None)
    );
    assert_eq!(
        list(false, "LIST -A d"),
        (b"/d".to_vec(), List, dot_files, None)
    );
    assert_eq!(
        list(false, "NLST -a"),
        (b"/".to_vec(), Nlst, everything, None)
    );
    // NLST -l is a long listing, as vsftpd and pure-ftpd make it.
    assert_eq!(list(false, "NLST -l"), (b"/".to_vec(), List, hidden, None));
    assert_eq!(
        list(false, "LIST -ld"),
        (b"/".to_vec(), List, hidden, Some(b".".to_vec()))
    );
    assert_eq!(
        list(false, "LIST -d d/"),
        (b"/d".to_vec(), List, hidden, Some(b"d/".to_vec()))
    );
    assert_eq!(
        list(false, "MLSD"),
        (b"/".to_vec(), Mlsd, Visibility::EVERY_ENTRY, None)
    );
    assert_eq!(list(true, "LIST"), (b"/".to_vec(), List, dot_files, None));
    assert_eq!(
        list(true, "NLST -a"),
        (b"/".to_vec(), Nlst, everything, None)
    );
    assert_eq!(
        list(true, "MLSD"),
        (b"/".to_vec(), Mlsd, Visibility::EVERY_ENTRY, None)
    );

    // STAT <path> takes the same options; STAT alone is the server status.
    let mut s = logged_in();
    assert!(matches!(
        run(&mut s, "STAT -a").effect,
        Some(Effect::List { show, target: ListTarget::Control, .. }) if show == everything
    ));
    let mut s = logged_in();
    assert!(matches!(
        run(&mut s, "STAT d").effect,
        Some(Effect::List { show, target: ListTarget::Control, .. }) if show == hidden
    ));
    let mut s = logged_in();
    let step = run(&mut s, "STAT");
    assert_eq!((codes(&step), step.effect), (vec![211], None));
}

fn tls_policy(required: bool) -> Policy {
    let named = if required {
        TlsRequirement::Data
    } else {
        TlsRequirement::Optional
    };
    classes(TlsRequirement::Optional, named)
}

fn classes(anonymous: TlsRequirement, named: TlsRequirement) -> Policy {
    Policy {
        tls: super::TlsPolicy {
            available: true,
            anonymous,
            named,
        },
        ..Policy::default()
    }
}

fn text(step: &Step) -> String {
    String::from_utf8_lossy(&step.replies[0].to_bytes()).into_owned()
}

/// AUTH TLS (or an implicit connection), the login, and the password check coming back with
/// `rights` for a named user.
fn tls_login(s: &mut Session, user: &str, rights: Rights) -> Step {
    assert_eq!(codes(&run(s, &format!("USER {user}"))), [331]);
    let step = run(s, "PASS secret");
    if step.effect.is_none() {
        return step;
    }
    s.on_outcome(Outcome::Login(Some(rights)))
}

#[test]
fn auth_tls_sequence() {
    let mut s = Session::new(peer(), tls_policy(false));
    // PBSZ and PROT need AUTH first (RFC 4217 sections 8 and 9), and PROT needs PBSZ.
    assert_eq!(codes(&run(&mut s, "PBSZ 0")), [503]);
    assert_eq!(codes(&run(&mut s, "PROT P")), [503]);
    assert_eq!(codes(&run(&mut s, "CCC")), [503]);
    assert!(!s.data_protected());
    let auth = run(&mut s, "AUTH TLS");
    assert_eq!(codes(&auth), [234]);
    assert_eq!(auth.effect, Some(Effect::StartTls));
    assert_eq!(codes(&run(&mut s, "AUTH TLS")), [503]);
    assert_eq!(codes(&run(&mut s, "PROT P")), [503]);
    assert_eq!(codes(&run(&mut s, "PBSZ 0")), [200]);
    assert_eq!(codes(&run(&mut s, "PROT S")), [536]);
    assert_eq!(codes(&run(&mut s, "PROT E")), [536]);
    assert_eq!(codes(&run(&mut s, "PROT P")), [200]);
    assert!(s.data_protected());
    assert_eq!(codes(&run(&mut s, "PROT C")), [200]);
    assert!(!s.data_protected());
    assert_eq!(codes(&run(&mut s, "CCC")), [534]);
    assert_eq!(codes(&run(&mut s, "USER anonymous")), [331]);
    assert_eq!(codes(&run(&mut s, "PASS a@b")), [230]);
}

#[test]
fn auth_tls_without_a_certificate_or_after_login() {
    let mut s = Session::new(peer(), Policy::default());
    assert_eq!(codes(&run(&mut s, "AUTH TLS")), [502]);
    let mut s = Session::new(peer(), tls_policy(false));
    run(&mut s, "USER anonymous");
    run(&mut s, "PASS a@b");
    assert_eq!(codes(&run(&mut s, "AUTH TLS")), [503]);
}

#[test]
fn auth_tls_resets_a_login_in_progress() {
    let mut s = Session::new(peer(), tls_policy(false));
    assert_eq!(codes(&run(&mut s, "USER anonymous")), [331]);
    assert_eq!(codes(&run(&mut s, "AUTH TLS")), [234]);
    assert_eq!(codes(&run(&mut s, "PASS a@b")), [503]);
}

#[test]
fn tls_required_for_named_users_only() {
    let mut s = Session::new(peer(), tls_policy(true));
    assert_eq!(codes(&run(&mut s, "USER alice")), [534]);
    assert_eq!(codes(&run(&mut s, "PASS secret")), [503]);
    assert_eq!(codes(&run(&mut s, "USER anonymous")), [331]);
    assert_eq!(codes(&run(&mut s, "PASS a@b")), [230]);
    with_pasv(&mut s);
    assert!(
        run(&mut s, "RETR f").effect.is_some(),
        "anonymous may stay in clear"
    );

    let mut s = Session::new(peer(), tls_policy(true));
    run(&mut s, "AUTH TLS");
    assert_eq!(codes(&run(&mut s, "USER alice")), [331]);
    assert!(matches!(
        run(&mut s, "PASS secret").effect,
        Some(Effect::Authenticate { .. })
    ));
    s.on_outcome(Outcome::Login(Some(Rights::read_only())));
    with_pasv(&mut s);
    assert_eq!(codes(&run(&mut s, "RETR f")), [521]);
    assert_eq!(codes(&run(&mut s, "LIST")), [521]);
    run(&mut s, "PBSZ 0");
    run(&mut s, "PROT P");
    assert!(matches!(
        run(&mut s, "RETR f").effect,
        Some(Effect::Retr { .. })
    ));
}

#[test]
fn feat_lists_tls_only_when_available() {
    let mut s = Session::new(peer(), Policy::default());
    let text = String::from_utf8(run(&mut s, "FEAT").replies[0].to_bytes()).unwrap();
    assert!(!text.contains("AUTH") && !text.contains("PROT"), "{text}");
    let mut s = Session::new(peer(), tls_policy(false));
    let text = String::from_utf8(run(&mut s, "FEAT").replies[0].to_bytes()).unwrap();
    for ext in [" AUTH TLS\r\n", " PBSZ\r\n", " PROT\r\n"] {
        assert!(text.contains(ext), "{ext:?} missing in {text}");
    }
}

#[test]
fn tls_transfer_failures_map_to_replies() {
    for (err, code) in [
        (TransferError::TlsHandshake, 425),
        (TransferError::TlsNotResumed, 522),
        (TransferError::TlsTruncated, 451),
        (TransferError::TlsRekey, 426),
    ] {
        let mut s = logged_in();
        with_pasv(&mut s);
        run(&mut s, "RETR f");
        assert_eq!(
            codes(&s.on_outcome(Outcome::TransferFailed(err))),
            [code],
            "{err:?}"
        );
    }
}

#[test]
fn login_policy_refuses_clear_users_of_its_class_with_534_naming_auth_tls() {
    use TlsRequirement::*;
    for (anonymous, named, user, refused) in [
        (Optional, Optional, "alice", false),
        (Optional, Login, "alice", true),
        (Optional, Data, "alice", true),
        (Optional, Login, "anonymous", false),
        (Login, Optional, "ftp", true),
        (Login, Optional, "alice", false),
        (Data, Optional, "anonymous", true),
    ] {
        let mut s = Session::new(peer(), classes(anonymous, named));
        let step = run(&mut s, &format!("USER {user}"));
        if refused {
            assert_eq!(codes(&step), [534], "{anonymous:?} {named:?} {user}");
            assert!(
                text(&step)
                    .contains("TLS required for login: enable explicit FTP over TLS (AUTH TLS)"),
                "{}",
                text(&step)
            );
            assert_eq!(codes(&run(&mut s, "PASS x")), [503], "no password is taken");
            // Over TLS the same login goes on.
            run(&mut s, "AUTH TLS");
            assert_eq!(codes(&run(&mut s, &format!("USER {user}"))), [331]);
        } else {
            assert_eq!(codes(&step), [331], "{anonymous:?} {named:?} {user}");
        }
    }
}

#[test]
fn data_policy_refuses_prot_c_with_534_and_clear_transfers_with_521() {
    let mut s = Session::new(
        peer(),
        classes(TlsRequirement::Optional, TlsRequirement::Data),
    );
    run(&mut s, "AUTH TLS");
    run(&mut s, "PBSZ 0");
    // Before login the class is not known: PROT C is taken, the data command decides.
    assert_eq!(codes(&run(&mut s, "PROT C")), [200]);
    assert_eq!(codes(&tls_login(&mut s, "alice", read_write())), [230]);
    with_pasv(&mut s);
    for cmd in ["RETR f", "LIST", "NLST", "MLSD", "STOR f"] {
        let step = run(&mut s, cmd);
        assert_eq!(codes(&step), [521], "{cmd}");
        assert!(text(&step).contains("PROT P"), "{}", text(&step));
    }
    let step = run(&mut s, "PROT C");
    assert_eq!(codes(&step), [534]);
    assert!(text(&step).contains("use PROT P"), "{}", text(&step));
    assert!(!s.data_protected());
    assert_eq!(codes(&run(&mut s, "PROT P")), [200]);
    // Once protected, PROT C is still refused.
    assert_eq!(codes(&run(&mut s, "PROT C")), [534]);
    assert!(s.data_protected());
    assert!(matches!(
        run(&mut s, "RETR f").effect,
        Some(Effect::Retr { .. })
    ));

    // Anonymous users of the same server are not held to the named class.
    let mut s = Session::new(
        peer(),
        classes(TlsRequirement::Optional, TlsRequirement::Data),
    );
    run(&mut s, "AUTH TLS");
    run(&mut s, "PBSZ 0");
    run(&mut s, "USER anonymous");
    run(&mut s, "PASS a@b");
    assert_eq!(codes(&run(&mut s, "PROT C")), [200]);
    with_pasv(&mut s);
    assert!(run(&mut s, "RETR f").effect.is_some());
}

#[test]
fn login_policy_alone_lets_data_go_in_clear() {
    let mut s = Session::new(
        peer(),
        classes(TlsRequirement::Optional, TlsRequirement::Login),
    );
    run(&mut s, "AUTH TLS");
    assert_eq!(
        codes(&tls_login(&mut s, "alice", Rights::read_only())),
        [230]
    );
    with_pasv(&mut s);
    assert!(matches!(
        run(&mut s, "RETR f").effect,
        Some(Effect::Retr { .. })
    ));
}

#[test]
fn a_users_own_requirement_adds_to_its_class() {
    let strict = |tls| Rights {
        tls: Some(tls),
        ..Rights::read_only()
    };
    // "login" for one user of an optional class: the account is not used in clear (the check
    // comes with the password check, the only time the user is known).
    let mut s = Session::new(
        peer(),
        classes(TlsRequirement::Optional, TlsRequirement::Optional),
    );
    let step = tls_login(&mut s, "alice", strict(TlsRequirement::Login));
    assert_eq!(codes(&step), [534]);
    assert!(!s.logged_in());
    let mut s = Session::new(
        peer(),
        classes(TlsRequirement::Optional, TlsRequirement::Optional),
    );
    run(&mut s, "AUTH TLS");
    assert_eq!(
        codes(&tls_login(&mut s, "alice", strict(TlsRequirement::Data))),
        [230]
    );
    with_pasv(&mut s);
    assert_eq!(codes(&run(&mut s, "RETR f")), [521]);
    // "optional" for one user cannot let it off a "data" class.
    let mut s = Session::new(
        peer(),
        classes(TlsRequirement::Optional, TlsRequirement::Data),
    );
    run(&mut s, "AUTH TLS");
    assert_eq!(
        codes(&tls_login(
            &mut s,
            "alice",
            strict(TlsRequirement::Optional)
        )),
        [230]
    );
    with_pasv(&mut s);
    assert_eq!(codes(&run(&mut s, "RETR f")), [521]);
}

#[test]
fn an_implicit_session_is_protected_from_the_start() {
    let mut s = Session::new(peer(), classes(TlsRequirement::Data, TlsRequirement::Data));
    s.start_implicit_tls();
    assert!(s.data_protected(), "PROT P by default");
    let step = run(&mut s, "AUTH TLS");
    assert_eq!((codes(&step), step.effect), (vec![503], None));
    // Clients send PBSZ 0 and PROT P anyway.
    assert_eq!(codes(&run(&mut s, "PBSZ 0")), [200]);
    assert_eq!(codes(&run(&mut s, "PROT P")), [200]);
    assert_eq!(codes(&run(&mut s, "USER anonymous")), [331]);
    assert_eq!(codes(&run(&mut s, "PASS a@b")), [230]);
    assert_eq!(codes(&run(&mut s, "CCC")), [534]);
    with_pasv(&mut s);
    assert!(run(&mut s, "RETR f").effect.is_some());

    // Where policy allows it, PROT C turns protection off (PBSZ counts as done).
    let mut s = Session::new(peer(), tls_policy(false));
    s.start_implicit_tls();
    assert_eq!(codes(&run(&mut s, "PROT C")), [200]);
    assert!(!s.data_protected());
}

#[test]
fn tls_requirements_parse_and_print_back() {
    for (text, level) in [
        ("optional", TlsRequirement::Optional),
        ("login", TlsRequirement::Login),
        ("data", TlsRequirement::Data),
    ] {
        assert_eq!(text.parse::<TlsRequirement>(), Ok(level));
        assert_eq!(level.to_string(), text);
    }
    assert!("required".parse::<TlsRequirement>().is_err());
    assert!("Login".parse::<TlsRequirement>().is_err());
    assert!(TlsRequirement::Optional < TlsRequirement::Login);
    assert!(TlsRequirement::Login < TlsRequirement::Data);
}
