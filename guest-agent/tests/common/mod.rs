//! Test fixtures: a simulation PKI on disk, a CA and an HTTPS server on 127.0.0.1:0 that a test
//! scripts request by request, and a minimal KBS broker built on `keylatch-wire` and `verifier`.

// reason: test helpers fail loudly; clippy.toml relaxes this only inside #[test] functions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keylatch_wire::kbs_types::Attestation;
use keylatch_wire::{b64, report_data_binding, ErrorBody, Jwk};
use rand_core::{OsRng, RngCore};
use verifier::sim::SimPki;

/// A fresh simulation PKI written into `dir` (as `keylatch sim init` does).
pub fn write_pki(dir: &Path) -> SimPki {
    let pki = SimPki::generate(&mut OsRng).unwrap();
    for (name, bytes) in pki.to_files().unwrap() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    pki
}

/// A CA and a server certificate for 127.0.0.1 issued by it.
pub struct TestTls {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn tls() -> TestTls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    TestTls { ca_pem: ca.pem(), server: Arc::new(server) }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A reply: status, extra headers, body.
pub type Resp = (u16, Vec<(String, String)>, Vec<u8>);

pub type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

/// An HTTPS server on 127.0.0.1 that answers every request with `handler`.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(tls: &TestTls, handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve(listener, tls, handler)
    }

    pub fn serve(listener: TcpListener, tls: &TestTls, handler: Handler) -> Self {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop2, log2, config) = (Arc::clone(&stop), Arc::clone(&log), Arc::clone(&tls.server));
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        tcp.set_nonblocking(false).unwrap();
                        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
                        let mut stream = rustls::StreamOwned::new(conn, tcp);
                        if let Some(req) = read_request(&mut stream) {
                            let (status, headers, body) = handler(&req);
                            log2.lock()
                                .unwrap()
                                .push(format!("{} {} {status}", req.method, req.path));
                            let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                            for (k, v) in headers {
                                head.push_str(&k);
                                head.push_str(": ");
                                head.push_str(&v);
                                head.push_str("\r\n");
                            }
                            head.push_str("\r\n");
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(&body);
                            let _ = stream.flush();
                            stream.conn.send_close_notify();
                            let _ = stream.flush();
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, stop, log }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn read_request(stream: &mut impl Read) -> Option<Req> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    Some(Req { method, path, headers, body })
}

pub fn error(status: u16, ty: &str, detail: &str) -> Resp {
    (status, vec![], serde_json::to_vec(&ErrorBody::new(ty, detail)).unwrap())
}

/// Checks evidence for the expected REPORT_DATA; `Err` is the broker's refusal reason.
pub type EvidenceCheck = Box<dyn Fn(&Attestation, &[u8; 64]) -> Result<(), String> + Send + Sync>;

/// A minimal KBS: sessions with nonces, REPORT_DATA recomputed from the session's nonce and
/// checked in the evidence (by `check_evidence`), tokens naming the tee-pubkey, JWE replies.
pub struct MiniKbs {
    /// session id → nonce
    sessions: Mutex<HashMap<String, String>>,
    /// token → tee-pubkey
    tokens: Mutex<HashMap<String, Jwk>>,
    pub secret: Vec<u8>,
    pub token_lifetime_s: i64,
    /// Checks the evidence for the expected REPORT_DATA; returns a reason to refuse.
    pub check_evidence: EvidenceCheck,
}

impl MiniKbs {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            sessions: Mutex::default(),
            tokens: Mutex::default(),
            secret: secret.to_vec(),
            token_lifetime_s: 300,
            check_evidence: Box::new(|_, _| Ok(())),
        }
    }

    pub fn handle(&self, req: &Req) -> Resp {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/kbs/v0/auth") => {
                let r: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                if r["version"] != "0.4.0" {
                    return error(401, "version", "protocol version mismatch");
                }
                let mut nonce = [0u8; 32];
                OsRng.fill_bytes(&mut nonce);
                let nonce =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, nonce);
                let id = format!("s{}", OsRng.next_u64());
                self.sessions.lock().unwrap().insert(id.clone(), nonce.clone());
                let body = serde_json::json!({"nonce": nonce, "extra-params": ""});
                (
                    200,
                    vec![(
                        "Set-Cookie".into(),
                        format!("kbs-session-id={id}; Expires=Wed, 21 Oct 2099 07:28:00 GMT"),
                    )],
                    body.to_string().into_bytes(),
                )
            }
            ("POST", "/kbs/v0/attest") => {
                let Some(nonce) = self.session_nonce(req) else {
                    return error(401, "session", "no session");
                };
                let a: Attestation = serde_json::from_slice(&req.body).unwrap();
                if a.runtime_data.nonce != nonce {
                    return error(401, "nonce", "nonce differs from the session's");
                }
                let jwk = Jwk::from_tee_pubkey(&a.runtime_data.tee_pubkey).unwrap();
                let rd = report_data_binding(&nonce, &jwk, &a.tee_evidence.additional_evidence);
                if let Err(why) = (self.check_evidence)(&a, &rd) {
                    return error(401, "attestation", &why);
                }
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let payload = b64::encode(
                    serde_json::json!({"exp": now + self.token_lifetime_s}).to_string().as_bytes(),
                );
                let token = format!("eyJhbGciOiJub25lIn0.{payload}.t{}", OsRng.next_u64());
                self.tokens.lock().unwrap().insert(token.clone(), jwk);
                (200, vec![], serde_json::json!({"token": token}).to_string().into_bytes())
            }
            ("GET", p) if p.starts_with("/kbs/v0/resource/") => {
                let token = req
                    .headers
                    .get("authorization")
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .unwrap_or("");
                let Some(jwk) = self.tokens.lock().unwrap().get(token).cloned() else {
                    return error(401, "token", "no valid token");
                };
                let jwe = keylatch_wire::encrypt(&jwk, &self.secret).unwrap();
                (200, vec![], jwe.to_json().into_bytes())
            }
            _ => error(404, "not-found", "no such endpoint"),
        }
    }

    fn session_nonce(&self, req: &Req) -> Option<String> {
        let cookie = req.headers.get("cookie")?;
        let id =
            cookie.split(';').map(str::trim).find_map(|c| c.strip_prefix("kbs-session-id="))?;
        self.sessions.lock().unwrap().remove(id)
    }
}
