//! The `soft` backend: AES-256 key-encryption keys in a local file (mode 0600), for quick starts
//! and development only. The file is a JSON object `{"current": id, "keys": {id: hex}}`; it is
//! created with mode 0600 atomically, replaced atomically (write a 0600 temporary, fsync, rename)
//! on rotation and retirement, and refused when its permissions are looser. The BYOK import key
//! (RSA-3072, PKCS#8 PEM, 0600) sits next to it as `<kek file>.import-key.pem`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use rand_core::{OsRng, RngCore};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use rsa::{Oaep, RsaPrivateKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::byok::{self, EPHEMERAL_KEY_LEN};
use crate::{
    Keystore, KeystoreError, KeystoreInfo, ResourceBinding, SealAlgorithm, SealedResource,
};

/// The soft backend's import key size (bits).
const IMPORT_KEY_BITS: usize = 3072;

/// KEK ids are `soft-kek-<n>`; the highest `n` is current after a rotation.
const KEK_PREFIX: &str = "soft-kek-";

/// The largest resource `generate` makes (bytes).
pub const MAX_GENERATED_LEN: usize = 4096;

#[derive(Serialize, Deserialize)]
struct KekFile {
    current: String,
    keys: BTreeMap<String, String>,
}

/// The KEKs in memory, as the file holds them.
struct Keks {
    current: String,
    keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
}

impl Keks {
    /// The file form; the caller zeroizes the serialized bytes.
    fn to_file_bytes(&self) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        let file = KekFile {
            current: self.current.clone(),
            keys: self.keys.iter().map(|(id, k)| (id.clone(), hex::encode(k.as_ref()))).collect(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| KeystoreError::Config(e.to_string()));
        let KekFile { keys, .. } = file;
        for (_, hex_key) in keys {
            drop(Zeroizing::new(hex_key));
        }
        bytes.map(Zeroizing::new)
    }

    /// Ids oldest first (by their number, so `soft-kek-10` follows `soft-kek-9`).
    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys.keys().cloned().collect();
        ids.sort_by_key(|id| (kek_number(id), id.clone()));
        ids
    }
}

fn kek_number(id: &str) -> u64 {
    id.strip_prefix(KEK_PREFIX).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// KEKs loaded from a file. No `Debug` that prints them.
pub struct SoftKeystore {
    path: PathBuf,
    keks: RwLock<Keks>,
}

impl std::fmt::Debug for SoftKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftKeystore")
            .field("path", &self.path)
            .field("current", &self.read().current)
            .finish_non_exhaustive()
    }
}

impl SoftKeystore {
    /// Creates a new KEK file with one fresh key; fails if the file exists.
    pub fn create(path: &Path) -> Result<Self, KeystoreError> {
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let id = format!("{KEK_PREFIX}1");
        let keks = Keks { current: id.clone(), keys: BTreeMap::from([(id, key)]) };
        write_private_file(path, &keks.to_file_bytes()?)?;
        Ok(Self { path: path.to_path_buf(), keks: RwLock::new(keks) })
    }

    /// Loads a KEK file; refuses one that group or others may read.
    pub fn open(path: &Path) -> Result<Self, KeystoreError> {
        let text = read_private_file(path)?;
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
        let KekFile { current, keys: hex_keys } = file;
        for (_, hex_key) in hex_keys {
            drop(Zeroizing::new(hex_key));
        }
        Ok(Self { path: path.to_path_buf(), keks: RwLock::new(Keks { current, keys }) })
    }

    /// Where the BYOK import key lives: next to the KEK file.
    #[must_use]
    pub fn import_key_path(&self) -> PathBuf {
        let mut name = self.path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
        name.push(".import-key.pem");
        self.path.with_file_name(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keks> {
        self.keks.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The AES-256-GCM key of `kek_id` (aws-lc-rs).
    fn cipher(&self, kek_id: &str) -> Result<LessSafeKey, KeystoreError> {
        let keks = self.read();
        let key = keks.keys.get(kek_id).ok_or_else(|| KeystoreError::UnknownKek(kek_id.into()))?;
        UnboundKey::new(&AES_256_GCM, key.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| KeystoreError::InvalidInput("KEK length"))
    }

    /// The import key from its file, created (0600) when `create` and absent.
    fn import_key(&self, create: bool) -> Result<RsaPrivateKey, KeystoreError> {
        let path = self.import_key_path();
        if !create && !path.exists() {
            return Err(KeystoreError::InvalidInput(
                "no import key yet: fetch the import public key first",
            ));
        }
        if path.exists() {
            let pem = read_private_file(&path)?;
            let text = std::str::from_utf8(&pem)
                .map_err(|_| KeystoreError::Config(format!("{} is not PEM", path.display())))?;
            return RsaPrivateKey::from_pkcs8_pem(text).map_err(|_| {
                KeystoreError::Config(format!("{} is not a PKCS#8 RSA key", path.display()))
            });
        }
        let key = RsaPrivateKey::new(&mut OsRng, IMPORT_KEY_BITS)
            .map_err(|_| KeystoreError::Config("RSA key generation failed".into()))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeystoreError::Config("PKCS#8 encoding failed".into()))?;
        write_private_file(&path, pem.as_bytes())?;
        Ok(key)
    }
}

/// Reads a file that must be private to its owner (no group or other bits).
fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeystoreError::Config(format!(
            "{} is readable by others (mode {:o}); it must be 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", path.display())))
}

