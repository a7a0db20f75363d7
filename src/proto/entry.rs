//! What the protocol core knows about one file: filled in by `vfs`, formatted by `listing`.

/// The kind of a directory entry, as listings and `CWD`/`RETR` checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One directory entry (or one stat result); names are raw bytes (UTF-8 by convention, RFC 2640).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: FileKind,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub ino: u64,
    /// A symbolic link's target, for LIST's `name -> target`: filled in by `vfs` only where it
    /// stays inside the served root (see `vfs::link`), else `None`.
    pub link: Option<Vec<u8>>,
}

impl Entry {
    /// An entry known by its name only (NLST needs nothing else); the other fields are zero.
    pub fn named(name: Vec<u8>) -> Entry {
        Entry {
            name,
            kind: FileKind::Other,
            size: 0,
            mtime: 0,
            mode: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            dev: 0,
            ino: 0,
            link: None,
        }
    }
}
