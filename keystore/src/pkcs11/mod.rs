//! The `pkcs11` backend: KEKs are AES-256 keys generated inside a PKCS#11 token (sensitive,
//! never extractable) and every seal and unseal is done by the token (CKM_AES_GCM, 12-byte IV
//! from the token's RNG, the binding as AAD, 128-bit tag), so the output has exactly the soft
//! backend's `A256GCM` format. BYOK import unwraps in the token too. Session handling and recovery
//! after token loss live in `conn`.
//!
//! Where plaintext passes through host memory (always `Zeroizing`): `unseal` (its purpose),
//! `generate` (token RNG bytes on their way back into the token's encrypt), `rewrap` (decrypt then
//! encrypt), and BYOK import, because PKCS#11 has no "AES-GCM-encrypt this key object" and
//! SoftHSM's C_WrapKey offers no GCM: the token unwraps the target into an extractable session
//! object whose value is read once, destroyed, and sealed.

mod conn;

use std::path::PathBuf;

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::AuthPin;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::{BigUint, RsaPublicKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use self::conn::{Conn, Fail, Link, KEK_LABEL_PREFIX};
use crate::byok;
use crate::{
    Keystore, KeystoreError, KeystoreInfo, ResourceBinding, SealAlgorithm, SealedResource,
};

/// The largest resource `generate` makes (bytes); the same bound as the soft backend.
pub use crate::soft::MAX_GENERATED_LEN;

/// The import key pair's label (public and private halves share it).
pub const IMPORT_KEY_LABEL: &str = "keylatch-import-rsa3072";
const IMPORT_KEY_BITS: u64 = 3072;
const GCM_IV_LEN: usize = 12;
const GCM_TAG_BITS: u64 = 128;

/// `[keystore]` settings for a PKCS#11 token, e.g.
///
/// ```toml
/// module = "/usr/lib/softhsm/libsofthsm2.so"
/// token_label = "keylatch"
/// pin = { file = "/etc/keylatch/hsm-pin" }    # or pin = { env = "KEYLATCH_HSM_PIN" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 shared library.
    pub module: PathBuf,
    /// The token's label (CKA_LABEL of the token, as `softhsm2-util --show-slots` prints it).
    pub token_label: String,
    /// Where the user PIN comes from; never the PIN itself.
    pub pin: PinSource,
}

/// Where the user PIN is read from at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PinSource {
    /// A file private to the broker's user (mode 0600 or stricter); trailing line breaks are
    /// ignored.
    File(PathBuf),
    /// The name of an environment variable holding the PIN.
    Env(String),
}

impl PinSource {
    fn read(&self) -> Result<AuthPin, KeystoreError> {
        let mut pin = match self {
            Self::File(path) => {
                use std::os::unix::fs::PermissionsExt as _;
                let meta = std::fs::metadata(path).map_err(|e| {
                    KeystoreError::Config(format!("PIN file {}: {e}", path.display()))
                })?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(KeystoreError::Config(format!(
                        "PIN file {} is readable by others; it must be 0600",
                        path.display()
                    )));
                }
                let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
                    KeystoreError::Config(format!("PIN file {}: {e}", path.display()))
                })?);
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    KeystoreError::Config(format!("PIN file {} is not UTF-8", path.display()))
                })?
            }
            Self::Env(name) => std::env::var(name).map_err(|_| {
                KeystoreError::Config(format!("PIN variable {name} is not set or not UTF-8"))
            })?,
        };
        let len = pin.trim_end_matches(['\n', '\r']).len();
        pin.truncate(len);
        if pin.is_empty() {
            return Err(KeystoreError::Config("the HSM PIN is empty".into()));
        }
        Ok(AuthPin::from(pin))
    }
}

/// Resources sealed by a PKCS#11 token. One mutex-guarded logged-in session, reopened after
/// token loss. The PIN is held (as a `SecretString`) for re-login.
pub struct Pkcs11Keystore {
    link: Link,
    /// The current KEK id as last seen, for `describe` (which cannot fail).
    current: std::sync::RwLock<String>,
}

