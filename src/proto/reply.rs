//! FTP replies: codes named by their RFC 959 meaning, and their wire encoding (RFC 959 section 4.2).

use std::fmt;

/// Every reply code the server sends, named by meaning. The numeric value is the wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ReplyCode {
    FileStatusOkay = 150,
    CommandOkay = 200,
    CommandSuperfluous = 202,
    SystemStatus = 211,
    FileStatus = 213,
    HelpMessage = 214,
    SystemType = 215,
    ServiceReady = 220,
    ClosingControl = 221,
    DataConnectionOpenNoTransfer = 225,
    ClosingDataConnection = 226,
    EnteringPassiveMode = 227,
    EnteringExtendedPassiveMode = 229,
    UserLoggedIn = 230,
    /// RFC 2228 / 4217: AUTH accepted; the TLS handshake follows.
    SecurityExchangeComplete = 234,
    FileActionOkay = 250,
    PathCreated = 257,
    NeedPassword = 331,
    FileActionPending = 350,
    ServiceNotAvailable = 421,
    CantOpenDataConnection = 425,
    TransferAborted = 426,
    /// "Requested file action not taken. File unavailable (e.g., file busy)": a transient
    /// refusal the client may retry (RFC 959 section 4.2).
    FileActionNotTaken = 450,
    LocalError = 451,
    InsufficientStorage = 452,
    SyntaxError = 500,
    ParameterSyntaxError = 501,
    NotImplemented = 502,
    BadSequence = 503,
    ParameterNotImplemented = 504,
    /// RFC 4217 section 9: "Data connection cannot be opened with this PROT setting".
    ProtectionRequired = 521,
    ProtocolNotSupported = 522,
    NotLoggedIn = 530,
    /// RFC 2228: "Request denied for policy reasons" (TLS required, CCC refused).
    DeniedForPolicy = 534,
    /// RFC 2228: "Requested PROT level not supported by mechanism".
    ProtLevelNotSupported = 536,
    FileUnavailable = 550,
    ExceededStorage = 552,
    NameNotAllowed = 553,
}

impl ReplyCode {
    /// A `PROT P` data connection that did not resume the control connection's TLS session:
    /// 522, the code vsftpd gives it and clients' FAQs name ("session reuse required").
    pub const TLS_SESSION_NOT_REUSED: ReplyCode = ReplyCode::ProtocolNotSupported;

    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The three ASCII digits of the code.
    pub fn digits(self) -> [u8; 3] {
        let code = self.as_u16();
        [
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ]
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// One reply: a code and one or more lines of text (bytes, since paths in replies are raw names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    /// First line, middle lines (sent verbatim, RFC 959 allows any text not starting with the code
    /// and a hyphen; FEAT-style bodies start with a space), last line.
    lines: Vec<Vec<u8>>,
}

impl Reply {
    pub fn new(code: ReplyCode, text: impl Into<Vec<u8>>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply: `first`, the `body` lines, then `last` (RFC 959 section 4.2).
    pub fn multi(
        code: ReplyCode,
        first: impl Into<Vec<u8>>,
        body: Vec<Vec<u8>>,
        last: impl Into<Vec<u8>>,
    ) -> Reply {
        let mut lines = Vec::with_capacity(body.len() + 2);
        lines.push(first.into());
        lines.extend(body);
        lines.push(last.into());
        Reply { code, lines }
    }

    pub fn text(&self) -> &[u8] {
        &self.lines[0]
    }

    /// Append the wire form to `out`: "CODE text\r\n", or "CODE-first\r\n...\r\nCODE last\r\n".
    ///
    /// A body line that would look like a final line ("CODE " at its start) is indented by a space
    /// so clients cannot mistake it for the end of the reply. CR and LF inside a line are replaced
    /// (a name can contain them; RFC 959 forbids them inside a reply line).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let n = self.lines.len();
        for (i, line) in self.lines.iter().enumerate() {
            if i == 0 || i == n - 1 {
                let mark = if i == n - 1 { b' ' } else { b'-' };
                out.extend_from_slice(&self.code.digits());
                out.push(mark);
                push_line(out, line);
            } else {
                Reply::encode_body_line(self.code, line, out);
            }
        }
    }

    /// Append the first line of a multi-line reply whose body is sent in pieces ("CODE-text").
    pub fn encode_head(code: ReplyCode, text: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&code.digits());
        out.push(b'-');
        push_line(out, text);
    }

    /// Append one body line of a multi-line reply with `code`, as `encode` does: indented by a
    /// space if it starts with the code, CR and LF replaced, IAC doubled.
    pub fn encode_body_line(code: ReplyCode, line: &[u8], out: &mut Vec<u8>) {
        if line.len() >= 3 && line[..3] == code.digits() {
            out.push(b' ');
        }
        push_line(out, line);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Append `line` and CRLF: CR and LF inside become spaces, IAC is doubled.
fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    for &b in line {
        match b {
            b'\r' | b'\n' => out.push(b' '),
            // RFC 854: the control connection is Telnet (RFC 959 section 4), where a data
            // byte 0xFF (IAC) travels doubled; a name echoed in a reply may hold one.
            0xff => out.extend_from_slice(&[0xff, 0xff]),
            b => out.push(b),
        }
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telnet_iac_is_doubled_and_other_bytes_pass() {
        let r = Reply::new(
            ReplyCode::PathCreated,
            b"\"/caf\xe9 \xff\x80\" created.".to_vec(),
        );
        assert_eq!(r.to_bytes(), b"257 \"/caf\xe9 \xff\xff\x80\" created.\r\n");
    }

    #[test]
    fn single_line() {
        let r = Reply::new(ReplyCode::ServiceReady, "ringftpd ready.");
        assert_eq!(r.to_bytes(), b"220 ringftpd ready.\r\n");
    }

    #[test]
    fn multi_line_rfc959_format() {
        let r = Reply::multi(
            ReplyCode::SystemStatus,
            "Features:",
            vec![b" EPSV".to_vec(), b" SIZE".to_vec()],
            "End",
        );
        assert_eq!(
            r.to_bytes(),
            b"211-Features:\r\n EPSV\r\n SIZE\r\n211 End\r\n"
        );
    }

    #[test]
    fn body_line_that_looks_final_is_indented() {
        let r = Reply::multi(
            ReplyCode::FileStatus,
            "Status:",
            vec![b"213 x".to_vec()],
            "End",
        );
        assert_eq!(r.to_bytes(), b"213-Status:\r\n 213 x\r\n213 End\r\n");
    }

    #[test]
    fn crlf_in_text_is_neutralised() {
        let r = Reply::new(ReplyCode::PathCreated, b"\"/a\r\nb\" created".to_vec());
        assert_eq!(r.to_bytes(), b"257 \"/a  b\" created\r\n");
    }

    #[test]
    fn codes_have_rfc_values() {
        for (code, n) in [
            (ReplyCode::FileStatusOkay, 150),
            (ReplyCode::ClosingDataConnection, 226),
            (ReplyCode::EnteringExtendedPassiveMode, 229),
            (ReplyCode::NeedPassword, 331),
            (ReplyCode::TransferAborted, 426),
            (ReplyCode::FileActionNotTaken, 450),
            (ReplyCode::ProtocolNotSupported, 522),
            (ReplyCode::FileUnavailable, 550),
        ] {
            assert_eq!(code.as_u16(), n);
        }
    }
}
