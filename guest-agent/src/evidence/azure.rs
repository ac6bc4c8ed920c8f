//! Azure confidential VMs (`az-snp-vtpm`, `az-tdx-vtpm`) as an evidence source. On Azure the
//! paravisor (HCL) owns the SEV-SNP or TDX hardware: the guest has no `/dev/sev-guest` and no
//! TDX device, but a vTPM whose NV index 0x01400001 holds the HCL report (the hardware report,
//! whose REPORT_DATA binds a runtime-data JSON carrying the vTPM's attestation key) and whose
//! persistent key 0x81000003 is that attestation key. This module owns collecting that
//! evidence the way confidential-containers guest-components' Azure attesters do:
//!
//! 1. detection: the NV index exists and holds an HCL report of type SNP or TDX;
//! 2. the HCL report, read whole from the NV index with owner authorization;
//! 3. `TPM2_Quote` by the AK over SHA-256 PCRs 0 to 23 with extraData = the 48-byte KBS
//!    runtime-data digest, unpadded (guest-components passes the digest as is);
//! 4. the PCR values (`TPM2_PCR_Read`); if a PCR moved between quote and read, the quote is
//!    taken again (up to three times) so the values sent always hash to the quote's digest;
//! 5. SNP: the VCEK from the instance metadata service (IMDS, THIM endpoint); TDX: a TD quote
//!    for the HCL's TD report from IMDS;
//! 6. the evidence JSON in the upstream shape, version 1 ([`AzureEvidence::to_json`]).

use std::time::Duration;

use keylatch_wire::kbs_types::Tee;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use verifier::azure::{
    check_pcrs, parse_hcl_report, AzureEvidence, AzureHardware, HclReportType, TpmQuote, TpmsAttest,
};

use super::tpm::{Tpm, TpmError, TpmPath};
use super::EvidenceSource;
use crate::AgentError;

/// The NV index Azure's HCL writes its report into.
pub const HCL_REPORT_NV_INDEX: u32 = 0x0140_0001;
/// The vTPM attestation key's persistent handle.
pub const AK_HANDLE: u32 = 0x8100_0003;
/// Azure's instance metadata service.
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// The PCRs quoted: all 24 of the SHA-256 bank, as upstream.
const QUOTED_PCRS: [u8; 24] =
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
/// The KBS binding digest is the first 48 bytes of REPORT_DATA (SHA-384; zeros follow).
const BINDING_LEN: usize = 48;
/// Where the TD report sits in a TDX HCL report, and its length.
const TD_REPORT: std::ops::Range<usize> = 0x20..0x20 + 1024;
const QUOTE_ATTEMPTS: usize = 3;
const IMDS_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest IMDS reply read (a VCEK certificate or a TD quote: a few kilobytes).
const MAX_IMDS_BODY: u64 = 1 << 20;
/// The evidence version written: what guest-components' attesters send today.
const EVIDENCE_VERSION: u32 = 1;

/// Which hardware the HCL report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureKind {
    Snp,
    Tdx,
}

impl AzureKind {
    fn name(self) -> &'static str {
        match self {
            Self::Snp => "az-snp-vtpm",
            Self::Tdx => "az-tdx-vtpm",
        }
    }
}

/// An Azure confidential VM's vTPM.
#[derive(Debug, Clone)]
pub struct AzureVtpm {
    kind: AzureKind,
    tpm: TpmPath,
    imds: String,
}

fn tpm_err(e: &TpmError) -> AgentError {
    AgentError::Evidence(e.to_string())
}

/// Reads and parses the HCL report; its type.
fn read_hcl(tpm: &mut Tpm) -> Result<(Vec<u8>, AzureKind), AgentError> {
    let bytes = tpm.nv_read(HCL_REPORT_NV_INDEX).map_err(|e| tpm_err(&e))?;
    let kind = match parse_hcl_report(&bytes) {
        Ok(r) => match r.report_type {
            HclReportType::Snp => AzureKind::Snp,
            HclReportType::Tdx => AzureKind::Tdx,
        },
        Err(e) => {
            return Err(AgentError::Evidence(format!(
                "NV index {HCL_REPORT_NV_INDEX:#010x} does not hold an HCL report: {e}"
            )))
        }
    };
    Ok((bytes, kind))
}

