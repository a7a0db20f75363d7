//! What the server says about itself: FEAT and its OPTS (RFC 2389), HELP, and STAT without a path.

use super::{Session, Step};
use crate::proto::command::TransferType;
use crate::proto::listing::Facts;
use crate::proto::reply::{Reply, ReplyCode};

/// Commands listed by HELP and FEAT-independent tools; keep in sync with `command::parse`.
const HELP_VERBS: &str = "ABOR ACCT ALLO APPE AUTH CCC CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM MFMT MKD MLSD \
                          MLST MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD QUIT REST RETR RMD RNFR RNTO SITE \
                          SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD";

impl Session {
    pub(super) fn feat(&self) -> Step {
        // RFC 4217 section 6: AUTH TLS, PBSZ and PROT, only where TLS can be used.
        let tls = self.policy.tls.available;
        let body = [
            tls.then(|| " AUTH TLS".to_string()),
            Some(" EPRT".to_string()),
            Some(" EPSV".to_string()),
            Some(" MDTM".to_string()),
            Some(" MFMT".to_string()),
            Some(format!(" MLST {}", self.facts.feat_list())),
            Some(" PASV".to_string()),
            tls.then(|| " PBSZ".to_string()),
            tls.then(|| " PROT".to_string()),
            Some(" REST STREAM".to_string()),
            Some(" SIZE".to_string()),
            Some(" TVFS".to_string()),
            Some(" UTF8".to_string()),
        ];
        Step {
            replies: vec![Reply::multi(
                ReplyCode::SystemStatus,
                "Features:",
                body.into_iter().flatten().map(String::into_bytes).collect(),
                "End",
            )],
            effect: None,
        }
    }

    pub(super) fn opts(&mut self, option: &[u8], value: &[u8]) -> Step {
        match option {
            // RFC 2640: names go out as they are stored (UTF-8 where they are UTF-8 on disk, raw
            // bytes otherwise) and arguments are taken as bytes, so ON and OFF both change nothing.
            b"UTF8" | b"UTF-8"
                if value.eq_ignore_ascii_case(b"ON") || value.eq_ignore_ascii_case(b"OFF") =>
            {
                Step::reply(
                    ReplyCode::CommandOkay,
                    "UTF8 mode: names are sent as stored.",
                )
            }
            b"MLST" => {
                self.facts = Facts::from_opts(value);
                Step::reply(
                    ReplyCode::CommandOkay,
                    format!("MLST OPTS {}", self.facts.enabled_list()),
                )
            }
            _ => Step::reply(ReplyCode::ParameterSyntaxError, "Option not understood."),
        }
    }

    pub(super) fn help(&self, topic: Option<Vec<u8>>) -> Step {
        match topic {
            Some(t) => {
                let known = HELP_VERBS
                    .split(' ')
                    .any(|v| v.as_bytes().eq_ignore_ascii_case(&t));
                if known {
                    Step::reply(
                        ReplyCode::HelpMessage,
                        "Syntax as in RFC 959, RFC 2428 and RFC 3659.",
                    )
                } else {
                    Step::reply(ReplyCode::ParameterSyntaxError, "Unknown command.")
                }
            }
            None => {
                let body: Vec<Vec<u8>> = HELP_VERBS
                    .split(' ')
                    .collect::<Vec<_>>()
                    .chunks(8)
                    .map(|c| format!(" {}", c.join(" ")).into_bytes())
                    .collect();
                Step {
                    replies: vec![Reply::multi(
                        ReplyCode::HelpMessage,
                        "The following commands are recognized.",
                        body,
                        "Help OK.",
                    )],
                    effect: None,
                }
            }
        }
    }

    pub(super) fn status(&self) -> Step {
        Step {
            replies: vec![self.status_reply()],
            effect: None,
        }
    }

    pub(super) fn status_reply(&self) -> Reply {
        let mut body = vec![format!(" Connected to {}", self.peer).into_bytes()];
        if let Some(user) = self.user() {
            let mut line = b" Logged in as ".to_vec();
            line.extend_from_slice(user);
            body.push(line);
        }
        let ty = match self.ty {
            TransferType::Ascii => "ASCII",
            TransferType::Image => "BINARY",
        };
        body.push(format!(" TYPE: {ty}; STRUcture: File; transfer MODE: Stream").into_bytes());
        body.push(b" No data connection".to_vec());
        body.push(format!(" ringftpd {}", env!("CARGO_PKG_VERSION")).into_bytes());
        Reply::multi(
            ReplyCode::SystemStatus,
            "FTP server status:",
            body,
            "End of status",
        )
    }
}
