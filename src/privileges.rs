//! What the process may do once its listeners are bound: started as root it switches to the
//! configured user (or refuses to serve as root unless told to), sets `PR_SET_NO_NEW_PRIVS`,
//! and confines itself with Landlock to the paths its configuration names.
//!
//! `main` runs this after `server::bind` and before anything else starts a thread (the log
//! thread, the helper pool, the shards): Landlock applies to the calling thread and the threads
//! it creates later, so every thread of the server is confined. Port 21 needs root (or
//! `CAP_NET_BIND_SERVICE`) only for `bind`, which is done by then.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use nix::unistd::{Gid, Uid, User};

use crate::auth::{Access as UserAccess, Users};
use crate::config::Config;

/// What a path is opened for under Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A root served read-only: files and directories read.
    Read,
    /// A root (or anonymous upload directory) written to: create, write, truncate, remove and
    /// rename (also across directories) files and directories; no devices, FIFOs, sockets or
    /// symlinks, and no execution.
    ReadWrite,
    /// The directory of the config or users file, re-read on SIGHUP (the directory, not the
    /// file: an editor or a config manager replaces the file with a new one, which a rule on
    /// the old file would not cover). Files read, the directory not listed.
    ReadFiles,
    /// A log file's directory: files opened for writing and created (logrotate renames the old
    /// file away and SIGHUP makes a new one); nothing read.
    WriteFiles,
}

impl Grant {
    fn access(self) -> BitFlags<AccessFs> {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        match self {
            Grant::Read => read,
            Grant::ReadWrite => {
                read | AccessFs::WriteFile
                    | AccessFs::Truncate
                    | AccessFs::MakeReg
                    | AccessFs::MakeDir
                    | AccessFs::RemoveFile
                    | AccessFs::RemoveDir
                    | AccessFs::Refer
            }
            Grant::ReadFiles => AccessFs::ReadFile.into(),
            Grant::WriteFiles => AccessFs::WriteFile | AccessFs::MakeReg,
        }
    }
}

/// The Landlock ABI whose file-system rights are handled (denied unless granted). Linux 6.10's:
/// later ABIs add scopes, audit flags and (ABI 9) pathname UNIX socket connects, which would
/// also cut off systemd's notify socket.
const HANDLED_ABI: ABI = ABI::V5;

/// Every path the process needs after start-up, with what it needs it for.
pub fn landlock_rules(
    config: &Config,
    users: Option<&Users>,
    config_file: Option<&Path>,
) -> Vec<(PathBuf, Grant)> {
    let mut rules = vec![(config.root.clone(), Grant::Read)];
    if let Some(dir) = &config.anonymous_upload {
        rules.push((
            config.root.join(dir.trim_start_matches('/')),
            Grant::ReadWrite,
        ));
    }
    for user in users.into_iter().flat_map(Users::iter) {
        let grant = match user.access {
            UserAccess::ReadOnly => Grant::Read,
            UserAccess::ReadWrite => Grant::ReadWrite,
        };
        rules.push((user.root.clone(), grant));
    }
    for file in [config_file, config.users_file.as_deref()]
        .into_iter()
        .flatten()
    {
        rules.push((parent_dir(file), Grant::ReadFiles));
    }
    // The certificate and key are read again on SIGHUP. Where one is a symlink (certbot's
    // live/ names point into archive/), the directory it resolves to is needed as well.
    for file in [&config.tls_cert, &config.tls_key].into_iter().flatten() {
        rules.push((parent_dir(file), Grant::ReadFiles));
        if let Ok(real) = std::fs::canonicalize(file) {
            rules.push((parent_dir(&real), Grant::ReadFiles));
        }
    }
    for file in [&config.xferlog, &config.json_log].into_iter().flatten() {
        rules.push((parent_dir(file), Grant::WriteFiles));
    }
    // Local time for the xferlog's timestamps (chrono reads the zone file, and again when it
    // changes). /etc/localtime is a symlink into the zoneinfo tree on Debian.
    for zone in ["/etc/localtime", "/usr/share/zoneinfo"] {
        if Path::new(zone).exists() {
            rules.push((PathBuf::from(zone), Grant::ReadFiles));
        }
    }
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    rules.dedup();
    rules
}

