//! Checkpoints in the C2SP tlog-checkpoint format (origin, tree size, base64 root hash, optional
//! extension lines) signed as C2SP signed notes with the broker's Ed25519 key, and the signer that
//! holds that key. The checkpoint origin is also the signing key's name, and verification insists
//! on it, so a checkpoint cannot be replayed under another log's name.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use ed25519_dalek::SigningKey;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::merkle::Hash;
use crate::note::{self, NoteError, NoteVerifierKey};

/// A parsed (and, when returned by `verify_checkpoint`, verified) checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity; equals the signing key's name.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 tree head at `size`.
    pub root: Hash,
    /// Opaque extension lines (Keylatch writes none).
    pub extensions: Vec<String>,
}

/// Why a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed-note layer failed (signature, key, format).
    #[error("note: {0}")]
    Note(#[from] NoteError),
    /// The note text is not a checkpoint body (`reason` says which line).
    #[error("malformed checkpoint body: {0}")]
    Body(&'static str),
    /// The origin line is not the verifier key's name.
    #[error("checkpoint origin {origin:?} is not the key name {key_name:?}")]
    OriginMismatch {
        /// Origin line.
        origin: String,
        /// Verifier key name.
        key_name: String,
    },
    /// A signing key file could not be read.
    #[error("signing key: {0}")]
    Key(&'static str),
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n[extension\n]*`.
    pub fn to_text(&self) -> Result<String, CheckpointError> {
        if !note::is_valid_key_name(&self.origin) {
            return Err(CheckpointError::Body("origin is not a valid key name"));
        }
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root.0));
        for ext in &self.extensions {
            if ext.is_empty() || ext.contains('\n') {
                return Err(CheckpointError::Body("extension line is empty or multi-line"));
            }
            text.push_str(ext);
            text.push('\n');
        }
        Ok(text)
    }

    /// Parses a checkpoint body (the note text, final newline included).
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Body("text does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Body("empty origin line"));
        }
        let size_line = lines.next().ok_or(CheckpointError::Body("no tree size line"))?;
        let canonical_decimal = !size_line.is_empty()
            && size_line.bytes().all(|b| b.is_ascii_digit())
            && (size_line == "0" || !size_line.starts_with('0'));
        if !canonical_decimal {
            return Err(CheckpointError::Body("tree size is not a canonical decimal"));
        }
        let size = size_line
            .parse::<u64>()
            .map_err(|_| CheckpointError::Body("tree size does not fit 64 bits"))?;
        let root_line = lines.next().ok_or(CheckpointError::Body("no root hash line"))?;
        let root_bytes =
            B64.decode(root_line).map_err(|_| CheckpointError::Body("root hash is not base64"))?;
        let root = <[u8; 32]>::try_from(root_bytes.as_slice())
            .map_err(|_| CheckpointError::Body("root hash is not 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::Body("empty extension line"));
        }
        Ok(Self { origin: origin.to_owned(), size, root: Hash(root), extensions })
    }
}

/// Opens a signed checkpoint with the trusted verifier key and parses its body.
pub fn verify_checkpoint(
    text: &[u8],
    key: &NoteVerifierKey,
) -> Result<Checkpoint, CheckpointError> {
    let body = note::open_note(text, key)?;
    let checkpoint = Checkpoint::parse_body(body)?;
    if checkpoint.origin != key.name() {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin,
            key_name: key.name().to_owned(),
        });
    }
    Ok(checkpoint)
}

/// The broker's checkpoint signing key and log origin. The key is zeroized on drop and never
/// printed.
pub struct CheckpointSigner {
    origin: String,
    key: SigningKey,
    vkey: NoteVerifierKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("origin", &self.origin)
            .field("vkey", &self.vkey.to_text())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A new random key for `origin`.
    pub fn generate(origin: &str, rng: &mut impl CryptoRngCore) -> Result<Self, CheckpointError> {
        Self::from_key(origin, SigningKey::generate(rng))
    }

    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(origin: &str, seed: &Zeroizing<[u8; 32]>) -> Result<Self, CheckpointError> {
        Self::from_key(origin, SigningKey::from_bytes(seed))
    }

    /// From a key file: a 32-byte raw seed, PKCS#8 DER, or PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub fn load(origin: &str, file: &[u8]) -> Result<Self, CheckpointError> {
        if let Ok(seed) = <[u8; 32]>::try_from(file) {
            return Self::from_seed(origin, &Zeroizing::new(seed));
        }
        let key = if file.starts_with(b"-----BEGIN") {
            let pem =
                std::str::from_utf8(file).map_err(|_| CheckpointError::Key("PEM is not UTF-8"))?;
            SigningKey::from_pkcs8_pem(pem)
                .map_err(|_| CheckpointError::Key("not an Ed25519 PKCS#8 PEM key"))?
        } else {
            SigningKey::from_pkcs8_der(file)
                .map_err(|_| CheckpointError::Key("not a raw seed or an Ed25519 PKCS#8 key"))?
        };
        Self::from_key(origin, key)
    }

    fn from_key(origin: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        let vkey = NoteVerifierKey::new(origin, key.verifying_key())?;
        Ok(Self { origin: origin.to_owned(), key, vkey })
    }

    /// The key as PKCS#8 PEM, for writing a new key file (mode 0600 is the caller's job).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, CheckpointError> {
        self.key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|_| CheckpointError::Key("PKCS#8 encoding failed"))
    }

    /// The log origin (= key name).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key auditors configure (`keylatch audit verify --key`).
    #[must_use]
    pub fn verifier_key(&self) -> &NoteVerifierKey {
        &self.vkey
    }

    /// Signs a checkpoint of this log at `size` with head `root`.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash) -> Result<String, CheckpointError> {
        let text =
            Checkpoint { origin: self.origin.clone(), size, root: *root, extensions: Vec::new() }
                .to_text()?;
        Ok(note::sign_note(&text, &self.origin, &self.key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed("keylatch.example/audit", &Zeroizing::new([9; 32])).unwrap()
    }

    #[test]
    fn signed_checkpoint_round_trips() {
        let s = signer();
        let root = Hash([0xab; 32]);
        let text = s.sign_checkpoint(42, &root).unwrap();
        assert!(text.starts_with("keylatch.example/audit\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n\u{2014} keylatch.example/audit "));
        let cp = verify_checkpoint(text.as_bytes(), s.verifier_key()).unwrap();
        assert_eq!(
            cp,
            Checkpoint {
                origin: "keylatch.example/audit".into(),
                size: 42,
                root,
                extensions: vec![]
            }
        );
    }

    #[test]
    fn parses_c2sp_example_body_with_extensions() {
        // The example checkpoint body of c2sp.org/tlog-checkpoint, plus one extension line.
        let text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\next\n";
        let cp = Checkpoint::parse_body(text).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20_852_163);
        assert_eq!(
            cp.root.to_hex(),
            "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
        );
        assert_eq!(cp.extensions, vec!["ext".to_owned()]);
        assert_eq!(cp.to_text().unwrap(), text);
    }

    #[test]
    fn rejects_non_canonical_sizes_and_bad_roots() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        for (size, why) in [
            ("007", "tree size is not a canonical decimal"),
            ("+7", "tree size is not a canonical decimal"),
            ("", "tree size is not a canonical decimal"),
            ("18446744073709551616", "tree size does not fit 64 bits"),
        ] {
            assert_eq!(
                Checkpoint::parse_body(&format!("o\n{size}\n{root}\n")),
                Err(CheckpointError::Body(why))
            );
        }
        assert_eq!(
            Checkpoint::parse_body("o\n0\nAAAA\n"),
            Err(CheckpointError::Body("root hash is not 32 bytes"))
        );
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{root}")),
            Err(CheckpointError::Body("text does not end in a newline"))
        );
    }

    #[test]
    fn rejects_checkpoint_whose_origin_is_not_the_key_name() {
        let s = signer();
        let key = s.key.clone();
        let text = note::sign_note(
            "other.example/log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "keylatch.example/audit",
            &key,
        )
        .unwrap();
        assert_eq!(
            verify_checkpoint(text.as_bytes(), s.verifier_key()),
            Err(CheckpointError::OriginMismatch {
                origin: "other.example/log".into(),
                key_name: "keylatch.example/audit".into()
            })
        );
    }

    #[test]
    fn loads_raw_seed_and_pkcs8_pem_and_der_to_the_same_key() {
        let s = signer();
        let pem = s.to_pkcs8_pem().unwrap();
        let from_pem = CheckpointSigner::load("keylatch.example/audit", pem.as_bytes()).unwrap();
        assert_eq!(from_pem.verifier_key(), s.verifier_key());
        let der = s.key.to_pkcs8_der().unwrap();
        let from_der = CheckpointSigner::load("keylatch.example/audit", der.as_bytes()).unwrap();
        assert_eq!(from_der.verifier_key(), s.verifier_key());
        let from_seed = CheckpointSigner::load("keylatch.example/audit", &[9; 32]).unwrap();
        assert_eq!(from_seed.verifier_key(), s.verifier_key());
        assert_eq!(
            CheckpointSigner::load("keylatch.example/audit", b"junk").unwrap_err(),
            CheckpointError::Key("not a raw seed or an Ed25519 PKCS#8 key")
        );
    }

    #[test]
    fn debug_does_not_print_the_private_key() {
        let s = signer();
        let debug = format!("{s:?}");
        assert!(debug.contains("keylatch.example/audit"));
        let seed_b64 = B64.encode([9u8; 32]);
        assert!(!debug.contains(&seed_b64));
        assert!(!debug.contains(&hex::encode([9u8; 32])));
    }
}
