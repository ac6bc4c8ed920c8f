//! Signed bundles: sign/verify round trip, and one specific error for each way a bundle can be
//! forged, tampered with, under-signed, expired or rolled back.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, clippy::expect_used)] // reason: tests fail loudly on purpose

use coset::{CborSerializable, CoseSign, HeaderBuilder, TaggedCborSerializable};
use reference_values::signed::{CONTENT_TYPE, MAX_SIGNATURES};
use reference_values::{
    check_replacement, verify_bundle, verify_signatures, AuthorKeys, AuthorSigningKey, Bundle,
    BundleError, CanonicalError, SignedBundle,
};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
const MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

fn bundle(version: u64, expires: &str) -> Bundle {
    Bundle::from_toml(&format!(
        "name = \"web\"\nversion = {version}\nexpires = {expires}\n[snp]\nmeasurements = [\"{MEASUREMENT}\"]\n"
    ))
    .unwrap()
}

fn keys(n: usize) -> Vec<AuthorSigningKey> {
    (0..n).map(|_| AuthorSigningKey::generate().unwrap()).collect()
}

fn trust(keys: &[AuthorSigningKey], threshold: usize) -> AuthorKeys {
    AuthorKeys::new(keys.iter().map(|k| k.public().clone()).collect(), threshold).unwrap()
}

fn signed(b: &Bundle, keys: &[&AuthorSigningKey]) -> SignedBundle {
    let s = SignedBundle::sign(b, keys).unwrap();
    // Always go through bytes, as a broker receives it.
    SignedBundle::from_bytes(&s.to_bytes().unwrap()).unwrap()
}

/// Decodes, lets `edit` change the COSE structure, and re-encodes.
fn edit_cose(s: &SignedBundle, edit: impl FnOnce(&mut CoseSign)) -> Vec<u8> {
    let mut cose = CoseSign::from_tagged_slice(&s.to_bytes().unwrap()).unwrap();
    edit(&mut cose);
    cose.to_tagged_vec().unwrap()
}

#[test]
fn round_trips_sign_and_verify_with_two_of_three() {
    let k = keys(3);
    let b = bundle(1, "2027-01-01T00:00:00Z");
    let s = signed(&b, &[&k[0], &k[1]]);
    let v = verify_bundle(&s, &trust(&k, 2), NOW).unwrap();
    assert_eq!(v.bundle(), &b);
    assert_eq!(v.signers(), [k[0].kid(), k[1].kid()]);
    assert_eq!(s.signature_kids(), vec![Some(k[0].kid()), Some(k[1].kid())]);
    assert_eq!(v.digest(), s.payload_sha256());
}

#[test]
fn signing_is_deterministic_in_payload_and_signatures() {
    let k = keys(1);
    let b = bundle(1, "2027-01-01T00:00:00Z");
    let a = SignedBundle::sign(&b, &[&k[0]]).unwrap().to_bytes().unwrap();
    let again = SignedBundle::sign(&b, &[&k[0]]).unwrap().to_bytes().unwrap();
    assert_eq!(a, again);
    assert_eq!(a.first(), Some(&0xd8)); // tag 98 (COSE_Sign): 0xd8 0x62
    assert_eq!(a.get(1), Some(&0x62));
}

#[test]
fn rejects_tampered_payload_as_invalid_signature() {
    let k = keys(1);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]);
    let bytes = edit_cose(&s, |c| {
        let payload = c.payload.as_mut().unwrap();
        // Change one hex digit of the measurement: still a valid, canonical bundle.
        let at = payload.windows(4).position(|w| w == b"7a1e").unwrap();
        payload[at + 3] = b'f';
    });
    let tampered = SignedBundle::from_bytes(&bytes).unwrap();
    assert_ne!(tampered.unverified_bundle(), s.unverified_bundle());
    assert_eq!(
        verify_signatures(&tampered, &trust(&k, 1)).unwrap_err(),
        BundleError::SignatureInvalid { kid: k[0].kid() }
    );
}

#[test]
fn rejects_re_encoded_protected_header_as_invalid_signature() {
    let k = keys(1);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]);
    // The same header map with the content type's length in a longer (2-byte) form: the header
    // means the same, but the signed bytes differ.
    let mut header = vec![0xa1, 0x03, 0x79, 0x00, CONTENT_TYPE.len() as u8];
    header.extend_from_slice(CONTENT_TYPE.as_bytes());
    let bytes = edit_cose(&s, |c| c.protected.original_data = Some(header));
    let tampered = SignedBundle::from_bytes(&bytes).unwrap();
    assert_eq!(
        verify_signatures(&tampered, &trust(&k, 1)).unwrap_err(),
        BundleError::SignatureInvalid { kid: k[0].kid() }
    );
}

