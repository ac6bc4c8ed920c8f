//! The one logged-in PKCS#11 session the backend works through, and how it heals: an operation
//! that fails with a return value meaning "the token or session went away" closes the session,
//! finalizes the module, and is tried once more on a freshly initialized module, a freshly found
//! slot and a fresh login. If that fails too the caller gets `Unavailable`; the next call tries
//! again from scratch, so the keystore recovers by itself when the token is back.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use super::Pkcs11Config;
use crate::KeystoreError;

/// KEK labels are `keylatch-kek-<n>`; the highest `n` is current.
pub(super) const KEK_LABEL_PREFIX: &str = "keylatch-kek-";

/// Why an operation on the session failed.
#[derive(Debug)]
pub(super) enum Fail {
    /// A PKCS#11 error; the runner decides whether it means the token is gone.
    Token(CkError),
    /// Already a keystore verdict (integrity, invalid input, unknown KEK).
    Keystore(KeystoreError),
}

impl From<CkError> for Fail {
    fn from(e: CkError) -> Self {
        Self::Token(e)
    }
}

impl From<KeystoreError> for Fail {
    fn from(e: KeystoreError) -> Self {
        Self::Keystore(e)
    }
}

/// A live, logged-in session and what was found on the token when it opened.
pub(super) struct Conn {
    pub(super) session: Session,
    ctx: Pkcs11,
    /// KEK number → handle. Never empty: connecting creates `keylatch-kek-1` when none exists.
    pub(super) keks: BTreeMap<u64, ObjectHandle>,
}

impl Conn {
    pub(super) fn current(&self) -> Result<(u64, ObjectHandle), Fail> {
        self.keks
            .last_key_value()
            .map(|(n, h)| (*n, *h))
            .ok_or(Fail::Keystore(KeystoreError::Config("token holds no KEK".into())))
    }

    /// The handle of `kek_id`. On a miss the list is re-read from the token first: another
    /// broker replica sharing the token may have rotated since this session opened.
    pub(super) fn kek(&mut self, kek_id: &str) -> Result<ObjectHandle, Fail> {
        let unknown = || Fail::Keystore(KeystoreError::UnknownKek(kek_id.into()));
        let n = kek_number(kek_id).ok_or_else(unknown)?;
        if let Some(h) = self.keks.get(&n) {
            return Ok(*h);
        }
        self.refresh_keks()?;
        self.keks.get(&n).copied().ok_or_else(unknown)
    }

    /// Re-reads the `keylatch-kek-<n>` keys from the token (rotations and retirements made by
    /// other replicas); makes `keylatch-kek-1` on a token that has none.
    pub(super) fn refresh_keks(&mut self) -> Result<(), Fail> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
        ];
        let mut keks = BTreeMap::new();
        for handle in self.session.find_objects(&template)? {
            for attr in self.session.get_attributes(handle, &[AttributeType::Label])? {
                if let Attribute::Label(label) = attr {
                    if let Some(n) = std::str::from_utf8(&label).ok().and_then(kek_number) {
                        keks.insert(n, handle);
                    }
                }
            }
        }
        self.keks = keks;
        if self.keks.is_empty() {
            self.create_kek(1)?;
        }
        Ok(())
    }

    /// Generates `keylatch-kek-<n>` in the token: AES-256, token object, private, sensitive,
    /// never extractable, for encrypt/decrypt only.
    pub(super) fn create_kek(&mut self, n: u64) -> Result<ObjectHandle, Fail> {
        let label = format!("{KEK_LABEL_PREFIX}{n}");
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32u64.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Label(label.clone().into_bytes()),
            Attribute::Id(label.into_bytes()),
        ];
        let handle = self.session.generate_key(&Mechanism::AesKeyGen, &template)?;
        self.keks.insert(n, handle);
        Ok(handle)
    }

    /// Closes the session, then finalizes the module (in that order, so the close is not
    /// refused as "not initialized"). Errors are moot: the connection is being thrown away.
    fn close(self) {
        let Self { session, ctx, .. } = self;
        drop(session);
        let _ = ctx.finalize();
    }
}

