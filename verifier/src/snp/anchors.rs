//! Trust anchors for SEV-SNP: per product (Milan, Genoa, Turin) the AMD Root Key (ARK) and
//! the intermediates it issued, the ASK (signs VCEKs) and the ASVK (signs VLEKs). Every
//! certificate is checked when the anchors are built: the ARK is self-signed with RSA-PSS
//! SHA-384 and the intermediates are issued by it. Validity periods are checked at `verify`
//! time, against its `now`.
//!
//! Production anchors pin AMD's ARKs by the SHA-256 of their DER; nothing else can make
//! non-simulated anchors. Simulation anchors trust the simulation PKI's ARK and mark every
//! claim set `simulated: true`; their ARK differs from AMD's, so neither set of anchors
//! verifies the other's evidence.

use crate::claims::{SnpProduct, SnpSigningKey};
use crate::error::{AtStep, Reason, Step, VerifyError};
use crate::x509::Certificate;

/// SHA-256 of the Milan ARK DER: `69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd`.
pub const MILAN_ARK_SHA256: [u8; 32] = [
    0x69, 0xd0, 0x63, 0xb4, 0x53, 0x44, 0xd2, 0x6a, 0x2e, 0x94, 0xe1, 0xf4, 0x21, 0x0d, 0xe4, 0x9e,
    0xf5, 0x55, 0x30, 0x82, 0x87, 0xd4, 0xc1, 0x74, 0x44, 0x5c, 0x95, 0x63, 0x9a, 0x54, 0x0b, 0xcd,
];
/// SHA-256 of the Genoa ARK DER: `4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1`.
pub const GENOA_ARK_SHA256: [u8; 32] = [
    0x4c, 0x65, 0x98, 0xd1, 0x9c, 0x18, 0x71, 0x9c, 0x5d, 0xfd, 0x4a, 0x7d, 0x33, 0x5f, 0x67, 0x4e,
    0x5b, 0xfe, 0x1d, 0x8f, 0x80, 0x0c, 0xea, 0x2c, 0xf2, 0x70, 0xc1, 0x0d, 0x10, 0x3d, 0xb2, 0xf1,
];
/// SHA-256 of the Turin ARK DER: `1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a`.
pub const TURIN_ARK_SHA256: [u8; 32] = [
    0x1f, 0x08, 0x41, 0x61, 0xa4, 0x4b, 0xb6, 0xd9, 0x37, 0x78, 0xa9, 0x04, 0x87, 0x7d, 0x48, 0x19,
    0xca, 0xfa, 0x5d, 0x05, 0xef, 0x41, 0x93, 0xb2, 0xde, 0xd9, 0xdd, 0x9c, 0x73, 0xdd, 0x3f, 0x6a,
];

// AMD's ASVKs (the "SEV-VLEK-<product>" intermediates that sign VLEKs), as AMD KDS publishes them
// at `https://kdsintf.amd.com/vlek/v1/{Milan,Genoa,Turin}/cert_chain` (the first certificate of
// each chain; the second is the ARK). They are not trusted because they are here: `production()`
// checks each against the product's pinned ARK (RSASSA-PSS SHA-384) before using it.
/// AMD's Milan ASVK (PEM), from `vlek/v1/Milan/cert_chain`.
pub const MILAN_ASVK_PEM: &[u8] = include_bytes!("asvk/milan.pem");
/// AMD's Genoa ASVK (PEM), from `vlek/v1/Genoa/cert_chain`.
pub const GENOA_ASVK_PEM: &[u8] = include_bytes!("asvk/genoa.pem");
/// AMD's Turin ASVK (PEM), from `vlek/v1/Turin/cert_chain`.
pub const TURIN_ASVK_PEM: &[u8] = include_bytes!("asvk/turin.pem");

/// The pinned production ARK fingerprint of a product.
#[must_use]
pub fn production_ark_sha256(product: SnpProduct) -> &'static [u8; 32] {
    match product {
        SnpProduct::Milan => &MILAN_ARK_SHA256,
        SnpProduct::Genoa => &GENOA_ARK_SHA256,
        SnpProduct::Turin => &TURIN_ARK_SHA256,
    }
}

