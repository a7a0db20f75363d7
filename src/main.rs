//! The `ringftpd` binary: read the config file and flags, validate, start the shards, serve.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringftpd::cli::{Cli, Cmd};
use ringftpd::config::{Config, ConfigError, Options};
use ringftpd::lifecycle::{Notifier, Signal, Signals};
use ringftpd::logging::{self, LogHandle, LogSettings};
use ringftpd::privileges::{self, Confinement, Grant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Read one line from stdin; on a terminal, without echoing it.
fn read_password() -> std::io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        eprint!("Password: ");
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, t);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn hash_password() -> ExitCode {
    match read_password() {
        Ok(p) if !p.is_empty() => {
            println!("{}", ringftpd::auth::hash_line(p.as_bytes()));
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("ringftpd: empty password");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ringftpd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Say where a bad setting came from: the flag, the file's key, or a default that does not fit
/// this machine (`root = "."` where "." is unreadable).
fn describe(e: &ConfigError, flags: &Options, file: Option<(&Path, &Options)>) -> String {
    if flags.sets(e.key) {
        return format!("--{}: {}", e.key.replace('_', "-"), e.reason);
    }
    match file {
        Some((path, opts)) if opts.sets(e.key) => {
            format!("{}: {}: {}", path.display(), e.key, e.reason)
        }
        _ => format!("{} (default): {}", e.key, e.reason),
    }
}

/// The effective configuration: the file (if any), the flags over it, the defaults under both.
/// What needs more than the values (the users file, the anonymous upload directory) is checked
/// where it is used: `server::start`, `server::check` and `Server::reload`.
fn load(cli: &Cli) -> Result<Config, String> {
    let file = match &cli.config {
        Some(path) => Some((
            path.as_path(),
            Options::load(path).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let merged = match &file {
        Some((_, f)) => cli.options.clone().over(f.clone()),
        None => cli.options.clone(),
    };
    merged
        .resolve()
        .map_err(|e| describe(&e, &cli.options, file.as_ref().map(|(p, o)| (*p, o))))
}

/// Where log output goes under `config`.
fn log_settings(config: &Config) -> LogSettings {
    LogSettings {
        level: config.log_level,
        xferlog: config.xferlog.clone(),
        json_log: config.json_log.clone(),
        ..LogSettings::default()
    }
}

/// The control thread: serve until SIGTERM/SIGINT has drained the shards (a second one stops
/// them at once); SIGHUP reloads the config file and users file and reopens the logs.
fn serve(
    cli: &Cli,
    bound: ringftpd::server::Bound,
    signals: &mut Signals,
    logs: &mut LogHandle,
    confined: Option<&[(PathBuf, Grant)]>,
) -> ExitCode {
    let config = bound.config();
    let shards = config.shards;
    let root = config.root.clone();
    let grace = config.shutdown_grace;
    let server = match bound.start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringftpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    for addr in server.local_addrs() {
        log::info!(
            "serving {} on ftp://{addr}/ with {shards} shard(s)",
            root.display()
        );
    }
    for addr in server.implicit_tls_addrs() {
        log::info!("implicit TLS on ftps://{addr}/");
    }
    let notifier = Notifier::from_env();
    let status = |server: &ringftpd::server::Server| {
        let (sessions, transfers) = server.activity();
        format!("{sessions} session(s), {transfers} transfer(s)")
    };
    if let Some(n) = &notifier {
        n.ready(&status(&server));
    }
    let mut draining = false;
    let mut last_status = String::new();
    while !server.finished() {
        let signal = match signals.next(STATUS_EVERY) {
            Ok(s) => s,
            Err(e) => {
                log::error!("reading signals: {e}");
                None
            }
        };
        match signal {
            Some(Signal::SIGTERM | Signal::SIGINT) if draining => {
                log::info!("second stop signal: closing every session now");
                server.stop_now();
            }
            Some(Signal::SIGTERM | Signal::SIGINT) => {
                draining = true;
                log::info!(
                    "stop signal: listeners closed, running transfers have {} s to finish",
                    grace.as_secs()
                );
                if let Some(n) = &notifier {
                    n.stopping(&format!("Stopping: {}", status(&server)));
                }
                server.shutdown(grace);
            }
            Some(Signal::SIGHUP) if !draining => {
                if let Some(n) = &notifier {
                    n.reloading();
                }
                reload(cli, &server, logs, confined);
                if let Some(n) = &notifier {
                    n.ready(&status(&server));
                }
            }
            _ => {}
        }
        if let Some(n) = &notifier {
            let now = status(&server);
            if now != last_status {
                n.status(&now);
                last_status = now;
            }
        }
    }
    server.wait();
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// How often the control thread looks at the shards while no signal comes (exit, STATUS=).
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// SIGHUP: read the config file and the users file again (the command line's flags still win)
/// and hand the result to the shards for new sessions; reopen the log files (logrotate). A
/// configuration that does not validate is refused and the one in force stays.
fn reload(
    cli: &Cli,
    server: &ringftpd::server::Server,
    logs: &mut LogHandle,
    confined: Option<&[(PathBuf, Grant)]>,
) {
    let config = match load(cli) {
        Ok(c) => c,
        Err(e) => {
            log::error!("reload refused, the running configuration stays: {e}");
            let _ = logs
                .reopen()
                .map_err(|e| log::error!("reopening the logs: {e}"));
            return;
        }
    };
    let settings = log_settings(&config);
    let wanted = confined.map(|_| landlock_wanted(cli, &config));
    // The server validates the rest (users file, roots) before anything changes.
    match server.reload(config) {
        Ok(restart) => {
            for key in restart {
                log::warn!("{key} changed: it takes effect at the next restart");
            }
            if let (Some(enforced), Some(wanted)) = (confined, wanted) {
                for (path, grant) in privileges::not_granted(enforced, &wanted) {
                    log::warn!(
                        "landlock: {} ({grant:?}) was not allowed at start-up and stays out of \
                         reach until a restart (a user rooted there cannot log in)",
                        path.display()
                    );
                }
            }
        }
        Err(e) => {
            log::error!("reload refused, the running configuration stays: {e}");
            let _ = logs
                .reopen()
                .map_err(|e| log::error!("reopening the logs: {e}"));
            return;
        }
    }
    let logs_result = if &settings == logs.settings() {
        logs.reopen()
    } else {
        logs.reconfigure(settings)
    };
    match logs_result {
        Ok(()) => log::info!("configuration reloaded"),
        Err(e) => log::error!("configuration reloaded, but the log files stay as they were: {e}"),
    }
}

/// The Landlock rules a reloaded configuration would need (its users file read once more: the
/// server has just loaded the same file).
fn landlock_wanted(cli: &Cli, config: &Config) -> Vec<(PathBuf, Grant)> {
    let users = config
        .users_file
        .as_deref()
        .and_then(|path| ringftpd::auth::Users::load(path).ok());
    privileges::landlock_rules(config, users.as_ref(), cli.config.as_deref())
}

/// Give up root (when started as root with a user to switch to), set `PR_SET_NO_NEW_PRIVS`,
/// and confine the process with Landlock unless told not to. What happened is returned as log
/// lines, written once the log thread runs, with the rules in force when Landlock confines the
/// process (a reload compares its needs with them). A kernel without Landlock (or a container
/// that refuses it) gets a warning, not a failed start; a failed user switch stops the start.
fn lock_down(
    cli: &Cli,
    bound: &ringftpd::server::Bound,
    switch: Option<nix::unistd::User>,
) -> Result<LockDown, String> {
    let mut notes = Vec::new();
    if let Some(user) = &switch {
        privileges::switch_to(user)?;
        notes.push((
            log::Level::Info,
            format!(
                "serving as user {} (uid {}, gid {})",
                user.name, user.uid, user.gid
            ),
        ));
    }
    privileges::no_new_privs()?;
    let config = bound.config();
    if !config.landlock {
        return Ok(LockDown {
            notes,
            confined: None,
        });
    }
    let rules = privileges::landlock_rules(config, bound.users(), cli.config.as_deref());
    let outcome = privileges::confine(&rules);
    let confined = matches!(
        outcome,
        Ok(Confinement::Full { .. } | Confinement::Partial { .. })
    )
    .then(|| rules.clone());
    notes.push(match outcome {
        Ok(Confinement::Full { paths }) => (
            log::Level::Info,
            format!("landlock: restricted to {paths} paths"),
        ),
        Ok(Confinement::Partial { paths }) => (
            log::Level::Info,
            format!(
                "landlock: restricted to {paths} paths (partially: this kernel's Landlock \
                 knows only some of the access rights)"
            ),
        ),
        Ok(Confinement::Unavailable) => (
            log::Level::Warn,
            "landlock: not available on this kernel; the process is not confined".into(),
        ),
        Err(e) => (
            log::Level::Warn,
            format!("{e}; the process is not confined"),
        ),
    });
    Ok(LockDown { notes, confined })
}

/// What `lock_down` did.
struct LockDown {
    /// Log lines for the log thread.
    notes: Vec<(log::Level, String)>,
    /// The Landlock rules in force, when the process is confined.
    confined: Option<Vec<(PathBuf, Grant)>>,
}

fn main() -> ExitCode {
    // Before the heap grows: see `sys::mem::no_transparent_huge_pages` (a kernel without THP
    // refuses nothing here; an error only means huge pages stay as the kernel has them).
    let _ = ringftpd::sys::mem::no_transparent_huge_pages();
    let cli = Cli::parse_args();
    if let Some(Cmd::HashPassword) = cli.command {
        return hash_password();
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringftpd: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        return match Options::of(&config).to_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringftpd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.check_config {
        let checked = ringftpd::server::check(&config)
            .map_err(|e| e.to_string())
            // The user must exist; starting as root without one is a matter of how it is
            // started (the unit starts it as the ringftpd user), not of the file.
            .and_then(|()| {
                let as_started = Config {
                    allow_root: true,
                    ..config.clone()
                };
                privileges::plan(&as_started).map(drop)
            });
        return match checked {
            Ok(()) => {
                println!("ringftpd: configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringftpd: {e}");
                ExitCode::from(2)
            }
        };
    }
    // Refused before anything is bound: root without a user to switch to (or --allow-root).
    let switch = match privileges::plan(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringftpd: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread starts, the log thread included: every thread inherits the mask, so
    // the signals queue on the control thread's signalfd and never interrupt a shard.
    let mut signals = match Signals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringftpd: blocking signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = match ringftpd::server::bind(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringftpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Still no thread: the user switch and Landlock cover every thread started from here on
    // (the log thread, the helper pool, the shards), and the log files are opened as the user
    // who will reopen them on SIGHUP.
    let LockDown { notes, confined } = match lock_down(&cli, &bound, switch) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("ringftpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut logs = match logging::start(log_settings(bound.config())) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ringftpd: {e}");
            return ExitCode::from(2);
        }
    };
    for (level, note) in notes {
        log::log!(level, "{note}");
    }
    let code = serve(&cli, bound, &mut signals, &mut logs, confined.as_deref());
    // After the shards are joined: every record they queued is written before exit.
    logs.stop();
    code
}
