//! The BYOK import blob: the format a customer wraps a key in for the broker's import key, the
//! customer-side [`wrap_for_import`], and the host-side checks both backends share.
//!
//! The blob is the one cloud KMS import uses (RSA_AES_KEY_WRAP / "RSAES-OAEP + AES-KWP"):
//!
//! ```text
//! offset 0          : RSAES-OAEP(import public key, SHA-256, MGF1-SHA-256, empty label)
//!                     of a fresh 32-byte AES-256 key; exactly the modulus length (384 bytes for
//!                     RSA-3072, 512 for RSA-4096)
//! offset modulus_len: AES-KWP (RFC 5649, AES-256 under that ephemeral key) of the target key;
//!                     8 * ceil(len / 8) + 8 bytes, at least 16
//! ```
//!
//! Nothing else: no header, no length field. The receiver knows its own modulus length.

use aes_kw::KekAes256;
use rand_core::{OsRng, RngCore};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{Oaep, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::KeystoreError;

/// The largest key a BYOK blob may carry (bytes).
pub const MAX_IMPORTED_KEY_LEN: usize = 4096;

/// Import keys the customer side accepts: RSA-3072 (what both backends make) and RSA-4096.
const ACCEPTED_MODULUS_BITS: [usize; 2] = [3072, 4096];

/// The ephemeral AES key length (AES-256).
pub const EPHEMERAL_KEY_LEN: usize = 32;

/// Wraps `key` for the broker's import public key (SPKI DER, as `Keystore::import_public_key`
/// returns it): a fresh AES-256 key under RSA-OAEP-SHA-256, then `key` under AES-KWP. The
/// ephemeral key is zeroized before returning.
pub fn wrap_for_import(import_spki_der: &[u8], key: &[u8]) -> Result<Vec<u8>, KeystoreError> {
    if key.is_empty() || key.len() > MAX_IMPORTED_KEY_LEN {
        return Err(KeystoreError::InvalidInput("key to import must be 1..=4096 bytes"));
    }
    let public = RsaPublicKey::from_public_key_der(import_spki_der).map_err(|_| {
        KeystoreError::InvalidInput("import key is not an RSA SubjectPublicKeyInfo")
    })?;
    if !ACCEPTED_MODULUS_BITS.contains(&public.n().bits()) {
        return Err(KeystoreError::InvalidInput("import key must be RSA-3072 or RSA-4096"));
    }
    let mut ephemeral = Zeroizing::new([0u8; EPHEMERAL_KEY_LEN]);
    OsRng.fill_bytes(ephemeral.as_mut());
    let mut blob = public
        .encrypt(&mut OsRng, Oaep::new::<Sha256>(), ephemeral.as_ref())
        .map_err(|_| KeystoreError::InvalidInput("RSA-OAEP encryption failed"))?;
    let kwp = KekAes256::from(*ephemeral)
        .wrap_with_padding_vec(key)
        .map_err(|_| KeystoreError::InvalidInput("AES-KWP wrap failed"))?;
    blob.extend_from_slice(&kwp);
    Ok(blob)
}

/// A blob cut at the modulus length, with the KWP part's length checked.
#[derive(Debug)]
pub(crate) struct BlobParts<'a> {
    pub(crate) rsa: &'a [u8],
    pub(crate) kwp: &'a [u8],
}

/// Splits a blob for an import key whose modulus is `modulus_len` bytes.
pub(crate) fn split_blob(blob: &[u8], modulus_len: usize) -> Result<BlobParts<'_>, KeystoreError> {
    let (rsa, kwp) = blob
        .split_at_checked(modulus_len)
        .ok_or(KeystoreError::InvalidInput("BYOK blob shorter than the RSA part"))?;
    if kwp.len() < 16 || kwp.len() % 8 != 0 || kwp.len() > MAX_IMPORTED_KEY_LEN + 15 {
        return Err(KeystoreError::InvalidInput("BYOK blob's AES-KWP part has an invalid length"));
    }
    Ok(BlobParts { rsa, kwp })
}

/// EME-OAEP decoding (RFC 8017 section 7.1.2, step 3) with SHA-256, MGF1-SHA-256 and an empty
/// label, of `em`, the raw RSA decryption (I2OSP'd to the modulus length). This is for tokens that
/// can do the RSA private-key operation (CKM_RSA_X_509) but not OAEP with SHA-256 (SoftHSM 2.6
/// accepts only SHA-1 in CKM_RSA_PKCS_OAEP). Every failure is the same `Integrity`, and the
/// checks do not stop at the first mismatch, so the error says nothing about where decoding failed.
pub(crate) fn oaep_sha256_decode(em: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    use sha2::Digest as _;
    const H: usize = 32;
    if em.len() < 2 * H + 2 {
        return Err(KeystoreError::Integrity);
    }
    let (y, rest) = em.split_at(1);
    let (masked_seed, masked_db) = rest.split_at(H);
    let mut seed = Zeroizing::new(masked_seed.to_vec());
    xor_mgf1(masked_db, &mut seed);
    let mut db = Zeroizing::new(masked_db.to_vec());
    xor_mgf1(&seed, &mut db);
    let (l_hash, ps_one_m) = db.split_at(H);
    let mut bad = y.iter().fold(0u8, |acc, b| acc | b);
    bad |= Sha256::digest(b"").iter().zip(l_hash).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // The message starts after the first 0x01 that follows only zero bytes.
    let mut start = None;
    let mut seen_nonzero = false;
    for (i, &b) in ps_one_m.iter().enumerate() {
        if !seen_nonzero && b != 0 {
            seen_nonzero = true;
            if b == 1 {
                start = Some(i + 1);
            }
        }
    }
    match start {
        Some(start) if bad == 0 => {
            Ok(Zeroizing::new(ps_one_m.get(start..).unwrap_or_default().to_vec()))
        }
        _ => Err(KeystoreError::Integrity),
    }
}

