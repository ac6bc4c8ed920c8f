//! `refval push`: publishes a signed bundle to a broker's admin API
//! (`PUT /admin/v1/reference-values/<name>`, body `{"bundle": base64}`) over HTTPS with one
//! trust anchor (`--ca`), rustls with the aws-lc-rs provider, no redirects. The policy-author token
//! comes from `--token-file` or `KEYLATCH_TOKEN`, never from the command line.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

/// Publishes `bundle` as `name`; returns the broker's JSON answer (pretty) or an error naming
/// the refusal's status, type and detail.
pub fn push(
    url: &str,
    ca: &Path,
    token_file: Option<&Path>,
    name: &str,
    bundle: &Path,
) -> Result<String> {
    if !url.starts_with("https://") {
        bail!("--url {url:?} must start with https://");
    }
    let token = match token_file {
        Some(p) => Zeroizing::new(
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => Zeroizing::new(
            std::env::var("KEYLATCH_TOKEN").context("no --token-file and no KEYLATCH_TOKEN")?,
        ),
    };
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    reference_values::SignedBundle::from_bytes(&bytes)
        .with_context(|| bundle.display().to_string())?;
    let ca_pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(cert.context("--ca: not PEM certificates")?).context("--ca: unusable CA")?;
    }
    if roots.is_empty() {
        bail!("--ca: no certificate in the file");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS configuration")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let agent = ureq::AgentBuilder::new()
        .tls_config(Arc::new(tls))
        .redirects(0)
        .timeout(Duration::from_secs(30))
        .build();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let body =
        serde_json::json!({"bundle": base64::engine::general_purpose::STANDARD.encode(&bytes)});
    let sent = agent
        .put(&format!("{}/admin/v1/reference-values/{encoded}", url.trim_end_matches('/')))
        .set("Authorization", &format!("Bearer {}", token.trim()))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string());
    let resp = match sent {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => bail!("{url}: {t}"),
    };
    let status = resp.status();
    let mut reply = Vec::new();
    resp.into_reader().take(1 << 20).read_to_end(&mut reply).context("reading the reply")?;
    let value: serde_json::Value =
        serde_json::from_slice(&reply).unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&status) {
        let text = |k: &str| {
            value.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned()
        };
        bail!("HTTP {status} {}: {}", text("type"), text("detail"));
    }
    serde_json::to_string_pretty(&value).context("rendering the reply")
}
