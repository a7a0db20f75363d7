//! Writes the man pages: ringftpd(8) and ringftpd-hash-password(8) from the clap definition the
//! binary parses (`Cli::command_with_defaults`, so each default shown comes from
//! `Config::default`), and ringftpd.toml(5) from the comments of the example config
//! `tuning/ringftpd.toml`, the one place each key is explained for the file. It is an example,
//! not part of the server, so clap_mangen stays a dev-dependency of the crate:
//!
//! ```sh
//! cargo run --example man -- OUTDIR   # debian/build.sh runs it (with --profile test)
//! ```
//!
//! The pages are written uncompressed; cargo-deb gzips them into the package (Debian policy 12.1).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};
use ringftpd::cli::Cli;
use ringftpd::config::{Config, KEYS, Options};

/// The example config, installed as `/etc/ringftpd/ringftpd.toml` by the Debian package.
const EXAMPLE: &str = include_str!("../tuning/ringftpd.toml");

/// Where the Debian package installs the config file (the example's first line names it too).
const CONFIG_PATH: &str = "/etc/ringftpd/ringftpd.toml";

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The text of ringftpd(8)'s DESCRIPTION; the options come from the clap definition.
const DESCRIPTION: &str = "\
ringftpd is a standalone FTP server (RFC 959, with EPSV/EPRT from RFC 2428 and MLSD/MLST from \
RFC 3659) built for serving large files to many clients at once. It runs one shard thread per \
CPU, each with its own io_uring ring (epoll where io_uring is not allowed) and its own \
SO_REUSEPORT control listener, and sends downloads with sendfile(2) from the page cache. A \
session's control and data connections stay on one shard.

Anonymous users are served the root directory read-only (unless an upload directory is \
configured); named users come from the users file, with argon2id password hashes made by \
ringftpd hash-password. Every path is resolved beneath the user's root directory by the kernel \
(openat2 RESOLVE_BENEATH), never by comparing strings.

Every setting below is both a flag and a key of the TOML file named by --config, spelled with _ \
for - (see ringftpd.toml(5)). A flag given on the command line overrides the key in the file; a \
setting given in neither has the default shown. Unknown keys and values that cannot work stop \
start-up with the file, the key and the reason; --check-config checks a configuration without \
serving.";

/// Sections of ringftpd(8) after the generated ones: (title, paragraphs; a paragraph starting
/// with a tag and a tab is a tagged paragraph).
const SECTIONS_8: &[(&str, &[&str])] = &[
    (
        "SIGNALS",
        &[
            "SIGHUP\tRead the config file and the users file again. New sessions get the new \
             settings, running sessions keep theirs. The transfer logs (xferlog, json_log) are \
             reopened, so logrotate(8) can move them away first.",
            "SIGTERM, SIGINT\tClose the listeners, send 421 to idle sessions, let running \
             transfers go on for shutdown_grace_secs, then close the rest. A cut-off upload \
             leaves the old file as it was.",
        ],
    ),
    (
        "USERS FILE",
        &[
            "The file named by --users is TOML: one [[user]] table per named user. Unknown keys \
             stop start-up, so a misspelt key cannot silently grant a default.",
            "name\tThe login name (case-sensitive; anonymous and ftp are reserved).",
            "password\tThe argon2id hash that ringftpd hash-password prints.",
            "root\tThe directory served as / to this user (absolute, must exist).",
            "access\tread-write or read-only.",
            "download, upload\tOptional: whether RETR, and STOR/APPE/STOU, are allowed (upload = \
             true on a read-only user is an error).",
            "tls\tOptional: login or data, what this user must do with TLS on top of tls_named. \
             It can only add: login is checked with the password (the account is then refused \
             in clear with 534), data also refuses PROT C and data commands in clear.",
        ],
    ),
    (
        "EXIT STATUS",
        &[
            "0\tThe server stopped, or --check-config found the configuration usable, or \
             --print-config, --help or --version printed what was asked.",
            "1\tThe server could not start (for example, a listen address cannot be bound).",
            "2\tA bad flag, config file or setting; the message names the flag or the file and \
             the key.",
        ],
    ),
    (
        "FILES",
        &[
            "/etc/ringftpd/ringftpd.toml\tThe configuration the Debian package installs and the \
             systemd unit passes with --config; see ringftpd.toml(5).",
            "/srv/ftp\tThe root directory served to anonymous users in that configuration.",
            "/var/log/ringftpd/xferlog\tThe transfer log in that configuration, rotated by \
             /etc/logrotate.d/ringftpd.",
            "/usr/lib/systemd/system/ringftpd.service\tThe systemd unit: runs ringftpd as the \
             ringftpd user with only CAP_NET_BIND_SERVICE (for port 21); systemctl reload \
             ringftpd sends SIGHUP.",
        ],
    ),
    (
        "SEE ALSO",
        &[
            "ringftpd.toml(5), ringftpd-hash-password(8), xferlog(5), logrotate(8), \
           systemd.service(5)",
        ],
    ),
];

