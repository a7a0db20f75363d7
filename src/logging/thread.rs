//! The log thread: drains a bounded queue of records and writes them to the log files and the
//! console, so that no shard ever waits on a disk or a full stderr pipe.
//!
//! Producers only `try_send`: when the queue is full the record is dropped and counted, and
//! the thread reports the count once it catches up. Control messages (swap files, stop) use a
//! separate unbounded channel, checked before each record, so a full queue can neither refuse
//! nor indefinitely delay them.
//! This type knows nothing of globals; `logging::start` puts one instance behind a `OnceLock`,
//! and tests make as many private instances as they like.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, Sender, TryRecvError, TrySendError, after, bounded, never, select, unbounded,
};

use super::LogError;
use super::record::{SessionRecord, TransferRecord};
use super::{json, xferlog};

/// Log files are readable by the operator's group (e.g. `adm`) but nobody else: they hold
/// client addresses and anonymous passwords. The process umask still applies on creation.
const FILE_MODE: u32 = 0o640;

/// The least time between two "lines dropped" warnings, so a sustained overload adds one line
/// a second to the console rather than one per batch.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Records written between two looks at the drop counter while the queue never empties.
const DROP_CHECK_EVERY: u32 = 1024;
/// How long the thread pauses after writing before it looks at the queue again (see `run`):
/// a queue's worth (8192 by default) per pause is over a million records a second.
const LINGER: Duration = Duration::from_millis(5);

/// One unit of work for the log thread.
#[derive(Debug)]
pub(crate) enum Item {
    Transfer(TransferRecord),
    Session(SessionRecord),
    /// A `log` crate line. Static messages (`log::info!("literal")`) are not copied.
    Text {
        level: log::Level,
        msg: Cow<'static, str>,
    },
}

/// The sending side: cheap to clone, never blocks, never fails loudly.
#[derive(Clone, Debug)]
pub(crate) struct Producer {
    tx: Sender<Item>,
    dropped: Arc<AtomicU64>,
}

impl Producer {
    /// Queues `item`, or drops and counts it if the queue is full (or the thread has stopped).
    pub(crate) fn submit(&self, item: Item) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                // Relaxed: a statistic, read by the log thread with no other data to order.
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped so far because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The files one configuration writes to. Opened by whoever asks for them (the control
/// thread), so that a path that cannot be opened is that caller's error and the thread keeps
/// its old files.
#[derive(Debug, Default)]
pub(crate) struct Files {
    xferlog: Option<LogFile>,
    json: Option<LogFile>,
}

impl Files {
    /// Opens (appending, creating with mode 0640) each path given.
    pub(crate) fn open(xferlog: Option<&Path>, json: Option<&Path>) -> Result<Files, LogError> {
        Ok(Files {
            xferlog: xferlog.map(LogFile::open).transpose()?,
            json: json.map(LogFile::open).transpose()?,
        })
    }

    fn flush(&mut self, console: &mut dyn Write) {
        for f in [&mut self.xferlog, &mut self.json].into_iter().flatten() {
            let r = f.out.flush();
            f.note(r, console);
        }
    }
}

#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// The last write failed and that was reported; cleared by the next good flush, so a full
    /// disk gives one warning, not one per line.
    failing: bool,
}

impl LogFile {
    fn open(path: &Path) -> Result<LogFile, LogError> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(|source| LogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(LogFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            failing: false,
        })
    }

    fn write(&mut self, line: &[u8], console: &mut dyn Write) {
        let r = self.out.write_all(line);
        if r.is_err() {
            self.note(r, console);
        }
    }

