//! Fixed-length byte strings that serialize as lowercase hex: the representation of digests,
//! measurements and identifiers in claims, reference values and audit entries.

use std::fmt;

/// `N` bytes, shown and serialized as `2N` lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexBytes<const N: usize>(pub [u8; N]);

impl<const N: usize> HexBytes<N> {
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }

    /// Parses exactly `2N` hex digits (either case).
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }

    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl<const N: usize> Default for HexBytes<N> {
    fn default() -> Self {
        Self([0; N])
    }
}

impl<const N: usize> From<[u8; N]> for HexBytes<N> {
    fn from(b: [u8; N]) -> Self {
        Self(b)
    }
}

impl<const N: usize> fmt::Debug for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl<const N: usize> fmt::Display for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl<const N: usize> serde::Serialize for HexBytes<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de, const N: usize> serde::Deserialize<'de> for HexBytes<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&s)
            .map_err(|_| serde::de::Error::custom(format_args!("expected {} hex digits", N * 2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_as_lowercase_hex() {
        let v = HexBytes([0xab, 0x01]);
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, "\"ab01\"");
        assert_eq!(serde_json::from_str::<HexBytes<2>>("\"AB01\"").unwrap(), v);
    }

    #[test]
    fn rejects_wrong_length() {
        assert!(serde_json::from_str::<HexBytes<2>>("\"ab\"").is_err());
        assert!(serde_json::from_str::<HexBytes<2>>("\"ab0102\"").is_err());
    }
}