fn main() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        return Err("usage: man OUTDIR".into());
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let example = Example::parse(EXAMPLE)?;
    for (name, text) in pages(&example)? {
        let path = dir.join(&name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Every page as (file name, roff text).
fn pages(example: &Example<'_>) -> Result<Vec<(String, String)>, String> {
    let date = man_date();
    let mut out = vec![("ringftpd.toml.5".to_string(), toml_5(example, &date))];
    // clap's implicit `help` subcommand gets no page (as clap_mangen::generate_to does it).
    let mut cmd = Cli::command_with_defaults()
        .long_about(DESCRIPTION)
        .override_usage("ringftpd [OPTIONS]\nringftpd hash-password")
        .disable_help_subcommand(true);
    // Sets each subcommand's display name ("ringftpd-hash-password"), as clap_mangen expects.
    cmd.build();
    for sub in cmd.get_subcommands() {
        let man = man_8(sub.clone(), &date);
        out.push((man.get_filename(), render(&man, &[])?));
    }
    let man = man_8(cmd, &date);
    out.push((man.get_filename(), render(&man, SECTIONS_8)?));
    Ok(out)
}

fn man_8(cmd: clap::Command, date: &str) -> Man {
    Man::new(cmd)
        .section("8")
        .date(date)
        .source(format!("ringftpd {VERSION}"))
        .manual("System Administration")
}

/// The generated page, then `sections`.
fn render(man: &Man, sections: &[(&str, &[&str])]) -> Result<String, String> {
    let mut buf = Vec::new();
    man.render(&mut buf).map_err(|e| e.to_string())?;
    let mut roff = Roff::new();
    for (title, paragraphs) in sections {
        roff.control("SH", [*title]);
        for p in *paragraphs {
            match p.split_once('\t') {
                Some((tag, body)) => {
                    roff.control("TP", []);
                    roff.text([bold(tag)]);
                    roff.text([roman(body)]);
                }
                None => {
                    roff.control("PP", []);
                    roff.text([roman(*p)]);
                }
            }
        }
    }
    let mut text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    text.push_str(&roff.to_roff());
    Ok(text)
}

/// The example config read as documentation: its opening comment, then one paragraph per key
/// (or per few related keys), each a comment followed by the keys' `key = value` lines, commented
/// out where the file leaves the default (or, for a key without one, shows an example value).
struct Example<'a> {
    intro: Vec<String>,
    entries: Vec<Entry<'a>>,
}

struct Entry<'a> {
    prose: String,
    settings: Vec<Setting<'a>>,
}

struct Setting<'a> {
    key: &'a str,
    /// `key = value`, without the comment mark.
    line: &'a str,
    /// Not commented out: the file sets this value.
    active: bool,
}