    fn note(&mut self, r: io::Result<()>, console: &mut dyn Write) {
        match r {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                let _ = writeln!(
                    console,
                    "ringftpd WARN cannot write log file {}: {e}",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }
}

#[derive(Debug)]
enum Control {
    /// Write what is queued, flush and close the current files, write to these from now on,
    /// then acknowledge.
    Swap(Files, Sender<()>),
    /// Write everything already queued, flush, and end.
    Stop,
    /// Tests: acknowledge, then block until `resume` yields or disconnects, so a test can fill
    /// the queue while the thread is known not to drain it.
    #[cfg(test)]
    Pause {
        paused: Sender<()>,
        resume: Receiver<()>,
    },
}

/// The running log thread. Dropping it stops the thread like [`LogThread::stop`].
#[derive(Debug)]
pub(crate) struct LogThread {
    ctrl: Sender<Control>,
    join: Option<JoinHandle<()>>,
}

impl LogThread {
    /// Starts a thread writing to `files` and `console`, with room for `capacity` queued
    /// records (at least 1: a zero-capacity channel would drop everything not met by a
    /// waiting receiver).
    pub(crate) fn spawn(
        files: Files,
        console: Box<dyn Write + Send>,
        capacity: usize,
    ) -> Result<(Producer, LogThread), LogError> {
        let (tx, data) = bounded(capacity.max(1));
        let (ctrl_tx, ctrl) = unbounded();
        let dropped = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            data,
            data_open: true,
            ctrl,
            files,
            console: BufWriter::new(console),
            dropped: Arc::clone(&dropped),
            reported: 0,
            last_report: None,
            since_check: 0,
            scratch: Vec::with_capacity(512),
        };
        let join = std::thread::Builder::new()
            .name("ringftpd-log".into())
            .spawn(move || worker.run())
            .map_err(LogError::Spawn)?;
        Ok((
            Producer { tx, dropped },
            LogThread {
                ctrl: ctrl_tx,
                join: Some(join),
            },
        ))
    }

    /// Makes the thread write to `files` from now on, and waits until it does: records
    /// submitted before this call go to the old files, records submitted after it returns to
    /// the new ones. Blocks the caller, so call it from a control thread, never from a shard.
    pub(crate) fn swap(&self, files: Files) -> Result<(), LogError> {
        let (ack, done) = bounded(1);
        self.ctrl
            .send(Control::Swap(files, ack))
            .map_err(|_| LogError::Stopped)?;
        done.recv().map_err(|_| LogError::Stopped)
    }

    /// Writes everything queued so far, flushes, and joins the thread.
    pub(crate) fn stop(self) {
        drop(self);
    }

    /// Tests: blocks the thread until the returned sender is dropped (or sends).
    #[cfg(test)]
    pub(crate) fn pause(&self) -> Sender<()> {
        let (paused, is_paused) = bounded(1);
        let (resume_tx, resume) = bounded(0);
        self.ctrl
            .send(Control::Pause { paused, resume })
            .expect("log thread running");
        is_paused.recv().expect("log thread paused");
        resume_tx
    }
}

impl Drop for LogThread {
    fn drop(&mut self) {
        let _ = self.ctrl.send(Control::Stop);
        if let Some(join) = self.join.take() {
            // A panic on the log thread has already been printed by the panic hook; there is
            // nothing more to report and no reason to panic the caller too.
            let _ = join.join();
        }
    }
}

struct Worker {
    data: Receiver<Item>,
    /// False once every producer is gone; the data channel then reads as always ready.
    data_open: bool,
    ctrl: Receiver<Control>,
    files: Files,
    console: BufWriter<Box<dyn Write + Send>>,
    dropped: Arc<AtomicU64>,
    /// The drop count as of the last warning.
    reported: u64,
    last_report: Option<Instant>,
    since_check: u32,
    /// One line at a time is formatted here, then written whole.
    scratch: Vec<u8>,
}

/// What a control message asks of the loop.
enum Next {
    Continue,
    Stop,
}

impl Worker {
    fn run(mut self) {
        // Something was written since the thread last slept: linger before blocking again.
        let mut busy = false;
        loop {
            // Control first: however fast producers submit, a reopen or stop is served
            // within one queue's worth of writes.
            loop {
                match self.ctrl.try_recv() {
                    Ok(c) => {
                        if let Next::Stop = self.control(c) {
                            return self.finish();
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    // The handle is gone without a Stop: stop all the same.
                    Err(TryRecvError::Disconnected) => return self.finish(),
                }
            }
            if self.data_open {
                match self.data.try_recv() {
                    Ok(item) => {
                        self.write(item);
                        busy = true;
                        self.since_check += 1;
                        if self.since_check >= DROP_CHECK_EVERY {
                            self.report_drops(false);
                        }
                        continue;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => self.data_open = false,
                }
            }
            // Caught up: make the lines visible now, say what was lost, then sleep until
            // there is work (or until a rate-limited drop warning is due).
            self.report_drops(false);
            self.flush();
            if busy {
                // While records keep coming, look again after a pause instead of blocking on
                // the queue: a producer only wakes a receiver that is blocked, so under load
                // the shards' `try_send` costs no futex wake-up per record, and the thread
                // writes what arrived meanwhile in one batch. Idle, it blocks after one pause.
                busy = false;
                std::thread::sleep(LINGER);
                continue;
            }
            let timer = match self.report_due_in() {
                Some(d) => after(d),
                None => never(),
            };
            let closed = never();
            let data = if self.data_open { &self.data } else { &closed };
            select! {
                recv(self.ctrl) -> c => match c {
                    Ok(c) => {
                        if let Next::Stop = self.control(c) {
                            return self.finish();
                        }
                    }
                    Err(_) => return self.finish(),
                },
                recv(data) -> item => match item {
                    Ok(item) => {
                        self.write(item);
                        busy = true;
                    }
                    Err(_) => self.data_open = false,
                },
                recv(timer) -> _ => {}
            }
        }
    }

    fn control(&mut self, c: Control) -> Next {
        match c {
            Control::Swap(files, ack) => {
                // What was queued when the swap arrived was submitted before it was asked
                // for, so it belongs in the old files. The count is taken now, so producers
                // that keep submitting cannot hold the swap up for more than one queue's worth.
                for _ in 0..self.data.len() {
                    match self.data.try_recv() {
                        Ok(item) => self.write(item),
                        Err(_) => break,
                    }
                }
                self.files.flush(&mut self.console);
                self.files = files;
                let _ = ack.send(());
                Next::Continue
            }
            Control::Stop => Next::Stop,
            #[cfg(test)]
            Control::Pause { paused, resume } => {
                let _ = paused.send(());
                let _ = resume.recv();
                Next::Continue
            }
        }
    }

    /// Stop: write what is queued (the shards have stopped, so the queue no longer grows),
    /// report any final drops, flush.
    fn finish(mut self) {
        while let Ok(item) = self.data.try_recv() {
            self.write(item);
        }
        self.report_drops(true);
        self.flush();
    }

    fn write(&mut self, item: Item) {
        let console: &mut dyn Write = &mut self.console;
        match item {
            Item::Transfer(rec) => {
                if let Some(f) = &mut self.files.xferlog {
                    self.scratch.clear();
                    xferlog::write_line(&rec, &mut self.scratch);
                    f.write(&self.scratch, console);
                }
                if let Some(f) = &mut self.files.json {
                    self.scratch.clear();
                    json::write_transfer(&rec, &mut self.scratch);
                    f.write(&self.scratch, console);
                }
            }
            // xferlog(5) has transfer lines only.
            Item::Session(rec) => {
                if let Some(f) = &mut self.files.json {
                    self.scratch.clear();
                    json::write_session(&rec, &mut self.scratch);
                    f.write(&self.scratch, console);
                }
            }
            Item::Text { level, msg } => {
                self.scratch.clear();
                text_line(level, &msg, &mut self.scratch);
                let _ = console.write_all(&self.scratch);
            }
        }
    }

    /// Warns on the console (and in the JSON log, so its readers know of the gap) when more
    /// records were dropped since the last warning, at most once per interval unless `force`.
    fn report_drops(&mut self, force: bool) {
        self.since_check = 0;
        let now_dropped = self.dropped.load(Ordering::Relaxed);
        let new = now_dropped.saturating_sub(self.reported);
        if new == 0 || (!force && self.report_due_in().is_some_and(|d| !d.is_zero())) {
            return;
        }
        self.reported = now_dropped;
        self.last_report = Some(Instant::now());
        let _ = writeln!(
            self.console,
            "ringftpd WARN {new} log lines dropped (queue full)"
        );
        if let Some(f) = &mut self.files.json {
            self.scratch.clear();
            json::write_dropped(new, chrono::Utc::now(), &mut self.scratch);
            f.write(&self.scratch, &mut self.console);
        }
    }

    /// How long until a warning about unreported drops may be written; `None` if there are
    /// none to report.
    fn report_due_in(&self) -> Option<Duration> {
        if self.dropped.load(Ordering::Relaxed) <= self.reported {
            return None;
        }
        Some(match self.last_report {
            Some(t) => DROP_REPORT_INTERVAL.saturating_sub(t.elapsed()),
            None => Duration::ZERO,
        })
    }

    fn flush(&mut self) {
        self.files.flush(&mut self.console);
        let _ = self.console.flush();
    }
}

/// `ringftpd LEVEL message`, the console format `main` has always used. Control characters are
/// escaped (`\n`, `\u{1b}`) so that a client-supplied name inside a message cannot start a
/// forged line or drive the operator's terminal.
fn text_line(level: log::Level, msg: &str, out: &mut Vec<u8>) {
    let _ = write!(out, "ringftpd {level} ");
    for c in msg.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;
    use crate::logging::record::Direction;

    /// A console the test can read back.
    #[derive(Clone, Default)]
    pub(crate) struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl SharedBuf {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    pub(crate) fn transfer(n: u64) -> TransferRecord {
        TransferRecord {
            session: n,
            start: SystemTime::now(),
            duration: Duration::from_millis(5),
            client: SocketAddr::from(([192, 0, 2, 1], 5000)),
            user: b"alice".to_vec(),
            anonymous: false,
            anonymous_password: Vec::new(),
            command: "RETR",
            path: format!("/file-{n}").into_bytes(),
            bytes: n,
            direction: Direction::Outgoing,
            ascii: false,
            complete: true,
            reply_code: 226,
            tls: crate::logging::record::DataTls::None,
        }
    }

    pub(crate) fn session(n: u64) -> SessionRecord {
        SessionRecord {
            session: n,
            client: SocketAddr::from(([192, 0, 2, 1], 5000)),
            user: None,
            anonymous: false,
            start: SystemTime::now(),
            duration: Duration::from_secs(1),
            bytes_in: 0,
            bytes_out: 0,
            transfers: 0,
            result: "closed",
            reply_code: None,
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn records_and_text_reach_their_outputs_by_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (x, j) = (dir.path().join("xferlog"), dir.path().join("log.json"));
        let console = SharedBuf::default();
        let files = Files::open(Some(&x), Some(&j)).unwrap();
        let (p, t) = LogThread::spawn(files, Box::new(console.clone()), 64).unwrap();
        p.submit(Item::Transfer(transfer(1)));
        p.submit(Item::Session(session(1)));
        p.submit(Item::Text {
            level: log::Level::Warn,
            msg: "evil\nringftpd ERROR forged\u{1b}[2J".into(),
        });
        t.stop();
        let xfer = read(&x);
        assert_eq!(xfer.lines().count(), 1, "{xfer}");
        assert!(
            xfer.contains(" /file-1 b _ o r alice ftp 0 * c\n"),
            "{xfer}"
        );
        let json = read(&j);
        let kinds: Vec<String> = json
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
            .collect();
        assert_eq!(kinds, ["\"transfer\"", "\"session\""]);
        assert_eq!(
            console.text(),
            "ringftpd WARN evil\\nringftpd ERROR forged\\u{1b}[2J\n"
        );
        assert_eq!(p.dropped(), 0);
    }

    #[test]
    fn lines_appear_while_running_without_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("xferlog");
        let files = Files::open(Some(&x), None).unwrap();
        let (p, _t) = LogThread::spawn(files, Box::new(io::sink()), 64).unwrap();
        p.submit(Item::Transfer(transfer(1)));
        // The thread flushes when its queue is empty; poll with a deadline, never a fixed sleep.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !read(&x).contains("/file-1 ") {
            assert!(Instant::now() < deadline, "line not flushed");
            std::thread::yield_now();
        }
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let (x, j) = (dir.path().join("xferlog"), dir.path().join("log.json"));
        let console = SharedBuf::default();
        let files = Files::open(Some(&x), Some(&j)).unwrap();
        let (p, t) = LogThread::spawn(files, Box::new(console.clone()), 4).unwrap();
        let resume = t.pause();
        let begun = Instant::now();
        for n in 0..10 {
            p.submit(Item::Transfer(transfer(n)));
        }
        // try_send never waits; a generous bound only catches a blocking send.
        assert!(begun.elapsed() < Duration::from_secs(5));
        assert_eq!(p.dropped(), 6);
        drop(resume);
        t.stop();
        assert_eq!(read(&x).lines().count(), 4);
        assert!(
            console
                .text()
                .contains("ringftpd WARN 6 log lines dropped (queue full)\n"),
            "{}",
            console.text()
        );
        let last = read(&j).lines().last().unwrap().to_string();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["count"].as_u64()),
            (Some("dropped"), Some(6))
        );
    }

    #[test]
    fn swap_is_served_while_the_data_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let (p, t) = LogThread::spawn(
            Files::open(Some(&a), None).unwrap(),
            Box::new(io::sink()),
            2,
        )
        .unwrap();
        let resume = t.pause();
        for n in 0..5 {
            p.submit(Item::Transfer(transfer(n)));
        }
        std::thread::scope(|s| {
            let swapper = s.spawn(|| t.swap(Files::open(Some(&b), None).unwrap()));
            // Wait (with a deadline, not a sleep) until the swap is queued behind the pause.
            let deadline = Instant::now() + Duration::from_secs(10);
            while t.ctrl.is_empty() {
                assert!(Instant::now() < deadline, "swap never queued");
                std::thread::yield_now();
            }
            drop(resume);
            swapper.join().unwrap().unwrap();
        });
        t.stop();
        // The swap did not wait for room in the full queue, and what was queued before it
        // went to the old file.
        assert_eq!(read(&a).lines().count(), 2);
        assert_eq!(read(&b), "");
        assert_eq!(p.dropped(), 3);
    }

