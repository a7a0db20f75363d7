//! The settings as operators write them: one struct that is both the command-line flags and the
//! TOML file, so a key is always its long flag with `_` for `-` and takes the flag's value syntax.
//!
//! Every field is optional (or a flag that is off): `None` means "not said here". Flags are laid
//! over the file, the result over `Config::default()`; nothing here spells a default, and
//! `Options::of` turns a resolved `Config` back into keys for `--print-config` and `--help`.

use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Backend, Config, ConfigError, DataPath, TlsRequirement, parse_port_range};

/// `MIN-MAX`, as `--pasv-ports` and `pasv_ports = "50000-50999"` write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<PortRange, String> {
        parse_port_range(s).map(|(lo, hi)| PortRange(lo, hi))
    }
}

impl Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// A log level spelled in lower case (`error`, `warn`, `info`, `debug`, `trace`, `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub log::LevelFilter);

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<LogLevel, String> {
        s.parse()
            .map(LogLevel)
            .map_err(|_| format!("unknown log level {s:?} (expected error, warn, info or debug)"))
    }
}

impl Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.as_str().to_ascii_lowercase())
    }
}

/// Values written as text in TOML (`data_path = "splice"`), read with their `FromStr`, so the
/// file and the flag accept exactly the same spellings.
mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map(Some).map_err(D::Error::custom)
    }
}