impl<'a> Example<'a> {
    fn parse(text: &'a str) -> Result<Example<'a>, String> {
        let mut blocks = text
            .split("\n\n")
            .map(|b| {
                b.lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|b| !b.is_empty());
        let intro = paragraphs(&blocks.next().unwrap_or_default())?;
        let title = format!("{CONFIG_PATH}:");
        let Some(intro) = intro
            .split_first()
            .and_then(|(first, rest)| first.starts_with(&title).then(|| rest.to_vec()))
        else {
            return Err(format!("the example config must start with \"# {title}\""));
        };
        let mut entries = Vec::new();
        for block in blocks {
            let mut prose = Vec::new();
            let mut settings = Vec::new();
            for &line in &block {
                match Setting::of(line) {
                    Some(s) => settings.push(s),
                    None if settings.is_empty() => prose.push(line),
                    None => return Err(format!("{line:?} follows the key lines it explains")),
                }
            }
            if settings.is_empty() {
                return Err(format!("a comment explains no key: {:?}", block.join("\n")));
            }
            let prose = paragraphs(&prose)?.join(" ");
            if prose.is_empty() {
                return Err(format!("{} has no comment", settings[0].key));
            }
            entries.push(Entry { prose, settings });
        }
        let example = Example { intro, entries };
        for key in KEYS {
            let n = example.settings().filter(|s| s.key == *key).count();
            if n != 1 {
                return Err(format!("{key} appears {n} times in the example config"));
            }
        }
        Ok(example)
    }

    fn settings(&self) -> impl Iterator<Item = &Setting<'a>> {
        self.entries.iter().flat_map(|e| &e.settings)
    }
}

impl<'a> Setting<'a> {
    /// `key = value` or `# key = value` for a known key; anything else is prose.
    fn of(line: &'a str) -> Option<Setting<'a>> {
        let (active, body) = match line.strip_prefix("# ") {
            Some(body) => (false, body),
            None => (true, line),
        };
        let (name, _) = body.split_once(" = ")?;
        let key = KEYS.iter().find(|k| **k == name)?;
        Some(Setting {
            key,
            line: body,
            active,
        })
    }
}

/// Comment lines as paragraphs of text (a bare `#` separates paragraphs).
fn paragraphs(lines: &[&str]) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    for line in lines {
        let text = match line.strip_prefix('#') {
            Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
            None => return Err(format!("{line:?} is neither a comment nor a known key")),
        };
        let last = out.last_mut().expect("never empty");
        if text.is_empty() {
            if !last.is_empty() {
                out.push(String::new());
            }
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(text);
        }
    }
    out.retain(|p| !p.is_empty());
    Ok(out)
}

/// Text with `code` spans in bold.
fn inline(text: &str) -> Vec<Inline> {
    text.split('`')
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, s)| if i % 2 == 1 { bold(s) } else { roman(s) })
        .collect()
}

/// Each key's default as a TOML value, from `Config::default()`; `None` for keys unset by
/// default. `shards` is left out: its default is this machine's CPU count, which would mislead
/// on another machine (the example's comment says "one per online CPU").
fn default_value(defaults: &toml::Table, key: &str) -> Option<String> {
    if key == "shards" {
        return None;
    }
    defaults.get(key).map(ToString::to_string)
}

fn defaults() -> toml::Table {
    toml::Table::try_from(Options::of(&Config::default())).expect("Options serialise as TOML")
}

/// ringftpd.toml(5): the example config's comments, each key with its flag and default.
fn toml_5(example: &Example<'_>, date: &str) -> String {
    let cli = Cli::command_with_defaults();
    let defaults = defaults();
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "RINGFTPD.TOML",
            "5",
            date,
            &format!("ringftpd {VERSION}"),
            "File Formats Manual",
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman("ringftpd.toml - configuration file of ringftpd(8)")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([roman(CONFIG_PATH)]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([
        roman("A TOML file read by "),
        bold("ringftpd --config"),
        italic(" FILE"),
        roman("."),
    ]);
    for p in &example.intro {
        r.control("PP", []);
        r.text(inline(p));
    }
    r.control("SH", ["KEYS"]);
    for entry in &example.entries {
        r.control("TP", []);
        let mut tag = Vec::new();
        for (i, s) in entry.settings.iter().enumerate() {
            if i > 0 {
                tag.push(roman(", "));
            }
            tag.push(bold(s.key));
        }
        r.text(tag);
        r.text(inline(&entry.prose));
        for s in &entry.settings {
            r.control("IP", []);
            r.text(key_facts(&cli, &defaults, s));
        }
    }
    r.control("SH", ["EXAMPLE"]);
    r.text([roman(format!(
        "The values the Debian package's {CONFIG_PATH} sets; every other key keeps its default:"
    ))]);
    r.control("PP", []);
    r.control("RS", []);
    r.control("nf", []);
    for s in example.settings().filter(|s| s.active) {
        r.text([roman(s.line)]);
    }
    r.control("fi", []);
    r.control("RE", []);
    r.control("SH", ["FILES"]);
    r.control("TP", []);
    r.text([bold(CONFIG_PATH)]);
    r.text([roman(
        "The configuration the systemd unit ringftpd.service passes with --config.",
    )]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "ringftpd(8), ringftpd-hash-password(8), xferlog(5), https://toml.io/",
    )]);
    r.render()
}

