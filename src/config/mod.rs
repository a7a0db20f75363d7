//! Server configuration: every default in one place (`Config::default`), validated once.
//!
//! `options` is the layer operators write, flags and TOML file alike (one name per setting); it
//! resolves onto these defaults. Nothing else in the crate spells a default.

mod options;

pub use options::{KEYS, LoadError, LogLevel, Options, PortRange};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::proto::session::TlsRequirement;
pub use crate::shard::Backend;

/// How RETR moves file bytes to the data socket (operators benchmark this on their own NICs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// `sendfile(2)` from the page cache on a non-blocking socket, io_uring POLL on EAGAIN.
    Sendfile,
    /// `pread` + `send` through a per-transfer buffer: the fallback when sendfile is refused.
    Copy,
    /// `splice(2)` file -> pipe -> socket, with a bounded per-shard pool of 1 MiB pipes.
    Splice,
    /// io_uring SEND straight from a read-only mapping of the file (never read in user space).
    Mmap,
}

impl std::fmt::Display for DataPath {
    /// The spelling `from_str` takes back (config files print and re-read it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataPath::Sendfile => "sendfile",
            DataPath::Copy => "copy",
            DataPath::Splice => "splice",
            DataPath::Mmap => "mmap",
        })
    }
}

impl std::str::FromStr for DataPath {
    type Err = String;
    fn from_str(s: &str) -> Result<DataPath, String> {
        match s {
            "sendfile" => Ok(DataPath::Sendfile),
            "copy" => Ok(DataPath::Copy),
            "splice" => Ok(DataPath::Splice),
            "mmap" => Ok(DataPath::Mmap),
            _ => Err(format!(
                "unknown data path {s:?} (expected sendfile, copy, splice or mmap)"
            )),
        }
    }
}