/// Every setting the server has. Doc comments are the `--help` text; `Options::of` fills in the
/// defaults shown there.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Directory served as "/" to anonymous users.
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Control address to listen on, IPv4 or IPv6 ("[::1]:2121"); repeat for several.
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<Vec<SocketAddr>>,
    /// Passive data ports as MIN-MAX, split into one slice per shard.
    #[arg(long, value_name = "MIN-MAX")]
    #[serde(default, with = "text", skip_serializing_if = "Option::is_none")]
    pub pasv_ports: Option<PortRange>,
    /// IPv4 address to announce in PASV replies, for a server behind NAT (unset: the address
    /// the client connected to).
    #[arg(long, value_name = "IPV4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pasv_address: Option<Ipv4Addr>,
    /// Shard threads, one io_uring ring each (default: one per online CPU).
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// How RETR moves bytes: sendfile (zero-copy), splice, mmap, or copy.
    #[arg(long, value_name = "PATH")]
    #[serde(default, with = "text", skip_serializing_if = "Option::is_none")]
    pub data_path: Option<DataPath>,
    /// Kernel interface: auto (io_uring, else epoll), io-uring, or epoll.
    #[arg(long, value_name = "BACKEND")]
    #[serde(default, with = "text", skip_serializing_if = "Option::is_none")]
    pub io: Option<Backend>,
    /// Users file (TOML) with named users who log in with a password.
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<PathBuf>,
    /// Let anonymous users upload new files into this directory inside the root (write-only).
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_upload: Option<String>,
    /// Refuse anonymous logins.
    #[arg(long)]
    #[serde(default)]
    pub no_anonymous: bool,
    /// Show dot files in LIST and NLST without `-a` (as vsftpd's option of that name does).
    #[arg(long)]
    #[serde(default)]
    pub force_dot_files: bool,
    /// Sessions allowed at once, across all shards.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    /// Sessions allowed at once from one client IP, or IPv6 network of --ipv6-prefix-len bits
    /// (0 = no limit).
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_ip: Option<u32>,
    /// Seconds without a command before an idle session is closed.
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds allowed to open a data connection, and for a stalled transfer to make progress.
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_timeout_secs: Option<u64>,
    /// KiB one transfer may send per loop turn before the shard serves its other sessions.
    #[arg(long, value_name = "KIB")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_budget_kib: Option<usize>,
    /// Milliseconds a finished upload waits before it replaces the old file (at most 10000); a
    /// client whose control connection closes meanwhile was killed mid-upload and its file is
    /// discarded.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_grace_ms: Option<u64>,
    /// Helper threads for path lookups, listings and upload commits.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_workers: Option<usize>,
    /// Leave shard threads to the scheduler instead of pinning shard k to the k-th allowed CPU
    /// (for hosts where other busy processes share the server's CPUs).
    #[arg(long)]
    #[serde(default)]
    pub no_pin: bool,
    /// Text of the 220 greeting (one line, no control characters).
    #[arg(long, value_name = "TEXT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// Log level on stderr: error, warn, info (one line per transfer), debug.
    #[arg(long, value_name = "LEVEL")]
    #[serde(default, with = "text", skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// Transfer log in the wu-ftpd xferlog(5) format, one line per finished transfer.
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xferlog: Option<PathBuf>,
    /// JSON lines log: one object per transfer and per session end.
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_log: Option<PathBuf>,
    /// On SIGTERM/SIGINT, seconds running transfers may go on before the rest is closed.
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds a session may take to log in, whatever it sends meanwhile; then 421.
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_timeout_secs: Option<u64>,
    /// Sessions allowed at once per named user (0 = no limit); anonymous sessions count per
    /// client IP only.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_user: Option<u32>,
    /// Connection attempts per second from one client IP, in bursts of up to twice as many
    /// (0 = no limit).
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connects_per_ip_per_sec: Option<u32>,
    /// IPv6 clients count as one per network of this many bits (16-128).
    #[arg(long, value_name = "BITS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix_len: Option<u8>,
    /// Failed logins from one client IP within --login-failure-window-secs that ban it for
    /// --ban-secs (0 = never ban).
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_login_failures_per_ip: Option<u32>,
    /// The window in which failed logins towards a ban are counted.
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_failure_window_secs: Option<u64>,
    /// How long a banned client IP is refused (421 at connect).
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_secs: Option<u64>,
    /// Once an account has failed a login, its password checks run one at a time, this many
    /// seconds apart, from any address (0 = no throttle).
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_failure_delay_secs: Option<u64>,
    /// Threads checking passwords, with their own bounded queue.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_workers: Option<usize>,
    /// PEM certificate chain for FTP over TLS (AUTH TLS, and --implicit-tls-listen); needs
    /// --tls-key.
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Named users must log in over TLS (534 before AUTH TLS) and use PROT P for data (521):
    /// the same as --tls-named data, kept for existing configurations.
    #[arg(long)]
    #[serde(default)]
    pub tls_required: bool,
    /// A PROT P data connection must resume the control connection's TLS session, or it is
    /// refused with 522 (protects against data connection theft); false lets full handshakes in.
    #[arg(long, value_name = "BOOL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_require_reuse: Option<bool>,
    /// When started as root: after binding the listeners, switch to this user (its groups, gid
    /// and uid) and serve as it.
    #[arg(long, value_name = "NAME")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Serve as root when started as root without --user (refused otherwise).
    #[arg(long)]
    #[serde(default)]
    pub allow_root: bool,
    /// Do not confine the process with Landlock (by default it may reach only the roots, the
    /// config, users, certificate and key files' directories and the log directories).
    #[arg(long)]
    #[serde(default)]
    pub no_landlock: bool,
    /// Implicit TLS address to listen on (port 990 style: TLS from the first byte, the 220
    /// after the handshake, data protected by default); repeat for several. Needs --tls-cert.
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit_tls_listen: Option<Vec<SocketAddr>>,
    /// What anonymous users must do with TLS: optional, login (AUTH TLS before USER, 534
    /// otherwise) or data (login, and PROT P for data connections).
    #[arg(long, value_name = "LEVEL")]
    #[serde(default, with = "text", skip_serializing_if = "Option::is_none")]
    pub tls_anonymous: Option<TlsRequirement>,
    /// What named users must do with TLS: optional, login or data (as --tls-anonymous);
    /// --tls-required raises it to data.
    #[arg(long, value_name = "LEVEL")]
    #[serde(default, with = "text", skip_serializing_if = "Option::is_none")]
    pub tls_named: Option<TlsRequirement>,
    /// Hand PROT P data connections to kernel TLS after their handshake where the kernel can
    /// (TCP_ULP "tls"), so downloads keep sendfile; false keeps them in rustls in user space.
    #[arg(long, value_name = "BOOL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ktls: Option<bool>,
    /// Jobs (stats, opens, listings, file operations) that may wait for a helper thread; a
    /// command that finds the queue full is answered 450 at once. Upload commits never wait here.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_queue_max: Option<usize>,
    /// Seconds a formatted listing of an unchanged directory is sent again from memory (0: off);
    /// the server's own writes always show at once, others' changes to entries within this.
    #[arg(long, value_name = "SECS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_cache_secs: Option<u64>,
}

