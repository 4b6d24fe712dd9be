//! The one byte reader and writer every parser in `wire` goes through.
//!
//! Modelled on arti's `tor-bytes`: a cursor over a borrowed slice whose
//! methods never panic and never allocate more than the bytes that are left.
//! A length-prefixed field is read through [`Reader::take_sub`], a nested
//! reader that the caller must consume to the last byte
//! ([`Reader::finish`]), so trailing garbage inside a field is an error and
//! not silently ignored.

use super::Error;

/// A cursor over bytes that came from somewhere we do not trust.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What is being parsed, for error messages.
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Consume exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                what: self.what,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Consume everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A boolean encoded as one byte that must be 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Error::BadValue {
                what,
                value: u64::from(v),
            }),
        }
    }

    /// A nested reader over the next `n` bytes, for a length-prefixed field.
    pub fn take_sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, Error> {
        Ok(Reader::new(self.take(n)?, what))
    }

    /// A length given by the peer, checked against a bound we chose and
    /// against what is actually left, before anything is sized by it.
    pub fn bounded_len(&self, len: usize, max: usize, what: &'static str) -> Result<usize, Error> {
        if len > max {
            return Err(Error::TooLong { what, len, max });
        }
        if len > self.remaining() {
            return Err(Error::Truncated {
                what,
                needed: len - self.remaining(),
            });
        }
        Ok(len)
    }

    /// A count of items given by the peer, each at least `min_item` bytes:
    /// bounded by `max` and by what the remaining bytes could possibly hold,
    /// so it can size a `Vec` safely.
    pub fn bounded_count(
        &self,
        count: usize,
        max: usize,
        min_item: usize,
        what: &'static str,
    ) -> Result<usize, Error> {
        if count > max {
            return Err(Error::TooLong {
                what,
                len: count,
                max,
            });
        }
        let fits = self.remaining() / min_item.max(1);
        if count > fits {
            return Err(Error::Truncated {
                what,
                needed: (count - fits) * min_item,
            });
        }
        Ok(count)
    }

    /// Every parse ends here: nothing may be left over.
    pub fn finish(self) -> Result<(), Error> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(Error::TrailingBytes {
                what: self.what,
                extra,
            }),
        }
    }

    /// For fixed-size bodies: the rest must be zero padding.
    pub fn finish_zero_padded(self) -> Result<(), Error> {
        if self.buf[self.pos..].iter().any(|&b| b != 0) {
            return Err(Error::NonZeroPadding { what: self.what });
        }
        Ok(())
    }
}

/// An append-only writer. Encoding our own values cannot fail except when a
/// value breaks a bound that the parser would also reject; those checks live
/// in the encoders, which return [`Error`] rather than emit bytes that no
/// honest peer would accept.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A length that must fit both the format's bound and its prefix width.
    pub fn len_u16(&mut self, len: usize, max: usize, what: &'static str) -> Result<(), Error> {
        self.u16(narrow(len, max, what)?);
        Ok(())
    }

    pub fn len_u32(&mut self, len: usize, max: usize, what: &'static str) -> Result<(), Error> {
        self.u32(narrow(len, max, what)?);
        Ok(())
    }

    pub fn count_u8(&mut self, count: usize, max: usize, what: &'static str) -> Result<(), Error> {
        self.u8(narrow(count, max, what)?);
        Ok(())
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
}

/// `len`, checked against the format's bound, in the prefix's width.
fn narrow<T: TryFrom<usize>>(len: usize, max: usize, what: &'static str) -> Result<T, Error> {
    if len > max {
        return Err(Error::TooLong { what, len, max });
    }
    T::try_from(len).map_err(|_| Error::TooLong { what, len, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_never_run_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3], "test");
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(
            r.u16(),
            Err(Error::Truncated {
                what: "test",
                needed: 1
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.u8().unwrap(), 3);
        r.finish().unwrap();
    }

    #[test]
    fn bounded_count_refuses_counts_the_input_cannot_hold() {
        let r = Reader::new(&[0; 10], "list");
        assert_eq!(r.bounded_count(5, 100, 2, "list"), Ok(5));
        assert!(matches!(
            r.bounded_count(6, 100, 2, "list"),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            r.bounded_count(101, 100, 0, "list"),
            Err(Error::TooLong { .. })
        ));
    }

    #[test]
    fn finish_reports_trailing_bytes_and_padding() {
        let mut r = Reader::new(&[7, 0, 0], "x");
        r.u8().unwrap();
        r.clone().finish_zero_padded().unwrap();
        assert_eq!(
            r.finish(),
            Err(Error::TrailingBytes {
                what: "x",
                extra: 2
            })
        );
        let mut r = Reader::new(&[7, 0, 1], "x");
        r.u8().unwrap();
        assert_eq!(
            r.finish_zero_padded(),
            Err(Error::NonZeroPadding { what: "x" })
        );
    }
}