/// Passive ports when none are configured: the IANA dynamic range. Letting the kernel choose
/// (`bind` to port 0) is not an option: under connection churn its search through ports held by
/// TIME_WAIT sockets cost 3 ms of CPU per PASV here.
pub const DEFAULT_PASV_PORTS: (u16, u16) = (49152, 65534);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The directory served as "/".
    pub root: PathBuf,
    /// Control listeners; every shard binds each of them with SO_REUSEPORT.
    pub listen: Vec<SocketAddr>,
    /// Passive ports, split into one disjoint slice per shard.
    pub pasv_ports: (u16, u16),
    /// The IPv4 address PASV replies announce (a NAT's public address); `None` announces the
    /// address the control connection came in on. EPSV replies carry only the port.
    pub pasv_address: Option<std::net::Ipv4Addr>,
    /// Shard threads, one io_uring ring each.
    pub shards: usize,
    pub data_path: DataPath,
    /// A logged-in or not session with no command for this long is closed with 421.
    pub idle_timeout: Duration,
    /// Time allowed to establish a data connection, and for a stalled transfer to make progress.
    pub data_timeout: Duration,
    /// Sessions across all shards; more are turned away with 421.
    pub max_sessions: usize,
    /// Sessions from one client (an IPv4 address, or an IPv6 network of `ipv6_prefix_len`
    /// bits; 0 = no limit); more are turned away with 421.
    pub max_sessions_per_ip: u32,
    pub allow_anonymous: bool,
    /// Helper threads for directory listings and path lookups (io_uring has no getdents).
    pub fs_workers: usize,
    /// Bytes one transfer may send per loop turn before other sessions get a go.
    pub send_budget_bytes: usize,
    /// How long a finished atomic upload waits before it is renamed into place. A killed client's
    /// kernel closes the data connection first and the control connection just after; an upload
    /// whose control connection closes within this time is discarded, so a partial file never
    /// replaces the old one. Every upload's 226 waits this long.
    pub upload_grace: Duration,
    /// io_uring, or the epoll fallback for hosts that forbid io_uring.
    pub io_backend: Backend,
    /// Pin shard k to the k-th CPU of the process's affinity mask.
    pub pin_shards: bool,
    /// Named users (TOML, see `auth`); without it only anonymous logins exist.
    pub users_file: Option<PathBuf>,
    /// A directory inside the root where anonymous users may upload new files (write-only).
    pub anonymous_upload: Option<String>,
    /// LIST and NLST show dot files without `-a` (vsftpd's `force_dot_files`); `.` and `..`
    /// still only with `-a`, upload temporary files never.
    pub force_dot_files: bool,
    /// The text of the 220 greeting.
    pub banner: String,
    /// Messages at this level and above go to stderr.
    pub log_level: log::LevelFilter,
    /// One wu-ftpd xferlog(5) line per finished transfer.
    pub xferlog: Option<PathBuf>,
    /// One JSON object per line per transfer and per session end.
    pub json_log: Option<PathBuf>,
    /// On SIGTERM, how long running transfers may go on before the rest is closed.
    pub shutdown_grace: Duration,
    /// A session not logged in this long after it connected is closed with 421, whatever it
    /// sends meanwhile.
    pub login_timeout: Duration,
    /// Sessions logged in as one named user at once (0 = no limit); more get 421 at PASS.
    /// Anonymous sessions are limited per client only.
    pub max_sessions_per_user: u32,
    /// Connection attempts per second from one client (0 = no limit), with bursts of twice as
    /// many; more are turned away with 421 before the greeting.
    pub max_connects_per_ip_per_sec: u32,
    /// IPv6 clients are counted (sessions, connection rate, failed logins) per network of this
    /// many bits: a site usually gets a /64 and may use any address in it.
    pub ipv6_prefix_len: u8,
    /// Failed logins from one client within `login_failure_window` that ban it for
    /// `ban_duration` (0 = never ban); a banned client gets 421 at connect.
    pub max_login_failures_per_ip: u32,
    pub login_failure_window: Duration,
    pub ban_duration: Duration,
    /// Once an account (named or unknown) has failed a login, its password checks run one at a
    /// time and at least this far apart, from whatever addresses they come (0 = no throttle).
    pub account_failure_delay: Duration,
    /// Threads checking passwords (argon2), fed by their own bounded queue so hashing never
    /// delays a stat, a listing or an upload commit.
    pub login_workers: usize,
    /// PEM certificate chain for FTP over TLS (AUTH TLS, implicit TLS); with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Named users must log in over TLS and protect their data connections (`PROT P`).
    pub tls_required: bool,
    /// A `PROT P` data connection must resume the control connection's TLS session (522
    /// otherwise), so that nobody else can take it over.
    pub tls_require_reuse: bool,
    /// How transfers check that a file window is in the page cache: `None` probes once at
    /// start-up (`cachestat` where the kernel has it, else `preadv2(RWF_NOWAIT)`). Not a config
    /// key: tests set it to run the fallback on kernels that have cachestat.
    pub residency: Option<crate::sys::fs::Residency>,
    /// Started as root: after binding the listeners, switch to this user (its groups, then its
    /// gid and uid) before serving. `None` keeps the starting user.
    pub run_as: Option<String>,
    /// Serve as root when no `run_as` is given (otherwise a start as root is refused).
    pub allow_root: bool,
    /// Confine the process with Landlock to the roots, the directories of the users, config,
    /// certificate and key files, and the log directories (where the kernel has Landlock; a warning where it has not).
    pub landlock: bool,
    /// Implicit TLS listeners (port 990 style): every shard binds each with SO_REUSEPORT, and
    /// a session accepted there speaks TLS from its first byte. Needs `tls_cert`.
    pub implicit_tls_listen: Vec<SocketAddr>,
    /// What anonymous users must do with TLS: optional, TLS for login, or TLS for login and
    /// data connections.
    pub tls_anonymous: TlsRequirement,
    /// What named users must do with TLS (`tls_required` adds "data" to it). A user's own
    /// `tls` in the users file adds to this.
    pub tls_named: TlsRequirement,
    /// `PROT P` data connections go to kernel TLS after their handshake where the kernel
    /// offloads the cipher (probed at start-up), so downloads keep the zero-copy paths; false
    /// keeps every one in rustls in user space.
    pub ktls: bool,
    /// Helper-pool jobs (stats, opens, listings, file operations) allowed to wait at once; a
    /// command finding the queue full gets 450. Upload commits and discards, and the next piece
    /// of a listing under way, go on a queue of their own (at most one per session), never
    /// refused.
    pub fs_queue_max: usize,
    /// How long a formatted listing of an unchanged directory is sent again from memory instead
    /// of reading the directory (`server::listcache`); zero turns the cache off.
    pub listing_cache: Duration,
}

/// Longest `banner`: it goes out as one reply line, and lines are capped at 4096 bytes both ways.
pub const MAX_BANNER_BYTES: usize = 1024;
/// Longest `upload_grace`: every upload's 226 waits this long.
pub const MAX_UPLOAD_GRACE: Duration = Duration::from_secs(10);