#[test]
fn rejects_changed_content_type_and_extra_protected_header() {
    let k = keys(1);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]);
    let bytes = edit_cose(&s, |c| {
        c.protected.original_data = None;
        c.protected.header.content_type = Some(coset::ContentType::Text("application/cbor".into()));
    });
    assert_eq!(
        SignedBundle::from_bytes(&bytes).unwrap_err(),
        BundleError::ContentType { found: Some("application/cbor".into()) }
    );
    let bytes = edit_cose(&s, |c| {
        c.protected.original_data = None;
        c.protected.header =
            HeaderBuilder::new().content_type(CONTENT_TYPE.into()).key_id(vec![1]).build();
    });
    assert_eq!(
        SignedBundle::from_bytes(&bytes).unwrap_err(),
        BundleError::UnexpectedHeader("body protected header holds more than the content type")
    );
}

#[test]
fn rejects_signature_by_unknown_key() {
    let k = keys(2);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0], &k[1]]);
    assert_eq!(
        verify_signatures(&s, &trust(&k[..1], 1)).unwrap_err(),
        BundleError::UnknownSigner { kid: k[1].kid() }
    );
}

#[test]
fn rejects_when_threshold_not_met() {
    let k = keys(3);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0], &k[1]]);
    assert_eq!(
        verify_signatures(&s, &trust(&k, 3)).unwrap_err(),
        BundleError::ThresholdNotMet { valid: 2, required: 3 }
    );
}

#[test]
fn counts_the_same_key_signing_twice_once() {
    let k = keys(2);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]);
    let bytes = edit_cose(&s, |c| {
        let again = c.signatures[0].clone();
        c.signatures.push(again);
    });
    let doubled = SignedBundle::from_bytes(&bytes).unwrap();
    assert_eq!(doubled.signature_kids(), vec![Some(k[0].kid()); 2]);
    assert_eq!(
        verify_signatures(&doubled, &trust(&k, 2)).unwrap_err(),
        BundleError::ThresholdNotMet { valid: 1, required: 2 }
    );
    // The library will not add a second signature by the same key either.
    let mut s = s;
    assert_eq!(s.cosign(&k[0]).unwrap_err(), BundleError::AlreadySigned { kid: k[0].kid() });
}

#[test]
fn cosign_adds_a_signature_without_touching_the_payload() {
    let k = keys(2);
    let mut s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]);
    let before = CoseSign::from_tagged_slice(&s.to_bytes().unwrap()).unwrap();
    s.cosign(&k[1]).unwrap();
    let after = CoseSign::from_tagged_slice(&s.to_bytes().unwrap()).unwrap();
    assert_eq!(after.payload, before.payload);
    assert_eq!(after.protected.original_data, before.protected.original_data);
    assert_eq!(after.signatures.first(), before.signatures.first());
    assert_eq!(after.signatures.len(), 2);
    assert_eq!(verify_signatures(&s, &trust(&k, 2)).unwrap().signers().len(), 2);
}

#[test]
fn rejects_expired_bundle() {
    let k = keys(1);
    let s = signed(&bundle(1, "2025-12-31T23:59:59Z"), &[&k[0]]);
    assert_eq!(
        verify_bundle(&s, &trust(&k, 1), NOW).unwrap_err(),
        BundleError::Expired { expires: datetime!(2025-12-31 23:59:59 UTC), now: NOW }
    );
    // Signatures alone still check, so a stored bundle can be reloaded and appraise as expired.
    assert!(verify_signatures(&s, &trust(&k, 1)).is_ok());
}

#[test]
fn replacement_needs_greater_version_and_same_name() {
    let k = keys(1);
    let t = trust(&k, 1);
    let v3 =
        check_replacement(None, &signed(&bundle(3, "2027-01-01T00:00:00Z"), &[&k[0]]), &t, NOW)
            .unwrap();
    for old in [3, 2] {
        assert_eq!(
            check_replacement(
                Some(&v3),
                &signed(&bundle(old, "2027-01-01T00:00:00Z"), &[&k[0]]),
                &t,
                NOW
            )
            .unwrap_err(),
            BundleError::VersionNotGreater { stored: 3, candidate: old }
        );
    }
    let v4 = check_replacement(
        Some(&v3),
        &signed(&bundle(4, "2027-01-01T00:00:00Z"), &[&k[0]]),
        &t,
        NOW,
    )
    .unwrap();
    assert_eq!(v4.bundle().version, 4);
    let mut other = bundle(5, "2027-01-01T00:00:00Z");
    other.name = "db".into();
    assert_eq!(
        check_replacement(Some(&v4), &signed(&other, &[&k[0]]), &t, NOW).unwrap_err(),
        BundleError::NameMismatch { stored: "web".into(), candidate: "db".into() }
    );
}