/// One line per key: its flag, its default, and the value the example shows when that is not
/// the default.
fn key_facts(cli: &clap::Command, defaults: &toml::Table, s: &Setting<'_>) -> Vec<Inline> {
    let mut out = vec![roman("Flag: ")];
    let arg = cli.get_arguments().find(|a| a.get_id() == s.key);
    if let Some(long) = arg.and_then(|a| a.get_long()) {
        out.push(bold(format!("--{long}")));
    }
    let value_name = arg
        .filter(|a| a.get_action().takes_values())
        .and_then(|a| a.get_value_names())
        .and_then(|v| v.first());
    if let Some(name) = value_name {
        out.push(roman(" "));
        out.push(italic(name.as_str()));
    }
    out.push(roman("."));
    let default = default_value(defaults, s.key);
    match &default {
        Some(v) => {
            out.push(roman(" Default: "));
            out.push(bold(format!("{} = {v}", s.key)));
            out.push(roman("."));
        }
        None if s.key == "shards" => {}
        None => out.push(roman(" Default: unset.")),
    }
    let shown_is_default = default
        .as_deref()
        .is_some_and(|d| s.line == format!("{} = {d}", s.key));
    if !shown_is_default {
        let label = if s.active {
            " The packaged file sets "
        } else {
            " Example: "
        };
        out.push(roman(label));
        out.push(bold(s.line));
        out.push(roman("."));
    }
    out
}

/// The pages' date: `SOURCE_DATE_EPOCH` when set (reproducible builds; debian/build.sh sets it
/// to the last commit's time), else today.
fn man_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_pages() -> Vec<(String, String)> {
        pages(&Example::parse(EXAMPLE).unwrap()).unwrap()
    }

    fn page(name: &str) -> String {
        all_pages()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no page {name}"))
            .1
    }

    /// roff escapes every `-` as `\-`.
    fn roff_text(s: &str) -> String {
        s.replace('-', "\\-")
    }

    #[test]
    fn the_pages_are_the_three_installed() {
        let mut names: Vec<String> = all_pages().into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(
            names,
            ["ringftpd-hash-password.8", "ringftpd.8", "ringftpd.toml.5"]
        );
    }

    #[test]
    fn ringftpd_8_mentions_every_long_flag_and_the_subcommand() {
        let text = page("ringftpd.8");
        let cmd = Cli::command_with_defaults();
        let longs: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        assert!(longs.len() > KEYS.len(), "{longs:?}");
        for long in longs.iter().chain(&["help", "version"]) {
            assert!(
                text.contains(&roff_text(&format!("--{long}"))),
                "ringftpd.8 does not mention --{long}"
            );
        }
        assert!(text.contains(&roff_text("hash-password")));
        assert!(text.contains(".TH ringftpd 8"), "{}", &text[..200]);
        // The defaults come through from Config::default.
        assert!(text.contains("[default: 127.0.0.1:2121]"));
    }

    #[test]
    fn ringftpd_toml_5_describes_every_key() {
        let text = page("ringftpd.toml.5");
        for key in KEYS {
            assert!(
                text.contains(&format!("\\fB{}\\fR", roff_text(key))),
                "ringftpd.toml.5 does not describe {key}"
            );
            let flag = roff_text(&format!("--{}", key.replace('_', "-")));
            assert!(text.contains(&flag), "ringftpd.toml.5 does not name {flag}");
        }
        assert!(text.contains("max_sessions = 20000"));
    }

    #[test]
    fn every_key_of_the_example_has_a_comment_and_shows_its_default() {
        let example = Example::parse(EXAMPLE).unwrap();
        let defaults = defaults();
        for s in example.settings() {
            if s.active {
                continue;
            }
            // A commented-out line shows the default where there is one, so the file and the
            // man page cannot drift from Config::default.
            if let Some(d) = default_value(&defaults, s.key) {
                assert_eq!(s.line, format!("{} = {d}", s.key), "{}", s.key);
            }
        }
        assert_eq!(
            example.settings().map(|s| s.key).collect::<Vec<_>>(),
            KEYS,
            "the example config lists the keys in file order"
        );
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn a_key_without_a_comment_or_twice_is_refused() {
        let head = format!("# {CONFIG_PATH}: the ringftpd configuration.\n\n");
        let mut all = String::new();
        for key in KEYS {
            all.push_str(&format!("# About {key}.\n# {key} = 1\n\n"));
        }
        assert!(Example::parse(&format!("{head}{all}")).is_ok());
        let err = Example::parse(&format!("{head}{all}root = \"/x\"\n"))
            .err()
            .unwrap();
        assert!(err.contains("no comment"), "{err}");
        let err = Example::parse(&format!("{head}{all}# Again.\n# root = \"/x\"\n"))
            .err()
            .unwrap();
        assert!(err.contains("root appears 2 times"), "{err}");
        let err = Example::parse(&all).err().unwrap();
        assert!(err.contains("must start with"), "{err}");
    }
}