impl std::fmt::Debug for Pkcs11Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Keystore")
            .field("module", &self.link.config().module)
            .field("token_label", &self.link.config().token_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Keystore {
    /// Reads the PIN, loads the module, logs in, and makes the first KEK if the token has none.
    /// Fails when the token cannot be reached now, so a misconfiguration shows at start-up.
    pub fn open(config: Pkcs11Config) -> Result<Self, KeystoreError> {
        let pin = config.pin.read()?;
        let ks = Self { link: Link::new(config, pin), current: std::sync::RwLock::default() };
        ks.health()?;
        Ok(ks)
    }

    /// Runs `op` on the session and notes the current KEK it saw.
    fn run<T>(&self, mut op: impl FnMut(&mut Conn) -> Result<T, Fail>) -> Result<T, KeystoreError> {
        self.link.run(|conn| {
            let out = op(conn)?;
            let current = format!("{KEK_LABEL_PREFIX}{}", conn.current()?.0);
            *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = current;
            Ok(out)
        })
    }

    /// The RSA import key pair (public, private), if the token has it.
    fn find_import_key(session: &Session) -> Result<Option<(ObjectHandle, ObjectHandle)>, Fail> {
        let find = |class| {
            session.find_objects(&[
                Attribute::Class(class),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(true),
                Attribute::Label(IMPORT_KEY_LABEL.as_bytes().to_vec()),
            ])
        };
        let public = find(ObjectClass::PUBLIC_KEY)?;
        let private = find(ObjectClass::PRIVATE_KEY)?;
        Ok(public.first().copied().zip(private.first().copied()))
    }

    fn create_import_key(session: &Session) -> Result<(ObjectHandle, ObjectHandle), Fail> {
        let label = IMPORT_KEY_LABEL.as_bytes().to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::ModulusBits(IMPORT_KEY_BITS.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Encrypt(true),
            Attribute::Wrap(true),
            Attribute::Verify(false),
            Attribute::Label(label.clone()),
            Attribute::Id(label.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Unwrap(true),
            // For tokens without OAEP-SHA-256 unwrap: the raw RSA operation (see unwrap_ephemeral).
            Attribute::Decrypt(true),
            Attribute::Sign(false),
            Attribute::Label(label.clone()),
            Attribute::Id(label),
        ];
        Ok(session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)?)
    }

    fn modulus(session: &Session, public: ObjectHandle) -> Result<(Vec<u8>, Vec<u8>), Fail> {
        let (mut n, mut e) = (None, None);
        for attr in session
            .get_attributes(public, &[AttributeType::Modulus, AttributeType::PublicExponent])?
        {
            match attr {
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                _ => {}
            }
        }
        n.zip(e).ok_or(Fail::Keystore(KeystoreError::Hsm("import key has no modulus".into())))
    }
}

/// Seals under the newest KEK on the token. The KEK list is re-read first, so a rotation made by
/// another broker replica applies to every seal from then on (seals are admin-path operations;
/// releases only unseal).
fn gcm_encrypt(
    conn: &mut Conn,
    binding: &ResourceBinding,
    plaintext: &[u8],
) -> Result<SealedResource, Fail> {
    conn.refresh_keks()?;
    let (n, kek) = conn.current()?;
    let mut iv = [0u8; GCM_IV_LEN];
    conn.session.generate_random_slice(&mut iv)?;
    let nonce = iv.to_vec();
    let aad = binding.aad();
    let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into())?;
    let ciphertext = conn.session.encrypt(&Mechanism::AesGcm(params), kek, plaintext)?;
    Ok(SealedResource {
        kek_id: format!("{KEK_LABEL_PREFIX}{n}"),
        algorithm: SealAlgorithm::Aes256Gcm,
        nonce,
        ciphertext,
    })
}

fn gcm_decrypt(
    conn: &mut Conn,
    binding: &ResourceBinding,
    sealed: &SealedResource,
) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let kek = conn.kek(&sealed.kek_id)?;
    let mut iv: [u8; GCM_IV_LEN] =
        sealed.nonce.as_slice().try_into().map_err(|_| KeystoreError::Integrity)?;
    // A GCM tag alone is 16 bytes; anything shorter cannot be ours.
    if sealed.ciphertext.len() < 16 {
        return Err(KeystoreError::Integrity.into());
    }
    let aad = binding.aad();
    let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into())?;
    match conn.session.decrypt(&Mechanism::AesGcm(params), kek, &sealed.ciphertext) {
        Ok(plaintext) => Ok(Zeroizing::new(plaintext)),
        Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::EncryptedDataInvalid
            | cryptoki::error::RvError::EncryptedDataLenRange,
            _,
        )) => Err(KeystoreError::Integrity.into()),
        Err(e) => Err(general_error_as_integrity(&conn.session, e)),
    }
}