/// Keys that may stay unset, and what unset means (printed as comments by `--print-config`).
const UNSET_MEANS: &[(&str, &str)] = &[
    (
        "pasv_address",
        "PASV announces the address the client connected to",
    ),
    ("users", "only anonymous logins exist"),
    ("anonymous_upload", "anonymous users cannot upload"),
    ("xferlog", "no transfer log"),
    ("json_log", "no JSON log"),
    ("tls_cert", "no AUTH TLS"),
    ("tls_key", "no AUTH TLS"),
    ("user", "the user ringftpd was started as serves"),
    ("implicit_tls_listen", "no implicit TLS listener"),
];

/// A config file that could not be used: which file, and why (the TOML error names the key and
/// the line).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
}

impl Options {
    /// Read and parse a TOML config file. Unknown keys and wrong types are errors.
    pub fn load(path: &Path) -> Result<Options, LoadError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| LoadError::Read(path.to_path_buf(), e))?;
        Options::parse_toml(&text).map_err(|e| LoadError::Parse(path.to_path_buf(), e))
    }

    pub fn parse_toml(text: &str) -> Result<Options, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// These options (flags) laid over `file`: whatever is set here wins.
    pub fn over(self, file: Options) -> Options {
        Options {
            root: self.root.or(file.root),
            listen: self.listen.or(file.listen),
            pasv_ports: self.pasv_ports.or(file.pasv_ports),
            pasv_address: self.pasv_address.or(file.pasv_address),
            shards: self.shards.or(file.shards),
            data_path: self.data_path.or(file.data_path),
            io: self.io.or(file.io),
            users: self.users.or(file.users),
            anonymous_upload: self.anonymous_upload.or(file.anonymous_upload),
            no_anonymous: self.no_anonymous || file.no_anonymous,
            force_dot_files: self.force_dot_files || file.force_dot_files,
            max_sessions: self.max_sessions.or(file.max_sessions),
            max_per_ip: self.max_per_ip.or(file.max_per_ip),
            idle_timeout_secs: self.idle_timeout_secs.or(file.idle_timeout_secs),
            data_timeout_secs: self.data_timeout_secs.or(file.data_timeout_secs),
            send_budget_kib: self.send_budget_kib.or(file.send_budget_kib),
            upload_grace_ms: self.upload_grace_ms.or(file.upload_grace_ms),
            fs_workers: self.fs_workers.or(file.fs_workers),
            no_pin: self.no_pin || file.no_pin,
            banner: self.banner.or(file.banner),
            log_level: self.log_level.or(file.log_level),
            xferlog: self.xferlog.or(file.xferlog),
            json_log: self.json_log.or(file.json_log),
            shutdown_grace_secs: self.shutdown_grace_secs.or(file.shutdown_grace_secs),
            login_timeout_secs: self.login_timeout_secs.or(file.login_timeout_secs),
            max_per_user: self.max_per_user.or(file.max_per_user),
            max_connects_per_ip_per_sec: self
                .max_connects_per_ip_per_sec
                .or(file.max_connects_per_ip_per_sec),
            ipv6_prefix_len: self.ipv6_prefix_len.or(file.ipv6_prefix_len),
            max_login_failures_per_ip: self
                .max_login_failures_per_ip
                .or(file.max_login_failures_per_ip),
            login_failure_window_secs: self
                .login_failure_window_secs
                .or(file.login_failure_window_secs),
            ban_secs: self.ban_secs.or(file.ban_secs),
            account_failure_delay_secs: self
                .account_failure_delay_secs
                .or(file.account_failure_delay_secs),
            login_workers: self.login_workers.or(file.login_workers),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_required: self.tls_required || file.tls_required,
            tls_require_reuse: self.tls_require_reuse.or(file.tls_require_reuse),
            user: self.user.or(file.user),
            allow_root: self.allow_root || file.allow_root,
            no_landlock: self.no_landlock || file.no_landlock,
            implicit_tls_listen: self.implicit_tls_listen.or(file.implicit_tls_listen),
            tls_anonymous: self.tls_anonymous.or(file.tls_anonymous),
            tls_named: self.tls_named.or(file.tls_named),
            ktls: self.ktls.or(file.ktls),
            fs_queue_max: self.fs_queue_max.or(file.fs_queue_max),
            listing_cache_secs: self.listing_cache_secs.or(file.listing_cache_secs),
        }
    }

    /// Lay these options over the defaults and validate the result.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let d = Config::default();
        let kib = |k: usize| {
            k.checked_mul(1024)
                .ok_or_else(|| ConfigError::new("send_budget_kib", "too large"))
        };
        let config = Config {
            root: self.root.clone().unwrap_or(d.root),
            listen: self.listen.clone().unwrap_or(d.listen),
            pasv_ports: self.pasv_ports.map_or(d.pasv_ports, |r| (r.0, r.1)),
            pasv_address: self.pasv_address.or(d.pasv_address),
            shards: self.shards.unwrap_or(d.shards),
            data_path: self.data_path.unwrap_or(d.data_path),
            io_backend: self.io.unwrap_or(d.io_backend),
            users_file: self.users.clone().or(d.users_file),
            anonymous_upload: self.anonymous_upload.clone().or(d.anonymous_upload),
            allow_anonymous: d.allow_anonymous && !self.no_anonymous,
            force_dot_files: d.force_dot_files || self.force_dot_files,
            max_sessions: self.max_sessions.unwrap_or(d.max_sessions),
            max_sessions_per_ip: self.max_per_ip.unwrap_or(d.max_sessions_per_ip),
            idle_timeout: self
                .idle_timeout_secs
                .map_or(d.idle_timeout, Duration::from_secs),
            data_timeout: self
                .data_timeout_secs
                .map_or(d.data_timeout, Duration::from_secs),
            send_budget_bytes: match self.send_budget_kib {
                Some(k) => kib(k)?,
                None => d.send_budget_bytes,
            },
            upload_grace: self
                .upload_grace_ms
                .map_or(d.upload_grace, Duration::from_millis),
            fs_workers: self.fs_workers.unwrap_or(d.fs_workers),
            pin_shards: d.pin_shards && !self.no_pin,
            banner: self.banner.clone().unwrap_or(d.banner),
            log_level: self.log_level.map_or(d.log_level, |l| l.0),
            xferlog: self.xferlog.clone().or(d.xferlog),
            json_log: self.json_log.clone().or(d.json_log),
            shutdown_grace: self
                .shutdown_grace_secs
                .map_or(d.shutdown_grace, Duration::from_secs),
            login_timeout: self
                .login_timeout_secs
                .map_or(d.login_timeout, Duration::from_secs),
            max_sessions_per_user: self.max_per_user.unwrap_or(d.max_sessions_per_user),
            max_connects_per_ip_per_sec: self
                .max_connects_per_ip_per_sec
                .unwrap_or(d.max_connects_per_ip_per_sec),
            ipv6_prefix_len: self.ipv6_prefix_len.unwrap_or(d.ipv6_prefix_len),
            max_login_failures_per_ip: self
                .max_login_failures_per_ip
                .unwrap_or(d.max_login_failures_per_ip),
            login_failure_window: self
                .login_failure_window_secs
                .map_or(d.login_failure_window, Duration::from_secs),
            ban_duration: self.ban_secs.map_or(d.ban_duration, Duration::from_secs),
            account_failure_delay: self
                .account_failure_delay_secs
                .map_or(d.account_failure_delay, Duration::from_secs),
            login_workers: self.login_workers.unwrap_or(d.login_workers),
            tls_cert: self.tls_cert.clone().or(d.tls_cert),
            tls_key: self.tls_key.clone().or(d.tls_key),
            tls_required: d.tls_required || self.tls_required,
            tls_require_reuse: self.tls_require_reuse.unwrap_or(d.tls_require_reuse),
            residency: d.residency,
            run_as: self.user.clone().or(d.run_as),
            allow_root: d.allow_root || self.allow_root,
            landlock: d.landlock && !self.no_landlock,
            implicit_tls_listen: self
                .implicit_tls_listen
                .clone()
                .unwrap_or(d.implicit_tls_listen),
            tls_anonymous: self.tls_anonymous.unwrap_or(d.tls_anonymous),
            tls_named: self.tls_named.unwrap_or(d.tls_named),
            ktls: self.ktls.unwrap_or(d.ktls),
            fs_queue_max: self.fs_queue_max.unwrap_or(d.fs_queue_max),
            listing_cache: self
                .listing_cache_secs
                .map_or(d.listing_cache, Duration::from_secs),
        };
        config.validate()?;
        Ok(config)
    }

    /// Every key of a resolved configuration (unset optional keys stay `None`).
    pub fn of(c: &Config) -> Options {
        Options {
            root: Some(c.root.clone()),
            listen: Some(c.listen.clone()),
            pasv_ports: Some(PortRange(c.pasv_ports.0, c.pasv_ports.1)),
            pasv_address: c.pasv_address,
            shards: Some(c.shards),
            data_path: Some(c.data_path),
            io: Some(c.io_backend),
            users: c.users_file.clone(),
            anonymous_upload: c.anonymous_upload.clone(),
            no_anonymous: !c.allow_anonymous,
            force_dot_files: c.force_dot_files,
            max_sessions: Some(c.max_sessions),
            max_per_ip: Some(c.max_sessions_per_ip),
            idle_timeout_secs: Some(c.idle_timeout.as_secs()),
            data_timeout_secs: Some(c.data_timeout.as_secs()),
            send_budget_kib: Some(c.send_budget_bytes >> 10),
            upload_grace_ms: Some(c.upload_grace.as_millis() as u64),
            fs_workers: Some(c.fs_workers),
            no_pin: !c.pin_shards,
            banner: Some(c.banner.clone()),
            log_level: Some(LogLevel(c.log_level)),
            xferlog: c.xferlog.clone(),
            json_log: c.json_log.clone(),
            shutdown_grace_secs: Some(c.shutdown_grace.as_secs()),
            login_timeout_secs: Some(c.login_timeout.as_secs()),
            max_per_user: Some(c.max_sessions_per_user),
            max_connects_per_ip_per_sec: Some(c.max_connects_per_ip_per_sec),
            ipv6_prefix_len: Some(c.ipv6_prefix_len),
            max_login_failures_per_ip: Some(c.max_login_failures_per_ip),
            login_failure_window_secs: Some(c.login_failure_window.as_secs()),
            ban_secs: Some(c.ban_duration.as_secs()),
            account_failure_delay_secs: Some(c.account_failure_delay.as_secs()),
            login_workers: Some(c.login_workers),
            tls_cert: c.tls_cert.clone(),
            tls_key: c.tls_key.clone(),
            tls_required: c.tls_required,
            tls_require_reuse: Some(c.tls_require_reuse),
            user: c.run_as.clone(),
            allow_root: c.allow_root,
            no_landlock: !c.landlock,
            implicit_tls_listen: (!c.implicit_tls_listen.is_empty())
                .then(|| c.implicit_tls_listen.clone()),
            tls_anonymous: Some(c.tls_anonymous),
            tls_named: Some(c.tls_named),
            ktls: Some(c.ktls),
            fs_queue_max: Some(c.fs_queue_max),
            listing_cache_secs: Some(c.listing_cache.as_secs()),
        }
    }

    /// The keys as a TOML table: the set ones with their values (flags that are off included).
    fn table(&self) -> Result<toml::Table, String> {
        toml::Table::try_from(self).map_err(|e| format!("cannot write as TOML: {e}"))
    }

    /// Whether `key` is said here (a flag that is on counts; one that is off does not).
    pub fn sets(&self, key: &str) -> bool {
        self.table()
            .ok()
            .and_then(|t| t.get(key).cloned())
            .is_some_and(|v| v.as_bool() != Some(false))
    }

    /// The configuration as a TOML file that `--config` reads back to the same settings:
    /// every key with its value, unset optional keys as comments saying what unset means.
    pub fn to_toml(&self) -> Result<String, String> {
        let mut out = String::from(
            "# ringftpd configuration: every key with its value (ringftpd --print-config).\n",
        );
        out.push_str(&toml::to_string(self).map_err(|e| format!("cannot write as TOML: {e}"))?);
        for (key, means) in UNSET_MEANS {
            if !self.sets(key) {
                out.push_str(&format!("# {key} is not set: {means}\n"));
            }
        }
        Ok(out)
    }

    /// Each flag's default as `--help` shows it, from `Config::default()`.
    pub fn defaults_for_help() -> Vec<(&'static str, String)> {
        let table = Options::of(&Config::default()).table().unwrap_or_default();
        let mut out = Vec::new();
        for key in KEYS {
            let Some(value) = table.get(*key) else {
                continue;
            };
            let shown = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                toml::Value::Boolean(_) => continue,
                // One per online CPU: the number of this machine would mislead elsewhere.
                _ if *key == "shards" => continue,
                other => other.to_string(),
            };
            out.push((*key, shown));
        }
        out
    }
}

