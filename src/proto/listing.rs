//! Directory listing formats: `LIST` (`ls -l` style), `NLST`, `MLSD`/`MLST` facts and RFC 3659 time-vals.
//!
//! Pure formatting: the caller supplies the entries and the current time, so the output is
//! deterministic and testable. Nothing here touches the file system or the clock.

use super::entry::{Entry, FileKind};

/// Calendar date-time in UTC, from seconds since the epoch (proleptic Gregorian, works for negative times too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// Exact for every `i64`: `div_euclid` keeps negative times on the right day, and
    /// `|secs / 86400| < 2^47` leaves plenty of headroom for the era arithmetic below.
    pub fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }
}

/// Howard Hinnant's `civil_from_days`: day number (0 = 1970-01-01) to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01 so leap days end each 400-year era
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // month counted from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Inverse of [`civil_from_days`]; callers keep `year` within a few thousand so nothing overflows.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 3659 2.3 only allows years 1000--9999 in a time-val.
const TIME_VAL_MIN: i64 = -30_610_224_000; // 1000-01-01T00:00:00Z
/// 9999-12-31T23:59:59Z: the last second with a four-digit year.
const YEAR_9999_END: i64 = 253_402_300_799;
/// 0000-01-01T00:00:00Z: LIST dates are clamped to four-digit years so columns stay aligned.
const YEAR_0_START: i64 = -62_167_219_200;

/// RFC 3659 time-val "YYYYMMDDHHMMSS" (used by MDTM replies and the `modify` fact).
///
/// Times outside the years 1000--9999 that RFC 3659 2.3 can express are clamped to the nearest
/// representable second, so clients always receive a syntactically valid value. No fraction is
/// added: RFC 3659 2.3 forbids claiming precision the value does not have.
pub fn format_time_val(secs: i64) -> String {
    let t = DateTime::from_unix(secs.clamp(TIME_VAL_MIN, YEAR_9999_END));
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Parse "YYYYMMDDHHMMSS" with optional ".sss" fraction (ignored) into unix seconds; None if malformed/out of range (MFMT later uses it).
///
/// Grammar and ranges are RFC 3659 2.3: `time-val = 14DIGIT [ "." 1*DIGIT ]`, year 1000--9999,
/// seconds 00--60. Unix time has no leap seconds, so `:60` lands on the following second.
pub fn parse_time_val(s: &[u8]) -> Option<i64> {
    let (digits, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], Some(&s[dot + 1..])),
        None => (s, None),
    };
    if digits.len() != 14 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if frac.is_some_and(|f| f.is_empty() || !f.iter().all(u8::is_ascii_digit)) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        digits[r]
            .iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (i64::from(num(0..4)), num(4..6), num(6..8));
    let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
    if year < 1000
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let tod = i64::from(hour * 3600 + minute * 60 + second);
    Some(days_from_civil(year, month, day) * 86_400 + tod)
}

/// English abbreviations regardless of locale: clients' `ls -l` parsers only know these.
const MONTHS: &[u8; 36] = b"JanFebMarAprMayJunJulAugSepOctNovDec";

/// `ls` switches to the year format for files older than about six months.
const SIX_MONTHS: i64 = 15_552_000;
/// Small clock skew between machines should not turn a fresh file into a "year" entry.
const FUTURE_SLACK: i64 = 3600;

