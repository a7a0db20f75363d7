//! The systemd notification protocol (sd_notify(3)): newline-separated `KEY=VALUE` datagrams to
//! the socket named by `$NOTIFY_SOCKET`, a path or (with a leading `@`) an abstract name. Without
//! the variable every call is a no-op, so the same binary runs under systemd and outside it.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    sock: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names, or `None` when the service manager wants no
    /// notifications (the variable is unset) or names something unusable (logged once).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        match Notifier::open(path.as_encoded_bytes()) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET {path:?}: {e}; not notifying the service manager");
                None
            }
        }
    }

    fn open(name: &[u8]) -> io::Result<Notifier> {
        let to = match name.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
            None if name.first() == Some(&b'/') => {
                // from_pathname refuses an embedded NUL.
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an abstract socket name",
                ));
            }
        };
        Ok(Notifier {
            sock: UnixDatagram::unbound()?,
            to,
        })
    }

    /// Send one notification. A service manager that went away is not an error worth stopping
    /// for: the failure is logged and serving goes on.
    pub fn send(&self, state: &str) {
        // The socket is a datagram socket in the same host; a send either goes at once or fails
        // (ECONNREFUSED, EAGAIN on a full queue): it never blocks for long.
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.to) {
            log::warn!("sd_notify {state:?}: {e}");
        }
    }

    /// `READY=1` with a status line: start-up is complete, listeners are open.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with the monotonic time the reload started, as `Type=notify-reload` needs;
    /// `ready` ends the reload.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=Reloading configuration",
            monotonic_usec()
        ));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u128 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| Duration::from(t).as_micros())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::open(path.to_str().unwrap().as_bytes()).unwrap();
        n.ready("serving");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=serving");
        n.reloading();
        let got = recv(&sock);
        let usec: u128 = got
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(got.starts_with("RELOADING=1\n") && usec > 0, "{got}");
        n.stopping("draining");
        assert_eq!(recv(&sock), "STOPPING=1\nSTATUS=draining");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("ringftpd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::open(format!("@{name}").as_bytes()).unwrap();
        n.status("3 sessions");
        assert_eq!(recv(&sock), "STATUS=3 sessions");
    }

    #[test]
    fn unusable_names_are_refused() {
        assert!(Notifier::open(b"relative/path").is_err());
        assert!(Notifier::open(b"/with\0nul").is_err());
    }
}