impl Default for Config {
    fn default() -> Config {
        Config {
            root: PathBuf::from("."),
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2121))],
            pasv_ports: DEFAULT_PASV_PORTS,
            pasv_address: None,
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            data_path: DataPath::Sendfile,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(60),
            max_sessions: 20_000,
            // One address may be a NAT in front of a campus: a dozen people, a few of them with
            // FileZilla's up to 10 parallel connections. 625 addresses are needed to take all
            // 20,000 session slots.
            max_sessions_per_ip: 32,
            allow_anonymous: true,
            fs_workers: 2,
            send_budget_bytes: 1 << 20,
            upload_grace: Duration::from_millis(10),
            io_backend: Backend::Auto,
            pin_shards: true,
            users_file: None,
            anonymous_upload: None,
            force_dot_files: false,
            banner: "ringftpd ready.".to_string(),
            log_level: log::LevelFilter::Info,
            xferlog: None,
            json_log: None,
            shutdown_grace: Duration::from_secs(30),
            login_timeout: Duration::from_secs(60),
            max_sessions_per_user: 32,
            // A NAT's worth of people starting sessions, or a script fetching files one
            // connection each; a scanner's reconnect loop is held to this.
            max_connects_per_ip_per_sec: 10,
            ipv6_prefix_len: 64,
            // fail2ban's habit (5 in 10 minutes) would lock out a NATed campus for one student's
            // typos; 20 failures from one client already take minutes with the doubling delay.
            max_login_failures_per_ip: 20,
            login_failure_window: Duration::from_secs(600),
            ban_duration: Duration::from_secs(600),
            account_failure_delay: Duration::from_secs(1),
            login_workers: 1,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            tls_require_reuse: true,
            residency: None,
            run_as: None,
            allow_root: false,
            landlock: true,
            implicit_tls_listen: Vec::new(),
            // Anonymous users are often scripts and mirrors that have no TLS: never forced.
            tls_anonymous: TlsRequirement::Optional,
            tls_named: TlsRequirement::Optional,
            ktls: true,
            fs_queue_max: 1024,
            // Changes to entries made outside the server show within this.
            listing_cache: Duration::from_secs(2),
        }
    }
}

/// A setting that cannot work, named by its key (the flag is the key with `-` for `_`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            key,
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Every check that needs no more than the values and a look at the file system.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = std::fs::read_dir(&self.root) {
            return Err(ConfigError::new(
                "root",
                format!("{:?} is not a readable directory: {e}", self.root),
            ));
        }
        if self.listen.is_empty() {
            return Err(ConfigError::new("listen", "at least one address is needed"));
        }
        if self.shards == 0 || self.shards > 1024 {
            return Err(ConfigError::new("shards", "must be between 1 and 1024"));
        }
        let (lo, hi) = self.pasv_ports;
        if lo == 0 || hi < lo || usize::from(hi - lo) + 1 < self.shards {
            return Err(ConfigError::new(
                "pasv_ports",
                format!("range {lo}-{hi} is empty, starts at 0 or has fewer ports than shards"),
            ));
        }
        for (key, zero) in [
            ("idle_timeout_secs", self.idle_timeout.is_zero()),
            ("data_timeout_secs", self.data_timeout.is_zero()),
            ("max_sessions", self.max_sessions == 0),
            ("fs_workers", self.fs_workers == 0),
            ("send_budget_kib", self.send_budget_bytes == 0),
        ] {
            if zero {
                return Err(ConfigError::new(key, "must be greater than zero"));
            }
        }
        for (key, zero) in [
            ("login_timeout_secs", self.login_timeout.is_zero()),
            ("login_workers", self.login_workers == 0),
            (
                "login_failure_window_secs",
                self.max_login_failures_per_ip > 0 && self.login_failure_window.is_zero(),
            ),
            (
                "ban_secs",
                self.max_login_failures_per_ip > 0 && self.ban_duration.is_zero(),
            ),
        ] {
            if zero {
                return Err(ConfigError::new(key, "must be greater than zero"));
            }
        }
        if self.login_workers > 64 {
            return Err(ConfigError::new("login_workers", "at most 64"));
        }
        if !(16..=128).contains(&self.ipv6_prefix_len) {
            return Err(ConfigError::new(
                "ipv6_prefix_len",
                "must be between 16 and 128",
            ));
        }
        if self.fs_workers > 256 {
            return Err(ConfigError::new("fs_workers", "at most 256"));
        }
        if !(1..=1 << 20).contains(&self.fs_queue_max) {
            return Err(ConfigError::new(
                "fs_queue_max",
                "must be between 1 and 1048576",
            ));
        }
        if self.upload_grace > MAX_UPLOAD_GRACE {
            return Err(ConfigError::new(
                "upload_grace_ms",
                format!("at most {}", MAX_UPLOAD_GRACE.as_millis()),
            ));
        }
        if self.banner.len() > MAX_BANNER_BYTES {
            return Err(ConfigError::new(
                "banner",
                format!("longer than {MAX_BANNER_BYTES} bytes"),
            ));
        }
        if self.banner.bytes().any(|b| b.is_ascii_control()) {
            return Err(ConfigError::new(
                "banner",
                "contains a control character (it must be one line)",
            ));
        }
        for (key, file) in [("xferlog", &self.xferlog), ("json_log", &self.json_log)] {
            if let Some(file) = file {
                check_log_path(file).map_err(|reason| ConfigError::new(key, reason))?;
            }
        }
        if let Some(users) = &self.users_file {
            if let Err(e) = std::fs::metadata(users) {
                return Err(ConfigError::new("users", format!("{users:?}: {e}")));
            }
        }
        self.tls_config()?;
        if let Some(name) = &self.run_as {
            if name.is_empty() || name.contains(['\0', '/', ':']) || name.len() > 256 {
                return Err(ConfigError::new(
                    "user",
                    format!("{name:?} is not a user name"),
                ));
            }
        }
        Ok(())
    }

    /// The TLS server configuration from `tls_cert` and `tls_key` (read, parsed and checked
    /// to fit each other), or `None` when TLS is not configured.
    pub fn tls_config(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => crate::tls::load(cert, key)
                .map(Some)
                .map_err(|e| ConfigError::new(e.key, e.reason)),
            (Some(_), None) => Err(ConfigError::new("tls_key", "tls_cert needs tls_key too")),
            (None, Some(_)) => Err(ConfigError::new("tls_cert", "tls_key needs tls_cert too")),
            (None, None) => match self.tls_needing_a_certificate() {
                Some(key) => Err(ConfigError::new(key, "needs tls_cert and tls_key")),
                None => Ok(None),
            },
        }
    }

    /// The first key set that cannot work without a certificate.
    fn tls_needing_a_certificate(&self) -> Option<&'static str> {
        [
            ("tls_required", self.tls_required),
            ("implicit_tls_listen", !self.implicit_tls_listen.is_empty()),
            (
                "tls_anonymous",
                self.tls_anonymous != TlsRequirement::Optional,
            ),
            ("tls_named", self.tls_named != TlsRequirement::Optional),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }

    /// What named users must do with TLS: `tls_named`, raised to "data" by `tls_required`
    /// (its meaning before `tls_named` existed: login over TLS and `PROT P`).
    pub fn tls_named_requirement(&self) -> TlsRequirement {
        if self.tls_required {
            TlsRequirement::Data
        } else {
            self.tls_named
        }
    }

    /// The passive ports of shard `index`: a disjoint slice of the configured range.
    pub fn pasv_slice(&self, index: usize) -> (u16, u16) {
        let (lo, hi) = self.pasv_ports;
        let total = usize::from(hi - lo) + 1;
        let per = total / self.shards;
        let start = usize::from(lo) + index * per;
        let end = if index + 1 == self.shards {
            usize::from(hi)
        } else {
            start + per - 1
        };
        (start as u16, end as u16)
    }
}

