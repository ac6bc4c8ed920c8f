//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures: verifier keys in the
//! `<name>+<hex key id>+<base64(0x01 || public key)>` text form, key ids, signing, and opening a
//! note against one trusted key. Parsing accepts any bytes and never panics.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type identifier byte for Ed25519 (signed-note "Signature types").
pub const ALG_ED25519: u8 = 0x01;
/// The signature line prefix: EM DASH (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Most signature lines a note may carry before it is rejected (the spec asks for at least 16).
const MAX_SIGNATURES: usize = 100;

/// Why a note or key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The verifier key text is malformed (`reason` says how).
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
    /// The note is malformed (`reason` says how).
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A signature line from the trusted key (name and key id match) does not verify.
    #[error("signature by {name} does not verify")]
    BadSignature {
        /// Key name on the line.
        name: String,
    },
    /// No signature line is from the trusted key. `names` lists the lines' key names.
    #[error("no signature from the trusted key (signed by: {names:?})")]
    UnknownKey {
        /// Key names found on the signature lines.
        names: Vec<String>,
    },
}

/// The key id: the first four bytes, big-endian, of `SHA-256(name || 0x0A || 0x01 || public key)`.
#[must_use]
pub fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    u32::from_be_bytes(id)
}

/// A key name is non-empty and holds no Unicode space and no `+`.
#[must_use]
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// A trusted Ed25519 note verifier key.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifierKey {
    name: String,
    id: u32,
    public: VerifyingKey,
}

impl std::fmt::Debug for NoteVerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl NoteVerifierKey {
    /// A verifier key for `name` and `public`.
    pub fn new(name: &str, public: VerifyingKey) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::BadVerifierKey("invalid key name"));
        }
        Ok(Self { name: name.to_owned(), id: key_id(name, &public), public })
    }

    /// Parses `<name>+<8 hex digits>+<base64(0x01 || 32-byte key)>`; the id must match the key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim_end_matches(['\n', '\r']);
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadVerifierKey("expected name+id+key"));
        };
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadVerifierKey("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16)
            .map_err(|_| NoteError::BadVerifierKey("key id is not 8 hex digits"))?;
        let raw =
            B64.decode(key_b64).map_err(|_| NoteError::BadVerifierKey("key is not base64"))?;
        let Some((&alg, key)) = raw.split_first() else {
            return Err(NoteError::BadVerifierKey("empty key"));
        };
        if alg != ALG_ED25519 {
            return Err(NoteError::BadVerifierKey("not an Ed25519 key"));
        }
        let key: [u8; 32] =
            key.try_into().map_err(|_| NoteError::BadVerifierKey("Ed25519 key is not 32 bytes"))?;
        let public = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::BadVerifierKey("not a valid Ed25519 point"))?;
        let parsed = Self::new(name, public)?;
        if parsed.id != id {
            return Err(NoteError::BadVerifierKey("key id does not match key"));
        }
        Ok(parsed)
    }

    /// The text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.public.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// Key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public
    }
}

/// Checks the text rules common to notes: valid UTF-8 (by type), no control characters but `\n`.
fn check_characters(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

/// Signs `text` (which must end in a newline and hold no blank-line-free violations) as `name`,
/// returning the complete note: text, blank line, one signature line.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text does not end in a newline"));
    }
    check_characters(text)?;
    if !is_valid_key_name(name) {
        return Err(NoteError::BadVerifierKey("invalid key name"));
    }
    let id = key_id(name, &key.verifying_key());
    let sig = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&id.to_be_bytes());
    blob.extend_from_slice(&sig.to_bytes());
    Ok(format!("{text}\n{SIG_PREFIX}{name} {}\n", B64.encode(blob)))
}

