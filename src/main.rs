//! The `ringftpd` binary: read the config file and flags, validate, start the shards, serve.

use std::path::Path;
use std::process::ExitCode;

use ringftpd::cli::{Cli, Cmd};
use ringftpd::config::{Config, ConfigError, Options};

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
    let config = merged
        .resolve()
        .map_err(|e| describe(&e, &cli.options, file.as_ref().map(|(p, o)| (*p, o))))?;
    if let Some(users) = &config.users_file {
        ringftpd::auth::Users::load(users).map_err(|e| format!("users: {e}"))?;
    }
    Ok(config)
}

fn main() -> ExitCode {
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
        println!("ringftpd: configuration is valid");
        return ExitCode::SUCCESS;
    }
    let logs = match ringftpd::logging::start(ringftpd::logging::LogSettings {
        level: config.log_level,
        xferlog: config.xferlog.clone(),
        json_log: config.json_log.clone(),
        ..ringftpd::logging::LogSettings::default()
    }) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("ringftpd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shards = config.shards;
    let root = config.root.clone();
    match ringftpd::server::start(config) {
        Ok(server) => {
            for addr in server.local_addrs() {
                log::info!(
                    "serving {} on ftp://{addr}/ with {shards} shard(s)",
                    root.display()
                );
            }
            server.wait();
            logs.stop();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringftpd: {e}");
            ExitCode::FAILURE
        }
    }
}