/// SoftHSM reports a GCM tag mismatch and a failed RFC 5649 integrity check as
/// CKR_GENERAL_ERROR, which is also what a failing device says. The two are told apart by asking
/// whether the session still answers: if it does, the data was wrong.
fn general_error_as_integrity(session: &Session, e: cryptoki::error::Error) -> Fail {
    use cryptoki::error::{Error, RvError};
    match e {
        Error::Pkcs11(RvError::GeneralError, _) if session.get_session_info().is_ok() => {
            Fail::Keystore(KeystoreError::Integrity)
        }
        other => Fail::Token(other),
    }
}

/// `CKR_WRAPPED_KEY_INVALID` and friends mean the blob, not the token, is wrong.
fn blob_error(session: &Session, e: cryptoki::error::Error) -> Fail {
    use cryptoki::error::{Error, RvError};
    match e {
        Error::Pkcs11(
            RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange,
            _,
        ) => Fail::Keystore(KeystoreError::Integrity),
        other => general_error_as_integrity(session, other),
    }
}

impl Keystore for Pkcs11Keystore {
    fn describe(&self) -> KeystoreInfo {
        let config = self.link.config();
        KeystoreInfo {
            backend: "pkcs11",
            location: format!("token {:?} via {}", config.token_label, config.module.display()),
            current_kek: self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            development_only: false,
        }
    }

    fn health(&self) -> Result<(), KeystoreError> {
        self.run(|conn| {
            conn.session.get_session_info()?;
            // Touch the token's objects, not only the session: a token whose storage went away
            // keeps its open session but can no longer use its keys.
            conn.session.get_attributes(conn.current()?.1, &[AttributeType::Label])?;
            Ok(())
        })
    }

    fn seal(
        &self,
        binding: &ResourceBinding,
        plaintext: &[u8],
    ) -> Result<SealedResource, KeystoreError> {
        self.run(|conn| gcm_encrypt(conn, binding, plaintext))
    }

    fn unseal(
        &self,
        binding: &ResourceBinding,
        sealed: &SealedResource,
    ) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        self.run(|conn| gcm_decrypt(conn, binding, sealed))
    }

    fn generate(
        &self,
        binding: &ResourceBinding,
        len: usize,
    ) -> Result<SealedResource, KeystoreError> {
        if len == 0 || len > MAX_GENERATED_LEN {
            return Err(KeystoreError::InvalidInput("generated key length must be 1..=4096 bytes"));
        }
        self.run(|conn| {
            let mut key = Zeroizing::new(vec![0u8; len]);
            conn.session.generate_random_slice(&mut key)?;
            gcm_encrypt(conn, binding, &key)
        })
    }

    fn import_public_key(&self) -> Result<Vec<u8>, KeystoreError> {
        let (n, e) = self.run(|conn| {
            let (public, _) = match Self::find_import_key(&conn.session)? {
                Some(pair) => pair,
                None => Self::create_import_key(&conn.session)?,
            };
            Self::modulus(&conn.session, public)
        })?;
        RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
            .and_then(|k| k.to_public_key_der().map_err(|_| rsa::Error::Internal))
            .map(|der| der.as_bytes().to_vec())
            .map_err(|_| KeystoreError::Hsm("import key is not a usable RSA key".into()))
    }

    fn import_wrapped(
        &self,
        binding: &ResourceBinding,
        wrapped: &[u8],
    ) -> Result<SealedResource, KeystoreError> {
        self.run(|conn| {
            let target = {
                let session = &conn.session;
                let (public, private) = Self::find_import_key(session)?.ok_or(Fail::Keystore(
                    KeystoreError::InvalidInput(
                        "no import key yet: fetch the import public key first",
                    ),
                ))?;
                let (modulus, _) = Self::modulus(session, public)?;
                let parts = byok::split_blob(wrapped, modulus.len())?;
                unwrap_in_token(session, private, parts.rsa, parts.kwp)?
            };
            gcm_encrypt(conn, binding, &target)
        })
    }

    fn rotate_kek(&self) -> Result<String, KeystoreError> {
        self.run(|conn| {
            // Numbered after what the token holds now, not what this session saw at login.
            conn.refresh_keks()?;
            let next = conn.current()?.0 + 1;
            conn.create_kek(next)?;
            Ok(format!("{KEK_LABEL_PREFIX}{next}"))
        })
    }

    fn kek_ids(&self) -> Result<Vec<String>, KeystoreError> {
        self.run(|conn| {
            conn.refresh_keks()?;
            Ok(conn.keks.keys().map(|n| format!("{KEK_LABEL_PREFIX}{n}")).collect())
        })
    }

    fn retire_kek(&self, kek_id: &str) -> Result<(), KeystoreError> {
        self.run(|conn| {
            conn.refresh_keks()?;
            let handle = conn.kek(kek_id)?;
            if conn.current()?.1 == handle {
                return Err(KeystoreError::InvalidInput("the current KEK cannot be retired").into());
            }
            conn.session.destroy_object(handle)?;
            conn.keks.retain(|_, h| *h != handle);
            Ok(())
        })
    }
}

