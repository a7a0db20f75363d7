//! Authenticated FTP users: the operator's users file and USER/PASS verification.
//!
//! The operator lists users in a TOML file, each with an argon2 password hash in PHC string form
//! (`ringftpd hash-password` prints the line to paste):
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$...$..."
//! root = "/srv/ftp/alice"
//! access = "read-write"      # or "read-only"
//! # download = true          # optional, default true
//! # upload = true            # optional, default true for read-write
//! # tls = "login"            # optional: "login" or "data", on top of `tls_named`
//!
//! [[user]]
//! name = "bob"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$...$..."
//! root = "/srv/ftp/public"
//! access = "read-only"
//! ```
//!
//! Unknown keys, at the top level or inside a `[[user]]`, stop start-up rather than being ignored,
//! so a misspelt `uplaod = false` cannot silently grant the default. A file with no users is valid.
//! The names `anonymous` and `ftp` (any case) are reserved for anonymous access.
//!
//! [`Users::verify`] runs a full argon2 computation (tens of milliseconds by design), so it
//! belongs on the blocking helper thread, never on a shard's I/O thread.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, Version};
use serde::Deserialize;

use crate::proto::session::TlsRequirement;

/// Largest argon2 memory cost accepted in the users file, in KiB (2 GiB).
///
/// Every login attempt allocates this much, and attackers choose how many attempts run at once,
/// so a typo such as `m=194560000` must stop start-up instead of exhausting memory later. 2 GiB
/// still admits RFC 9106's first recommended option (m=2 GiB, t=1, p=4).
pub const MAX_M_COST_KIB: u32 = 2 * 1024 * 1024;

/// Per-user rights. `Access::ReadOnly` users may list and download; `ReadWrite` users may also change the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One authenticated user, as granted by the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Directory served as "/" for this user (absolute path, must exist at load time).
    pub root: PathBuf,
    pub access: Access,
    /// May RETR (default true).
    pub download: bool,
    /// May STOR/APPE/STOU (default: true for read-write, false for read-only; `upload = true` on a read-only user is a config error).
    pub upload: bool,
    /// What this user must do with TLS on top of the `tls_named` class (`tls = "login"` or
    /// `"data"`; `None` when the file says nothing). It can only add: a user cannot be let off
    /// a requirement of its class, which is checked at USER, before the name is looked up.
    pub tls: Option<TlsRequirement>,
}

/// Why the users file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read users file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("users file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The users file as written; [`Users::parse`] turns it into checked [`User`]s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password: String,
    root: PathBuf,
    access: Access,
    #[serde(default = "default_download")]
    download: bool,
    // `None` lets the default follow `access`.
    upload: Option<bool>,
    tls: Option<String>,
}

fn default_download() -> bool {
    true
}

struct Entry {
    user: User,
    hash: PasswordHash,
}

/// The loaded users file: who may log in, and with which password hash.
pub struct Users {
    // Keyed by raw bytes so USER arguments that are not UTF-8 need no conversion: they simply
    // miss, and still pay for a dummy verification.
    by_name: HashMap<Vec<u8>, Entry>,
    /// Verified against for unknown names, so they cost as much as known ones.
    dummy: PasswordHash,
}

impl Users {
    /// Read and check the users file at `path`.
    pub fn load(path: &Path) -> Result<Users, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, path)
    }

    /// Check users-file `text`; `path` only names the file in error messages. Root directories
    /// are checked on the real filesystem.
    pub fn parse(text: &str, path: &Path) -> Result<Users, AuthError> {
        let invalid = |message: String| AuthError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: UsersFile = toml::from_str(text).map_err(|e| invalid(toml_message(text, &e)))?;

        let mut seen = HashSet::with_capacity(file.user.len());
        let mut entries = Vec::with_capacity(file.user.len());
        for (index, entry) in file.user.into_iter().enumerate() {
            let entry = check_entry(entry, index).map_err(invalid)?;
            if !seen.insert(entry.user.name.clone()) {
                return Err(invalid(format!(
                    "duplicate user name {:?}",
                    entry.user.name
                )));
            }
            entries.push(entry);
        }
        let dummy = dummy_hash(most_common_hash(&entries));
        let by_name = entries
            .into_iter()
            .map(|entry| (entry.user.name.clone().into_bytes(), entry))
            .collect();
        Ok(Users { by_name, dummy })
    }

    /// Every user (for start-up work on their roots).
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.by_name.values().map(|e| &e.user)
    }

    /// Number of users in the file.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when the file grants no one a login.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Verify a login. Unknown users and wrong passwords are indistinguishable: both return None, and an unknown user still runs one full argon2 verification against a dummy hash with the same parameters as real ones, so timing does not reveal which names exist. Names compare exactly (case-sensitive, bytes).
    ///
    /// Blocks for the whole argon2 computation: call it from the blocking helper thread.
    pub fn verify(&self, name: &[u8], password: &[u8]) -> Option<User> {
        // The hash carries its own algorithm and parameters; verification uses those, not these
        // defaults.
        match self.by_name.get(name) {
            Some(entry) => verify_hash(password, &entry.hash).then(|| entry.user.clone()),
            None => {
                // Only the time spent matters; black_box keeps the work from being optimised away.
                let _ = black_box(verify_hash(black_box(password), &self.dummy));
                None
            }
        }
    }
}