pub(super) fn kek_number(kek_id: &str) -> Option<u64> {
    kek_id.strip_prefix(KEK_LABEL_PREFIX)?.parse().ok()
}

/// The connection slot: empty until first use and after a loss.
pub(super) struct Link {
    config: Pkcs11Config,
    pin: AuthPin,
    conn: Mutex<Option<Conn>>,
}

impl Link {
    pub(super) fn new(config: Pkcs11Config, pin: AuthPin) -> Self {
        Self { config, pin, conn: Mutex::new(None) }
    }

    pub(super) fn config(&self) -> &Pkcs11Config {
        &self.config
    }

    /// Runs `op` on a live session, reconnecting once if the token or session was lost.
    pub(super) fn run<T>(
        &self,
        mut op: impl FnMut(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T, KeystoreError> {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut last_loss = String::new();
        for _ in 0..2 {
            let conn = match slot.take() {
                Some(conn) => slot.insert(conn),
                None => slot.insert(self.connect()?),
            };
            match op(conn) {
                Ok(v) => return Ok(v),
                Err(Fail::Keystore(e)) => return Err(e),
                Err(Fail::Token(e)) if means_connection_lost(&e) => {
                    last_loss = e.to_string();
                    if let Some(conn) = slot.take() {
                        conn.close();
                    }
                }
                Err(Fail::Token(e)) => return Err(refusal(&e)),
            }
        }
        Err(KeystoreError::Unavailable(format!("HSM connection lost: {last_loss}")))
    }

    /// Loads and initializes the module, finds the token by label, logs in, and loads (or makes
    /// the first) KEK. Any failure here is `Unavailable` (a wrong PIN is `Config`).
    fn connect(&self) -> Result<Conn, KeystoreError> {
        let unavailable = |e: CkError| KeystoreError::Unavailable(e.to_string());
        let ctx = Pkcs11::new(&self.config.module).map_err(|e| {
            KeystoreError::Config(format!("loading {}: {e}", self.config.module.display()))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let opened = self.open_session(&ctx);
        let session = match opened {
            Ok(session) => session,
            Err(e) => {
                let _ = ctx.finalize();
                return Err(e);
            }
        };
        let mut conn = Conn { session, ctx, keks: BTreeMap::new() };
        match conn.refresh_keks() {
            Ok(()) => Ok(conn),
            Err(e) => {
                conn.close();
                Err(match e {
                    Fail::Keystore(e) => e,
                    Fail::Token(e) => unavailable(e),
                })
            }
        }
    }

    fn open_session(&self, ctx: &Pkcs11) -> Result<Session, KeystoreError> {
        let unavailable = |e: CkError| KeystoreError::Unavailable(e.to_string());
        let label = self.config.token_label.as_str();
        let mut found = None;
        for slot in ctx.get_slots_with_token().map_err(unavailable)? {
            if ctx.get_token_info(slot).map_err(unavailable)?.label() == label {
                found = Some(slot);
                break;
            }
        }
        let slot = found
            .ok_or_else(|| KeystoreError::Unavailable(format!("no token labelled {label:?}")))?;
        let session = ctx.open_rw_session(slot).map_err(unavailable)?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e @ CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLocked, _)) => {
                Err(KeystoreError::Config(format!("HSM login for token {label:?}: {e}")))
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let slot = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = slot.take() {
            conn.close();
        }
    }
}

/// Return values after which this session (or the whole module) cannot be trusted to work again
/// without reopening. Handle errors are included: a token that was removed and re-inserted
/// invalidates every handle, and reconnecting finds the keys again by label (a KEK that is
/// really gone is then `UnknownKek`).
fn means_connection_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SlotIdInvalid
                | RvError::CryptokiNotInitialized
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::UnwrappingKeyHandleInvalid
                | RvError::GeneralError,
            _
        )
    )
}

/// Any other PKCS#11 failure: the return value and function, never data.
fn refusal(e: &CkError) -> KeystoreError {
    KeystoreError::Hsm(e.to_string())
}
