//! The `soft` backend: AES-256 key-encryption keys in a local file (mode 0600), for quick starts
//! and development only. The file is a JSON object `{"current": id, "keys": {id: hex}}`; it is
//! created with mode 0600 atomically and refused when its permissions are looser.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{
    Keystore, KeystoreError, KeystoreInfo, ResourceBinding, SealAlgorithm, SealedResource,
};

/// The largest resource `generate` makes (bytes).
pub const MAX_GENERATED_LEN: usize = 4096;

#[derive(Serialize, Deserialize)]
struct KekFile {
    current: String,
    keys: BTreeMap<String, String>,
}

/// KEKs loaded from a file. No `Debug` that prints them.
pub struct SoftKeystore {
    path: PathBuf,
    current: String,
    keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for SoftKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftKeystore")
            .field("path", &self.path)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl SoftKeystore {
    /// Creates a new KEK file with one fresh key; fails if the file exists.
    pub fn create(path: &Path) -> Result<Self, KeystoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let id = "soft-kek-1".to_string();
        let file = KekFile {
            current: id.clone(),
            keys: BTreeMap::from([(id.clone(), hex::encode(key.as_ref()))]),
        };
        let text = Zeroizing::new(
            serde_json::to_vec(&file).map_err(|e| KeystoreError::Config(e.to_string()))?,
        );
        drop(file);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| KeystoreError::Config(format!("creating {}: {e}", path.display())))?;
        out.write_all(&text)
            .and_then(|()| out.sync_all())
            .map_err(|e| KeystoreError::Config(format!("writing {}: {e}", path.display())))?;
        Ok(Self {
            path: path.to_path_buf(),
            current: id.clone(),
            keys: BTreeMap::from([(id, key)]),
        })
    }

    /// Loads a KEK file; refuses one that group or others may read.
    pub fn open(path: &Path) -> Result<Self, KeystoreError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeystoreError::Config(format!(
                "{} is readable by others (mode {:o}); it must be 0600",
                path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        let text = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", path.display())))?,
        );
        let file: KekFile = serde_json::from_slice(&text)
            .map_err(|_| KeystoreError::Config(format!("{} is not a KEK file", path.display())))?;
        let mut keys = BTreeMap::new();
        for (id, hex_key) in &file.keys {
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_key, key.as_mut())
                .map_err(|_| KeystoreError::Config(format!("KEK {id} is not 32 bytes of hex")))?;
            keys.insert(id.clone(), key);
        }
        if !keys.contains_key(&file.current) {
            return Err(KeystoreError::Config(format!("current KEK {} is missing", file.current)));
        }
        Ok(Self { path: path.to_path_buf(), current: file.current, keys })
    }

    fn cipher(&self, kek_id: &str) -> Result<Aes256Gcm, KeystoreError> {
        let key = self.keys.get(kek_id).ok_or_else(|| KeystoreError::UnknownKek(kek_id.into()))?;
        Aes256Gcm::new_from_slice(key.as_ref())
            .map_err(|_| KeystoreError::InvalidInput("KEK length"))
    }
}

impl Keystore for SoftKeystore {
    fn describe(&self) -> KeystoreInfo {
        KeystoreInfo {
            backend: "soft",
            location: self.path.display().to_string(),
            current_kek: self.current.clone(),
            development_only: true,
        }
    }

    fn health(&self) -> Result<(), KeystoreError> {
        Ok(())
    }

    fn seal(
        &self,
        binding: &ResourceBinding,
        plaintext: &[u8],
    ) -> Result<SealedResource, KeystoreError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let aad = binding.aad();
        let ciphertext = self
            .cipher(&self.current)?
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| KeystoreError::InvalidInput("plaintext too long"))?;
        Ok(SealedResource {
            kek_id: self.current.clone(),
            algorithm: SealAlgorithm::Aes256Gcm,
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    fn unseal(
        &self,
        binding: &ResourceBinding,
        sealed: &SealedResource,
    ) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        let nonce: [u8; 12] =
            sealed.nonce.as_slice().try_into().map_err(|_| KeystoreError::Integrity)?;
        let aad = binding.aad();
        self.cipher(&sealed.kek_id)?
            .decrypt(&Nonce::from(nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| KeystoreError::Integrity)
    }

    fn generate(
        &self,
        binding: &ResourceBinding,
        len: usize,
    ) -> Result<SealedResource, KeystoreError> {
        if len == 0 || len > MAX_GENERATED_LEN {
            return Err(KeystoreError::InvalidInput("generated key length must be 1..=4096 bytes"));
        }
        let mut key = Zeroizing::new(vec![0u8; len]);
        OsRng.fill_bytes(&mut key);
        self.seal(binding, &key)
    }
}