impl AzureVtpm {
    /// Looks at the TPM: `Ok(Some)` when NV index 0x01400001 holds an SNP or TDX HCL report,
    /// `Ok(None)` with the reason when there is no TPM or no such index (not an Azure VM), an
    /// error when the TPM fails otherwise or the index holds something else.
    pub fn probe(tpm: &TpmPath, imds: &str) -> Result<Result<Self, String>, AgentError> {
        if !tpm.present() {
            return Ok(Err(format!("{tpm} does not exist (no vTPM)")));
        }
        let mut conn = Tpm::open(tpm).map_err(|e| tpm_err(&e))?;
        match conn.nv_read_public(HCL_REPORT_NV_INDEX) {
            Ok(_) => {}
            Err(e) if e.is_missing_handle() => {
                return Ok(Err(format!(
                    "the TPM at {tpm} has no NV index {HCL_REPORT_NV_INDEX:#010x} (not an Azure \
                     confidential VM)"
                )))
            }
            Err(e) => return Err(tpm_err(&e)),
        }
        let (_, kind) = read_hcl(&mut conn)?;
        Ok(Ok(Self { kind, tpm: tpm.clone(), imds: imds.trim_end_matches('/').to_owned() }))
    }

    /// The TPM quote and the PCR values it covers, taken again when a PCR moved in between.
    fn quote(tpm: &mut Tpm, nonce: &[u8]) -> Result<TpmQuote, AgentError> {
        let mut last = String::new();
        for _ in 0..QUOTE_ATTEMPTS {
            let quote = tpm.quote(AK_HANDLE, nonce, &QUOTED_PCRS).map_err(|e| tpm_err(&e))?;
            let pcrs: Vec<Vec<u8>> = tpm
                .pcr_read_all_sha256()
                .map_err(|e| tpm_err(&e))?
                .iter()
                .map(|p| p.to_vec())
                .collect();
            let attest = TpmsAttest::parse(&quote.message)
                .map_err(|e| AgentError::Evidence(format!("TPM2_Quote returned {e}")))?;
            match check_pcrs(&attest, &pcrs) {
                Ok(_) => {
                    return Ok(TpmQuote {
                        signature: quote.signature,
                        message: quote.message,
                        pcrs,
                    })
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(AgentError::Evidence(format!(
            "the PCRs kept changing while quoting ({QUOTE_ATTEMPTS} attempts): {last}"
        )))
    }

    fn imds_agent() -> ureq::Agent {
        ureq::AgentBuilder::new().timeout(IMDS_TIMEOUT).redirects(0).build()
    }

    /// The VCEK (DER) from IMDS's THIM endpoint.
    fn vcek(&self) -> Result<Vec<u8>, AgentError> {
        let url = format!("{}/metadata/THIM/amd/certification", self.imds);
        let reply = Self::imds_agent()
            .get(&url)
            .set("Metadata", "true")
            .call()
            .map_err(|e| AgentError::Evidence(format!("VCEK from IMDS {url}: {e}")))?;
        let body: serde_json::Value = read_json(reply, &url)?;
        let pem = body.get("vcekCert").and_then(serde_json::Value::as_str).ok_or_else(|| {
            AgentError::Evidence(format!("VCEK from IMDS {url}: no vcekCert string"))
        })?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            AgentError::Evidence(format!("VCEK from IMDS {url}: vcekCert is not a PEM: {e:?}"))
        })?;
        Ok(der.to_vec())
    }

    /// A TD quote for the HCL report's TD report from IMDS.
    fn td_quote(&self, hcl: &[u8]) -> Result<Vec<u8>, AgentError> {
        use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
        use base64::Engine as _;
        let url = format!("{}/acc/tdquote", self.imds);
        let report = hcl.get(TD_REPORT).ok_or_else(|| {
            AgentError::Evidence("the HCL report is too short for a TD report".into())
        })?;
        let reply = Self::imds_agent()
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(
                &serde_json::json!({ "report": URL_SAFE_NO_PAD.encode(report) }).to_string(),
            )
            .map_err(|e| AgentError::Evidence(format!("TD quote from IMDS {url}: {e}")))?;
        let body: serde_json::Value = read_json(reply, &url)?;
        let quote = body.get("quote").and_then(serde_json::Value::as_str).ok_or_else(|| {
            AgentError::Evidence(format!("TD quote from IMDS {url}: no quote string"))
        })?;
        URL_SAFE_NO_PAD
            .decode(quote.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(quote))
            .map_err(|_| AgentError::Evidence(format!("TD quote from IMDS {url}: not base64url")))
    }
}

fn read_json(reply: ureq::Response, url: &str) -> Result<serde_json::Value, AgentError> {
    use std::io::Read as _;
    let mut body = Vec::new();
    reply
        .into_reader()
        .take(MAX_IMDS_BODY)
        .read_to_end(&mut body)
        .map_err(|e| AgentError::Evidence(format!("IMDS {url}: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| AgentError::Evidence(format!("IMDS {url}: not JSON: {e}")))
}

impl EvidenceSource for AzureVtpm {
    fn tee(&self) -> Tee {
        match self.kind {
            AzureKind::Snp => Tee::AzSnpVtpm,
            AzureKind::Tdx => Tee::AzTdxVtpm,
        }
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<serde_json::Value, AgentError> {
        let nonce = report_data.get(..BINDING_LEN).unwrap_or_default();
        let mut tpm = Tpm::open(&self.tpm).map_err(|e| tpm_err(&e))?;
        let (hcl_report, kind) = read_hcl(&mut tpm)?;
        if kind != self.kind {
            return Err(AgentError::Evidence(format!(
                "the HCL report changed from {} to {}",
                self.kind.name(),
                kind.name()
            )));
        }
        let tpm_quote = Self::quote(&mut tpm, nonce)?;
        let hardware = match kind {
            AzureKind::Snp => AzureHardware::Snp { vcek: self.vcek()? },
            AzureKind::Tdx => AzureHardware::Tdx { td_quote: self.td_quote(&hcl_report)? },
        };
        let evidence = AzureEvidence { version: EVIDENCE_VERSION, tpm_quote, hcl_report, hardware };
        let json =
            evidence.to_json().map_err(|e| AgentError::Evidence(format!("evidence JSON: {e}")))?;
        serde_json::from_slice(&json)
            .map_err(|e| AgentError::Evidence(format!("evidence JSON: {e}")))
    }

    fn describe(&self) -> String {
        format!(
            "{}: Azure vTPM at {}: HCL report in NV index {HCL_REPORT_NV_INDEX:#010x}, attestation \
             key {AK_HANDLE:#010x}, IMDS {}",
            self.kind.name(),
            self.tpm,
            self.imds
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;

    /// An HTTP server on 127.0.0.1 that answers one request with `body` and hands the request
    /// (head and body as text) back through the join handle.
    fn one_shot(body: String) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .map_or(0, |n| n.trim().parse().unwrap());
                    if rest.len() >= len {
                        break;
                    }
                }
            }
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    fn source(kind: AzureKind, imds: String) -> AzureVtpm {
        AzureVtpm { kind, tpm: TpmPath::default(), imds }
    }

    #[test]
    fn td_quote_is_asked_for_the_hcl_td_report_in_base64url_as_azure_imds_expects() {
        let (url, server) =
            one_shot(format!("{{\"quote\":\"{}\"}}", URL_SAFE_NO_PAD.encode([4u8, 0, 2, 0, 0x81])));
        let mut hcl = vec![0u8; 2600];
        hcl[0x20..0x20 + 1024].fill(0xfb);
        let quote = source(AzureKind::Tdx, url).td_quote(&hcl).unwrap();
        assert_eq!(quote, vec![4, 0, 2, 0, 0x81]);
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /acc/tdquote HTTP/1.1\r\n"), "{request}");
        let body = request.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            body,
            serde_json::json!({ "report": URL_SAFE_NO_PAD.encode([0xfb; 1024]) }).to_string()
        );
    }

    #[test]
    fn vcek_comes_from_the_thim_endpoint_with_the_metadata_header() {
        let der = [0x30u8, 0x03, 0x02, 0x01, 0x07];
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        let (url, server) =
            one_shot(serde_json::json!({ "vcekCert": pem, "certificateChain": "" }).to_string());
        assert_eq!(source(AzureKind::Snp, url).vcek().unwrap(), der);
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /metadata/thim/amd/certification http/1.1\r\n"));
        assert!(request.contains("\r\nmetadata: true\r\n"), "{request}");
    }
}
