//! `keylatch admin ...` and `keylatch refval push`: the admin API's client over HTTPS. One
//! trust anchor (`--ca`), rustls with the aws-lc-rs provider, no redirects, no plain HTTP. The bearer
//! token comes from `--token-file` or `KEYLATCH_TOKEN`, never from the command line, and lives in
//! zeroizing memory. [`AdminClient`] is also what the tests drive the API with.

pub mod commands;

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use zeroize::Zeroizing;

/// Largest reply body read.
const MAX_REPLY: u64 = 8 << 20;
/// Per-request timeout.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The environment variable holding the token when `--token-file` is not given.
pub const TOKEN_ENV: &str = "KEYLATCH_TOKEN";

/// Where the broker is and how to reach it (the flags every remote command takes).
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The broker, `https://host:port`.
    #[arg(long)]
    pub url: String,
    /// PEM CA certificate(s) the broker's TLS certificate must chain to.
    #[arg(long)]
    pub ca: PathBuf,
    /// File holding the admin token (default: the KEYLATCH_TOKEN environment variable).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

impl Connection {
    /// Connects with the token from `--token-file` or the environment.
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        let token = match &self.token_file {
            Some(p) => read_token(p)?,
            None => Zeroizing::new(
                std::env::var(TOKEN_ENV)
                    .with_context(|| format!("no --token-file and no {TOKEN_ENV}"))?
                    .trim()
                    .to_owned(),
            ),
        };
        let ca =
            std::fs::read(&self.ca).with_context(|| format!("reading {}", self.ca.display()))?;
        AdminClient::new(&self.url, &ca, token)
    }
}

fn read_token(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// A non-2xx answer: the status and the broker's `{type, detail}`.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status} {error_type}: {detail}")]
pub struct Refused {
    pub status: u16,
    pub error_type: String,
    pub detail: String,
}

/// An authenticated connection to the admin API.
pub struct AdminClient {
    agent: ureq::Agent,
    base: String,
    token: Zeroizing<String>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl AdminClient {
    /// `url` is `https://host:port`; `ca_pem` the trust anchor(s); `token` the bearer token.
    pub fn new(url: &str, ca_pem: &[u8], token: Zeroizing<String>) -> anyhow::Result<Self> {
        if !url.starts_with("https://") {
            bail!("--url {url:?} must start with https://");
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.context("--ca: not PEM certificates")?).context("--ca: unusable CA")?;
        }
        if roots.is_empty() {
            bail!("--ca: no certificate in the file");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS configuration")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(tls))
            .redirects(0)
            .timeout(TIMEOUT)
            .build();
        Ok(Self { agent, base: url.trim_end_matches('/').to_owned(), token })
    }

    /// Sends `method path` with an optional JSON body; returns the status and the JSON reply.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let text = body.map(Value::to_string);
        self.request_text(method, path, text.as_deref())
    }

    /// Like [`AdminClient::request`] with the JSON body already as text (so a caller can keep
    /// it in zeroizing memory).
    pub fn request_text(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token.as_str()));
        let sent = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let resp = match sent {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => bail!("{method} {path}: {t}"),
        };
        let status = resp.status();
        let mut bytes = Vec::new();
        resp.into_reader().take(MAX_REPLY).read_to_end(&mut bytes).context("reading the reply")?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{method} {path}: reply is not JSON"))?
        };
        Ok((status, value))
    }

    /// Like [`AdminClient::request`], but a non-2xx answer is an error ([`Refused`]).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let text = body.map(Value::to_string);
        self.call_text(method, path, text.as_deref())
    }

    /// [`AdminClient::call`] with the JSON body as text.
    pub fn call_text(&self, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<Value> {
        let (status, value) = self.request_text(method, path, body)?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Err(Refused { status, error_type: text("type"), detail: text("detail") }.into())
    }
}

/// Percent-encodes one path segment (everything but unreserved characters).
#[must_use]
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Percent-encodes a `repo/type/tag` path segment by segment.
#[must_use]
pub fn resource_path(path: &str) -> String {
    path.split('/').map(segment).collect::<Vec<_>>().join("/")
}