#[test]
fn replacement_refuses_expired_or_under_signed_candidate() {
    let k = keys(2);
    let t = trust(&k, 2);
    let stored = check_replacement(
        None,
        &signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0], &k[1]]),
        &t,
        NOW,
    )
    .unwrap();
    assert!(matches!(
        check_replacement(
            Some(&stored),
            &signed(&bundle(2, "2025-01-01T00:00:00Z"), &[&k[0], &k[1]]),
            &t,
            NOW
        ),
        Err(BundleError::Expired { .. })
    ));
    assert_eq!(
        check_replacement(
            Some(&stored),
            &signed(&bundle(2, "2027-01-01T00:00:00Z"), &[&k[0]]),
            &t,
            NOW
        )
        .unwrap_err(),
        BundleError::ThresholdNotMet { valid: 1, required: 2 }
    );
}

/// A change to a decoded COSE structure.
type Edit = fn(&mut CoseSign);

#[test]
fn rejects_malformed_signature_headers() {
    let k = keys(1);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]);
    let t = trust(&k, 1);
    let cases: [(Edit, &str); 4] = [
        (
            |c| {
                c.signatures[0].protected.original_data = None;
                c.signatures[0].protected.header.alg =
                    Some(coset::Algorithm::Assigned(coset::iana::Algorithm::ES256));
            },
            "protected header alg is not ES384",
        ),
        (
            |c| {
                c.signatures[0].protected.original_data = None;
                c.signatures[0].protected.header.key_id.pop();
            },
            "protected header kid is not 32 bytes",
        ),
        (|c| c.signatures[0].unprotected.key_id = vec![1], "unprotected header is not empty"),
        (
            |c| {
                c.signatures[0].signature.pop();
            },
            "signature is not 96 bytes",
        ),
    ];
    for (edit, reason) in cases {
        let bad = SignedBundle::from_bytes(&edit_cose(&s, edit)).unwrap();
        assert_eq!(
            verify_signatures(&bad, &t).unwrap_err(),
            BundleError::MalformedSignature { index: 0, reason }
        );
    }
}

#[test]
fn rejects_structural_problems_before_signatures() {
    let k = keys(1);
    let s = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]);
    let untagged = CoseSign::from_tagged_slice(&s.to_bytes().unwrap()).unwrap().to_vec().unwrap();
    assert!(matches!(SignedBundle::from_bytes(&untagged), Err(BundleError::Cose(_))));
    assert_eq!(
        SignedBundle::from_bytes(&edit_cose(&s, |c| c.signatures.clear())).unwrap_err(),
        BundleError::NoSignatures
    );
    assert_eq!(
        SignedBundle::from_bytes(&edit_cose(&s, |c| c.payload = None)).unwrap_err(),
        BundleError::NoPayload
    );
    let many = edit_cose(&s, |c| {
        let one = c.signatures[0].clone();
        c.signatures = vec![one; MAX_SIGNATURES + 1];
    });
    assert_eq!(
        SignedBundle::from_bytes(&many).unwrap_err(),
        BundleError::TooManySignatures { count: MAX_SIGNATURES + 1, max: MAX_SIGNATURES }
    );
    // A payload that is CBOR of the right shape but not deterministically encoded.
    let bytes = edit_cose(&s, |c| {
        let payload = c.payload.as_mut().unwrap();
        // The version (1) is encoded as 0x01 right after the text "version"; widen it to 0x18 0x01.
        let at = payload.windows(7).position(|w| w == b"version").unwrap() + 7;
        payload.splice(at..=at, [0x18, 0x01]);
    });
    assert_eq!(
        SignedBundle::from_bytes(&bytes).unwrap_err(),
        BundleError::Payload(CanonicalError::NotDeterministic)
    );
}

#[test]
fn every_truncated_prefix_fails_to_parse() {
    let k = keys(1);
    let bytes = signed(&bundle(1, "2027-01-01T00:00:00Z"), &[&k[0]]).to_bytes().unwrap();
    for n in 0..bytes.len() {
        assert!(SignedBundle::from_bytes(&bytes[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn example_bundles_parse_and_sign() {
    let k = keys(1);
    for file in ["snp.toml", "tdx.toml"] {
        let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let b = Bundle::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(b.version, 1);
        let s = signed(&b, &[&k[0]]);
        assert_eq!(verify_bundle(&s, &trust(&k, 1), NOW).unwrap().bundle(), &b);
    }
}