    #[test]
    fn swap_after_stop_is_an_error_and_submit_is_counted() {
        let (p, t) = LogThread::spawn(Files::default(), Box::new(io::sink()), 2).unwrap();
        let ctrl = t.ctrl.clone();
        t.stop();
        let (ack, _) = bounded(1);
        assert!(ctrl.send(Control::Swap(Files::default(), ack)).is_err());
        p.submit(Item::Session(session(1)));
        assert_eq!(p.dropped(), 1);
    }

    #[test]
    fn unopenable_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("missing-dir/xferlog");
        match Files::open(Some(&bad), None) {
            Err(LogError::Open { path, source }) => {
                assert_eq!(path, bad);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_are_created_0640_and_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let x = dir.path().join("xferlog");
        std::fs::write(&x, "old line\n").unwrap();
        let (p, t) = LogThread::spawn(
            Files::open(Some(&x), None).unwrap(),
            Box::new(io::sink()),
            8,
        )
        .unwrap();
        p.submit(Item::Transfer(transfer(1)));
        t.stop();
        assert!(read(&x).starts_with("old line\n"));
        assert_eq!(read(&x).lines().count(), 2);
        let j = dir.path().join("new.json");
        drop(Files::open(Some(&j), None).unwrap());
        let mode = std::fs::metadata(&j).unwrap().permissions().mode() & 0o777;
        // The umask may take bits away, never add them.
        assert_eq!(mode & !FILE_MODE, 0, "{mode:o}");
    }
}
