//! HTTPS to the broker with exactly one trust anchor: the CA given by `--ca`. rustls with the
//! aws-lc-rs provider; no OpenSSL, no system trust store, no redirects, no plain HTTP.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::AgentError;

/// Largest reply body read (a JWE of a key, a token, a challenge: all far smaller).
const MAX_BODY: u64 = 1 << 20;

/// A reply of any status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub set_cookie: Vec<String>,
}

/// The broker connection. Each call takes its own overall timeout (what is left of the
/// deadline, capped by the caller), so a hanging broker cannot hold the boot past it.
pub struct Http {
    agent: ureq::Agent,
    base: String,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Http {
    /// `base_url` is `https://host:port`; `ca_pem` holds the broker's CA certificate(s).
    pub fn new(base_url: &str, ca_pem: &[u8]) -> Result<Self, AgentError> {
        if !base_url.starts_with("https://") {
            return Err(AgentError::Local(format!("--url {base_url:?} must start with https://")));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert =
                cert.map_err(|e| AgentError::Local(format!("--ca: not PEM certificates: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| AgentError::Local(format!("--ca: unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(AgentError::Local("--ca: no certificate in the file".into()));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AgentError::Local(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(tls))
            .redirects(0)
            .timeout_connect(Duration::from_secs(10))
            .build();
        Ok(Self { agent, base: base_url.trim_end_matches('/').to_owned() })
    }

    pub fn post_json(
        &self,
        what: &'static str,
        path: &str,
        cookie: Option<&str>,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Reply, AgentError> {
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .timeout(timeout)
            .set("Content-Type", "application/json");
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        finish(what, req.send_bytes(body))
    }

    pub fn get(
        &self,
        what: &'static str,
        path: &str,
        cookie: Option<&str>,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, AgentError> {
        let mut req = self.agent.get(&format!("{}{path}", self.base)).timeout(timeout);
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        if let Some(t) = bearer {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        finish(what, req.call())
    }
}

fn finish(what: &'static str, r: Result<ureq::Response, ureq::Error>) -> Result<Reply, AgentError> {
    let resp = match r {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(ureq::Error::Transport(t)) => {
            return Err(AgentError::Transient { what, reason: t.to_string() })
        }
    };
    let status = resp.status();
    let set_cookie = resp.all("set-cookie").into_iter().map(str::to_owned).collect();
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|e| AgentError::Transient { what, reason: format!("reading the reply: {e}") })?;
    Ok(Reply { status, body, set_cookie })
}