/// The rules of `wanted` that `enforced` does not grant: Landlock can only be tightened, never
/// widened, so after a reload these paths (a new user's root, a log file moved elsewhere) stay
/// out of reach until a restart. A rule is granted when an enforced rule on it or on a directory
/// above it allows at least its rights.
pub fn not_granted(
    enforced: &[(PathBuf, Grant)],
    wanted: &[(PathBuf, Grant)],
) -> Vec<(PathBuf, Grant)> {
    wanted
        .iter()
        .filter(|(path, grant)| {
            !enforced.iter().any(|(above, has)| {
                path.starts_with(above) && has.access().contains(grant.access())
            })
        })
        .cloned()
        .collect()
}

/// The directory a file named by the configuration lives in ("." for a bare name).
fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// How the Landlock confinement went.
#[derive(Debug, PartialEq, Eq)]
pub enum Confinement {
    /// Every handled right is enforced, with this many rules.
    Full { paths: usize },
    /// The kernel has an older Landlock: the rights it knows are enforced.
    Partial { paths: usize },
    /// The kernel has no Landlock (too old, not enabled at boot, or refused in a container).
    Unavailable,
}

/// Confine the calling thread, and every thread it starts from now on, to `rules`.
pub fn confine(rules: &[(PathBuf, Grant)]) -> Result<Confinement, String> {
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(HANDLED_ABI))
        .map_err(|e| format!("landlock: {e}"))?
        .create()
        .map_err(|e| format!("landlock: {e}"))?;
    for (path, grant) in rules {
        // A file-only rule (ReadFiles on a regular file such as /etc/localtime) may carry only
        // file rights; directories take all of them.
        let fd = PathFd::new(path).map_err(|e| format!("landlock: {}: {e}", path.display()))?;
        let mut access = grant.access();
        if !path.is_dir() {
            access &= AccessFs::from_file(HANDLED_ABI);
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("landlock: {}: {e}", path.display()))?;
    }
    let status = ruleset
        .restrict_self()
        .map_err(|e| format!("landlock: {e}"))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Full { paths: rules.len() },
        RulesetStatus::PartiallyEnforced => Confinement::Partial { paths: rules.len() },
        RulesetStatus::NotEnforced => Confinement::Unavailable,
    })
}

/// Refuse a start as root without a user to switch to, unless `allow_root`; look the user up
/// (also for `--check-config`). Returns the user to switch to, if a switch is due.
pub fn plan(config: &Config) -> Result<Option<User>, String> {
    let root = Uid::effective().is_root();
    let Some(name) = &config.run_as else {
        if root && !config.allow_root {
            return Err(
                "started as root: give --user NAME (user = \"NAME\") to serve as that \
                        user after binding the listeners, or --allow-root to serve as root"
                    .into(),
            );
        }
        return Ok(None);
    };
    let user = User::from_name(name)
        .map_err(|e| format!("user: looking up {name:?}: {e}"))?
        .ok_or_else(|| format!("user: no user {name:?} on this system"))?;
    if root {
        return Ok((!user.uid.is_root()).then_some(user));
    }
    if user.uid != Uid::current() {
        return Err(format!(
            "user: cannot switch to {name:?}: not started as root (running as uid {})",
            Uid::current()
        ));
    }
    Ok(None)
}

