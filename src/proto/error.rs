//! Filesystem failures as the protocol sees them; `vfs` fills them in from errno, `reply_for` maps them.

/// Filesystem errors, in one errno table (`vfs::FileError::from_errno`), mapped to replies in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("No such file or directory")]
    NotFound,
    #[error("Permission denied")]
    PermissionDenied,
    #[error("Not a directory")]
    NotADirectory,
    #[error("Is a directory")]
    IsADirectory,
    #[error("Not a regular file")]
    NotAFile,
    /// The path leaves the served root (EXDEV/ELOOP from RESOLVE_BENEATH); reported as "not found" to
    /// the client so nothing about what lies outside is revealed.
    #[error("No such file or directory")]
    Escapes,
    #[error("File name too long")]
    NameTooLong,
    #[error("No space left on device")]
    NoSpace,
    #[error("Disk quota exceeded")]
    QuotaExceeded,
    #[error("Read-only file system")]
    ReadOnly,
    #[error("File exists")]
    Exists,
    #[error("Directory not empty")]
    NotEmpty,
    #[error("Resource busy")]
    Busy,
    #[error("Local error (errno {0})")]
    Io(i32),
    /// The helper pool's queue is full: nothing was tried; the client may retry.
    #[error("Server busy, try again")]
    Overloaded,
}