/// Token side of BYOK. The ephemeral AES key is unwrapped by the RSA import key in the token
/// (CKM_RSA_PKCS_OAEP, SHA-256, MGF1-SHA-256) into a sensitive session object. Tokens that refuse
/// SHA-256 there (SoftHSM 2.6 answers CKR_ARGUMENTS_BAD to any hashAlg but SHA-1) take the
/// fallback: the token does the raw RSA private-key operation (CKM_RSA_X_509), the host decodes
/// OAEP into `Zeroizing` memory and loads the ephemeral key back as a sensitive session object.
/// Either way CKM_AES_KEY_WRAP_PAD (RFC 5649 in SoftHSM; see the README for other tokens) then
/// unwraps the target into an extractable session object, whose value is read into `Zeroizing`
/// memory. Every session object is destroyed before returning, on every path.
fn unwrap_in_token(
    session: &Session,
    private: ObjectHandle,
    rsa_part: &[u8],
    kwp_part: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let ephemeral = unwrap_ephemeral(session, private, rsa_part)?;
    let target_template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let target =
        session.unwrap_key(&Mechanism::AesKeyWrapPad, ephemeral, kwp_part, &target_template);
    let _ = session.destroy_object(ephemeral);
    let target = target.map_err(|e| blob_error(session, e))?;
    let value = session.get_attributes(target, &[AttributeType::Value]);
    let _ = session.destroy_object(target);
    let mut out = None;
    for attr in value? {
        if let Attribute::Value(v) = attr {
            out = Some(Zeroizing::new(v));
        }
    }
    out.ok_or(Fail::Keystore(KeystoreError::Hsm("unwrapped key value unreadable".into())))
}

/// The ephemeral AES-256 key as a sensitive, non-extractable session object that may only unwrap.
fn unwrap_ephemeral(
    session: &Session,
    private: ObjectHandle,
    rsa_part: &[u8],
) -> Result<ObjectHandle, Fail> {
    use cryptoki::error::{Error, RvError};
    let oaep = PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    );
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
    ];
    match session.unwrap_key(&Mechanism::RsaPkcsOaep(oaep), private, rsa_part, &template) {
        Ok(handle) => return Ok(handle),
        Err(Error::Pkcs11(
            RvError::ArgumentsBad | RvError::MechanismParamInvalid | RvError::MechanismInvalid,
            _,
        )) => {}
        Err(e) => return Err(blob_error(session, e)),
    }
    let em = Zeroizing::new(
        session
            .decrypt(&Mechanism::RsaX509, private, rsa_part)
            .map_err(|e| blob_error(session, e))?,
    );
    let mut padded = Zeroizing::new(vec![0u8; rsa_part.len().saturating_sub(em.len())]);
    padded.extend_from_slice(&em);
    let key = byok::oaep_sha256_decode(&padded)?;
    if key.len() != byok::EPHEMERAL_KEY_LEN {
        return Err(KeystoreError::InvalidInput("BYOK ephemeral key must be AES-256").into());
    }
    let mut with_value = template.to_vec();
    with_value.push(Attribute::Value(key.to_vec()));
    let created = session.create_object(&with_value);
    for attr in &mut with_value {
        if let Attribute::Value(v) = attr {
            zeroize::Zeroize::zeroize(v);
        }
    }
    Ok(created?)
}