/// A log file must be a file name in an existing directory (it is created on first open).
fn check_log_path(file: &std::path::Path) -> Result<(), String> {
    if file.as_os_str().is_empty() {
        return Err("empty path".into());
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{dir:?} is not a directory")),
        Err(e) => return Err(format!("directory {dir:?}: {e}")),
    }
    match std::fs::metadata(file) {
        Ok(m) if m.is_dir() => Err(format!("{file:?} is a directory")),
        _ => Ok(()),
    }
}

/// Parse "MIN-MAX".
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let lo = a
        .trim()
        .parse()
        .map_err(|e| format!("bad port {a:?}: {e}"))?;
    let hi = b
        .trim()
        .parse()
        .map_err(|e| format!("bad port {b:?}: {e}"))?;
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasv_slices_are_disjoint_and_cover_the_range() {
        let c = Config {
            pasv_ports: (50000, 50009),
            shards: 3,
            ..Config::default()
        };
        assert_eq!(c.pasv_slice(0), (50000, 50002));
        assert_eq!(c.pasv_slice(1), (50003, 50005));
        assert_eq!(c.pasv_slice(2), (50006, 50009));
    }

    #[test]
    fn validation_rejects_bad_values() {
        let dir = std::env::temp_dir();
        let ok = Config {
            root: dir.clone(),
            ..Config::default()
        };
        assert!(ok.validate().is_ok());
        assert!(
            Config {
                shards: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Config {
                pasv_ports: (3000, 2000),
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Config {
                listen: vec![],
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Config {
                root: dir.join("definitely-missing-ringftpd"),
                ..ok
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn tls_required_means_tls_named_data() {
        let c = Config::default();
        assert_eq!(c.tls_named_requirement(), TlsRequirement::Optional);
        for named in [
            TlsRequirement::Optional,
            TlsRequirement::Login,
            TlsRequirement::Data,
        ] {
            let c = Config {
                tls_named: named,
                ..Config::default()
            };
            assert_eq!(c.tls_named_requirement(), named);
            let c = Config {
                tls_required: true,
                ..c
            };
            assert_eq!(c.tls_named_requirement(), TlsRequirement::Data);
        }
        assert_eq!(Config::default().tls_anonymous, TlsRequirement::Optional);
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!(parse_port_range("50000-51000"), Ok((50000, 51000)));
        assert!(parse_port_range("50000").is_err());
        assert!(parse_port_range("a-b").is_err());
    }
}