/// Decimal digits of `v` (no allocation: listings are produced per entry on the hot path).
fn dec(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// `v` padded with `fill` to `width` columns (right-aligned, or left-aligned with spaces for
/// the owner/group columns of `ls -l`); wider numbers are never truncated.
fn push_dec(out: &mut Vec<u8>, v: u64, width: usize, fill: u8, left: bool) {
    let mut buf = [0; 20];
    let d = dec(v, &mut buf);
    let pad = width.saturating_sub(d.len());
    if left {
        out.extend_from_slice(d);
        out.resize(out.len() + pad, b' ');
    } else {
        out.resize(out.len() + pad, fill);
        out.extend_from_slice(d);
    }
}

/// Lowercase hex without leading zeros, as in the `unique` fact.
fn push_hex(out: &mut Vec<u8>, v: u64) {
    let nibbles = ((64 - v.leading_zeros()).div_ceil(4)).max(1);
    for i in (0..nibbles).rev() {
        out.push(b"0123456789abcdef"[(v >> (i * 4) & 0xf) as usize]);
    }
}

/// The nine `rwx` columns, with setuid/setgid/sticky shown as `s`/`S`/`t`/`T` exactly like
/// `ls`: lowercase when the execute bit underneath is set, uppercase when it is not.
fn push_perms(out: &mut Vec<u8>, mode: u32) {
    let special = [(0o4000, b's'), (0o2000, b's'), (0o1000, b't')];
    for (who, &(bit, ch)) in special.iter().enumerate() {
        let m = mode >> (6 - 3 * who) & 7;
        out.push(if m & 4 != 0 { b'r' } else { b'-' });
        out.push(if m & 2 != 0 { b'w' } else { b'-' });
        out.push(match (m & 1 != 0, mode & bit != 0) {
            (true, true) => ch,
            (false, true) => ch.to_ascii_uppercase(),
            (true, false) => b'x',
            (false, false) => b'-',
        });
    }
}

/// Append one `ls -l` style LIST line (ending "\r\n") for `e` to `out`. `now` = current unix secs.
///
/// RFC 959 4.1.3 leaves the LIST format to the server, but every GUI client (FileZilla, lftp,
/// curl's wildcard matching, Windows Explorer) heuristically parses Unix `ls -l` output, so we
/// emit exactly that shape: numeric uid/gid (no passwd lookups; clients treat them as opaque
/// words), fixed minimum column widths, and a 12-column date so the name starts after a single
/// space and may itself contain spaces.
///
/// `FileKind::Other` is shown as `-`: `Entry` does not say whether it is a FIFO, socket or
/// device, and a wrong `p`/`s`/`c`/`b` letter would be worse than none. Symlinks get `l` and,
/// like `ls -l`, ` -> target` when `Entry::link` has one; `vfs` fills it in only for targets
/// that stay inside the served root, so a link leading out is a plain `l` name (ftputil and
/// FileZilla then treat it as a link they cannot follow, which is what it is to them).
///
/// The name is written as raw bytes (UTF-8 by convention, RFC 2640). A name containing CR/LF
/// cannot be framed on a data connection; RFC 3659 2.2 says such entries must be converted or
/// omitted, and the caller omits them (also for NLST/MLSD), so nothing is escaped here.
pub fn list_line(out: &mut Vec<u8>, e: &Entry, now: i64) {
    out.push(match e.kind {
        FileKind::Dir => b'd',
        FileKind::Symlink => b'l',
        FileKind::File | FileKind::Other => b'-',
    });
    push_perms(out, e.mode);
    out.push(b' ');
    push_dec(out, e.nlink, 4, b' ', false);
    out.push(b' ');
    push_dec(out, u64::from(e.uid), 8, b' ', true);
    out.push(b' ');
    push_dec(out, u64::from(e.gid), 8, b' ', true);
    out.push(b' ');
    push_dec(out, e.size, 12, b' ', false);
    out.push(b' ');

    // GNU ls: "recent" means newer than six months ago and not in the future (we allow an hour
    // of skew). Saturating arithmetic keeps absurd `now` values from overflowing.
    let recent =
        e.mtime > now.saturating_sub(SIX_MONTHS) && e.mtime <= now.saturating_add(FUTURE_SLACK);
    let t = DateTime::from_unix(e.mtime.clamp(YEAR_0_START, YEAR_9999_END));
    let m = 3 * (t.month as usize - 1);
    out.extend_from_slice(&MONTHS[m..m + 3]);
    out.push(b' ');
    push_dec(out, u64::from(t.day), 2, b' ', false); // "Mar  5", space-padded like ls
    out.push(b' ');
    if recent {
        push_dec(out, u64::from(t.hour), 2, b'0', false);
        out.push(b':');
        push_dec(out, u64::from(t.minute), 2, b'0', false);
    } else {
        // Two spaces keep "dd  YYYY" as wide as "dd HH:MM".
        out.push(b' ');
        push_dec(out, t.year as u64, 4, b'0', false);
    }
    out.push(b' ');
    out.extend_from_slice(&e.name);
    if let (FileKind::Symlink, Some(target)) = (e.kind, &e.link) {
        out.extend_from_slice(b" -> ");
        out.extend_from_slice(target);
    }
    out.extend_from_slice(b"\r\n");
}

/// The `ls` switches LIST, NLST and STAT <path> honour; clients send them as in `LIST -la`.
///
/// Anything else (`-R`, `-t`, `-F`, ...) is accepted and ignored, as vsftpd ignores what it does
/// not implement. `-R` in particular is not done: a recursive listing has no bound on its size or
/// on the helper time it takes, and clients that want a tree walk it with MLSD/LIST per directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// `-a`: dot files, and the `.` and `..` entries (as `ls -a` and vsftpd show them).
    pub all: bool,
    /// `-A`: dot files without `.` and `..`.
    pub almost_all: bool,
    /// `-d`: the directory itself, not what it holds.
    pub directory: bool,
    /// `-l`: the long format; `NLST -l` is a LIST (vsftpd, pure-ftpd).
    pub long: bool,
}

