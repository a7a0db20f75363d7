//! `--config FILE`, `--print-config` and `--check-config` through the real binary: keys named like
//! the flags, flags over the file, a printed configuration read back to the same settings, and
//! every bad key or value refused with the file, the key and the reason.

mod common;

use std::path::Path;

use common::daemon::{Daemon, run};
use common::{Ctrl, pattern};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_binary_serves_with_a_config_file_and_its_banner() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pub");
    std::fs::create_dir(&root).unwrap();
    let body = pattern(7, 300_000);
    std::fs::write(root.join("file.bin"), &body).unwrap();
    let conf = write(
        dir.path(),
        "ringftpd.toml",
        &format!(
            "root = {:?}\nlisten = [\"127.0.0.1:0\"]\nshards = 2\nbanner = \"Welcome to the test mirror.\"\n",
            root.to_str().unwrap()
        ),
    );
    let d = Daemon::spawn(&["--config", &conf], &[]);
    let mut c = Ctrl::connect_raw(d.addr);
    let (code, text) = c.read_reply();
    assert_eq!(code, 220);
    assert!(text.contains("Welcome to the test mirror."), "{text:?}");
    c.login();
    common::assert_bytes_eq(&c.retr("file.bin"), &body, "RETR with a config file");
    c.expect("QUIT", 221);
}

#[test]
fn flags_override_the_file_and_the_printed_config_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let conf = write(
        dir.path(),
        "a.toml",
        &format!(
            "root = {root:?}\nmax_sessions = 10\nbanner = \"from the file\"\npasv_ports = \"50000-50999\"\n"
        ),
    );
    let out = run(&["--config", &conf, "--max-sessions", "20", "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("max_sessions = 20\n"), "{printed}");
    assert!(
        printed.contains("banner = \"from the file\"\n"),
        "{printed}"
    );
    assert!(
        printed.contains("pasv_ports = \"50000-50999\"\n"),
        "{printed}"
    );
    // Every key is there, with its value or as a comment saying it is unset.
    for key in ringftpd::config::KEYS {
        assert!(
            printed.contains(&format!("{key} = "))
                || printed.contains(&format!("# {key} is not set")),
            "{key} missing from --print-config:\n{printed}"
        );
    }
    let again = write(dir.path(), "printed.toml", &printed);
    let out = run(&["--config", &again, "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        printed,
        "the printed configuration did not read back the same"
    );
    let out = run(&["--config", &again, "--check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn bad_keys_and_values_stop_start_up_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let missing = dir.path().join("missing");
    for (i, (text, key)) in [
        ("shardz = 2", "shardz"),
        ("shards = \"two\"", "shards"),
        ("pasv_ports = \"3000-2000\"", "pasv_ports"),
        ("data_path = \"zerocopy\"", "data_path"),
        ("listen = [\"nowhere\"]", "listen"),
        ("users = \"/definitely/not/here.toml\"", "users"),
        ("upload_grace_ms = 60000", "upload_grace_ms"),
        ("banner = \"a\\nb\"", "banner"),
    ]
    .iter()
    .enumerate()
    {
        let conf = write(
            dir.path(),
            &format!("bad{i}.toml"),
            &format!("root = {root:?}\nlisten = [\"127.0.0.1:0\"]\n{text}\n"),
        );
        // Both --check-config and a real start refuse, and neither leaves a server running.
        for extra in [&["--check-config"][..], &[][..]] {
            let mut args = vec!["--config", conf.as_str()];
            args.extend_from_slice(extra);
            let out = run(&args);
            let err = stderr(&out);
            assert!(!out.status.success(), "{text} was accepted");
            assert_ne!(out.status.code(), Some(124), "{text}: the server started");
            assert!(err.contains(&conf) && err.contains(key), "{text}: {err}");
        }
    }
    let conf = write(
        dir.path(),
        "noroot.toml",
        &format!("root = {:?}\n", missing.to_str().unwrap()),
    );
    let out = run(&["--config", &conf, "--check-config"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("root"), "{}", stderr(&out));
    let out = run(&["--config", missing.to_str().unwrap(), "--check-config"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    // A bad flag is named as the flag even when a file is given.
    let good = write(dir.path(), "good.toml", &format!("root = {root:?}\n"));
    let out = run(&["--config", &good, "--shards", "0", "--check-config"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--shards"), "{}", stderr(&out));
    let out = run(&["--config", &good, "--check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_example_config_is_valid_and_lists_every_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/ringftpd.toml");
    let text = std::fs::read_to_string(example).unwrap();
    for key in ringftpd::config::KEYS {
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.starts_with(&format!("{key} ="))
            }),
            "the example config does not document {key}"
        );
    }
    // The example names the Debian paths; check it with a root and users file that exist here.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let xferlog = dir.path().join("xferlog");
    let out = run(&[
        "--config",
        example,
        "--root",
        root,
        "--xferlog",
        xferlog.to_str().unwrap(),
        "--check-config",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
