//! Strict base64 for the wire: URL-safe alphabet without padding, as KBS clients require.
//! Padded or non-canonical input is rejected, never repaired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::WireError;

/// Encodes `bytes` as unpadded base64url.
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded canonical base64url; `what` names the member in the error.
pub fn decode(what: &'static str, s: &str) -> Result<Vec<u8>, WireError> {
    // The engine rejects `=` padding and non-zero trailing bits already; an explicit check keeps
    // the rule visible even if the engine's defaults change.
    if s.contains('=') {
        return Err(WireError::Base64(what));
    }
    URL_SAFE_NO_PAD.decode(s).map_err(|_| WireError::Base64(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_padding_and_standard_alphabet() {
        assert_eq!(decode("x", "AQ"), Ok(vec![1]));
        assert_eq!(decode("x", "AQ=="), Err(WireError::Base64("x")));
        assert_eq!(decode("x", "+w"), Err(WireError::Base64("x")));
        assert_eq!(decode("x", "-w"), Ok(vec![0xfb]));
        // Non-zero trailing bits: "AR" would also decode to 0x01 in a lax decoder.
        assert_eq!(decode("x", "AR"), Err(WireError::Base64("x")));
    }
}