/// One product's root and intermediates, each already checked against the root.
#[derive(Debug, Clone)]
pub(crate) struct ProductAnchors {
    pub(crate) product: SnpProduct,
    pub(crate) ark: Certificate,
    pub(crate) ask: Option<Certificate>,
    pub(crate) asvk: Option<Certificate>,
}

impl ProductAnchors {
    /// The intermediate that issues certificates of this signing-key kind.
    pub(crate) fn intermediate(&self, kind: SnpSigningKey) -> Option<&Certificate> {
        match kind {
            SnpSigningKey::Vcek => self.ask.as_ref(),
            SnpSigningKey::Vlek => self.asvk.as_ref(),
        }
    }
}

/// The roots an [`SnpVerifier`](super::SnpVerifier) trusts.
#[derive(Debug, Clone)]
pub struct SnpTrustAnchors {
    simulated: bool,
    products: Vec<ProductAnchors>,
}

impl SnpTrustAnchors {
    /// AMD's production roots: the ARK and ASK of Milan, Genoa and Turin as shipped in the
    /// `sev` crate, and the ASVKs (VLEK signers) embedded in this crate ([`MILAN_ASVK_PEM`]
    /// and its siblings). Each ARK is checked against its pinned fingerprint and each ASK and
    /// ASVK against that ARK, here, at construction: an embedded certificate the pinned ARK did
    /// not issue makes this fail.
    pub fn production() -> Result<Self, VerifyError> {
        use sev::certs::snp::builtin::{genoa, milan, turin};
        let shipped = [
            (SnpProduct::Milan, milan::ARK, milan::ASK, MILAN_ASVK_PEM),
            (SnpProduct::Genoa, genoa::ARK, genoa::ASK, GENOA_ASVK_PEM),
            (SnpProduct::Turin, turin::ARK, turin::ASK, TURIN_ASVK_PEM),
        ];
        let mut products = Vec::with_capacity(shipped.len());
        for (product, ark_pem, ask_pem, asvk_pem) in shipped {
            let ark = pinned_ark(ark_pem, production_ark_sha256(product)).at(Step::Chain)?;
            let sev_signer = issued_by_ark(&ark, ask_pem, "ASK certificate").at(Step::Chain)?;
            let vlek_signer = issued_by_ark(&ark, asvk_pem, "ASVK certificate").at(Step::Chain)?;
            products.push(ProductAnchors {
                product,
                ark,
                ask: Some(sev_signer),
                asvk: Some(vlek_signer),
            });
        }
        Ok(Self { simulated: false, products })
    }

    /// Anchors for a simulation PKI: one ARK (DER or PEM) with its ASK and optional ASVK,
    /// trusted for every product. Claims verified under them say `simulated: true`.
    pub fn simulated(
        root_cert: &[u8],
        ask_cert: &[u8],
        vlek_ca_cert: Option<&[u8]>,
    ) -> Result<Self, VerifyError> {
        let root =
            Certificate::from_pem_or_der("simulated ARK certificate", root_cert).at(Step::Chain)?;
        root.verify_self_signed("simulated ARK certificate").at(Step::Chain)?;
        let sev_signer =
            issued_by_ark(&root, ask_cert, "simulated ASK certificate").at(Step::Chain)?;
        let vlek_signer = vlek_ca_cert
            .map(|der| issued_by_ark(&root, der, "simulated ASVK certificate"))
            .transpose()
            .at(Step::Chain)?;
        let products = SnpProduct::ALL
            .into_iter()
            .map(|product| ProductAnchors {
                product,
                ark: root.clone(),
                ask: Some(sev_signer.clone()),
                asvk: vlek_signer.clone(),
            })
            .collect();
        Ok(Self { simulated: true, products })
    }

    /// Adds (or replaces) the ASK (`signs = Vcek`) or ASVK (`signs = Vlek`) of `product`,
    /// after checking that the product's pinned ARK issued it.
    pub fn with_intermediate(
        mut self,
        product: SnpProduct,
        signs: SnpSigningKey,
        cert: &[u8],
    ) -> Result<Self, VerifyError> {
        let anchors = self
            .products
            .iter_mut()
            .find(|p| p.product == product)
            .ok_or(Reason::NoMatch { what: "trusted ARK for this product" })
            .at(Step::Chain)?;
        let what = match signs {
            SnpSigningKey::Vcek => "ASK certificate",
            SnpSigningKey::Vlek => "ASVK certificate",
        };
        let cert = issued_by_ark(&anchors.ark, cert, what).at(Step::Chain)?;
        match signs {
            SnpSigningKey::Vcek => anchors.ask = Some(cert),
            SnpSigningKey::Vlek => anchors.asvk = Some(cert),
        }
        Ok(self)
    }

