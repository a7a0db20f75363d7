//! Log output: transfer and session records and `log` lines, formatted and written by one thread.
//!
//! Shards never write logs themselves (design.md section 9): they build a plain record and
//! hand it over with [`transfer`] or [`session`], or call `log::info!` and friends as before;
//! either way the item goes into one bounded queue with a non-blocking `try_send`. One log
//! thread formats the items (xferlog(5), JSON lines, `ringftpd LEVEL message` on stderr) and
//! owns every output file. A full queue drops the item and counts it ([`dropped`]); the thread
//! reports the count on stderr and in the JSON log once it catches up.
//!
//! Wiring (done once, in `main`, on the main/control thread):
//!
//! ```no_run
//! # fn main() -> Result<(), ringftpd::logging::LogError> {
//! use ringftpd::logging::{self, LogSettings};
//! // Replaces main's `log::set_logger(&StderrLogger)` and `log::set_max_level(..)`.
//! let handle = logging::start(LogSettings {
//!     level: log::LevelFilter::Info,
//!     xferlog: Some("/var/log/ringftpd/xferlog".into()),
//!     ..LogSettings::default()
//! })?;
//! // On SIGHUP (after logrotate renamed the files): handle.reopen()?;
//! // On a config reload: handle.reconfigure(new_settings)?; (old files stay on error)
//! // At exit, after the shards have been joined, so nothing queued is lost:
//! handle.stop();
//! # Ok(()) }
//! ```
//!
//! On a shard, after the final reply of a transfer has been sent:
//! `logging::transfer(TransferRecord { .. })`; when a session ends: `logging::session(..)`.
//! Before [`start`] (unit tests, the `hash-password` subcommand) both are no-ops.

pub mod json;
pub mod record;
mod thread;
pub mod xferlog;

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

pub use record::{DataTls, Direction, SessionRecord, TransferRecord};
use thread::{Files, Item, LogThread, Producer};

/// Records the queue holds before it drops: a burst of a few thousand short transfers from
/// all shards at once fits; about 200 bytes each, so under 2 MiB.
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;

/// Where log output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// The most verbose `log` level written to stderr.
    pub level: log::LevelFilter,
    /// The wu-ftpd style transfer log, one line per transfer; `None` for none.
    pub xferlog: Option<PathBuf>,
    /// JSON lines for transfers and session ends; `None` for none.
    pub json_log: Option<PathBuf>,
    /// Records queued before new ones are dropped (at least 1). Fixed at [`start`]:
    /// [`LogHandle::reconfigure`] ignores it.
    pub queue_capacity: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: log::LevelFilter::Info,
            xferlog: None,
            json_log: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// Why logging could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A log file could not be opened (or created) for appending.
    #[error("cannot open log file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The log thread could not be created.
    #[error("cannot start the log thread: {0}")]
    Spawn(#[source] io::Error),
    /// [`start`] ran before, or another `log` logger is installed: one per process.
    #[error("a logger is already installed in this process")]
    AlreadyStarted,
    /// The log thread is gone (it was stopped).
    #[error("the log thread has stopped")]
    Stopped,
}

impl From<LogError> for io::Error {
    fn from(e: LogError) -> io::Error {
        let kind = match &e {
            LogError::Open { source, .. } | LogError::Spawn(source) => source.kind(),
            LogError::AlreadyStarted => io::ErrorKind::AlreadyExists,
            LogError::Stopped => io::ErrorKind::BrokenPipe,
        };
        io::Error::new(kind, e)
    }
}

/// The control side of the running log thread, held by `main`/the control thread.
/// Dropping it stops the thread as [`LogHandle::stop`] does.
#[derive(Debug)]
pub struct LogHandle {
    thread: LogThread,
    producer: Producer,
    settings: LogSettings,
    /// Installed as the process's logger: a reconfigure also sets `log::max_level`.
    global: bool,
}

