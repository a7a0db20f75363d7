//! The control-connection framer on arbitrary bytes in arbitrary read sizes: it never panics,
//! never emits a line as long as its cap or one holding a LF, never buffers a full cap's worth,
//! and frames the same lines whatever the read boundaries.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringftpd::proto::line::{Frame, LineFramer, MAX_LINE_BYTES};

/// Frames of `data` read in pieces whose sizes come from `sizes` (cycled; 0 means "all the rest").
fn framed(data: &[u8], sizes: &[u8]) -> Vec<Frame> {
    let mut framer = LineFramer::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let want = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(0);
        // Sizes scaled so a piece can reach past the cap: 0 -> everything, n -> n^2 bytes.
        let n = if want == 0 {
            rest.len()
        } else {
            (usize::from(want) * usize::from(want)).min(rest.len())
        };
        framer.push(&rest[..n], &mut out);
        assert!(
            framer.pending() < MAX_LINE_BYTES,
            "buffered {} bytes",
            framer.pending()
        );
        rest = &rest[n..];
        i += 1;
    }
    out
}

fuzz_target!(|input: &[u8]| {
    // The first 8 bytes choose the read sizes; the rest is what the client sent. Repeating a
    // short input makes lines that cross the cap without needing huge inputs.
    let (sizes, data) = input.split_at(input.len().min(8));
    let repeat = sizes.first().map_or(1, |&b| 1 + usize::from(b >> 5));
    let data: Vec<u8> = data.repeat(repeat * (1 + MAX_LINE_BYTES / data.len().max(1)).min(4));
    let pieces = framed(&data, sizes);
    for f in &pieces {
        if let Frame::Line(l) = f {
            assert!(l.len() < MAX_LINE_BYTES, "a line of {} bytes", l.len());
            assert!(!l.contains(&b'\n'), "a line holding LF");
        }
    }
    // Read boundaries never change the framing.
    assert_eq!(pieces, framed(&data, &[]), "framing depends on read sizes");
    // Every emitted frame stands for one LF in the input (a line, or the end of an overlong one),
    // plus at most one TooLong for an overlong line still unterminated at the end.
    let lfs = data.iter().filter(|&&b| b == b'\n').count();
    assert!(
        pieces.len() <= lfs + 1,
        "{} frames for {lfs} LFs",
        pieces.len()
    );
});