/// Whether `password` matches `hash`: argon2 with the hash's own algorithm, version and
/// parameters, its memory in a mapping of its own (`sys::mem::Blocks`: returned to the kernel
/// at once, so a login flood leaves no resident memory behind), and a constant-time compare.
fn verify_hash(password: &[u8], hash: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let mut memory = match crate::sys::mem::Blocks::new(params.block_count()) {
        Ok(m) => m,
        Err(e) => {
            log::error!("no memory for a password check: {e}");
            return false;
        }
    };
    let mut buf = [0u8; Output::MAX_LENGTH];
    let Some(out) = buf.get_mut(..expected.len()) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password, salt.as_ref(), out, memory.blocks())
        .is_err()
    {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(out).is_ok_and(|computed| &computed == expected)
}

impl fmt::Debug for Users {
    // Hashes stay out of debug output: they are offline-attackable secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self
            .by_name
            .values()
            .map(|e| e.user.name.as_str())
            .collect();
        names.sort_unstable();
        f.debug_struct("Users")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

/// Hash a new password as an argon2id PHC string (random salt, the argon2 crate's default params, i.e. OWASP-recommended m=19456,t=2,p=1).
///
/// # Panics
///
/// If the operating system's random number generator fails, or the password exceeds 4 GiB.
pub fn hash_password(password: &[u8]) -> String {
    Argon2::default()
        .hash_password(password)
        .expect("argon2 hashing fails only if the OS RNG fails or the password exceeds 4 GiB")
        .to_string()
}

/// The line an operator pastes into the users file for `ringftpd hash-password`: `password = "<phc>"`.
pub fn hash_line(password: &[u8]) -> String {
    // PHC strings use only [A-Za-z0-9+/.=,$-], none of which needs escaping in a TOML string.
    format!("password = \"{}\"", hash_password(password))
}

/// Check one `[[user]]` table (`index` counts from 0 in file order).
fn check_entry(entry: UserEntry, index: usize) -> Result<Entry, String> {
    let UserEntry {
        name,
        password,
        root,
        access,
        download,
        upload,
        tls,
    } = entry;
    // An empty name cannot identify the user, so fall back to its position.
    let who = if name.is_empty() {
        format!("user #{}", index + 1)
    } else {
        format!("user {name:?}")
    };

    if name.is_empty() {
        return Err(format!("{who}: name is empty"));
    }
    if ["anonymous", "ftp"]
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
    {
        return Err(format!(
            "{who}: name is reserved for anonymous access (RFC 1635)"
        ));
    }
    // CR and LF end the USER line (RFC 959 section 4.1.3), so such a name could never log in;
    // other control characters would corrupt the log lines that carry the name.
    if name.chars().any(char::is_control) {
        return Err(format!("{who}: name contains a control character"));
    }

    // The message never quotes the value: an operator who pasted a plain-text password by
    // mistake should not find it in the logs.
    let hash = check_hash(&password).map_err(|problem| format!("{who}: password {problem}"))?;

    if !root.is_absolute() {
        return Err(format!(
            "{who}: root {} is not an absolute path",
            root.display()
        ));
    }
    match std::fs::metadata(&root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{who}: root {} is not a directory", root.display())),
        Err(e) => return Err(format!("{who}: root {}: {e}", root.display())),
    }

    let upload = match (access, upload) {
        (Access::ReadOnly, Some(true)) => {
            return Err(format!(
                "{who}: upload = true contradicts access = \"read-only\""
            ));
        }
        (_, Some(upload)) => upload,
        (access, None) => access == Access::ReadWrite,
    };

    let tls = match tls.as_deref().map(str::parse::<TlsRequirement>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return Err(format!("{who}: tls: {e}")),
    };

    Ok(Entry {
        user: User {
            name,
            root,
            access,
            download,
            upload,
            tls,
        },
        hash,
    })
}

/// Parse `phc` and check that verification can actually run on it, so that a bad hash stops
/// start-up instead of silently refusing every login. Errors complete "password ...".
fn check_hash(phc: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(phc).map_err(|e| {
        format!("is not a PHC string ({e}); generate one with `ringftpd hash-password`")
    })?;
    if Algorithm::try_from(hash.algorithm.as_str()).is_err() {
        return Err(format!(
            "hash uses {}, not argon2id, argon2i or argon2d",
            hash.algorithm
        ));
    }
    if let Some(version) = hash.version {
        Version::try_from(version)
            .map_err(|_| format!("hash has unsupported argon2 version {version}"))?;
    }
    let params =
        Params::try_from(&hash).map_err(|e| format!("hash has invalid argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_M_COST_KIB {
        return Err(format!(
            "hash asks for {} KiB of memory per login, more than the limit of {MAX_M_COST_KIB} KiB",
            params.m_cost()
        ));
    }
    // Without both, the verifier rejects every password without computing anything.
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("hash lacks the salt or the hash output".to_string());
    }
    Ok(hash)
}

/// The hash whose algorithm and parameters most users share (the first such in file order).
///
/// An unknown name is verified against a dummy with these parameters; a user whose parameters
/// differ answers in a different time, which reveals that the name exists.
fn most_common_hash(entries: &[Entry]) -> Option<&PasswordHash> {
    let cost = |hash: &PasswordHash| {
        (
            hash.algorithm.as_str().to_owned(),
            hash.version,
            hash.params.as_str().to_owned(),
        )
    };
    let mut counts: HashMap<_, usize> = HashMap::new();
    for entry in entries {
        *counts.entry(cost(&entry.hash)).or_default() += 1;
    }
    if counts.len() > 1 {
        log::warn!(
            "users file: password hashes use {} different argon2 parameter sets; \
             login timing reveals which user names exist unless all are rehashed alike",
            counts.len()
        );
    }
    let mut best: Option<(&PasswordHash, usize)> = None;
    for entry in entries {
        let count = counts[&cost(&entry.hash)];
        if best.is_none_or(|(_, best_count)| count > best_count) {
            best = Some((&entry.hash, count));
        }
    }
    best.map(|(hash, _)| hash)
}

/// A hash no password matches in practice, costing as much as `template` (or, with no users, as
/// much as a [`hash_password`] hash). Salt and output are zeros: only the work matters.
fn dummy_hash(template: Option<&PasswordHash>) -> PasswordHash {
    let zero = [0u8; Output::MAX_LENGTH];
    let (algorithm, version, params, salt_len, output_len) = match template {
        Some(t) => (
            t.algorithm,
            t.version,
            t.params.clone(),
            t.salt.map_or(Salt::RECOMMENDED_LENGTH, |s| s.len()),
            t.hash.map_or(Params::DEFAULT_OUTPUT_LEN, |h| h.len()),
        ),
        None => (
            Algorithm::default().ident(),
            Some(Version::default().into()),
            ParamsString::try_from(Params::default())
                .expect("default argon2 params encode as a PHC params string"),
            Salt::RECOMMENDED_LENGTH,
            Params::DEFAULT_OUTPUT_LEN,
        ),
    };
    PasswordHash {
        algorithm,
        version,
        params,
        // Lengths come from a parsed hash or the crate's defaults, so they are in range.
        salt: Some(Salt::new(&zero[..salt_len]).expect("salt length in range")),
        hash: Some(Output::new(&zero[..output_len]).expect("output length in range")),
    }
}

/// A TOML error as "line L, column C: message", without the source excerpt `toml` would print:
/// the excerpt could be a password line.
fn toml_message(text: &str, error: &toml::de::Error) -> String {
    // Spans fall on character boundaries; `get` merely keeps a surprise from panicking.
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return error.message().to_string();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {}", error.message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;
    use std::sync::LazyLock;

    // Argon2 is slow in test builds, so each password is hashed once and shared.
    static ALICE_HASH: LazyLock<String> = LazyLock::new(|| hash_password(b"alice secret"));
    static BOB_HASH: LazyLock<String> = LazyLock::new(|| hash_password(b"bob secret"));

    /// A well-formed argon2id PHC string (zero salt and output) for tests that never verify.
    const ZERO_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn file_path() -> &'static Path {
        Path::new("/etc/ringftpd/users.toml")
    }