/// Opens a signed note: splits text from signatures at the last blank line, ignores signatures
/// from other keys, and verifies the trusted key's signature. Returns the note text (with its
/// final newline). Fails when the trusted key's signature is missing or bad.
pub fn open_note<'a>(note: &'a [u8], key: &NoteVerifierKey) -> Result<&'a str, NoteError> {
    let note = std::str::from_utf8(note).map_err(|_| NoteError::Malformed("not UTF-8"))?;
    check_characters(note)?;
    let split =
        note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let text = note.get(..=split).ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let sigs = note.get(split + 2..).ok_or(NoteError::Malformed("no signatures"))?;
    if sigs.is_empty() {
        return Err(NoteError::Malformed("no signatures"));
    }
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::Malformed("signature block does not end in a newline"));
    };
    let mut names = Vec::new();
    let mut verified = false;
    for (count, line) in sigs.split('\n').enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(NoteError::Malformed("signature line does not start with an em dash"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line has no space after the name"))?;
        if !is_valid_key_name(name) {
            return Err(NoteError::Malformed("invalid key name on signature line"));
        }
        let blob = B64.decode(b64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
        let Some((id_bytes, sig_bytes)) = blob.split_first_chunk::<4>() else {
            return Err(NoteError::Malformed("signature shorter than a key id"));
        };
        names.push(name.to_owned());
        if name != key.name || u32::from_be_bytes(*id_bytes) != key.id {
            continue;
        }
        let bad = || NoteError::BadSignature { name: name.to_owned() };
        let sig_bytes: [u8; 64] = sig_bytes.try_into().map_err(|_| bad())?;
        key.public
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| bad())?;
        verified = true;
    }
    if verified {
        Ok(text)
    } else {
        Err(NoteError::UnknownKey { names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From golang.org/x/mod/sumdb/note's note_test.go (TestNewVerifier / TestOpen): a published
    // verifier key, note text and signature.
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    // The same test's signer key, "PRIVATE+KEY+PeterNeumann+c74f20a3+" followed by base64 of
    // 0x01 || this 32-byte seed.
    const GO_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

    fn go_note() -> String {
        format!("{GO_TEXT}\n{GO_SIG_LINE}")
    }

    #[test]
    fn opens_go_reference_note() {
        let key = NoteVerifierKey::parse(GO_VKEY).unwrap();
        assert_eq!(key.id(), 0xc74f_20a3);
        assert_eq!(key.to_text(), GO_VKEY);
        assert_eq!(open_note(go_note().as_bytes(), &key).unwrap(), GO_TEXT);
    }

    #[test]
    fn signing_reproduces_go_reference_note() {
        let raw = B64.decode(GO_SKEY_B64).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        let seed: [u8; 32] = raw[1..].try_into().unwrap();
        let key = SigningKey::from_bytes(&seed);
        assert_eq!(sign_note(GO_TEXT, "PeterNeumann", &key).unwrap(), go_note());
    }

    #[test]
    fn rejects_altered_text() {
        let key = NoteVerifierKey::parse(GO_VKEY).unwrap();
        let altered = go_note().replace("cryptography", "cryptographY");
        assert_eq!(
            open_note(altered.as_bytes(), &key),
            Err(NoteError::BadSignature { name: "PeterNeumann".into() })
        );
    }

    #[test]
    fn rejects_note_signed_only_by_unknown_key() {
        let other = SigningKey::from_bytes(&[7; 32]);
        let note = sign_note(GO_TEXT, "someone-else", &other).unwrap();
        let key = NoteVerifierKey::parse(GO_VKEY).unwrap();
        assert_eq!(
            open_note(note.as_bytes(), &key),
            Err(NoteError::UnknownKey { names: vec!["someone-else".into()] })
        );
    }

    #[test]
    fn ignores_extra_signatures_from_other_keys() {
        let other = SigningKey::from_bytes(&[7; 32]);
        let extra = sign_note(GO_TEXT, "witness", &other).unwrap();
        let extra_line = extra.rsplit_once("\n\n").unwrap().1;
        let note = format!("{}{extra_line}", go_note());
        let key = NoteVerifierKey::parse(GO_VKEY).unwrap();
        assert_eq!(open_note(note.as_bytes(), &key).unwrap(), GO_TEXT);
    }

    #[test]
    fn rejects_mangled_verifier_keys() {
        let b = GO_VKEY.as_bytes();
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(NoteVerifierKey::parse(s).is_err(), "accepted {s}");
            }
        }
        for end in 0..b.len() {
            let s = std::str::from_utf8(&b[..end]).unwrap();
            assert!(NoteVerifierKey::parse(s).is_err(), "accepted prefix {s}");
        }
    }

    #[test]
    fn every_truncated_prefix_of_a_note_fails_to_open() {
        let key = NoteVerifierKey::parse(GO_VKEY).unwrap();
        let note = go_note();
        for end in 0..note.len() {
            assert!(open_note(&note.as_bytes()[..end], &key).is_err(), "prefix {end}");
        }
    }
}
