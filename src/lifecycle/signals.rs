//! SIGTERM, SIGINT and SIGHUP, read from a signalfd by the control thread. `block` must run
//! before any other thread starts: the mask is inherited, so no shard is ever interrupted and
//! the signals queue on the fd instead of running default actions.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};

pub use nix::sys::signal::Signal;

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Block TERM, INT and HUP in this thread (and so in every thread it starts afterwards)
    /// and open a signalfd that receives them.
    pub fn block() -> io::Result<Signals> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(s);
        }
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// The next signal, waiting at most `timeout`; `None` when none came.
    pub fn next(&mut self, timeout: Duration) -> io::Result<Option<Signal>> {
        if let Some(s) = self.try_next()? {
            return Ok(Some(s));
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        self.try_next()
    }

    fn try_next(&mut self) -> io::Result<Option<Signal>> {
        match self.fd.read_signal()? {
            Some(info) => Ok(Signal::try_from(info.ssi_signo as i32).ok()),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_signal_is_read_from_the_fd() {
        // Run in a thread of its own: the mask and the pending signal stay in that thread.
        std::thread::spawn(|| {
            let mut signals = Signals::block().unwrap();
            assert_eq!(signals.next(Duration::from_millis(1)).unwrap(), None);
            nix::sys::signal::raise(Signal::SIGHUP).unwrap();
            assert_eq!(
                signals.next(Duration::from_secs(5)).unwrap(),
                Some(Signal::SIGHUP)
            );
        })
        .join()
        .unwrap();
    }
}
