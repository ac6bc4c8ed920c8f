//! A bounds-checked cursor over borrowed bytes, the only way this crate's parsers read binary
//! evidence. Nothing indexes a slice directly; every short read is a typed [`Reason::Truncated`]
//! and leftover bytes are [`Reason::TrailingData`]. (Written here rather than taken from a crate
//! because it is twenty lines and must produce our own error type.)

use crate::error::Reason;

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    offset: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Self { buf, offset: 0, what }
    }

    /// Bytes consumed so far (the offset of the next read in the original buffer).
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.offset
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Reason> {
        let available = self.remaining();
        let truncated = Reason::Truncated {
            what: self.what,
            needed: self.offset.saturating_add(n),
            available: self.buf.len(),
        };
        if n > available {
            return Err(truncated);
        }
        let out = self.buf.get(self.offset..self.offset + n).ok_or(truncated)?;
        self.offset += n;
        Ok(out)
    }

    pub(crate) fn take_array<const N: usize>(&mut self) -> Result<[u8; N], Reason> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Reason> {
        Ok(self.take_array::<1>()?[0])
    }

    pub(crate) fn u16_le(&mut self) -> Result<u16, Reason> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, Reason> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, Reason> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// Big-endian reads, for TPM 2.0 structures (which are marshalled big-endian).
    pub(crate) fn u16_be(&mut self) -> Result<u16, Reason> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    pub(crate) fn u32_be(&mut self) -> Result<u32, Reason> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    pub(crate) fn u64_be(&mut self) -> Result<u64, Reason> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    /// A sub-reader over the next `n` bytes, named for its own errors.
    pub(crate) fn sub(&mut self, what: &'static str, n: usize) -> Result<Reader<'a>, Reason> {
        Ok(Reader::new(what, self.take(n)?))
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.offset..).unwrap_or_default();
        self.offset = self.buf.len();
        out
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn expect_end(&self) -> Result<(), Reason> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(Reason::TrailingData { what: self.what, extra }),
        }
    }

    /// Consumes `n` bytes that must all be zero (reserved fields).
    pub(crate) fn reserved_zero(&mut self, field: &'static str, n: usize) -> Result<(), Reason> {
        let offset = self.offset;
        if self.take(n)?.iter().any(|b| *b != 0) {
            return Err(Reason::ReservedNonZero { what: field, offset });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_read_is_truncated_not_panic() {
        let mut r = Reader::new("thing", &[1, 2, 3]);
        assert_eq!(r.u16_le().unwrap(), 0x0201);
        assert_eq!(r.u16_le(), Err(Reason::Truncated { what: "thing", needed: 4, available: 3 }));
        assert_eq!(r.u8().unwrap(), 3);
        assert!(r.expect_end().is_ok());
    }

    #[test]
    fn leftover_is_trailing_data() {
        let r = Reader::new("thing", &[0]);
        assert_eq!(r.expect_end(), Err(Reason::TrailingData { what: "thing", extra: 1 }));
    }

    #[test]
    fn reserved_must_be_zero() {
        let mut r = Reader::new("thing", &[0, 0, 1]);
        assert!(r.reserved_zero("a", 2).is_ok());
        assert_eq!(r.reserved_zero("b", 1), Err(Reason::ReservedNonZero { what: "b", offset: 2 }));
    }
}
