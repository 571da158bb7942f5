//! Range requests on files (RFC 9110 §14): which bytes to send, and the layout of a
//! `multipart/byteranges` body for several ranges.

use std::ops::RangeInclusive;

use bytes::Bytes;
use http_range_header::RangeUnsatisfiableError;

use crate::file_body::Part;

/// What a Range field asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// The whole representation: no Range, a malformed one (which a server ignores,
    /// §14.2), or several ranges that together would cost more than the whole.
    Whole,
    /// 206 with one Content-Range.
    One(RangeInclusive<u64>),
    /// 206 with a `multipart/byteranges` body, ranges in the order asked.
    Several(Vec<RangeInclusive<u64>>),
    /// 416: no range overlaps the representation, or the ranges overlap each other too
    /// much to be honest requests (§14.2 lets a server refuse them).
    Unsatisfiable,
}

/// Decides what `range` (the Range field's value) selects of a representation of `len`
/// bytes: at most 100 ranges (http-range-header's bound), and several ranges only when
/// their parts, with their part headers, add up to less than the whole file, as RFC 9110
/// §14.2 allows a server to coalesce or refuse ranges that would cost more.
pub(crate) fn select(range: &str, len: u64) -> Ranges {
    let parsed = match http_range_header::parse_range_header(range) {
        Ok(parsed) => parsed,
        Err(RangeUnsatisfiableError::Invalid(_)) => return Ranges::Whole,
        Err(_) => return Ranges::Unsatisfiable,
    };
    match parsed.validate(len) {
        Ok(ranges) if ranges.is_empty() => Ranges::Whole,
        Ok(mut ranges) if ranges.len() == 1 => Ranges::One(ranges.remove(0)),
        Ok(ranges) => {
            let selected: u64 = ranges.iter().map(|r| r.end() - r.start() + 1).sum();
            // About 100 bytes of boundary and part headers per part.
            if selected + 100 * ranges.len() as u64 >= len {
                Ranges::Whole
            } else {
                Ranges::Several(ranges)
            }
        }
        Err(RangeUnsatisfiableError::Invalid(_)) => Ranges::Whole,
        Err(_) => Ranges::Unsatisfiable,
    }
}

/// `Content-Range` for one range of a representation of `len` bytes.
pub(crate) fn content_range(range: &RangeInclusive<u64>, len: u64) -> String {
    format!("bytes {}-{}/{len}", range.start(), range.end())
}

/// The parts of a `multipart/byteranges` body (RFC 9110 §14.6) for `ranges` of a
/// representation of `len` bytes and type `content_type`, separated by `boundary`: the
/// part headers as bytes, the file's ranges to read between them. The body's length is the
/// sum of the parts' lengths.
pub(crate) fn multipart(
    ranges: &[RangeInclusive<u64>],
    len: u64,
    content_type: &str,
    boundary: &str,
) -> Vec<Part> {
    let mut parts = Vec::with_capacity(2 * ranges.len() + 1);
    for (i, range) in ranges.iter().enumerate() {
        let head = format!(
            "{}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
            if i == 0 { "" } else { "\r\n" },
            content_range(range, len)
        );
        parts.push(Part::Bytes(Bytes::from(head)));
        parts.push(Part::Range {
            start: *range.start(),
            len: range.end() - range.start() + 1,
        });
    }
    parts.push(Part::Bytes(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_selected_as_rfc_9110_section_14_says() {
        let len = 10_000;
        assert_eq!(select("bytes=0-99", len), Ranges::One(0..=99));
        assert_eq!(select("bytes=9990-", len), Ranges::One(9990..=9999));
        assert_eq!(select("bytes=-100", len), Ranges::One(9900..=9999));
        // A suffix longer than the representation selects all of it.
        assert_eq!(select("bytes=-20000", len), Ranges::One(0..=9999));
        // An end past the last byte is cut to it.
        assert_eq!(select("bytes=9000-20000", len), Ranges::One(9000..=9999));
        assert_eq!(
            select("bytes=0-9,100-199", len),
            Ranges::Several(vec![0..=9, 100..=199])
        );
        // Several ranges that cost more than the whole: the whole.
        assert_eq!(select("bytes=0-4999,5000-9999", len), Ranges::Whole);
        // Malformed: ignored.
        for ignored in ["bytes=abc", "bytes=5-1", "items=0-1", "bytes 0-1", "bytes="] {
            assert_eq!(select(ignored, len), Ranges::Whole, "{ignored}");
        }
        // Nothing inside the representation: 416.
        assert_eq!(select("bytes=10000-", len), Ranges::Unsatisfiable);
        assert_eq!(select("bytes=20000-30000", len), Ranges::Unsatisfiable);
        // Overlapping ranges: refused.
        assert_eq!(
            select("bytes=0-99,50-149,60-159", len),
            Ranges::Unsatisfiable
        );
    }

    #[test]
    fn a_multipart_body_frames_each_range() {
        let parts = multipart(&[0..=1, 5..=6], 10, "text/plain", "B");
        let mut text = Vec::new();
        for part in &parts {
            match part {
                Part::Bytes(bytes) => text.extend_from_slice(bytes),
                Part::Range { start, len } => {
                    text.extend_from_slice(format!("<{start}+{len}>").as_bytes())
                }
            }
        }
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n<0+2>\
             \r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/10\r\n\r\n<5+2>\
             \r\n--B--\r\n"
        );
    }
}