    fn user_block(name: &str, password: &str, root: &Path, extra: &str) -> String {
        // Literal strings ('...') need no escaping for these names and temporary paths.
        format!(
            "[[user]]\nname = '{name}'\npassword = '{password}'\nroot = '{}'\n{extra}\n",
            root.display()
        )
    }

    /// Parses `text`, expecting `AuthError::Invalid`, and returns its message.
    fn invalid(text: &str) -> String {
        match Users::parse(text, file_path()) {
            Err(AuthError::Invalid { path, message }) => {
                assert_eq!(path, file_path());
                message
            }
            Err(other) => panic!("expected Invalid, got {other:?}"),
            Ok(users) => panic!("expected Invalid, got {users:?}"),
        }
    }

    fn assert_invalid(text: &str, expected: &str) {
        let message = invalid(text);
        assert!(
            message.contains(expected),
            "message {message:?} should contain {expected:?}"
        );
    }

    fn two_users(dir: &Path) -> Users {
        let text = format!(
            "# two users\n{}{}",
            user_block("alice", &ALICE_HASH, dir, "access = 'read-write'"),
            user_block(
                "bob",
                &BOB_HASH,
                dir,
                "access = 'read-only'\ndownload = false\ntls = 'data'"
            ),
        );
        Users::parse(&text, file_path()).expect("valid users file")
    }

