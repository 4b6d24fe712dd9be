//! HTTP Range requests (RFC 9110, section 14): one byte range of a
//! document. A request for several ranges gets the whole document, which
//! the RFC allows; a range that starts past the end is unsatisfiable.

use std::ops::Range;

/// What a `Range` header asks of a document of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Not a single byte range this serves: answer with everything.
    Ignored,
    /// These bytes, within the document.
    Part(Range<u64>),
    /// A range that holds no byte of the document: 416.
    Unsatisfiable,
}

/// Parse a `Range` header for a document of `len` bytes.
pub fn parse(header: &str, len: u64) -> Asked {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Asked::Ignored;
    };
    if spec.contains(',') {
        return Asked::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Asked::Ignored;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Longer than any u64: as good as infinite.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Asked::Unsatisfiable
            } else {
                Asked::Part(len.saturating_sub(n)..len)
            }
        }
        // bytes=A- or bytes=A-B.
        (false, Some(a), end) if last.trim().is_empty() || end.is_some() => {
            if a >= len {
                return Asked::Unsatisfiable;
            }
            match end {
                Some(b) if b < a => Asked::Ignored,
                Some(b) => Asked::Part(a..b.saturating_add(1).min(len)),
                None => Asked::Part(a..len),
            }
        }
        _ => Asked::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_are_cut_to_the_document() {
        assert_eq!(parse("bytes=0-99", 1000), Asked::Part(0..100));
        assert_eq!(parse("bytes=900-", 1000), Asked::Part(900..1000));
        assert_eq!(parse("bytes=900-5000", 1000), Asked::Part(900..1000));
        assert_eq!(parse("bytes=-100", 1000), Asked::Part(900..1000));
        assert_eq!(parse("bytes=-5000", 1000), Asked::Part(0..1000));
        assert_eq!(
            parse("bytes=0-99999999999999999999999", 10),
            Asked::Part(0..10)
        );
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable_and_the_rest_ignored() {
        assert_eq!(parse("bytes=1000-", 1000), Asked::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Asked::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Asked::Unsatisfiable);
        for h in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "items=0-1",
            "bytes=+1-2",
            "",
        ] {
            assert_eq!(parse(h, 1000), Asked::Ignored, "{h}");
        }
    }
}
