//! Deterministic CBOR (RFC 8949 §4.2.1, "core deterministic encoding") for signed payloads:
//! shortest-form integers and lengths, definite lengths only, and map entries sorted by the
//! bytewise order of their encoded keys. The same bundle always encodes to the same bytes, and a
//! payload that is not in this form is refused, so one bundle has exactly one signed encoding.

use ciborium::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be put into, or read from, deterministic CBOR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("CBOR encoding failed")]
    Encode,
    #[error("payload is not CBOR: {0}")]
    Decode(String),
    #[error("payload holds a floating-point number, which bundles never contain")]
    Float,
    #[error("payload map has a duplicate key")]
    DuplicateKey,
    #[error("payload is not in deterministic CBOR encoding")]
    NotDeterministic,
    #[error("payload does not fit the bundle schema: {0}")]
    Schema(String),
}

/// Encodes `value` deterministically.
pub(crate) fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let tree = Value::serialized(value).map_err(|_| CanonicalError::Encode)?;
    let tree = sort_maps(tree)?;
    encode(&tree)
}

/// Decodes `bytes`, requiring that they are exactly the deterministic encoding of the result.
pub(crate) fn from_slice<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, CanonicalError> {
    let tree: Value =
        ciborium::from_reader(bytes).map_err(|e| CanonicalError::Decode(e.to_string()))?;
    let value: T = tree.deserialized().map_err(|e| CanonicalError::Schema(e.to_string()))?;
    if to_vec(&value)? != bytes {
        return Err(CanonicalError::NotDeterministic);
    }
    Ok(value)
}

fn encode(tree: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    ciborium::into_writer(tree, &mut out).map_err(|_| CanonicalError::Encode)?;
    Ok(out)
}

fn sort_maps(tree: Value) -> Result<Value, CanonicalError> {
    Ok(match tree {
        Value::Float(_) => return Err(CanonicalError::Float),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(sort_maps).collect::<Result<_, _>>()?)
        }
        Value::Tag(tag, inner) => Value::Tag(tag, Box::new(sort_maps(*inner)?)),
        Value::Map(entries) => {
            let mut keyed = entries
                .into_iter()
                .map(|(k, v)| {
                    let k = sort_maps(k)?;
                    Ok((encode(&k)?, k, sort_maps(v)?))
                })
                .collect::<Result<Vec<_>, CanonicalError>>()?;
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
                return Err(CanonicalError::DuplicateKey);
            }
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        other => other,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: tests fail loudly on purpose
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Sample {
        zeta: u64,
        a: String,
        mid: Vec<u8>,
    }

    #[test]
    fn sorts_map_keys_by_encoded_bytes_and_uses_shortest_integers() {
        let s = Sample { zeta: 1, a: "x".into(), mid: vec![500u16.to_le_bytes()[0]] };
        let bytes = to_vec(&s).unwrap();
        // map(3), "a" => "x", "mid" => [0xf4], "zeta" => 1
        assert_eq!(hex::encode(&bytes), "a361616178636d69648118f4647a65746101");
        assert_eq!(from_slice::<Sample>(&bytes).unwrap(), s);
    }

    #[test]
    fn rejects_same_value_in_non_deterministic_order() {
        // map(3) with "zeta" first: valid CBOR, same value, wrong order.
        let bytes = hex::decode("a3647a657461016161617863 6d69648118f4".replace(' ', "")).unwrap();
        assert_eq!(from_slice::<Sample>(&bytes).unwrap_err(), CanonicalError::NotDeterministic);
    }

    #[test]
    fn rejects_non_shortest_integer() {
        // "zeta" => 1 encoded as a one-byte-argument integer (0x18 0x01).
        let bytes = hex::decode("a361616178636d69648118f4647a6574611801").unwrap();
        assert_eq!(from_slice::<Sample>(&bytes).unwrap_err(), CanonicalError::NotDeterministic);
    }

    #[test]
    fn rejects_trailing_garbage_and_truncation() {
        let good = hex::decode("a361616178636d69648118f4647a65746101").unwrap();
        let mut long = good.clone();
        long.push(0);
        assert!(from_slice::<Sample>(&long).is_err());
        for n in 0..good.len() {
            assert!(from_slice::<Sample>(&good[..n]).is_err(), "prefix {n}");
        }
    }
}
