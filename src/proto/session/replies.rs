//! Errors to replies, one table each: file system errors, parse errors, transfer failures.

use super::{TransferError, TransferKind};
use crate::proto::command::{ListFormat, ParseError};
use crate::proto::error::FileError;
use crate::proto::reply::{Reply, ReplyCode};

/// The one table from filesystem errors to replies (RFC 959 section 4.2.1; 55x permanent, 45x transient).
pub fn file_error_reply(e: FileError) -> Reply {
    let code = match e {
        FileError::NoSpace => ReplyCode::InsufficientStorage,
        FileError::QuotaExceeded => ReplyCode::ExceededStorage,
        FileError::NameTooLong => ReplyCode::NameNotAllowed,
        FileError::Busy | FileError::Io(_) => ReplyCode::LocalError,
        FileError::Overloaded => ReplyCode::FileActionNotTaken,
        FileError::NotFound
        | FileError::Escapes
        | FileError::PermissionDenied
        | FileError::NotADirectory
        | FileError::IsADirectory
        | FileError::NotAFile
        | FileError::ReadOnly
        | FileError::Exists
        | FileError::NotEmpty => ReplyCode::FileUnavailable,
    };
    Reply::new(code, format!("{e}."))
}

/// The one table from parse errors to replies.
pub fn parse_error_reply(e: ParseError) -> Reply {
    let (code, text) = match e {
        ParseError::Unknown => (ReplyCode::SyntaxError, "Unknown command."),
        ParseError::NotImplemented => (ReplyCode::NotImplemented, "Command not implemented."),
        ParseError::Syntax => (
            ReplyCode::ParameterSyntaxError,
            "Syntax error in parameters or arguments.",
        ),
        ParseError::ParameterNotImplemented => (
            ReplyCode::ParameterNotImplemented,
            "Command not implemented for that parameter.",
        ),
        ParseError::ProtocolNotSupported => (
            ReplyCode::ProtocolNotSupported,
            "Network protocol not supported, use (1,2).",
        ),
        ParseError::Nul => (ReplyCode::ParameterSyntaxError, "NUL byte in command line."),
        ParseError::BareCr => (ReplyCode::ParameterSyntaxError, "Bare CR in command line."),
        ParseError::UnknownSite => (ReplyCode::SyntaxError, "Unknown SITE command."),
    };
    Reply::new(code, text)
}

pub fn line_too_long_reply() -> Reply {
    Reply::new(ReplyCode::SyntaxError, "Input line too long.")
}

/// The one table from transfer failures to replies; `kind` only matters for MLSD.
pub(super) fn transfer_error_reply(e: TransferError, kind: TransferKind) -> Reply {
    match e {
        // RFC 3659 section 7.2.1: MLSD of something that is not a directory is a 501.
        TransferError::File(FileError::NotADirectory)
            if kind == TransferKind::List(ListFormat::Mlsd) =>
        {
            Reply::new(ReplyCode::ParameterSyntaxError, "MLSD needs a directory.")
        }
        TransferError::File(e) => file_error_reply(e),
        TransferError::NoDataConnection => Reply::new(
            ReplyCode::CantOpenDataConnection,
            "Failed to establish connection.",
        ),
        TransferError::ConnectionLost => Reply::new(
            ReplyCode::TransferAborted,
            "Connection closed; transfer aborted.",
        ),
        TransferError::FileChanged => Reply::new(
            ReplyCode::LocalError,
            "File changed during transfer; transfer aborted.",
        ),
        TransferError::Local(errno) => Reply::new(
            ReplyCode::LocalError,
            format!("Local error in processing (errno {errno})."),
        ),
        TransferError::TlsHandshake => Reply::new(
            ReplyCode::CantOpenDataConnection,
            "TLS handshake on the data connection failed.",
        ),
        TransferError::TlsNotResumed => Reply::new(
            ReplyCode::TLS_SESSION_NOT_REUSED,
            "Data connection must reuse the control connection's TLS session \
             (enable TLS session reuse in your client).",
        ),
        TransferError::TlsTruncated => Reply::new(
            ReplyCode::LocalError,
            "Data connection closed without TLS close_notify; transfer truncated.",
        ),
        TransferError::TlsRekey => Reply::new(
            ReplyCode::TransferAborted,
            "TLS key update on the data connection is not supported here; transfer aborted.",
        ),
    }
}