/// Every key, in file order: the clap argument ids are these same names.
pub const KEYS: &[&str] = &[
    "root",
    "listen",
    "pasv_ports",
    "pasv_address",
    "shards",
    "data_path",
    "io",
    "users",
    "anonymous_upload",
    "no_anonymous",
    "force_dot_files",
    "max_sessions",
    "max_per_ip",
    "idle_timeout_secs",
    "data_timeout_secs",
    "send_budget_kib",
    "upload_grace_ms",
    "fs_workers",
    "no_pin",
    "banner",
    "log_level",
    "xferlog",
    "json_log",
    "shutdown_grace_secs",
    "login_timeout_secs",
    "max_per_user",
    "max_connects_per_ip_per_sec",
    "ipv6_prefix_len",
    "max_login_failures_per_ip",
    "login_failure_window_secs",
    "ban_secs",
    "account_failure_delay_secs",
    "login_workers",
    "tls_cert",
    "tls_key",
    "tls_required",
    "tls_require_reuse",
    "user",
    "allow_root",
    "no_landlock",
    "implicit_tls_listen",
    "tls_anonymous",
    "tls_named",
    "ktls",
    "fs_queue_max",
    "listing_cache_secs",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn file_with(root: &Path, rest: &str) -> Options {
        let text = format!("root = {:?}\n{rest}", root.to_str().unwrap());
        Options::parse_toml(&text).unwrap()
    }

    #[test]
    fn keys_match_the_struct() {
        let all = Options::of(&Config {
            pasv_address: Some(Ipv4Addr::LOCALHOST),
            users_file: Some("u".into()),
            anonymous_upload: Some("up".into()),
            xferlog: Some("x".into()),
            json_log: Some("j".into()),
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            allow_anonymous: false,
            force_dot_files: true,
            pin_shards: false,
            run_as: Some("ftp".into()),
            allow_root: true,
            landlock: false,
            implicit_tls_listen: vec![SocketAddr::from(([127, 0, 0, 1], 990))],
            ..Config::default()
        });
        let printed = all.to_toml().unwrap();
        let names: Vec<&str> = printed
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .collect();
        assert_eq!(names, KEYS, "{printed}");
    }

    #[test]
    fn every_default_resolves_and_prints_back_to_itself() {
        let d = dir();
        let flags = Options {
            root: Some(d.path().to_path_buf()),
            ..Options::default()
        };
        let config = flags.resolve().unwrap();
        let printed = Options::of(&config).to_toml().unwrap();
        let again = Options::parse_toml(&printed).unwrap().resolve().unwrap();
        assert_eq!(again, config);
        for key in KEYS {
            assert!(
                printed.contains(&format!("{key} ")),
                "{key} missing:\n{printed}"
            );
        }
    }

    #[test]
    fn a_full_file_round_trips() {
        let d = dir();
        let users = d.path().join("users.toml");
        std::fs::write(&users, "").unwrap();
        let opts = file_with(
            d.path(),
            &format!(
                r#"listen = ["127.0.0.1:0", "[::1]:0"]
pasv_ports = "50000-50999"
pasv_address = "192.0.2.7"
shards = 3
data_path = "splice"
io = "epoll"
users = {users:?}
anonymous_upload = "incoming"
no_anonymous = true
force_dot_files = true
max_sessions = 99
max_per_ip = 7
idle_timeout_secs = 40
data_timeout_secs = 20
send_budget_kib = 512
upload_grace_ms = 250
fs_workers = 3
no_pin = true
banner = "Welcome to the mirror."
log_level = "debug"
xferlog = {xfer:?}
json_log = {json:?}
shutdown_grace_secs = 5
login_timeout_secs = 30
max_per_user = 4
max_connects_per_ip_per_sec = 3
ipv6_prefix_len = 56
max_login_failures_per_ip = 7
login_failure_window_secs = 120
ban_secs = 900
account_failure_delay_secs = 2
login_workers = 2
"#,
                xfer = d.path().join("xferlog"),
                json = d.path().join("json.log"),
            ),
        );
        let c = opts.resolve().unwrap();
        assert_eq!(c.pasv_ports, (50000, 50999));
        assert_eq!(c.pasv_address, Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.data_path, DataPath::Splice);
        assert_eq!(c.io_backend, Backend::Epoll);
        assert!(!c.allow_anonymous && !c.pin_shards && c.force_dot_files);
        assert_eq!(c.send_budget_bytes, 512 << 10);
        assert_eq!(c.upload_grace, Duration::from_millis(250));
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.banner, "Welcome to the mirror.");
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.login_timeout, Duration::from_secs(30));
        assert_eq!(
            (c.max_sessions_per_user, c.max_connects_per_ip_per_sec),
            (4, 3)
        );
        assert_eq!((c.ipv6_prefix_len, c.max_login_failures_per_ip), (56, 7));
        assert_eq!(c.login_failure_window, Duration::from_secs(120));
        assert_eq!(c.ban_duration, Duration::from_secs(900));
        assert_eq!(c.account_failure_delay, Duration::from_secs(2));
        assert_eq!(c.login_workers, 2);
        let again = Options::parse_toml(&Options::of(&c).to_toml().unwrap())
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn flags_win_over_the_file() {
        let d = dir();
        let file = file_with(d.path(), "max_sessions = 10\nbanner = \"file\"\n");
        let flags = Options {
            max_sessions: Some(20),
            ..Options::default()
        };
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(c.max_sessions, 20);
        assert_eq!(c.banner, "file");
    }

    #[test]
    fn bad_keys_types_and_values_are_named() {
        let d = dir();
        let root = d.path().to_str().unwrap();
        for (text, key) in [
            ("no_such_key = 1", "no_such_key"),
            ("shards = \"two\"", "shards"),
            ("pasv_ports = \"3000-\"", "pasv_ports"),
            ("data_path = \"zerocopy\"", "data_path"),
            ("listen = \"127.0.0.1:21\"", "listen"),
            ("log_level = \"loud\"", "log_level"),
            ("tls_anonymous = \"always\"", "tls_anonymous"),
            ("tls_named = \"required\"", "tls_named"),
            (
                "implicit_tls_listen = \"127.0.0.1:990\"",
                "implicit_tls_listen",
            ),
        ] {
            let err = Options::parse_toml(&format!("root = {root:?}\n{text}")).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
        for (text, key) in [
            ("pasv_ports = \"3000-2000\"", "pasv_ports"),
            ("shards = 0", "shards"),
            ("upload_grace_ms = 60000", "upload_grace_ms"),
            ("idle_timeout_secs = 0", "idle_timeout_secs"),
            ("banner = \"two\\r\\nlines\"", "banner"),
            ("users = \"/definitely/missing/users.toml\"", "users"),
            ("xferlog = \"/definitely/missing/xferlog\"", "xferlog"),
            ("send_budget_kib = 18446744073709551615", "send_budget_kib"),
            ("login_timeout_secs = 0", "login_timeout_secs"),
            ("login_workers = 0", "login_workers"),
            ("ipv6_prefix_len = 8", "ipv6_prefix_len"),
            ("ban_secs = 0", "ban_secs"),
            (
                "implicit_tls_listen = [\"127.0.0.1:0\"]",
                "implicit_tls_listen",
            ),
            ("tls_named = \"login\"", "tls_named"),
            ("tls_anonymous = \"data\"", "tls_anonymous"),
        ] {
            let err = file_with(d.path(), text).resolve().unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
        let err = Options::parse_toml("root = \"/definitely/missing/root\"")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.key, "root");
    }

    #[test]
    fn sets_tells_said_from_unsaid() {
        let o = Options {
            no_pin: true,
            shards: Some(2),
            ..Options::default()
        };
        assert!(o.sets("no_pin") && o.sets("shards"));
        assert!(!o.sets("no_anonymous") && !o.sets("root"));
    }

    #[test]
    fn help_defaults_come_from_config_default() {
        let shown = Options::defaults_for_help();
        let get = |k: &str| {
            shown
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("listen").as_deref(), Some("127.0.0.1:2121"));
        assert_eq!(get("pasv_ports").as_deref(), Some("49152-65534"));
        assert_eq!(get("data_path").as_deref(), Some("sendfile"));
        assert_eq!(get("idle_timeout_secs").as_deref(), Some("300"));
        assert_eq!(get("users"), None);
        assert_eq!(get("shards"), None);
    }
}