/// Become `user`: its supplementary groups from the group database, its primary group, then its
/// uid (real, effective and saved: root cannot be regained). glibc applies each change to every
/// thread, but none has been started yet anyway.
pub fn switch_to(user: &User) -> Result<(), String> {
    let fail = |what: &str, e: nix::Error| format!("user {:?}: {what}: {e}", user.name);
    let name =
        CString::new(user.name.as_bytes()).map_err(|_| "user: NUL in the name".to_string())?;
    nix::unistd::initgroups(&name, user.gid).map_err(|e| fail("setgroups", e))?;
    nix::unistd::setgid(user.gid).map_err(|e| fail("setgid", e))?;
    nix::unistd::setuid(user.uid).map_err(|e| fail("setuid", e))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
        || nix::unistd::setgid(Gid::from_raw(0)).is_ok()
    {
        return Err(format!("user {:?}: root could be regained", user.name));
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS`: nothing this process runs can gain privileges (set-user-ID files,
/// file capabilities); Landlock requires it of an unprivileged process.
pub fn no_new_privs() -> Result<(), String> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_reload_sees_which_paths_landlock_still_refuses() {
        let enforced = vec![
            (PathBuf::from("/srv/ftp"), Grant::Read),
            (PathBuf::from("/srv/ftp/incoming"), Grant::ReadWrite),
            (PathBuf::from("/var/log/ringftpd"), Grant::WriteFiles),
        ];
        let wanted = vec![
            // Inside a read-only root: granted.
            (PathBuf::from("/srv/ftp/pub"), Grant::Read),
            // Inside a read-only root but written to: not granted.
            (PathBuf::from("/srv/ftp/pub"), Grant::ReadWrite),
            // Inside the upload directory: granted.
            (PathBuf::from("/srv/ftp/incoming/alice"), Grant::ReadWrite),
            // A sibling whose name merely starts like a granted one: not granted.
            (PathBuf::from("/srv/ftpx"), Grant::Read),
            (PathBuf::from("/home/bob"), Grant::Read),
            (PathBuf::from("/var/log/ringftpd"), Grant::WriteFiles),
        ];
        assert_eq!(
            not_granted(&enforced, &wanted),
            vec![
                (PathBuf::from("/srv/ftp/pub"), Grant::ReadWrite),
                (PathBuf::from("/srv/ftpx"), Grant::Read),
                (PathBuf::from("/home/bob"), Grant::Read),
            ]
        );
    }

    fn users_file(dir: &Path, entries: &[(&str, &Path, &str)]) -> PathBuf {
        let hash = crate::auth::hash_line(b"pw");
        let mut text = String::new();
        for (name, root, access) in entries {
            text.push_str(&format!(
                "[[user]]\nname = {name:?}\n{hash}\nroot = {:?}\naccess = {access:?}\n\n",
                root.to_str().unwrap()
            ));
        }
        let path = dir.join("etc").join("users.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The paths and what each is opened for, from a configuration with every kind of path.
    #[test]
    fn rules_name_every_configured_path_with_its_access() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "pub/incoming",
            "alice",
            "bob",
            "log",
            "tls/live",
            "tls/archive",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // A certificate as certbot lays it out: live/ links into archive/.
        std::fs::write(d.join("tls/archive/cert1.pem"), "").unwrap();
        std::os::unix::fs::symlink("../archive/cert1.pem", d.join("tls/live/cert.pem")).unwrap();
        let users = users_file(
            d,
            &[
                ("alice", &d.join("alice"), "read-write"),
                ("bob", &d.join("bob"), "read-only"),
            ],
        );
        let config = Config {
            root: d.join("pub"),
            anonymous_upload: Some("/incoming".into()),
            users_file: Some(users.clone()),
            xferlog: Some(d.join("log/xferlog")),
            json_log: Some(d.join("log/ringftpd.json")),
            tls_cert: Some(d.join("tls/live/cert.pem")),
            tls_key: Some(d.join("tls/live/key.pem")),
            ..Config::default()
        };
        let loaded = Users::load(&users).unwrap();
        let conf = d.join("etc/ringftpd.toml");
        let rules = landlock_rules(&config, Some(&loaded), Some(&conf));
        let mut want = vec![
            (d.join("alice"), Grant::ReadWrite),
            (d.join("bob"), Grant::Read),
            (d.join("etc"), Grant::ReadFiles),
            (d.join("log"), Grant::WriteFiles),
            (d.join("pub"), Grant::Read),
            (d.join("pub/incoming"), Grant::ReadWrite),
            (
                d.canonicalize().unwrap().join("tls/archive"),
                Grant::ReadFiles,
            ),
            (d.join("tls/live"), Grant::ReadFiles),
        ];
        for zone in ["/etc/localtime", "/usr/share/zoneinfo"] {
            if Path::new(zone).exists() {
                want.push((PathBuf::from(zone), Grant::ReadFiles));
            }
        }
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(rules, want);
    }

    /// The rules enforced on a thread of their own (Landlock confines the calling thread and
    /// its later children, so the other tests are untouched): reads and writes where granted,
    /// EACCES elsewhere, even though the test may run as root, where file permissions allow
    /// everything.
    #[test]
    fn a_confined_thread_reaches_only_what_its_rules_grant() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        for sub in ["ro", "rw", "log", "outside"] {
            std::fs::create_dir(d.join(sub)).unwrap();
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        std::fs::write(d.join("ro/file"), b"read me").unwrap();
        std::fs::write(d.join("outside/secret"), b"no").unwrap();
        let rules = vec![
            (d.join("ro"), Grant::Read),
            (d.join("rw"), Grant::ReadWrite),
            (d.join("log"), Grant::WriteFiles),
        ];
        let outcome = std::thread::spawn(move || {
            let confined = confine(&rules)?;
            if confined == Confinement::Unavailable {
                return Ok(confined);
            }
            let denied = |r: std::io::Result<()>, what: &str| match r {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(()),
                other => Err(format!("{what}: {other:?}, expected EACCES")),
            };
            let ok = |r: std::io::Result<()>, what: &str| r.map_err(|e| format!("{what}: {e}"));
            ok(std::fs::read(d.join("ro/file")).map(drop), "read in ro")?;
            ok(std::fs::read_dir(d.join("ro")).map(drop), "list ro")?;
            denied(std::fs::write(d.join("ro/new"), b"x"), "create in ro")?;
            ok(std::fs::create_dir(d.join("rw/sub")), "mkdir in rw")?;
            ok(std::fs::write(d.join("rw/sub/f"), b"x"), "create in rw")?;
            ok(
                std::fs::rename(d.join("rw/sub/f"), d.join("rw/g")),
                "rename across rw dirs",
            )?;
            ok(std::fs::remove_file(d.join("rw/g")), "remove in rw")?;
            let append = |p: PathBuf| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(p)
                    .map(drop)
            };
            ok(append(d.join("log/xferlog")), "create a log")?;
            ok(append(d.join("log/xferlog")), "reopen a log")?;
            denied(std::fs::read(d.join("log/xferlog")).map(drop), "read a log")?;
            denied(
                std::fs::read(d.join("outside/secret")).map(drop),
                "read outside",
            )?;
            denied(
                std::fs::write(d.join("outside/new"), b"x"),
                "create outside",
            )?;
            denied(std::fs::read("/etc/passwd").map(drop), "read /etc/passwd")?;
            denied(
                std::os::unix::fs::symlink("/etc", d.join("rw/link")),
                "symlink in rw",
            )?;
            Ok::<_, String>(confined)
        })
        .join()
        .unwrap();
        match outcome {
            Ok(Confinement::Unavailable) => {
                eprintln!("skipped: this kernel has no Landlock");
            }
            Ok(c) => eprintln!("confined: {c:?}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn root_without_a_user_is_refused_unless_allowed() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: not running as root");
            return;
        }
        let refused = plan(&Config::default()).unwrap_err();
        assert!(refused.contains("--user"), "{refused}");
        let allowed = Config {
            allow_root: true,
            ..Config::default()
        };
        assert!(plan(&allowed).unwrap().is_none());
        let nobody = Config {
            run_as: Some("nobody".into()),
            ..Config::default()
        };
        match plan(&nobody) {
            Ok(Some(u)) => assert_eq!(u.name, "nobody"),
            other => panic!("{other:?}"),
        }
        let missing = Config {
            run_as: Some("no-such-user-here".into()),
            ..Config::default()
        };
        assert!(plan(&missing).unwrap_err().contains("no user"));
    }
}