impl LogHandle {
    /// Opens the files of `settings` on the calling thread, then starts a log thread writing
    /// to them and to `console`. Not installed anywhere: `start` does that.
    fn spawn(settings: LogSettings, console: Box<dyn Write + Send>) -> Result<LogHandle, LogError> {
        let files = open(&settings)?;
        let (producer, thread) = LogThread::spawn(files, console, settings.queue_capacity)?;
        Ok(LogHandle {
            thread,
            producer,
            settings,
            global: false,
        })
    }

    /// Closes and reopens the log files by path (SIGHUP after logrotate moved them): records
    /// submitted before this call go to the old files, those submitted after it returns to
    /// the fresh ones. Blocks until the log thread has switched (control thread only). If a file cannot be reopened the
    /// error is returned and the thread keeps writing to the files it has.
    pub fn reopen(&self) -> Result<(), LogError> {
        self.thread.swap(open(&self.settings)?)
    }

    /// Switches to the paths and level of `settings` (a config reload), with the same
    /// before/after split as [`LogHandle::reopen`]. The new files are
    /// opened first, on the calling thread: if one cannot be opened, nothing changes and the
    /// error is returned. `queue_capacity` cannot change while running and is ignored.
    pub fn reconfigure(&mut self, settings: LogSettings) -> Result<(), LogError> {
        self.thread.swap(open(&settings)?)?;
        if self.global {
            log::set_max_level(settings.level);
            WANTS.store(wants_of(&settings), Ordering::Relaxed);
        }
        self.settings = LogSettings {
            queue_capacity: self.settings.queue_capacity,
            ..settings
        };
        Ok(())
    }

    /// Writes everything queued so far, flushes the files and stderr, and joins the thread.
    /// Call it after the shards have stopped, so that the queue no longer grows: what they
    /// submit afterwards is dropped (and counted).
    pub fn stop(self) {
        self.thread.stop();
    }

    /// Items dropped so far because the queue was full (or the thread had stopped).
    pub fn dropped(&self) -> u64 {
        self.producer.dropped()
    }

    /// The settings in force.
    pub fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// Tests: submit to this instance rather than the global one.
    #[cfg(test)]
    fn submit(&self, item: Item) {
        self.producer.submit(item);
    }
}

fn open(settings: &LogSettings) -> Result<Files, LogError> {
    Files::open(settings.xferlog.as_deref(), settings.json_log.as_deref())
}

/// The process's queue, set once by [`start`]; shard code reaches it without a handle.
static PRODUCER: OnceLock<Producer> = OnceLock::new();

/// The `log::Log` front end: forwards every enabled record to [`PRODUCER`].
struct QueueLogger;

static LOGGER: QueueLogger = QueueLogger;

impl log::Log for QueueLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Some(p) = PRODUCER.get() {
            // One allocation for a formatted message, none for a literal one; the rest of the
            // line is put together on the log thread.
            let msg = match r.args().as_str() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(r.args().to_string()),
            };
            p.submit(Item::Text {
                level: r.level(),
                msg,
            });
        }
    }

    /// The log thread flushes whenever its queue runs empty, and [`LogHandle::stop`] flushes
    /// at exit; a caller here (possibly a shard) must not wait for either.
    fn flush(&self) {}
}

/// Starts the log thread writing to the files of `settings` and to stderr, installs it as the
/// `log` crate's logger at `settings.level`, and makes [`transfer`] and [`session`] feed it.
/// Once per process; call it from the main thread before the shards start.
pub fn start(settings: LogSettings) -> Result<LogHandle, LogError> {
    start_with(settings, Box::new(io::stderr()))
}