/// `out ^= MGF1-SHA-256(seed, out.len())`.
fn xor_mgf1(seed: &[u8], out: &mut [u8]) {
    use sha2::Digest as _;
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(32)) {
        let mask = Sha256::new().chain_update(seed).chain_update(counter.to_be_bytes()).finalize();
        for (o, m) in chunk.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
    }
}

/// RFC 5649 unwrap on the host (the soft backend's path). A wrong key or altered blob is
/// `Integrity`.
pub(crate) fn kwp_unwrap(
    ephemeral: &[u8],
    kwp: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let kek =
        KekAes256::try_from(ephemeral).map_err(|_| KeystoreError::InvalidInput("ephemeral key"))?;
    let out_len = kwp.len().checked_sub(8).ok_or(KeystoreError::Integrity)?;
    let mut out = Zeroizing::new(vec![0u8; out_len]);
    let len = kek.unwrap_with_padding(kwp, &mut out).map_err(|_| KeystoreError::Integrity)?.len();
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_shorter_than_the_modulus_or_with_a_ragged_kwp_part_is_refused() {
        assert!(split_blob(&[0u8; 383], 384).is_err());
        assert!(split_blob(&[0u8; 384 + 8], 384).is_err());
        assert!(split_blob(&[0u8; 384 + 17], 384).is_err());
        let parts = split_blob(&[0u8; 384 + 16], 384).unwrap();
        assert_eq!((parts.rsa.len(), parts.kwp.len()), (384, 16));
    }

    /// Raw RSA decryption by the rsa crate's private key, so the decoder is checked against the
    /// rsa crate's OAEP encoder.
    fn raw_decrypt(key: &rsa::RsaPrivateKey, ct: &[u8]) -> Vec<u8> {
        use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
        let m = rsa::BigUint::from_bytes_be(ct).modpow(key.d(), key.n());
        let bytes = m.to_bytes_be();
        let mut em = vec![0u8; key.size() - bytes.len()];
        em.extend_from_slice(&bytes);
        em
    }

    #[test]
    fn oaep_decoder_opens_what_the_rsa_crate_encrypts_and_rejects_other_labels_and_hashes() {
        let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let public = key.to_public_key();
        let msg = [0x42u8; 32];
        let ct = public.encrypt(&mut OsRng, Oaep::new::<Sha256>(), &msg).unwrap();
        assert_eq!(oaep_sha256_decode(&raw_decrypt(&key, &ct)).unwrap().as_slice(), &msg);
        let empty = public.encrypt(&mut OsRng, Oaep::new::<Sha256>(), b"").unwrap();
        assert!(oaep_sha256_decode(&raw_decrypt(&key, &empty)).unwrap().is_empty());
        let labelled =
            public.encrypt(&mut OsRng, Oaep::new_with_label::<Sha256, _>("other"), &msg).unwrap();
        assert!(matches!(
            oaep_sha256_decode(&raw_decrypt(&key, &labelled)),
            Err(KeystoreError::Integrity)
        ));
        let sha512 = public.encrypt(&mut OsRng, Oaep::new::<sha2::Sha512>(), &msg).unwrap();
        assert!(matches!(
            oaep_sha256_decode(&raw_decrypt(&key, &sha512)),
            Err(KeystoreError::Integrity)
        ));
        let mut em = raw_decrypt(&key, &ct);
        em[0] = 1;
        assert!(matches!(oaep_sha256_decode(&em), Err(KeystoreError::Integrity)));
        assert!(matches!(oaep_sha256_decode(&[0u8; 65]), Err(KeystoreError::Integrity)));
    }

    #[test]
    fn kwp_unwrap_round_trips_and_rejects_a_flipped_bit() {
        // 20 bytes pad to 24, plus the 8-byte integrity block.
        let kek = [7u8; 32];
        let wrapped = KekAes256::from(kek).wrap_with_padding_vec(b"twenty octets of key").unwrap();
        assert_eq!(wrapped.len(), 32);
        assert_eq!(kwp_unwrap(&kek, &wrapped).unwrap().as_slice(), b"twenty octets of key");
        let mut bad = wrapped.clone();
        bad[5] ^= 1;
        assert!(matches!(kwp_unwrap(&kek, &bad), Err(KeystoreError::Integrity)));
    }
}
