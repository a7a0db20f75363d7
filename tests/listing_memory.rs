//! Listings in bounded memory: LIST, NLST, MLSD and STAT <dir> of a 100,000-entry directory
//! stream from the directory a batch at a time, so the server's peak RSS grows by a few MiB,
//! where reading every name first (about 14 MiB of names here) and building STAT's whole reply
//! (some 15 MiB, several copies) would not. The server runs as a child process, so its own
//! `/proc/<pid>/status` is what is measured.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::daemon::Daemon;
use common::{Ctrl, TIMEOUT, free_port_range};

const ENTRIES: usize = 100_000;
/// The warm-up directory: above the sort limit, so it takes every path a big listing takes and
/// the allocator has met every buffer size before the measurement starts.
const WARM_ENTRIES: usize = 15_000;
/// Long names, so that holding all of them costs far more than any bounded batch.
const NAME_PAD: usize = 92;
/// What the big listings may add to the server's peak RSS after the warm-up: reading every name
/// first adds some 30 MiB here (names and formatted lines), batches next to nothing.
const MAX_GROWTH_KIB: u64 = 8 << 10;

fn name(i: usize) -> String {
    format!("{i:07}-{}", "n".repeat(NAME_PAD))
}

/// A kB figure ("VmHWM:    1234 kB") from the server's /proc status.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn make_dir(root: &Path, dir: &str, entries: usize) {
    let dir = root.join(dir);
    std::fs::create_dir(&dir).unwrap();
    for i in 0..entries {
        std::fs::File::create(dir.join(name(i))).unwrap();
    }
}

/// STAT <dir> read to its end a line at a time; returns the number of lines.
fn stat_lines(reader: &mut impl BufRead, dir: &str) -> usize {
    let mut line = Vec::new();
    let mut lines = 0;
    loop {
        line.clear();
        assert!(
            reader.read_until(b'\n', &mut line).unwrap() > 0,
            "STAT {dir}: the control connection closed after {lines} lines"
        );
        lines += 1;
        if lines == 1 {
            let want = format!("213-Status of /{dir}:");
            assert!(line.starts_with(want.as_bytes()), "{line:?}");
        } else if line.starts_with(b"213 ") {
            return lines;
        }
    }
}

/// Read a listing's data connection to its end, counting lines (nothing is kept).
fn count_lines(r: impl Read) -> usize {
    let mut reader = BufReader::with_capacity(1 << 16, r);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap() == 0 {
            return n;
        }
        n += 1;
    }
}

fn data_listing(c: &mut Ctrl, line: &str) -> usize {
    let addr = c.pasv();
    c.send_line(line.as_bytes());
    let data = TcpStream::connect(addr).unwrap();
    data.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.expect_reply(150, line);
    let n = count_lines(data);
    c.expect_reply(226, line);
    n
}

#[test]
fn listings_of_a_huge_directory_stay_in_bounded_memory() {
    let root = tempfile::tempdir().unwrap();
    make_dir(root.path(), "big", ENTRIES);
    make_dir(root.path(), "warm", WARM_ENTRIES);
    let (lo, hi) = free_port_range(23000, 8);
    let ports = format!("{lo}-{hi}");
    let daemon = Daemon::spawn(
        &[
            "--root",
            root.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--pasv-ports",
            &ports,
        ],
        // What the server holds, not when its allocator hands freed pages back: mimalloc keeps
        // them for a while (purge delay), and with pieces formatted on one thread and freed on
        // another the peak then counted up to 10 MiB of garbage on some runs (0.5-1.3 MiB held
        // when freed pages go back at once).
        &[("MIMALLOC_PURGE_DELAY", "0")],
    );
    let pid = daemon.child.id();
    let mut c = Ctrl::connect(daemon.addr);
    c.login();
    for l in ["NLST warm", "LIST warm", "MLSD warm"] {
        data_listing(&mut c, l);
    }
    let mut ctrl = c.stream().try_clone().unwrap();
    let mut reader = BufReader::with_capacity(1 << 16, ctrl.try_clone().unwrap());
    ctrl.write_all(b"STAT warm\r\n").unwrap();
    assert_eq!(stat_lines(&mut reader, "warm"), WARM_ENTRIES + 2);
    // VmHWM is the larger of the recorded peak and the current RSS, and the kernel records the
    // peak only when it unmaps: RSS given back with madvise can make a later reading lower.
    let base = status_kib(pid, "VmHWM:");

    let mut growth = Vec::new();
    for l in ["NLST big", "LIST big", "MLSD big"] {
        let n = data_listing(&mut c, l);
        let want = ENTRIES + usize::from(l.starts_with("MLSD"));
        assert_eq!(n, want, "{l}: lines");
        growth.push((l, status_kib(pid, "VmHWM:").saturating_sub(base)));
    }
    check(&growth);

    // STAT over the control connection, read only after a pause: the server must neither buffer
    // the whole reply meanwhile nor give up on the session.
    ctrl.write_all(b"STAT big\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let lines = stat_lines(&mut reader, "big");
    assert_eq!(
        lines,
        ENTRIES + 2,
        "STAT big: first line, one per entry, last line"
    );
    growth.push(("STAT big", status_kib(pid, "VmHWM:").saturating_sub(base)));
    // The session goes on as before.
    ctrl.write_all(b"NOOP\r\n").unwrap();
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).unwrap();
    assert!(line.starts_with(b"200"), "{line:?}");

    check(&growth);
}

fn check(growth: &[(&str, u64)]) {
    eprintln!("peak RSS growth in KiB after the warm-up: {growth:?}");
    for &(what, kib) in growth {
        assert!(
            kib < MAX_GROWTH_KIB,
            "{what}: the server's peak RSS grew by {kib} KiB (bound {MAX_GROWTH_KIB} KiB)"
        );
    }
}