impl ListOptions {
    /// Add the letters of one option word such as `-la` (the leading `-` included).
    pub fn add_word(&mut self, word: &[u8]) {
        for &b in word.iter().skip(1) {
            match b {
                b'a' => self.all = true,
                b'A' => self.almost_all = true,
                b'd' => self.directory = true,
                b'l' => self.long = true,
                _ => {}
            }
        }
    }

    /// Which entries a listing with these options shows. `force_dot_files` (vsftpd's setting of
    /// that name) shows dot files without any option, but not `.` and `..`, which only `-a` asks for.
    pub fn visibility(self, force_dot_files: bool) -> Visibility {
        Visibility {
            dot_files: self.all || self.almost_all || force_dot_files,
            dot_dirs: self.all,
        }
    }
}

/// Which directory entries a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Visibility {
    /// Names starting with `.` (hidden from `ls` without `-a`/`-A`).
    pub dot_files: bool,
    /// The `.` and `..` entries.
    pub dot_dirs: bool,
}

impl Visibility {
    /// MLSD: RFC 3659 section 7.2 lists every entry (`.` itself only as the `cdir` fact line).
    pub const EVERY_ENTRY: Visibility = Visibility {
        dot_files: true,
        dot_dirs: false,
    };

    /// Whether the entry called `name` is listed (`.` and `..` are added separately).
    pub fn shows(self, name: &[u8]) -> bool {
        self.dot_files || name.first() != Some(&b'.')
    }
}

/// Append one NLST line: the name then "\r\n".
///
/// RFC 959 4.1.3: NLST returns bare names so that programs (`mget`) can use them directly.
pub fn nlst_line(out: &mut Vec<u8>, e: &Entry) {
    out.extend_from_slice(&e.name);
    out.extend_from_slice(b"\r\n");
}

/// Which RFC 3659 facts are enabled (OPTS MLST). Default: all on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Facts {
    pub type_: bool,
    pub size: bool,
    pub modify: bool,
    pub perm: bool,
    pub unique: bool,
    pub unix_mode: bool,
}

impl Default for Facts {
    fn default() -> Facts {
        Facts {
            type_: true,
            size: true,
            modify: true,
            perm: true,
            unique: true,
            unix_mode: true,
        }
    }
}

