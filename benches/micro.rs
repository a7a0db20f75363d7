//! Micro-benchmarks of the pure protocol core: command parsing, reply encoding, listing lines.
//!
//! Std only (`Instant` + `black_box`), no harness: `cargo bench --bench micro [-- FILTER]`. Each
//! benchmark is calibrated to about `TARGET_RUN` per run and run `RUNS` times; the line shows the
//! median ns/op (and min..max over runs). Without `--bench` (e.g. `cargo test --benches`) every
//! benchmark runs once, briefly, as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ringftpd::proto::command::parse;
use ringftpd::proto::entry::{Entry, FileKind};
use ringftpd::proto::listing::{Facts, MlsdRole, list_line, mlsx_line};
use ringftpd::proto::reply::{Reply, ReplyCode};

/// Runs per benchmark; the median is reported.
const RUNS: usize = 7;
/// Wall time one run aims for.
const TARGET_RUN: Duration = Duration::from_millis(100);
/// Upper bound on iterations per run whatever the calibration says.
const MAX_ITERS: u64 = 1 << 30;

struct Bencher {
    filter: Option<String>,
    full: bool,
}

impl Bencher {
    /// Time `f` (one op per call); print median ns/op.
    fn run(&self, name: &str, mut f: impl FnMut()) {
        if self.filter.as_deref().is_some_and(|p| !name.contains(p)) {
            return;
        }
        let (runs, target) = if self.full {
            (RUNS, TARGET_RUN)
        } else {
            (1, Duration::from_millis(1))
        };
        // Calibrate: double the batch until it takes a tenth of the target.
        let mut iters = 1u64;
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let el = t.elapsed();
            if el >= target / 10 || iters >= MAX_ITERS {
                let per = el.as_secs_f64() / iters as f64;
                iters = ((target.as_secs_f64() / per.max(1e-12)) as u64).clamp(1, MAX_ITERS);
                break;
            }
            iters *= 2;
        }
        let mut ns: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                t.elapsed().as_nanos() as f64 / iters as f64
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        println!(
            "{name:<40} {:>10.1} ns/op   (min {:.1} .. max {:.1}, {runs} runs x {iters} iters)",
            ns[ns.len() / 2],
            ns[0],
            ns[ns.len() - 1]
        );
    }
}

fn entry(name: &str, kind: FileKind, size: u64, mtime: i64) -> Entry {
    Entry {
        name: name.as_bytes().to_vec(),
        kind,
        size,
        mtime,
        mode: if kind == FileKind::Dir { 0o755 } else { 0o644 },
        nlink: 1,
        uid: 1000,
        gid: 1000,
        dev: 0xfe00,
        ino: 0x9_9021d,
        link: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let b = Bencher {
        full: args.iter().any(|a| a == "--bench"),
        filter: args.iter().find(|a| !a.starts_with("--")).cloned(),
    };

    // Command parsing: the verbs of a download session, plus address-carrying ones.
    let lines: &[(&str, &[u8])] = &[
        (
            "parse/RETR path",
            b"RETR /pub/linux/debian/dists/bookworm/Release.gpg",
        ),
        ("parse/USER", b"USER anonymous"),
        ("parse/TYPE I", b"TYPE I"),
        ("parse/EPSV", b"EPSV"),
        ("parse/PORT", b"PORT 127,0,0,1,156,64"),
        ("parse/EPRT v6", b"EPRT |2|::1|40000|"),
        ("parse/REST", b"REST 1073741824"),
        ("parse/MLSD", b"MLSD /pub/linux"),
        ("parse/unknown verb", b"XYZZY plugh"),
    ];
    for (name, line) in lines {
        b.run(name, || {
            let _ = black_box(parse(black_box(line)));
        });
    }

    // Reply encoding into a reused buffer (what the control writer does).
    let mut out = Vec::with_capacity(4096);
    let r150 = Reply::new(
        ReplyCode::FileStatusOkay,
        "Opening BINARY mode data connection for /pub/file.iso (1073741824 bytes).",
    );
    let r229 = Reply::new(
        ReplyCode::EnteringExtendedPassiveMode,
        "Entering Extended Passive Mode (|||40000|)",
    );
    let feat = Reply::multi(
        ReplyCode::SystemStatus,
        "Features:",
        [
            " EPRT",
            " EPSV",
            " MDTM",
            " MLST type*;size*;modify*;perm*;unique*;UNIX.mode*;",
            " PASV",
            " REST STREAM",
            " SIZE",
            " TVFS",
            " UTF8",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "End",
    );
    for (name, r) in [
        ("reply/150 encode", &r150),
        ("reply/229 encode", &r229),
        ("reply/211 FEAT multi-line", &feat),
    ] {
        b.run(name, || {
            out.clear();
            black_box(r).encode(&mut out);
            black_box(&out);
        });
    }

    // Listing lines into a reused buffer (the listing worker's inner loop).
    let now = 1_760_000_000;
    let file = entry(
        "linux-6.18.44.tar.xz",
        FileKind::File,
        147_853_520,
        now - 3600,
    );
    let old = entry("README.old", FileKind::File, 4096, now - 400 * 86_400);
    let dir = entry("pub", FileKind::Dir, 4096, now - 86_400);
    let mut buf = Vec::with_capacity(64 * 1024);
    for (name, e) in [
        ("list_line/file recent", &file),
        ("list_line/file old", &old),
        ("list_line/dir", &dir),
    ] {
        b.run(name, || {
            buf.clear();
            list_line(&mut buf, black_box(e), now);
            black_box(&buf);
        });
    }
    for (name, e) in [("mlsx_line/file", &file), ("mlsx_line/dir", &dir)] {
        b.run(name, || {
            buf.clear();
            mlsx_line(
                &mut buf,
                black_box(e),
                &e.name,
                MlsdRole::Entry,
                Facts::default(),
                false,
            );
            black_box(&buf);
        });
    }
    // A 10,000-entry directory into one growing buffer: per-entry cost at listing scale.
    let many: Vec<Entry> = (0..10_000)
        .map(|i| {
            entry(
                &format!("f{i:05}.dat"),
                FileKind::File,
                i * 4096,
                now - i as i64,
            )
        })
        .collect();
    b.run("list_line/10k entries (per listing)", || {
        buf.clear();
        for e in &many {
            list_line(&mut buf, e, now);
        }
        black_box(&buf);
    });
    b.run("mlsx_line/10k entries (per listing)", || {
        buf.clear();
        for e in &many {
            mlsx_line(
                &mut buf,
                e,
                &e.name,
                MlsdRole::Entry,
                Facts::default(),
                false,
            );
        }
        black_box(&buf);
    });
}
