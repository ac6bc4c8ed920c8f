//! The PCK certificate: its Intel SGX extension (OID 1.2.840.113741.1.13.1, Intel SGX PCK
//! Certificate and CRL Specification) decoded into [`SgxExtensions`], and the chain step that
//! takes the quote's PEM chain (leaf ← PCK platform/processor CA ← pinned root) to a verified
//! PCK key.

use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, OctetStringRef};
use der::{Decode, Tag, Tagged};

use super::anchors::TdxTrustAnchors;
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::{self, Certificate, Crl, KeyKind, PublicKey};

/// Intel SGX extension and its members.
pub(crate) const SGX_EXTENSION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
const PPID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.1");
/// TCB component k (1..=16) is `TCB.k`; PCESVN is `TCB.17`, CPUSVN `TCB.18`.
const TCB: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2");
const PCE_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.3");
const FMSPC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.4");
const SGX_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.5");
const PLATFORM_INSTANCE_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.6");
const CONFIGURATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.7");

/// The Intel SGX extension of a PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxExtensions {
    pub ppid: [u8; 16],
    /// SGX TCB components 1..=16 (index 0 is component 1).
    pub tcb_components: [u8; 16],
    pub pce_svn: u16,
    pub cpu_svn: [u8; 16],
    pub pce_id: [u8; 2],
    pub fmspc: [u8; 6],
    /// 0 = Standard, 1 = Scalable, 2 = Scalable with integrity.
    pub sgx_type: u8,
    /// Platform CA certificates only.
    pub platform_instance_id: Option<[u8; 16]>,
    /// Platform CA certificates only: (dynamic platform, cached keys, SMT enabled), each optional.
    pub configuration: Option<[Option<bool>; 3]>,
}

#[derive(der::Sequence)]
struct Entry<'a> {
    oid: ObjectIdentifier,
    value: AnyRef<'a>,
}

fn malformed() -> Reason {
    Reason::Malformed { what: "PCK SGX extension" }
}

fn octets<const N: usize>(v: AnyRef<'_>) -> Result<[u8; N], Reason> {
    let os: OctetStringRef<'_> = v.decode_as().map_err(|_| malformed())?;
    os.as_bytes().try_into().map_err(|_| malformed())
}

fn entries<'a>(der: &'a [u8]) -> Result<Vec<Entry<'a>>, Reason> {
    let list = <Vec<Entry<'a>>>::from_der(der).map_err(|_| malformed())?;
    check_unique(&list)?;
    Ok(list)
}

impl SgxExtensions {
    /// Decodes the extension value (the DER inside the extension's OCTET STRING). Unknown
    /// members are ignored (Intel adds members over time); required members must be present
    /// exactly once with their specified sizes.
    pub fn from_der(der: &[u8]) -> Result<Self, Reason> {
        let mut ppid = None;
        let mut tcb = None;
        let mut pce_id = None;
        let mut fmspc = None;
        let mut sgx_type = None;
        let mut platform_instance_id = None;
        let mut configuration = None;
        for e in entries(der)? {
            match e.oid {
                PPID => ppid = Some(octets::<16>(e.value)?),
                TCB => tcb = Some(parse_tcb(e.value)?),
                PCE_ID => pce_id = Some(octets::<2>(e.value)?),
                FMSPC => fmspc = Some(octets::<6>(e.value)?),
                SGX_TYPE => {
                    if e.value.tag() != Tag::Enumerated {
                        return Err(malformed());
                    }
                    let [t] = e.value.value() else { return Err(malformed()) };
                    sgx_type = Some(*t);
                }
                PLATFORM_INSTANCE_ID => platform_instance_id = Some(octets::<16>(e.value)?),
                CONFIGURATION => configuration = Some(parse_configuration(e.value)?),
                _ => {}
            }
        }
        let missing = |what| Reason::Missing { what };
        let (tcb_components, pce_svn, cpu_svn) = tcb.ok_or(missing("PCK SGX extension TCB"))?;
        Ok(Self {
            ppid: ppid.ok_or(missing("PCK SGX extension PPID"))?,
            tcb_components,
            pce_svn,
            cpu_svn,
            pce_id: pce_id.ok_or(missing("PCK SGX extension PCE-ID"))?,
            fmspc: fmspc.ok_or(missing("PCK SGX extension FMSPC"))?,
            sgx_type: sgx_type.ok_or(missing("PCK SGX extension SGX type"))?,
            platform_instance_id,
            configuration,
        })
    }
}

fn parse_tcb(v: AnyRef<'_>) -> Result<([u8; 16], u16, [u8; 16]), Reason> {
    let mut comps: [Option<u8>; 16] = [None; 16];
    let mut pce_svn = None;
    let mut cpu_svn = None;
    for e in nested_entries(v)? {
        let Some(k) = child_arc(&e.oid, TCB) else { continue };
        match k {
            1..=16 => {
                let svn: u8 = e.value.decode_as().map_err(|_| malformed())?;
                if let Some(slot) = comps.get_mut(k as usize - 1) {
                    *slot = Some(svn);
                }
            }
            17 => pce_svn = Some(e.value.decode_as::<u16>().map_err(|_| malformed())?),
            18 => cpu_svn = Some(octets::<16>(e.value)?),
            _ => {}
        }
    }
    let mut out = [0u8; 16];
    for (o, c) in out.iter_mut().zip(comps) {
        *o = c.ok_or(Reason::Missing { what: "PCK SGX TCB component" })?;
    }
    Ok((
        out,
        pce_svn.ok_or(Reason::Missing { what: "PCK SGX extension PCESVN" })?,
        cpu_svn.ok_or(Reason::Missing { what: "PCK SGX extension CPUSVN" })?,
    ))
}