    #[test]
    fn right_password_returns_user_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let users = two_users(dir.path());
        assert_eq!(users.len(), 2);
        assert!(!users.is_empty());

        let alice = users.verify(b"alice", b"alice secret");
        assert_eq!(
            alice,
            Some(User {
                name: "alice".to_string(),
                root: dir.path().to_path_buf(),
                access: Access::ReadWrite,
                download: true,
                upload: true,
                tls: None,
            })
        );
        let bob = users.verify(b"bob", b"bob secret");
        assert_eq!(
            bob,
            Some(User {
                name: "bob".to_string(),
                root: dir.path().to_path_buf(),
                access: Access::ReadOnly,
                download: false,
                upload: false,
                tls: Some(TlsRequirement::Data),
            })
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_are_both_none() {
        let dir = tempfile::tempdir().unwrap();
        let users = two_users(dir.path());
        assert_eq!(users.verify(b"alice", b"bob secret"), None);
        assert_eq!(users.verify(b"carol", b"alice secret"), None);
        // Names are case-sensitive bytes, unlike the reserved-name check.
        assert_eq!(users.verify(b"Alice", b"alice secret"), None);
    }

    #[test]
    fn dummy_hash_costs_the_same_as_real_ones() {
        let dir = tempfile::tempdir().unwrap();
        let users = two_users(dir.path());
        let alice = PasswordHash::new(&ALICE_HASH).unwrap();
        let dummy = &users.dummy;
        assert_eq!(dummy.algorithm, alice.algorithm);
        assert_eq!(dummy.version, alice.version);
        assert_eq!(dummy.params, alice.params);
        assert_eq!(dummy.salt.map(|s| s.len()), alice.salt.map(|s| s.len()));
        assert_eq!(dummy.hash.map(|h| h.len()), alice.hash.map(|h| h.len()));
        // PasswordInvalid with salt and output present means the full computation ran; bad
        // parameters would fail early with a different error.
        assert_eq!(
            Argon2::default().verify_password(b"x", dummy),
            Err(argon2::password_hash::Error::PasswordInvalid)
        );
    }

    #[test]
    fn dummy_follows_the_most_common_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let odd = ZERO_PHC.replace("t=2", "t=3");
        let text = format!(
            "{}{}{}",
            user_block("a", &odd, dir.path(), "access = 'read-only'"),
            user_block("b", ZERO_PHC, dir.path(), "access = 'read-only'"),
            user_block("c", ZERO_PHC, dir.path(), "access = 'read-only'"),
        );
        let users = Users::parse(&text, file_path()).unwrap();
        assert_eq!(users.dummy.params.as_str(), "m=19456,t=2,p=1");
    }