/// [`start`] with the console given, so a test can read what would go to stderr.
fn start_with(
    settings: LogSettings,
    console: Box<dyn Write + Send>,
) -> Result<LogHandle, LogError> {
    // Files first: a bad path fails here with nothing installed, so the caller may retry.
    let mut handle = LogHandle::spawn(settings, console)?;
    // Dropping `handle` on this error stops the thread just started.
    log::set_logger(&LOGGER).map_err(|_| LogError::AlreadyStarted)?;
    // Cannot fail: set_logger succeeds once per process, and only here.
    let _ = PRODUCER.set(handle.producer.clone());
    log::set_max_level(handle.settings.level);
    // Relaxed: a hint for producers; a record built just before a change is harmless either way.
    WANTS.store(wants_of(&handle.settings), Ordering::Relaxed);
    handle.global = true;
    Ok(handle)
}

/// Which records the configured files take, so producers build none that nobody writes: bit
/// [`WANTS_TRANSFERS`] with an xferlog or a JSON log, [`WANTS_SESSIONS`] with a JSON log. Set by
/// [`start`] and [`LogHandle::reconfigure`]; nothing is wanted before [`start`].
static WANTS: AtomicU8 = AtomicU8::new(0);
const WANTS_TRANSFERS: u8 = 1;
const WANTS_SESSIONS: u8 = 2;

fn wants_of(settings: &LogSettings) -> u8 {
    let files = settings.xferlog.is_some() || settings.json_log.is_some();
    (if files { WANTS_TRANSFERS } else { 0 })
        | (if settings.json_log.is_some() {
            WANTS_SESSIONS
        } else {
            0
        })
}

/// Whether a finished transfer's record would be written anywhere (check before building one).
pub fn wants_transfers() -> bool {
    WANTS.load(Ordering::Relaxed) & WANTS_TRANSFERS != 0
}

/// Whether an ended session's record would be written anywhere.
pub fn wants_sessions() -> bool {
    WANTS.load(Ordering::Relaxed) & WANTS_SESSIONS != 0
}

/// Queues a finished transfer for the xferlog and JSON log. Never blocks: if the queue is
/// full the record is dropped and counted. A no-op before [`start`].
pub fn transfer(rec: TransferRecord) {
    if let Some(p) = PRODUCER.get() {
        p.submit(Item::Transfer(rec));
    }
}

/// Queues an ended session for the JSON log. Never blocks; a no-op before [`start`].
pub fn session(rec: SessionRecord) {
    if let Some(p) = PRODUCER.get() {
        p.submit(Item::Session(rec));
    }
}

