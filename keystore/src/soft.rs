//! The `soft` backend: AES-256 key-encryption keys in a local file (mode 0600), for quick starts
//! and development only. The file is a JSON object `{"current": id, "keys": {id: hex}}`; it is
//! created with mode 0600 atomically, replaced atomically (write a 0600 temporary, fsync, rename)
//! on rotation and retirement (keeping its owner), and refused when its permissions are looser.
//! The BYOK import key (RSA-3072, PKCS#8 PEM, 0600) sits next to it as `<kek file>.import-key.pem`.
//!
//! Several processes share the file (the broker, and `keylatch kek rotate|retire` run beside
//! it), as replicas share a PKCS#11 token: every operation first compares the file's identity
//! (device, inode, size, modification time) with the one it last read and re-reads it when it
//! changed, so a running broker seals under a KEK rotated by another process, opens what it
//! sealed, and forgets a retired KEK without a restart. A rotation or retirement re-reads the
//! file under the write lock before changing it, so it never drops another process's KEK.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
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

/// What identifies one state of the KEK file: device, inode, size, modification time (ns).
/// A replacement is a new inode (renamed over the old one while both exist), so it always differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64, u64, u64, i128);

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        Self(meta.dev(), meta.ino(), meta.size(), mtime)
    }
}

/// The KEKs in memory, as the file holds them.
struct Keks {
    current: String,
    keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
    /// The file state they were read from; `None` after this process wrote the file (re-read
    /// at the next operation).
    stamp: Option<Stamp>,
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
        let keks = Keks { current: id.clone(), keys: BTreeMap::from([(id, key)]), stamp: None };
        write_private_file(path, &keks.to_file_bytes()?)?;
        Ok(Self { path: path.to_path_buf(), keks: RwLock::new(keks) })
    }

    /// Loads a KEK file; refuses one that group or others may read.
    pub fn open(path: &Path) -> Result<Self, KeystoreError> {
        Ok(Self { path: path.to_path_buf(), keks: RwLock::new(load(path)?) })
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

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keks> {
        self.keks.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the file when another process (or this one) changed it since it was last read.
    /// A file that is gone or unreadable fails the operation (and `/readyz`).
    fn refresh(&self) -> Result<(), KeystoreError> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", self.path.display())))?;
        if self.read().stamp == Some(Stamp::of(&meta)) {
            return Ok(());
        }
        let mut keks = self.write();
        *keks = load(&self.path)?;
        Ok(())
    }

    /// Applies `change` to the KEKs the file holds now (re-read under the write lock) and
    /// writes the result over it; memory is updated only once the file is.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Keks) -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        let mut keks = self.write();
        let mut next = load(&self.path)?;
        let out = change(&mut next)?;
        replace_private_file(&self.path, &next.to_file_bytes()?)?;
        next.stamp = None;
        *keks = next;
        Ok(out)
    }

    /// The id and AES-256-GCM key (aws-lc-rs) of `kek_id`, or of the current KEK when `None`,
    /// from the file as it is now.
    fn cipher(&self, kek_id: Option<&str>) -> Result<(String, LessSafeKey), KeystoreError> {
        self.refresh()?;
        let keks = self.read();
        let id = kek_id.unwrap_or(&keks.current);
        let key = keks.keys.get(id).ok_or_else(|| KeystoreError::UnknownKek(id.into()))?;
        let cipher = UnboundKey::new(&AES_256_GCM, key.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| KeystoreError::InvalidInput("KEK length"))?;
        Ok((id.to_owned(), cipher))
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
            let (pem, _) = read_private_file(&path)?;
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

/// Reads the KEK file at `path` (private to its owner) with the stamp of what was read.
fn load(path: &Path) -> Result<Keks, KeystoreError> {
    let (text, meta) = read_private_file(path)?;
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
    Ok(Keks { current, keys, stamp: Some(Stamp::of(&meta)) })
}

/// Reads a file that must be private to its owner (no group or other bits), with the metadata
/// of the very file read (one open, so a concurrent replacement cannot mix the two).
fn read_private_file(
    path: &Path,
) -> Result<(Zeroizing<Vec<u8>>, std::fs::Metadata), KeystoreError> {
    use std::io::Read as _;
    let unavailable =
        |e: std::io::Error| KeystoreError::Unavailable(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(unavailable)?;
    let meta = file.metadata().map_err(unavailable)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeystoreError::Config(format!(
            "{} is readable by others (mode {:o}); it must be 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes).map_err(unavailable)?;
    Ok((bytes, meta))
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

/// Replaces `path` atomically: a fresh 0600 temporary beside it with the old file's owner,
/// fsynced, renamed over it, and the directory fsynced, so a crash leaves either the old or the
/// new file, and a rotation run by root does not lock the broker's user out of its KEKs.
fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let owner = std::fs::metadata(path)
        .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", path.display())))?;
    // A leftover from a crash holds either the old or the new KEKs, never the only copy.
    let _ = std::fs::remove_file(&tmp);
    write_private_file(&tmp, bytes)?;
    let made = std::fs::metadata(&tmp)
        .map_err(|e| KeystoreError::Unavailable(format!("{}: {e}", tmp.display())))?;
    if (made.uid(), made.gid()) != (owner.uid(), owner.gid()) {
        std::os::unix::fs::chown(&tmp, Some(owner.uid()), Some(owner.gid())).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            KeystoreError::Unavailable(format!("giving {} its owner back: {e}", tmp.display()))
        })?;
    }
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
        self.refresh()
    }

    fn seal(
        &self,
        binding: &ResourceBinding,
        plaintext: &[u8],
    ) -> Result<SealedResource, KeystoreError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let aad = binding.aad();
        let (kek_id, cipher) = self.cipher(None)?;
        let mut ciphertext = plaintext.to_vec();
        cipher
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
            .cipher(Some(&sealed.kek_id))?
            .1
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
        self.update(|keks| {
            let next = keks.keys.keys().map(|id| kek_number(id)).max().unwrap_or(0) + 1;
            let id = format!("{KEK_PREFIX}{next}");
            let mut key = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(key.as_mut());
            keks.current.clone_from(&id);
            keks.keys.insert(id.clone(), key);
            Ok(id)
        })
    }

    fn kek_ids(&self) -> Result<Vec<String>, KeystoreError> {
        self.refresh()?;
        Ok(self.read().ids())
    }

    fn retire_kek(&self, kek_id: &str) -> Result<(), KeystoreError> {
        self.update(|keks| {
            if keks.current == kek_id {
                return Err(KeystoreError::InvalidInput("the current KEK cannot be retired"));
            }
            keks.keys.remove(kek_id).ok_or_else(|| KeystoreError::UnknownKek(kek_id.into()))?;
            Ok(())
        })
    }
}