    #[test]
    fn empty_file_has_no_users_and_default_cost_dummy() {
        let users = Users::parse("# nobody yet\n", file_path()).unwrap();
        assert!(users.is_empty());
        assert_eq!(users.len(), 0);
        let default = PasswordHash::new(&BOB_HASH).unwrap();
        assert_eq!(users.dummy.algorithm, default.algorithm);
        assert_eq!(users.dummy.version, default.version);
        assert_eq!(users.dummy.params, default.params);
        assert_eq!(users.verify(b"bob", b"bob secret"), None);
    }

    #[test]
    fn load_reads_the_file_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(
            &path,
            user_block("alice", ZERO_PHC, dir.path(), "access = 'read-write'"),
        )
        .unwrap();
        assert_eq!(Users::load(&path).unwrap().len(), 1);

        let missing = dir.path().join("missing.toml");
        match Users::load(&missing) {
            Err(AuthError::Read { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Read error, got {other:?}"),
        }
    }

    #[test]
    fn error_display_names_the_file() {
        let err = Users::parse("bogus = 1", file_path()).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("users file /etc/ringftpd/users.toml: line 1, column 1: "),
            "{shown}"
        );
        assert!(shown.contains("unknown field `bogus`"), "{shown}");
    }

    #[test]
    fn toml_errors_name_the_problem_without_quoting_the_line() {
        // An unquoted plain-text password is a TOML syntax error.
        let message = invalid("[[user]]\nname = 'alice'\npassword = hunter2\n");
        assert!(message.starts_with("line 3, column "), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        assert_invalid("[[user]\n", "line 1");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let block = user_block("alice", ZERO_PHC, dir.path(), "access = 'read-write'");
        assert_invalid(
            &format!("listen = '0.0.0.0:21'\n{block}"),
            "unknown field `listen`",
        );
        assert_invalid(
            &user_block(
                "alice",
                ZERO_PHC,
                dir.path(),
                "access = 'read-write'\nuplaod = false",
            ),
            "unknown field `uplaod`",
        );
    }

    #[test]
    fn missing_or_mistyped_fields_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_invalid(
            &user_block("alice", ZERO_PHC, dir.path(), ""),
            "missing field `access`",
        );
        assert_invalid(
            &user_block("alice", ZERO_PHC, dir.path(), "access = 'admin'"),
            "unknown variant `admin`",
        );
        assert_invalid(
            "[user]\nname = 'alice'\n",
            "invalid type: map, expected a sequence",
        );
    }