/// Records and lines dropped so far because the queue was full (0 before [`start`]).
pub fn dropped() -> u64 {
    PRODUCER.get().map_or(0, Producer::dropped)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::thread::tests::{SharedBuf, session as a_session, transfer as a_transfer};
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn settings(xferlog: &Path, json: &Path) -> LogSettings {
        LogSettings {
            level: log::LevelFilter::Warn,
            xferlog: Some(xferlog.to_path_buf()),
            json_log: Some(json.to_path_buf()),
            queue_capacity: 64,
        }
    }

    #[test]
    fn records_are_wanted_only_by_a_file_that_takes_them() {
        let (x, j) = (Path::new("/x"), Path::new("/j"));
        let none = LogSettings {
            xferlog: None,
            json_log: None,
            ..settings(x, j)
        };
        assert_eq!(wants_of(&none), 0, "the level alone wants no records");
        let xfer_only = LogSettings {
            json_log: None,
            ..settings(x, j)
        };
        assert_eq!(wants_of(&xfer_only), WANTS_TRANSFERS);
        assert_eq!(wants_of(&settings(x, j)), WANTS_TRANSFERS | WANTS_SESSIONS);
    }

    #[test]
    fn reopen_after_rename_writes_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let (x, j) = (dir.path().join("xferlog"), dir.path().join("log.json"));
        let h = LogHandle::spawn(settings(&x, &j), Box::new(io::sink())).unwrap();
        h.submit(Item::Transfer(a_transfer(1)));
        // logrotate: `mv xferlog xferlog.1`, then SIGHUP. Whether or not line 1 was written
        // yet, it was submitted before the reopen, so it goes to the old file (now .1).
        let rotated = dir.path().join("xferlog.1");
        std::fs::rename(&x, &rotated).unwrap();
        h.reopen().unwrap();
        h.submit(Item::Transfer(a_transfer(2)));
        h.stop();
        assert!(read(&rotated).contains("/file-1 "));
        assert!(!read(&rotated).contains("/file-2 "));
        let fresh = read(&x);
        assert_eq!(fresh.lines().count(), 1, "{fresh}");
        assert!(fresh.contains("/file-2 "));
        // The JSON log was not moved: reopening appends to the same file.
        assert_eq!(read(&j).lines().count(), 2);
    }

    #[test]
    fn reconfigure_switches_files_and_keeps_old_ones_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (x, j) = (dir.path().join("xferlog"), dir.path().join("log.json"));
        let mut h = LogHandle::spawn(settings(&x, &j), Box::new(io::sink())).unwrap();
        let bad = LogSettings {
            xferlog: Some(dir.path().join("no/such/dir/xferlog")),
            ..h.settings().clone()
        };
        assert!(matches!(h.reconfigure(bad), Err(LogError::Open { .. })));
        assert_eq!(h.settings().xferlog.as_deref(), Some(x.as_path()));
        h.submit(Item::Transfer(a_transfer(1)));

        let x2 = dir.path().join("xferlog2");
        h.reconfigure(LogSettings {
            xferlog: Some(x2.clone()),
            json_log: None,
            queue_capacity: 1,
            ..h.settings().clone()
        })
        .unwrap();
        assert_eq!(
            h.settings().queue_capacity,
            64,
            "capacity is fixed at start"
        );
        h.submit(Item::Transfer(a_transfer(2)));
        h.submit(Item::Session(a_session(2)));
        h.stop();
        assert!(read(&x).contains("/file-1 ") && !read(&x).contains("/file-2 "));
        assert!(read(&x2).contains("/file-2 ") && !read(&x2).contains("/file-1 "));
        // No JSON log any more: the session record went nowhere.
        assert_eq!(read(&j).lines().count(), 1);
    }

    #[test]
    fn start_with_a_bad_path_fails_before_installing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogSettings {
            json_log: Some(dir.path().join("missing/log.json")),
            ..LogSettings::default()
        };
        let e = LogHandle::spawn(s, Box::new(io::sink())).unwrap_err();
        assert!(e.to_string().starts_with("cannot open log file "), "{e}");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
    }

    /// The only test that touches the process-wide logger (tests share one process).
    #[test]
    fn global_front_end() {
        // Before start: submitting is a no-op and nothing is counted.
        transfer(a_transfer(0));
        session(a_session(0));
        assert_eq!(dropped(), 0);

        let dir = tempfile::tempdir().unwrap();
        let (x, j) = (dir.path().join("xferlog"), dir.path().join("log.json"));
        let console = SharedBuf::default();
        let h = start_with(settings(&x, &j), Box::new(console.clone())).unwrap();
        assert_eq!(log::max_level(), log::LevelFilter::Warn);
        let again = start_with(LogSettings::default(), Box::new(io::sink()));
        assert!(matches!(again, Err(LogError::AlreadyStarted)));

        transfer(a_transfer(1));
        session(a_session(1));
        log::warn!("global-front-end marker {}", 42);
        log::warn!("global-front-end literal");
        log::info!("global-front-end filtered");
        h.stop();
        assert!(read(&x).contains("/file-1 "));
        assert_eq!(read(&j).lines().count(), 2);
        let text = console.text();
        assert!(
            text.contains("ringftpd WARN global-front-end marker 42\n"),
            "{text}"
        );
        assert!(
            text.contains("ringftpd WARN global-front-end literal\n"),
            "{text}"
        );
        assert!(!text.contains("filtered"), "{text}");
    }
}