/// Creates `path` with mode 0600; fails if it exists.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let mut out =
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| KeystoreError::Config(format!("creating {}: {e}", path.display())))?;
    out.write_all(bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| KeystoreError::Config(format!("writing {}: {e}", path.display())))
}

/// Replaces `path` atomically: a fresh 0600 temporary beside it, fsynced, renamed over it, and
/// the directory fsynced, so a crash leaves either the old or the new file.
fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    // A leftover from a crash holds either the old or the new KEKs, never the only copy.
    let _ = std::fs::remove_file(&tmp);
    write_private_file(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| KeystoreError::Unavailable(format!("replacing {}: {e}", path.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

impl Keystore for SoftKeystore {
    fn describe(&self) -> KeystoreInfo {
        KeystoreInfo {
            backend: "soft",
            location: self.path.display().to_string(),
            current_kek: self.read().current.clone(),
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
        let kek_id = self.read().current.clone();
        let mut ciphertext = plaintext.to_vec();
        self.cipher(&kek_id)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &mut ciphertext,
            )
            .map_err(|_| KeystoreError::InvalidInput("plaintext too long"))?;
        Ok(SealedResource {
            kek_id,
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
        let mut buf = Zeroizing::new(sealed.ciphertext.clone());
        let len = self
            .cipher(&sealed.kek_id)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                buf.as_mut_slice(),
            )
            .map_err(|_| KeystoreError::Integrity)?
            .len();
        buf.truncate(len);
        Ok(buf)
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

    fn import_public_key(&self) -> Result<Vec<u8>, KeystoreError> {
        let key = self.import_key(true)?;
        key.to_public_key()
            .to_public_key_der()
            .map(|der| der.as_bytes().to_vec())
            .map_err(|_| KeystoreError::Config("SPKI encoding failed".into()))
    }

    fn import_wrapped(
        &self,
        binding: &ResourceBinding,
        wrapped: &[u8],
    ) -> Result<SealedResource, KeystoreError> {
        let key = self.import_key(false)?;
        let parts = byok::split_blob(wrapped, key.size())?;
        let ephemeral = Zeroizing::new(
            key.decrypt(Oaep::new::<Sha256>(), parts.rsa).map_err(|_| KeystoreError::Integrity)?,
        );
        if ephemeral.len() != EPHEMERAL_KEY_LEN {
            return Err(KeystoreError::InvalidInput("BYOK ephemeral key must be AES-256"));
        }
        let target = byok::kwp_unwrap(&ephemeral, parts.kwp)?;
        self.seal(binding, &target)
    }

    fn rotate_kek(&self) -> Result<String, KeystoreError> {
        let mut keks = self.keks.write().unwrap_or_else(PoisonError::into_inner);
        let next = keks.keys.keys().map(|id| kek_number(id)).max().unwrap_or(0) + 1;
        let id = format!("{KEK_PREFIX}{next}");
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut());
        let previous = std::mem::replace(&mut keks.current, id.clone());
        keks.keys.insert(id.clone(), key);
        if let Err(e) = replace_private_file(&self.path, &keks.to_file_bytes()?) {
            keks.keys.remove(&id);
            keks.current = previous;
            return Err(e);
        }
        Ok(id)
    }

    fn kek_ids(&self) -> Result<Vec<String>, KeystoreError> {
        Ok(self.read().ids())
    }

    fn retire_kek(&self, kek_id: &str) -> Result<(), KeystoreError> {
        let mut keks = self.keks.write().unwrap_or_else(PoisonError::into_inner);
        if keks.current == kek_id {
            return Err(KeystoreError::InvalidInput("the current KEK cannot be retired"));
        }
        let Some(old) = keks.keys.remove(kek_id) else {
            return Err(KeystoreError::UnknownKek(kek_id.into()));
        };
        if let Err(e) = replace_private_file(&self.path, &keks.to_file_bytes()?) {
            keks.keys.insert(kek_id.to_string(), old);
            return Err(e);
        }
        Ok(())
    }
}
