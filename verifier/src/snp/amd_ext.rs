//! AMD's X.509 extensions on VCEK and VLEK certificates (AMD "Versioned Chip Endorsement Key
//! (VCEK) Certificate and KDS Interface Specification" 57230): product name, the TCB SPL
//! values the key was derived for, and the chip's hardware ID. Read here; the simulator
//! writes the same OIDs.

use const_oid::ObjectIdentifier;
use der::asn1::Ia5StringRef;
use der::Decode;

use crate::claims::{SnpProduct, SnpTcb};
use crate::error::Reason;
use crate::x509::Certificate;

/// `structVersion` (INTEGER).
pub(crate) const OID_STRUCT_VERSION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
/// `productName` (`IA5String`), e.g. "Milan-B0", "Genoa".
pub(crate) const OID_PRODUCT_NAME: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
/// `blSPL` (INTEGER).
pub(crate) const OID_BL_SPL: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
/// `teeSPL` (INTEGER).
pub(crate) const OID_TEE_SPL: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
/// `snpSPL` (INTEGER).
pub(crate) const OID_SNP_SPL: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
/// `ucodeSPL` (INTEGER).
pub(crate) const OID_UCODE_SPL: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
/// `fmcSPL` (INTEGER), Turin and later.
pub(crate) const OID_FMC_SPL: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
/// `hwID`: the raw chip ID bytes as the extension value (not DER-wrapped, as AMD's KDS issues
/// it): 64 bytes on Milan/Genoa, 8 on Turin. VCEKs only.
pub(crate) const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
/// `cspID` (`IA5String`): the cloud provider a VLEK was issued to. VLEKs only.
pub(crate) const OID_CSP_ID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");

/// The product named by the `productName` extension ("Milan-B0" → Milan), if present.
pub(crate) fn product_name(cert: &Certificate) -> Result<Option<SnpProduct>, Reason> {
    let what = "productName extension";
    let Some(value) = cert.extension(&OID_PRODUCT_NAME) else {
        return Ok(None);
    };
    let name = Ia5StringRef::from_der(value).map_err(|_| Reason::Malformed { what })?;
    let family = name.as_str().split('-').next().unwrap_or_default();
    SnpProduct::from_name(family)
        .map(Some)
        .ok_or(Reason::InvalidValue { what, why: "names no known SEV-SNP product" })
}

fn spl(cert: &Certificate, oid: &ObjectIdentifier, what: &'static str) -> Result<u8, Reason> {
    let value = cert.extension(oid).ok_or(Reason::Missing { what })?;
    u8::from_der(value).map_err(|_| Reason::Malformed { what })
}

/// The TCB the certificate's key was derived for. FMC is read (and required) on Turin only;
/// elsewhere an `fmcSPL` extension is an error, since the report has no FMC field to match it.
pub(crate) fn cert_tcb(cert: &Certificate, product: SnpProduct) -> Result<SnpTcb, Reason> {
    let fmc = match (product, cert.extension(&OID_FMC_SPL).is_some()) {
        (SnpProduct::Turin, _) => Some(spl(cert, &OID_FMC_SPL, "fmcSPL extension")?),
        (_, false) => None,
        (_, true) => {
            return Err(Reason::InvalidValue {
                what: "fmcSPL extension",
                why: "present on a product without FMC",
            })
        }
    };
    Ok(SnpTcb {
        bootloader: spl(cert, &OID_BL_SPL, "blSPL extension")?,
        tee: spl(cert, &OID_TEE_SPL, "teeSPL extension")?,
        snp: spl(cert, &OID_SNP_SPL, "snpSPL extension")?,
        microcode: spl(cert, &OID_UCODE_SPL, "ucodeSPL extension")?,
        fmc,
    })
}

/// The `hwID` extension's bytes, if present (length is checked against the product later).
pub(crate) fn hw_id(cert: &Certificate) -> Option<Vec<u8>> {
    cert.extension(&OID_HW_ID).map(<[u8]>::to_vec)
}

/// The length of `hwID` for a product: Turin's `hwID` is the first 8 bytes of `CHIP_ID`.
pub(crate) fn hw_id_len(product: SnpProduct) -> usize {
    match product {
        SnpProduct::Turin => 8,
        SnpProduct::Milan | SnpProduct::Genoa => 64,
    }
}

/// The subject's `commonName`, if it is a `UTF8String` or `PrintableString`.
pub(crate) fn common_name(cert: &Certificate) -> Option<String> {
    let name = x509_cert::name::Name::from_der(cert.subject_der()).ok()?;
    name.0.iter().flat_map(|rdn| rdn.0.iter()).find_map(|atv| {
        if atv.oid != const_oid::db::rfc4519::CN {
            return None;
        }
        atv.value.decode_as::<String>().ok().or_else(|| {
            atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>().ok().map(|s| s.to_string())
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: a test fails loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn hw_id_is_eight_bytes_on_turin_only() {
        assert_eq!(hw_id_len(SnpProduct::Turin), 8);
        assert_eq!(hw_id_len(SnpProduct::Milan), 64);
        assert_eq!(hw_id_len(SnpProduct::Genoa), 64);
    }
}
