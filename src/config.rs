//! Server configuration: every default in one place, validated once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

#[derive(Debug, Clone)]
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
    /// Sessions from one client IP (0 = no limit); more are turned away with 421.
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
}

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
            max_sessions_per_ip: 0,
            allow_anonymous: true,
            fs_workers: 2,
            send_budget_bytes: 1 << 20,
            upload_grace: Duration::from_millis(10),
            io_backend: Backend::Auto,
            pin_shards: true,
            users_file: None,
            anonymous_upload: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("root {0:?} is not a readable directory: {1}")]
    Root(PathBuf, std::io::Error),
    #[error("at least one --listen address is needed")]
    NoListen,
    #[error("--shards must be between 1 and 1024")]
    Shards,
    #[error("passive port range {0}-{1} is empty or has fewer ports than shards")]
    PasvPorts(u16, u16),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match std::fs::read_dir(&self.root) {
            Ok(_) => {}
            Err(e) => return Err(ConfigError::Root(self.root.clone(), e)),
        }
        if self.listen.is_empty() {
            return Err(ConfigError::NoListen);
        }
        if self.shards == 0 || self.shards > 1024 {
            return Err(ConfigError::Shards);
        }
        let (lo, hi) = self.pasv_ports;
        if lo == 0 || hi < lo || usize::from(hi - lo) + 1 < self.shards {
            return Err(ConfigError::PasvPorts(lo, hi));
        }
        for (name, zero) in [
            ("idle timeout", self.idle_timeout.is_zero()),
            ("data timeout", self.data_timeout.is_zero()),
            ("max sessions", self.max_sessions == 0),
            ("fs workers", self.fs_workers == 0),
            ("send budget", self.send_budget_bytes == 0),
        ] {
            if zero {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
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
    fn port_range_parsing() {
        assert_eq!(parse_port_range("50000-51000"), Ok((50000, 51000)));
        assert!(parse_port_range("50000").is_err());
        assert!(parse_port_range("a-b").is_err());
    }
}
