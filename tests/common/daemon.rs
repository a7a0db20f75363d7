//! The `ringftpd` binary as a child process: started with flags, its stderr read line by line
//! on a thread (so the child never blocks on a full pipe), the control address taken from its
//! "serving ... on ftp://ADDR/" line, and killed when the test ends however it ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::TIMEOUT;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringftpd");

pub struct Daemon {
    pub child: Child,
    /// The first control address the binary reported.
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    pub seen: Vec<String>,
}

impl Daemon {
    /// Start the binary with `args` (and `env`), and wait until it reports a listening address.
    /// As the in-process suites do, `RINGFTPD_TEST_IO=epoll` runs it on the fallback backend.
    /// `--allow-root` is added: CI runs as root, where a start without `--user` is refused
    /// (tests/privileges.rs covers `--user`; the flag does nothing for other users).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg("--allow-root").args(args);
        if let Ok(io) = std::env::var("RINGFTPD_TEST_IO") {
            cmd.args(["--io", &io]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the ringftpd binary");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            lines,
            seen: Vec::new(),
        };
        let line = d.wait_line(|l| l.contains("ftp://"));
        let rest = line.split_once("ftp://").map(|(_, r)| r).unwrap_or("");
        d.addr = rest
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        d
    }

    /// The next stderr line matching `want`, within [`TIMEOUT`]; panics with everything seen.
    pub fn wait_line(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no matching line from ringftpd; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Send `signal` to the child.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal the server");
    }

    /// Wait up to `limit` for the child to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a child's exit has no blocking-with-timeout call in std; 10 ms steps keep
            // the wait bounded without synchronising anything on the sleep.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the binary to completion (bounded by `timeout 20`) and return its output.
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("20")
        .arg(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the ringftpd binary")
}