fn parse_configuration(v: AnyRef<'_>) -> Result<[Option<bool>; 3], Reason> {
    let mut out = [None; 3];
    for e in nested_entries(v)? {
        let Some(k @ 1..=3) = child_arc(&e.oid, CONFIGURATION) else { continue };
        let value: bool = e.value.decode_as().map_err(|_| malformed())?;
        if let Some(slot) = out.get_mut(k as usize - 1) {
            *slot = Some(value);
        }
    }
    Ok(out)
}

/// The last arc of `oid` when it is a direct child of `parent`.
fn child_arc(oid: &ObjectIdentifier, parent: ObjectIdentifier) -> Option<u32> {
    if oid.parent()? != parent {
        return None;
    }
    oid.arcs().last()
}

fn nested_entries<'a>(v: AnyRef<'a>) -> Result<Vec<Entry<'a>>, Reason> {
    let list: Vec<Entry<'a>> = v.decode_as().map_err(|_| malformed())?;
    check_unique(&list)?;
    Ok(list)
}

fn check_unique(list: &[Entry<'_>]) -> Result<(), Reason> {
    for (i, e) in list.iter().enumerate() {
        if list.iter().skip(i + 1).any(|o| o.oid == e.oid) {
            return Err(Reason::InvalidValue {
                what: "PCK SGX extension",
                why: "duplicate member",
            });
        }
    }
    Ok(())
}

/// A PCK chain that passed the chain step against one collateral's CRLs.
#[derive(Debug)]
pub(crate) struct VerifiedPck {
    /// The PCK leaf's P-256 key, parsed once.
    pub(crate) key: PublicKey,
    pub(crate) ext: SgxExtensions,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// Step 3 (chain): the quote's PCK chain to the pinned root, every certificate valid at `now`,
/// the CA not on the root CA CRL, the leaf not on the PCK CRL (which must be the CA's own); both
/// CRLs come from verified collateral. Failures are [`Step::Chain`].
pub(crate) fn verify_pck_chain(
    pem: &[u8],
    root_crl: &Crl,
    pck_crl: &Crl,
    anchors: &TdxTrustAnchors,
    now: i64,
) -> Result<VerifiedPck, VerifyError> {
    verify_chain(pem, root_crl, pck_crl, anchors, now).at(Step::Chain)
}

fn verify_chain(
    pem: &[u8],
    root_crl: &Crl,
    pck_crl: &Crl,
    anchors: &TdxTrustAnchors,
    now: i64,
) -> Result<VerifiedPck, Reason> {
    let what = "PCK certificate chain";
    let ders = x509::pem_certificates(what, pem)?;
    let [leaf, ca, root] = ders.as_slice() else {
        return Err(Reason::InvalidValue { what, why: "expected exactly three certificates" });
    };
    let root = Certificate::from_der("Intel SGX root CA certificate", root)?;
    anchors.check_root("Intel SGX root CA certificate", &root)?;
    root.check_valid_at("Intel SGX root CA certificate", now)?;

    let ca = Certificate::from_der("PCK CA certificate", ca)?;
    ca.verify_issued_by("PCK CA certificate", &root)?;
    ca.check_valid_at("PCK CA certificate", now)?;
    require_ca(&ca)?;
    if root_crl.revokes(&ca) {
        return Err(Reason::Revoked { what: "PCK CA certificate" });
    }

    let leaf = Certificate::from_der("PCK certificate", leaf)?;
    leaf.verify_issued_by("PCK certificate", &ca)?;
    leaf.check_valid_at("PCK certificate", now)?;
    // The PCK CRL must be the one this CA issued (platform and processor CAs have their own).
    pck_crl.verify_issued_by("PCK CRL (for the quote's PCK CA)", &ca)?;
    if pck_crl.revokes(&leaf) {
        return Err(Reason::Revoked { what: "PCK certificate" });
    }
    let key = leaf.public_key().clone();
    if key.kind() != KeyKind::P256 {
        return Err(Reason::UnsupportedAlgorithm { what: "PCK certificate key" });
    }
    let ext = leaf
        .extension(&SGX_EXTENSION)
        .ok_or(Reason::Missing { what: "PCK SGX extension" })
        .and_then(SgxExtensions::from_der)?;
    Ok(VerifiedPck {
        key,
        ext,
        not_before: root.not_before().max(ca.not_before()).max(leaf.not_before()),
        not_after: root.not_after().min(ca.not_after()).min(leaf.not_after()),
    })
}

/// The intermediate must be a CA (basicConstraints cA = TRUE).
fn require_ca(cert: &Certificate) -> Result<(), Reason> {
    let what = "PCK CA certificate basicConstraints";
    let bc = cert
        .extension(&const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS)
        .ok_or(Reason::Missing { what })?;
    let bc = x509_cert::ext::pkix::BasicConstraints::from_der(bc)
        .map_err(|_| Reason::Malformed { what })?;
    if !bc.ca {
        return Err(Reason::InvalidValue { what, why: "not a CA" });
    }
    Ok(())
}