    #[test]
    fn bad_names_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let rw = "access = 'read-write'";
        let twice = format!(
            "{}{}",
            user_block("alice", ZERO_PHC, dir.path(), rw),
            user_block("alice", ZERO_PHC, dir.path(), rw)
        );
        assert_invalid(&twice, "duplicate user name \"alice\"");
        assert_invalid(
            &user_block("", ZERO_PHC, dir.path(), rw),
            "user #1: name is empty",
        );
        assert_invalid(
            &user_block("anonymous", ZERO_PHC, dir.path(), rw),
            "reserved for anonymous access",
        );
        assert_invalid(
            &user_block("FTP", ZERO_PHC, dir.path(), rw),
            "user \"FTP\": name is reserved",
        );
        let tab = format!(
            "[[user]]\nname = \"a\\tb\"\npassword = '{ZERO_PHC}'\nroot = '{}'\n{rw}\n",
            dir.path().display()
        );
        assert_invalid(&tab, "control character");
    }

    #[test]
    fn bad_password_hashes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let with =
            |password: &str| user_block("alice", password, dir.path(), "access = 'read-write'");
        let message = invalid(&with("hunter2"));
        assert!(message.contains("is not a PHC string"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        assert_invalid(
            &with(
                "$pbkdf2-sha256$i=1000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
            "hash uses pbkdf2-sha256, not argon2id",
        );
        assert_invalid(
            &with(&ZERO_PHC.replace("v=19", "v=18")),
            "unsupported argon2 version 18",
        );
        assert_invalid(
            &with(&ZERO_PHC.replace("m=19456", "m=1")),
            "invalid argon2 parameters",
        );
        assert_invalid(
            &with(&ZERO_PHC.replace("m=19456", "m=4194304")),
            "4194304 KiB of memory per login",
        );
        let no_output = &ZERO_PHC[..ZERO_PHC.rfind('$').unwrap()];
        assert_invalid(&with(no_output), "lacks the salt or the hash output");
    }

    #[test]
    fn bad_roots_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let rw = "access = 'read-write'";
        assert_invalid(
            &user_block("alice", ZERO_PHC, Path::new("srv/ftp"), rw),
            "root srv/ftp is not an absolute path",
        );
        let missing = dir.path().join("missing");
        assert_invalid(
            &user_block("alice", ZERO_PHC, &missing, rw),
            &format!("root {}: ", missing.display()),
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert_invalid(
            &user_block("alice", ZERO_PHC, &file, rw),
            "is not a directory",
        );
    }

    #[test]
    fn a_tls_requirement_must_be_one_of_the_three() {
        let dir = tempfile::tempdir().unwrap();
        assert_invalid(
            &user_block(
                "alice",
                ZERO_PHC,
                dir.path(),
                "access = 'read-only'\ntls = 'yes'",
            ),
            "user \"alice\": tls: unknown TLS requirement \"yes\"",
        );
        let text = user_block(
            "alice",
            ZERO_PHC,
            dir.path(),
            "access = 'read-only'\ntls = 'login'",
        );
        let users = Users::parse(&text, file_path()).unwrap();
        assert_eq!(
            users.by_name[b"alice".as_slice()].user.tls,
            Some(TlsRequirement::Login)
        );
    }

    #[test]
    fn upload_rules() {
        let dir = tempfile::tempdir().unwrap();
        assert_invalid(
            &user_block(
                "alice",
                ZERO_PHC,
                dir.path(),
                "access = 'read-only'\nupload = true",
            ),
            "upload = true contradicts access = \"read-only\"",
        );
        // Allowed: an explicit upload = false on a read-write user (drop box without uploads).
        let text = user_block(
            "alice",
            ZERO_PHC,
            dir.path(),
            "access = 'read-write'\nupload = false",
        );
        let users = Users::parse(&text, file_path()).unwrap();
        let entry = &users.by_name[b"alice".as_slice()];
        assert!(!entry.user.upload);
        assert!(entry.user.download);
    }

    /// `verify_hash` (memory of its own) agrees with the argon2 crate's verifier for each
    /// algorithm and version a users file may name.
    #[test]
    fn verify_hash_agrees_with_the_argon2_verifier() {
        let params = Params::new(64, 1, 1, None).unwrap();
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            for version in [Version::V0x13, Version::V0x10] {
                let argon2 = Argon2::new(algorithm, version, params.clone());
                let phc = argon2
                    .hash_password_with_salt(b"right", b"saltsaltsalt")
                    .unwrap();
                for (password, ok) in [(&b"right"[..], true), (b"wrong", false), (b"", false)] {
                    assert_eq!(
                        Argon2::default().verify_password(password, &phc).is_ok(),
                        ok,
                        "{algorithm:?} {version:?}"
                    );
                    assert_eq!(verify_hash(password, &phc), ok, "{algorithm:?} {version:?}");
                }
            }
        }
        let real = PasswordHash::new(&ALICE_HASH).unwrap();
        assert!(verify_hash(b"alice secret", &real));
        assert!(!verify_hash(b"alice secreT", &real));
    }

    #[test]
    fn hash_password_makes_salted_argon2id() {
        assert!(ALICE_HASH.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = PasswordHash::new(&ALICE_HASH).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"alice secret", &parsed)
                .is_ok()
        );
        // Random salt: the same password never hashes the same way twice.
        assert_ne!(hash_password(b"alice secret"), *ALICE_HASH);
    }

    #[test]
    fn hash_line_is_a_users_file_line() {
        let line = hash_line(b"pw");
        let phc = line
            .strip_prefix("password = \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .expect("password = \"<phc>\"");
        assert!(phc.starts_with("$argon2id$"), "{line}");
        assert!(check_hash(phc).is_ok());
    }

    #[test]
    fn users_can_be_shared_with_the_helper_thread() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Users>();
    }

    #[test]
    fn debug_output_omits_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let text = user_block("alice", ZERO_PHC, dir.path(), "access = 'read-write'");
        let shown = format!("{:?}", Users::parse(&text, file_path()).unwrap());
        assert_eq!(shown, "Users { names: [\"alice\"], .. }");
    }
}