impl Facts {
    /// Fact names in the order we always emit them, paired with their switches.
    fn table(&self) -> [(&'static str, bool); 6] {
        [
            ("type", self.type_),
            ("size", self.size),
            ("modify", self.modify),
            ("perm", self.perm),
            ("unique", self.unique),
            ("UNIX.mode", self.unix_mode),
        ]
    }

    /// FEAT line body: "type*;size*;modify*;perm*;unique*;UNIX.mode*;" with '*' only on enabled facts (RFC 3659 7.8).
    pub fn feat_list(&self) -> String {
        let mut s = String::new();
        for (name, on) in self.table() {
            s.push_str(name);
            if on {
                s.push('*');
            }
            s.push(';');
        }
        s
    }

    /// Apply an OPTS MLST argument such as b"type;size;" (case-insensitive, unknown facts ignored, empty = none); returns the new Facts.
    ///
    /// RFC 3659 7.9: the argument replaces the whole selection and facts not named MUST NOT be
    /// returned; names are case-insensitive (7.5) and unsupported ones are silently dropped. We are
    /// lenient about a missing final `;` and stray spaces, which some clients send.
    pub fn from_opts(arg: &[u8]) -> Facts {
        let has = |fact: &str| {
            arg.split(|&b| b == b';')
                .any(|n| n.trim_ascii().eq_ignore_ascii_case(fact.as_bytes()))
        };
        Facts {
            type_: has("type"),
            size: has("size"),
            modify: has("modify"),
            perm: has("perm"),
            unique: has("unique"),
            unix_mode: has("UNIX.mode"),
        }
    }

    /// The list the server echoes in "200 MLST OPTS type;size;" (enabled facts, each followed by ';').
    pub fn enabled_list(&self) -> String {
        let mut s = String::new();
        for (name, _) in self.table().into_iter().filter(|&(_, on)| on) {
            s.push_str(name);
            s.push(';');
        }
        s
    }
}

/// How the entry appears in MLSD/MLST `type` fact.
///
/// `Cdir`/`Pdir` lines MUST NOT be sent when the `type` fact is off (RFC 3659 7.5.1.2): without
/// it a client could not tell them from entries, so callers skip them in that case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlsdRole {
    Entry,
    Cdir,
    Pdir,
}

