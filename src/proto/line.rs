//! Control-connection line framing with a hard length cap (RFC 959 section 4.1: lines end in CRLF).
//!
//! The framer holds bytes only while a line is incomplete, so an idle session keeps no buffer.

/// Longest command line accepted, terminator included (vsftpd uses the same order of magnitude).
pub const MAX_LINE_BYTES: usize = 4096;

/// One framed line, or the fact that a line was too long and has been discarded.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its CRLF (or bare LF, which many clients send).
    Line(Vec<u8>),
    /// A line exceeded [`MAX_LINE_BYTES`]; its bytes up to the next LF are dropped.
    TooLong,
}

#[derive(Debug, Default)]
pub struct LineFramer {
    partial: Vec<u8>,
    /// Inside an overlong line: drop bytes until the next LF.
    discarding: bool,
}

impl LineFramer {
    pub fn new() -> LineFramer {
        LineFramer::default()
    }

    /// Bytes buffered for an incomplete line.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Feed received bytes; complete frames are pushed to `out` in order.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let chunk = match newline {
                Some(i) => &data[..i],
                None => data,
            };
            if self.discarding {
                if newline.is_some() {
                    self.discarding = false;
                }
            } else if self.partial.len() + chunk.len() >= MAX_LINE_BYTES {
                self.partial = Vec::new();
                self.discarding = newline.is_none();
                out.push(Frame::TooLong);
            } else if newline.is_some() {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(chunk);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                out.push(Frame::Line(line));
            } else {
                self.partial.extend_from_slice(chunk);
            }
            data = match newline {
                Some(i) => &data[i + 1..],
                None => &[],
            };
        }
        if self.partial.is_empty() && self.partial.capacity() > 0 {
            self.partial = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = LineFramer::new();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    #[test]
    fn splits_crlf_and_lf() {
        assert_eq!(
            frames(&[b"USER a\r\nPASS b\nNOOP\r\n"]),
            vec![
                Frame::Line(b"USER a".to_vec()),
                Frame::Line(b"PASS b".to_vec()),
                Frame::Line(b"NOOP".to_vec())
            ]
        );
    }

    #[test]
    fn reassembles_across_reads() {
        assert_eq!(
            frames(&[b"US", b"ER a\r", b"\n"]),
            vec![Frame::Line(b"USER a".to_vec())]
        );
    }

    #[test]
    fn overlong_line_is_reported_once_and_skipped() {
        let long = vec![b'A'; MAX_LINE_BYTES * 3];
        let out = frames(&[&long[..1000], &long[1000..], b"\r\nNOOP\r\n"]);
        assert_eq!(out, vec![Frame::TooLong, Frame::Line(b"NOOP".to_vec())]);
    }

    #[test]
    fn line_just_under_the_cap_is_accepted() {
        let mut line = vec![b'A'; MAX_LINE_BYTES - 2];
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            frames(&[&line]),
            vec![Frame::Line(vec![b'A'; MAX_LINE_BYTES - 2])]
        );
    }

    #[test]
    fn idle_framer_holds_no_buffer() {
        let mut f = LineFramer::new();
        let mut out = Vec::new();
        f.push(b"NOOP\r\n", &mut out);
        assert_eq!(f.partial.capacity(), 0);
    }
}