    /// Keeps only the listed products (e.g. to trust Genoa alone).
    #[must_use]
    pub fn only(mut self, keep: &[SnpProduct]) -> Self {
        self.products.retain(|p| keep.contains(&p.product));
        self
    }

    /// True for simulation anchors.
    #[must_use]
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    /// The products these anchors trust.
    pub fn products(&self) -> impl Iterator<Item = SnpProduct> + '_ {
        self.products.iter().map(|p| p.product)
    }

    /// SHA-256 of the trusted ARK of `product`.
    #[must_use]
    pub fn ark_sha256(&self, product: SnpProduct) -> Option<&[u8; 32]> {
        self.get(product).map(|p| p.ark.sha256())
    }

    /// The product and kind of the trusted intermediate whose subject is the issuer named by
    /// `signer` (DER or PEM), by name only (no signature is checked): which CRL a chain needs
    /// before it is verified. `None` when no intermediate of these anchors has that name.
    #[must_use]
    pub fn issuer_named_by(&self, signer: &[u8]) -> Option<(SnpProduct, SnpSigningKey)> {
        let cert = Certificate::from_pem_or_der("signer certificate", signer).ok()?;
        self.products.iter().find_map(|pa| {
            [SnpSigningKey::Vcek, SnpSigningKey::Vlek].into_iter().find_map(|kind| {
                let issuer = pa.intermediate(kind)?;
                (issuer.subject_der() == cert.issuer_der()).then_some((pa.product, kind))
            })
        })
    }

    pub(crate) fn get(&self, product: SnpProduct) -> Option<&ProductAnchors> {
        self.products.iter().find(|p| p.product == product)
    }
}

fn pinned_ark(bytes: &[u8], pin: &[u8; 32]) -> Result<Certificate, Reason> {
    let what = "ARK certificate";
    let ark = Certificate::from_pem_or_der(what, bytes)?;
    if ark.sha256() != pin {
        return Err(Reason::UntrustedRoot { what, sha256: hex::encode(ark.sha256()) });
    }
    ark.verify_self_signed(what)?;
    Ok(ark)
}

/// Parses an intermediate and checks it was issued by `ark` (and is not the ARK itself).
pub(crate) fn issued_by_ark(
    ark: &Certificate,
    bytes: &[u8],
    what: &'static str,
) -> Result<Certificate, Reason> {
    let cert = Certificate::from_pem_or_der(what, bytes)?;
    if cert.sha256() == ark.sha256() {
        return Err(Reason::InvalidValue { what, why: "is the ARK itself, not an intermediate" });
    }
    cert.verify_issued_by(what, ark)?;
    Ok(cert)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // reason: a test fails loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn production_anchors_pin_the_shipped_arks() {
        let anchors = SnpTrustAnchors::production().unwrap();
        assert!(!anchors.is_simulated());
        for product in SnpProduct::ALL {
            assert_eq!(anchors.ark_sha256(product), Some(production_ark_sha256(product)));
            let pa = anchors.get(product).unwrap();
            assert!(pa.ask.is_some());
            // The embedded ASVK is the product's VLEK signer, checked against the pinned ARK.
            let asvk = pa.asvk.as_ref().unwrap();
            assert_eq!(asvk.issuer_der(), pa.ark.subject_der());
            let cn = super::super::amd_ext::common_name(asvk).unwrap();
            assert_eq!(cn, format!("SEV-VLEK-{}", product.kds_name()));
        }
    }

    #[test]
    fn rejects_an_ark_that_is_not_pinned() {
        use sev::certs::snp::builtin::{genoa, milan};
        let err = pinned_ark(genoa::ARK, &MILAN_ARK_SHA256).unwrap_err();
        assert!(matches!(err, Reason::UntrustedRoot { .. }), "{err:?}");
        // An ASK under the wrong product's ARK is not accepted.
        let milan_ark = pinned_ark(milan::ARK, &MILAN_ARK_SHA256).unwrap();
        assert!(issued_by_ark(&milan_ark, genoa::ASK, "ASK certificate").is_err());
    }
}
