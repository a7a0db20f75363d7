//! The `ringftpd` binary: parse flags, validate, start the shards, serve until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringftpd::config::{self, Config, DataPath};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A thread-per-core io_uring FTP server with zero-copy downloads.
#[derive(Parser, Debug)]
#[command(name = "ringftpd", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Directory served as "/" (anonymous, read-only).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Control address to listen on, IPv4 or IPv6 ("[::1]:2121"); repeat for several.
    #[arg(long = "listen", default_value = "127.0.0.1:2121")]
    listen: Vec<SocketAddr>,
    /// Passive data ports as MIN-MAX, split into one slice per shard (default: 49152-65534).
    #[arg(long, value_parser = config::parse_port_range)]
    pasv_ports: Option<(u16, u16)>,
    /// IPv4 address to announce in PASV replies, for a server behind NAT (default: the address
    /// the client connected to).
    #[arg(long)]
    pasv_address: Option<std::net::Ipv4Addr>,
    /// Shard threads, one io_uring ring each (default: one per online CPU).
    #[arg(long)]
    shards: Option<usize>,
    /// How RETR moves bytes: sendfile (zero-copy), splice, mmap, or copy.
    #[arg(long, default_value = "sendfile")]
    data_path: DataPath,
    /// Kernel interface: auto (io_uring, else epoll), io-uring, or epoll.
    #[arg(long, default_value = "auto")]
    io: config::Backend,
    /// Users file (TOML) with named users who log in with a password; see README.
    #[arg(long)]
    users: Option<PathBuf>,
    /// Let anonymous users upload new files into this directory inside the root (write-only).
    #[arg(long, value_name = "DIR")]
    anonymous_upload: Option<String>,
    /// Sessions allowed at once, across all shards.
    #[arg(long, default_value_t = 20_000)]
    max_sessions: usize,
    /// Sessions allowed at once from one client IP (0 = no limit).
    #[arg(long, default_value_t = 0)]
    max_per_ip: u32,
    /// Refuse anonymous logins.
    #[arg(long)]
    no_anonymous: bool,
    /// Seconds without a command before an idle session is closed.
    #[arg(long, default_value_t = 300)]
    idle_timeout_secs: u64,
    /// KiB one transfer may send per loop turn before the shard serves its other sessions.
    #[arg(long, default_value_t = 1024)]
    send_budget_kib: usize,
    /// Milliseconds a finished upload waits before it replaces the old file; a client whose
    /// control connection closes meanwhile was killed mid-upload and its file is discarded.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    upload_grace_ms: u64,
    /// Leave shard threads to the scheduler instead of pinning shard k to the k-th allowed CPU
    /// (for hosts where other busy processes share the server's CPUs).
    #[arg(long)]
    no_pin: bool,
    /// Log level: error, warn, info, debug.
    #[arg(long, default_value = "info", value_parser = parse_level)]
    log_level: log::LevelFilter,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Read a password (from the terminal without echo, or the first line of stdin) and print the
    /// `password = "..."` line for the users file.
    HashPassword,
}

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

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse().map_err(|_| format!("unknown log level {s:?}"))
}

/// Log lines to stderr: one per transfer and per notable event, never per chunk.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("ringftpd {} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Cmd::HashPassword) = args.command {
        return match read_password() {
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
        };
    }
    log::set_logger(&StderrLogger).expect("logger set once");
    log::set_max_level(args.log_level);
    let defaults = Config::default();
    let config = Config {
        root: args.root,
        listen: args.listen,
        pasv_ports: args.pasv_ports.unwrap_or(defaults.pasv_ports),
        pasv_address: args.pasv_address,
        shards: args.shards.unwrap_or(defaults.shards),
        data_path: args.data_path,
        io_backend: args.io,
        users_file: args.users,
        send_budget_bytes: args.send_budget_kib << 10,
        upload_grace: std::time::Duration::from_millis(args.upload_grace_ms),
        max_sessions: args.max_sessions,
        max_sessions_per_ip: args.max_per_ip,
        anonymous_upload: args.anonymous_upload,
        allow_anonymous: !args.no_anonymous,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout_secs),
        pin_shards: !args.no_pin,
        ..defaults
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringftpd: {e}");
            ExitCode::FAILURE
        }
    }
}