/// Append the facts then one space then the name then "\r\n" (MLSD line, RFC 3659 7.2). `name` is what follows the space (for MLSD the entry name; for MLST the full path). The server is anonymous read-only, so callers normally pass `writable = false`; `true` adds the write perms (c, a, w, d, f, m, p) appropriate to the kind.
///
/// Facts are emitted in a fixed order with the canonical spelling; clients match names
/// case-insensitively (RFC 3659 7.5). The single space is mandatory even when no fact is
/// enabled, because everything after it is the pathname (2.2, 7.2), which may contain spaces
/// or `;`. For MLST the caller adds the leading space of the fact line inside the 250 reply
/// (see the example in 7.7.1); MLSD lines over the data connection have none.
pub fn mlsx_line(
    out: &mut Vec<u8>,
    e: &Entry,
    name: &[u8],
    role: MlsdRole,
    facts: Facts,
    writable: bool,
) {
    if facts.type_ {
        // RFC 3659 7.5.1: cdir/pdir describe the listed directory and its parent; kinds with
        // no standard token use the "OS." form of 7.5.1.5 (proftpd also says OS.unix=symlink).
        // 7.5.1.5 prefers showing a link as its target; callers that resolve links safely
        // pass the target's kind instead of `Symlink`.
        let ty: &[u8] = match (role, e.kind) {
            (MlsdRole::Cdir, _) => b"cdir",
            (MlsdRole::Pdir, _) => b"pdir",
            (MlsdRole::Entry, FileKind::File) => b"file",
            (MlsdRole::Entry, FileKind::Dir) => b"dir",
            (MlsdRole::Entry, FileKind::Symlink) => b"OS.unix=symlink",
            (MlsdRole::Entry, FileKind::Other) => b"OS.unix=other",
        };
        out.extend_from_slice(b"type=");
        out.extend_from_slice(ty);
        out.push(b';');
    }
    // RFC 3659 7.5.7: size applies to non-directories only, and 7.9 says to omit facts that do
    // not apply. For a symlink st_size is the target path length and for devices it is 0,
    // neither of which is what RETR would send, so only regular files get it.
    if facts.size && e.kind == FileKind::File {
        out.extend_from_slice(b"size=");
        push_dec(out, e.size, 0, b' ', false);
        out.push(b';');
    }
    if facts.modify {
        out.extend_from_slice(b"modify=");
        out.extend_from_slice(format_time_val(e.mtime).as_bytes());
        out.push(b';');
    }
    if facts.perm {
        // RFC 3659 7.5.5 (an unordered set; we sort it). Files: r=RETR; a=APPE, d=DELE,
        // f=RNFR, w=STOR. Directories: e=CWD, l=LIST; c=STOR/STOU inside, d=RMD, f=RNFR,
        // m=MKD inside, p=delete contents. Symlinks and special files get no read letters
        // (the target/kind is unknown here), only d/f on the name itself when writable; an
        // empty value is legal ("Perm=;" in the 7.7.3 example).
        let p: &[u8] = match (e.kind, writable) {
            (FileKind::File, false) => b"r",
            (FileKind::File, true) => b"adfrw",
            (FileKind::Dir, false) => b"el",
            (FileKind::Dir, true) => b"cdeflmp",
            (FileKind::Symlink | FileKind::Other, false) => b"",
            (FileKind::Symlink | FileKind::Other, true) => b"df",
        };
        out.extend_from_slice(b"perm=");
        out.extend_from_slice(p);
        out.push(b';');
    }
    if facts.unique {
        // RFC 3659 7.5.2: any string unique per object; dev+inode identifies it on Unix
        // and lets clients detect hard links and directory loops.
        out.extend_from_slice(b"unique=");
        push_hex(out, e.dev);
        out.push(b'U');
        push_hex(out, e.ino);
        out.push(b';');
    }
    if facts.unix_mode {
        // Four octal digits including setuid/setgid/sticky, as proftpd and pure-ftpd print it.
        out.extend_from_slice(b"UNIX.mode=");
        let m = e.mode & 0o7777;
        for shift in [9, 6, 3, 0] {
            out.push(b'0' + (m >> shift & 7) as u8);
        }
        out.push(b';');
    }
    out.push(b' ');
    out.extend_from_slice(name);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

    fn entry(name: &[u8], kind: FileKind, mode: u32, mtime: i64) -> Entry {
        Entry {
            name: name.to_vec(),
            kind,
            size: 1234,
            mtime,
            mode,
            nlink: 1,
            uid: 1000,
            gid: 100,
            dev: 0x801,
            ino: 0x1a2b,
            link: None,
        }
    }

    fn list(e: &Entry, now: i64) -> String {
        let mut out = Vec::new();
        list_line(&mut out, e, now);
        String::from_utf8(out).unwrap()
    }

    fn mlsx(e: &Entry, role: MlsdRole, facts: Facts, writable: bool) -> String {
        let mut out = b"junk".to_vec(); // appends, never overwrites
        mlsx_line(&mut out, e, &e.name, role, facts, writable);
        String::from_utf8(out.split_off(4)).unwrap()
    }

    #[test]
    fn known_dates() {
        for (secs, want) in [
            (0, (1970, 1, 1, 0, 0, 0)),
            (951_782_400, (2000, 2, 29, 0, 0, 0)),
            (2_147_483_648, (2038, 1, 19, 3, 14, 8)),
            (-1, (1969, 12, 31, 23, 59, 59)),
            (-86_401, (1969, 12, 30, 23, 59, 59)),
            (-62_135_596_800, (1, 1, 1, 0, 0, 0)),
            (YEAR_0_START, (0, 1, 1, 0, 0, 0)),
            (YEAR_0_START - 1, (-1, 12, 31, 23, 59, 59)),
            (YEAR_9999_END, (9999, 12, 31, 23, 59, 59)),
        ] {
            let t = DateTime::from_unix(secs);
            let got = (t.year, t.month, t.day, t.hour, t.minute, t.second);
            assert_eq!(got, want, "{secs}");
        }
    }

    #[test]
    fn extremes_do_not_panic_and_round_trip() {
        for s in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 86_400] {
            let t = DateTime::from_unix(s);
            assert!((1..=12).contains(&t.month) && (1..=31).contains(&t.day));
            let _ = format_time_val(s);
            let e = entry(b"x", FileKind::File, 0o644, s);
            assert_eq!(list(&e, s).len(), list(&e, -s.saturating_add(1)).len());
        }
        // days_from_civil inverts civil_from_days across eras, leap days and negative years.
        for days in (-1_000_000..1_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn time_val_format_and_parse() {
        assert_eq!(format_time_val(0), "19700101000000");
        assert_eq!(format_time_val(2_147_483_648), "20380119031408");
        assert_eq!(format_time_val(-1), "19691231235959");
        // Clamped to the RFC 3659 2.3 range.
        assert_eq!(format_time_val(i64::MIN), "10000101000000");
        assert_eq!(format_time_val(i64::MAX), "99991231235959");
        for s in [
            0,
            -1,
            951_782_400,
            NOW,
            TIME_VAL_MIN,
            YEAR_9999_END,
            -12_345_678_901,
        ] {
            assert_eq!(parse_time_val(format_time_val(s).as_bytes()), Some(s));
        }
        assert_eq!(parse_time_val(b"20000229000000.123"), Some(951_782_400));
        assert_eq!(parse_time_val(b"19981231235960"), Some(915_148_800)); // leap second
    }

    #[test]
    fn time_val_rejects_malformed() {
        // Wrong lengths/characters, Feb 29 in 2001 and 1900, month/day/hour/minute/second out
        // of range, year below 1000, leading space.
        let bad = "|2000022900000|200002290000000|20000229000000.|20000229000000.1x|2000022900000a|\
                   +0000229000000|20010229000000|19000229000000|20001301000000|20000001000000|\
                   20000100000000|20000431000000|20000101240000|20000101006000|20000101000061|\
                   09991231235959| 20000101000000";
        for b in bad.split('|') {
            assert_eq!(parse_time_val(b.as_bytes()), None, "{b:?}");
        }
    }

    #[test]
    fn list_lines() {
        let recent = 1_699_000_000; // 2023-11-03 08:26:40
        let f = entry(b"file.txt", FileKind::File, 0o644, recent);
        assert_eq!(
            list(&f, NOW),
            "-rw-r--r--    1 1000     100              1234 Nov  3 08:26 file.txt\r\n"
        );
        let mut d = entry(b"pub", FileKind::Dir, 0o755, recent);
        d.nlink = 12;
        d.size = 4096;
        assert_eq!(
            list(&d, NOW),
            "drwxr-xr-x   12 1000     100              4096 Nov  3 08:26 pub\r\n"
        );
        let l = entry(b"link", FileKind::Symlink, 0o777, recent);
        assert_eq!(
            list(&l, NOW),
            "lrwxrwxrwx    1 1000     100              1234 Nov  3 08:26 link\r\n"
        );
        let o = entry(b"fifo", FileKind::Other, 0o600, recent);
        assert!(list(&o, NOW).starts_with("-rw------- "));
    }

    #[test]
    fn list_link_targets() {
        let recent = 1_699_000_000;
        let mut l = entry(b"dir32", FileKind::Symlink, 0o777, recent);
        l.link = Some(b"../dir1/dir12/dir123".to_vec());
        assert_eq!(
            list(&l, NOW),
            "lrwxrwxrwx    1 1000     100              1234 Nov  3 08:26 dir32 -> ../dir1/dir12/dir123\r\n"
        );
        // Raw bytes both sides of the arrow.
        let mut l = entry(b"caf\xe9", FileKind::Symlink, 0o777, recent);
        l.link = Some(b"x \xff".to_vec());
        let mut out = Vec::new();
        list_line(&mut out, &l, NOW);
        assert!(out.ends_with(b" caf\xe9 -> x \xff\r\n"));
        // Only links get an arrow, and NLST/MLSD never do.
        let mut f = entry(b"f", FileKind::File, 0o644, recent);
        f.link = Some(b"g".to_vec());
        assert!(list(&f, NOW).ends_with(" f\r\n"));
        let mut out = Vec::new();
        nlst_line(&mut out, &l);
        assert_eq!(out, b"caf\xe9\r\n");
        let mut out = Vec::new();
        mlsx_line(
            &mut out,
            &l,
            &l.name,
            MlsdRole::Entry,
            Facts::default(),
            false,
        );
        assert!(out.ends_with(b"; caf\xe9\r\n"));
    }

    #[test]
    fn list_special_bits() {
        let perms = |mode| list(&entry(b"x", FileKind::File, mode, NOW), NOW)[1..10].to_string();
        assert_eq!(perms(0o4755), "rwsr-xr-x");
        assert_eq!(perms(0o4644), "rwSr--r--");
        assert_eq!(perms(0o2755), "rwxr-sr-x");
        assert_eq!(perms(0o2745), "rwxr-Sr-x");
        assert_eq!(perms(0o1777), "rwxrwxrwt");
        assert_eq!(perms(0o1776), "rwxrwxrwT");
        assert_eq!(perms(0o7000), "--S--S--T");
        assert_eq!(perms(0), "---------");
    }

    #[test]
    fn list_date_formats() {
        let date =
            |mtime| list(&entry(b"x", FileKind::File, 0o644, mtime), NOW)[47..59].to_string();
        assert_eq!(date(NOW), "Nov 14 22:13");
        assert_eq!(date(1_600_000_000), "Sep 13  2020");
        assert_eq!(date(NOW - SIX_MONTHS + 1), "May 18 22:13");
        assert_eq!(date(NOW - SIX_MONTHS), "May 18  2023");
        assert_eq!(date(NOW + 3600), "Nov 14 23:13");
        assert_eq!(date(NOW + 3601), "Nov 14  2023"); // more than 1h ahead: year format
        assert_eq!(date(0), "Jan  1  1970");
        assert_eq!(date(i64::MAX), "Dec 31  9999");
        assert_eq!(date(i64::MIN), "Jan  1  0000");
    }

    #[test]
    fn list_names_are_raw_bytes() {
        let e = entry(b"my file  name.txt", FileKind::File, 0o644, NOW);
        assert!(list(&e, NOW).ends_with(" 22:13 my file  name.txt\r\n"));
        let e = entry("Grüße 日本.txt".as_bytes(), FileKind::File, 0o644, NOW);
        assert!(list(&e, NOW).ends_with(" 22:13 Grüße 日本.txt\r\n"));
        let mut out = Vec::new();
        let latin1 = entry(b"caf\xe9", FileKind::File, 0o644, NOW);
        nlst_line(&mut out, &latin1);
        nlst_line(&mut out, &e);
        let mut want = b"caf\xe9\r\n".to_vec();
        want.extend_from_slice("Grüße 日本.txt\r\n".as_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn list_options_and_visibility() {
        let opts = |words: &[&[u8]]| {
            let mut o = ListOptions::default();
            for w in words {
                o.add_word(w);
            }
            o
        };
        let hidden = Visibility {
            dot_files: false,
            dot_dirs: false,
        };
        let dot_files = Visibility {
            dot_files: true,
            dot_dirs: false,
        };
        let everything = Visibility {
            dot_files: true,
            dot_dirs: true,
        };
        assert_eq!(opts(&[]).visibility(false), hidden);
        assert_eq!(opts(&[b"-l"]).visibility(false), hidden);
        assert_eq!(opts(&[b"-a"]).visibility(false), everything);
        assert_eq!(opts(&[b"-la"]).visibility(false), everything);
        assert_eq!(opts(&[b"-l", b"-a"]).visibility(false), everything);
        assert_eq!(opts(&[b"-A"]).visibility(false), dot_files);
        assert_eq!(opts(&[b"-lA"]).visibility(false), dot_files);
        assert_eq!(opts(&[b"-aA"]).visibility(false), everything);
        // force_dot_files shows dot files, never "." and ".." unless asked.
        assert_eq!(opts(&[]).visibility(true), dot_files);
        assert_eq!(opts(&[b"-a"]).visibility(true), everything);
        let o = opts(&[b"-ldRtx"]);
        assert!(o.long && o.directory && !o.all && !o.almost_all);
        assert_eq!(opts(&[b"-"]), ListOptions::default());
        assert!(!hidden.shows(b".profile") && hidden.shows(b"a.txt") && hidden.shows(b"x."));
        assert!(dot_files.shows(b".profile") && dot_files.shows(b"a"));
        assert!(Visibility::EVERY_ENTRY.shows(b".x") && !Visibility::EVERY_ENTRY.dot_dirs);
    }

    #[test]
    fn mlsd_lines() {
        let all = Facts::default();
        let f = entry(b"file.txt", FileKind::File, 0o644, NOW);
        assert_eq!(
            mlsx(&f, MlsdRole::Entry, all, false),
            "type=file;size=1234;modify=20231114221320;perm=r;unique=801U1a2b;UNIX.mode=0644; file.txt\r\n"
        );
        assert_eq!(
            mlsx(&f, MlsdRole::Entry, all, true),
            "type=file;size=1234;modify=20231114221320;perm=adfrw;unique=801U1a2b;UNIX.mode=0644; file.txt\r\n"
        );
        let mut d = entry(b"my dir", FileKind::Dir, 0o2755, 0);
        d.dev = 0;
        d.ino = u64::MAX;
        assert_eq!(
            mlsx(&d, MlsdRole::Entry, all, false),
            "type=dir;modify=19700101000000;perm=el;unique=0Uffffffffffffffff;UNIX.mode=2755; my dir\r\n"
        );
        assert!(mlsx(&d, MlsdRole::Entry, all, true).contains(";perm=cdeflmp;"));
        assert!(mlsx(&d, MlsdRole::Cdir, all, false).starts_with("type=cdir;modify="));
        assert!(mlsx(&d, MlsdRole::Pdir, all, false).starts_with("type=pdir;modify="));
        let l = entry(b"ln", FileKind::Symlink, 0o777, 0);
        assert!(
            mlsx(&l, MlsdRole::Entry, all, false)
                .starts_with("type=OS.unix=symlink;modify=19700101000000;perm=;")
        );
        let o = entry(b"sock", FileKind::Other, 0o600, 0);
        assert!(
            mlsx(&o, MlsdRole::Entry, all, true)
                .starts_with("type=OS.unix=other;modify=19700101000000;perm=df;")
        );
    }

    #[test]
    fn mlsd_fact_selection_and_mlst_path() {
        let f = entry(b"a b;c.txt", FileKind::File, 0o4755, NOW);
        let some = Facts::from_opts(b"size;UNIX.mode;");
        assert_eq!(
            mlsx(&f, MlsdRole::Entry, some, false),
            "size=1234;UNIX.mode=4755; a b;c.txt\r\n"
        );
        let none = Facts::from_opts(b"");
        assert_eq!(mlsx(&f, MlsdRole::Entry, none, false), " a b;c.txt\r\n");
        let mut out = Vec::new();
        mlsx_line(
            &mut out,
            &f,
            b"/pub/a b;c.txt",
            MlsdRole::Entry,
            Facts::from_opts(b"type;"),
            false,
        );
        assert_eq!(out, b"type=file; /pub/a b;c.txt\r\n");
    }

    #[test]
    fn facts_opts_and_feat() {
        let all = "type;size;modify;perm;unique;UNIX.mode;";
        assert_eq!(Facts::default().feat_list(), all.replace(';', "*;"));
        assert_eq!(Facts::default().enabled_list(), all);
        assert_eq!(Facts::from_opts(all.as_bytes()), Facts::default());
        let f = Facts::from_opts(b"TYPE;Size;bogus;unix.MODE"); // no final ';'
        assert!(f.type_ && f.size && f.unix_mode && !f.modify && !f.perm && !f.unique);
        assert_eq!(f.feat_list(), "type*;size*;modify;perm;unique;UNIX.mode*;");
        assert_eq!(f.enabled_list(), "type;size;UNIX.mode;");
        let f = Facts::from_opts(b" modify ; perm;");
        assert_eq!(f.enabled_list(), "modify;perm;");
        let none = Facts::from_opts(b"");
        assert_eq!(
            (none.enabled_list().as_str(), none.feat_list().as_str()),
            ("", all)
        );
    }
}
