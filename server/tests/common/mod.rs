//! The test broker: `keylatch init --simulated` in a temporary directory, the configuration
//! edited per test, one resource with known bytes and a policy, and the real server on
//! `127.0.0.1:0` over HTTPS in its own runtime. Clients are blocking (the agent library, or its
//! `Http` for hand-made requests).

// reason: test helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keylatch_agent::evidence::sim::SimSource;
use keylatch_agent::evidence::{EvidenceSource, SimTee};
use keylatch_agent::http::{Http, Reply};
use keylatch_agent::{AgentConfig, AgentError, Client, ResourcePath};
use keylatch_wire::{report_data_binding, ErrorBody, KeyKind, TeeKeyPair};
use serde_json::{json, Value};

pub const RESOURCE: &str = "default/disk-key/vm-1";
pub const SECRET: &[u8] = b"the disk key: 0123456789abcdef0123456789abcdef";
pub const ALLOW_SIM: &str =
    "[[rules]]\nname = \"sim\"\ntees = [\"snp\", \"tdx\"]\nallow_simulated = true\n";

pub struct Broker {
    pub rt: tokio::runtime::Runtime,
    pub url: String,
    pub ca: Vec<u8>,
    pub dir: tempfile::TempDir,
    pub state: keylatch_server::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Broker {
    /// A broker whose config text went through `edit`, with [`RESOURCE`] = [`SECRET`] under
    /// `policy`.
    pub fn start(edit: impl FnOnce(String) -> String, policy: &str) -> Self {
        Self::start_with(edit, policy, |_| {})
    }

    /// Like [`Broker::start`]; `prepare` may add files to the directory before the config loads.
    pub fn start_with(
        edit: impl FnOnce(String) -> String,
        policy: &str,
        prepare: impl FnOnce(&Path),
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config_path = rt
            .block_on(keylatch_cli::init::init_dir(
                dir.path(),
                true,
                &[],
                "127.0.0.1:0",
                &keylatch_cli::init::KeystoreChoice::Soft,
            ))
            .unwrap();
        prepare(dir.path());
        let text = std::fs::read_to_string(&config_path).unwrap();
        std::fs::remove_file(&config_path).unwrap();
        std::fs::write(&config_path, edit(text)).unwrap();
        let config = keylatch_broker::Config::load(&config_path).unwrap();
        let state = rt.block_on(keylatch_server::AppState::from_config(&config)).unwrap();
        rt.block_on(async {
            keylatch_cli::admin::put_resource(
                &state.audit,
                state.store.as_ref(),
                Arc::clone(&state.keystore),
                RESOURCE,
                keylatch_cli::admin::Source::Bytes(SECRET.to_vec().into()),
            )
            .await
            .unwrap();
            keylatch_cli::admin::set_policy(&state.audit, state.store.as_ref(), RESOURCE, policy)
                .await
                .unwrap();
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(keylatch_server::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
        Self { rt, url, ca, dir, state, stop: Some(tx) }
    }

    pub fn sim_dir(&self) -> PathBuf {
        self.dir.path().join("sim-pki")
    }

    pub fn source(&self, tee: SimTee) -> Arc<SimSource> {
        Arc::new(SimSource::load(tee, &self.sim_dir(), None).unwrap())
    }

    pub fn agent(&self, evidence: Arc<dyn EvidenceSource>, key: KeyKind) -> AgentConfig {
        AgentConfig {
            url: self.url.clone(),
            ca_pem: self.ca.clone(),
            key_kind: key,
            init_data: None,
            deadline: Duration::from_secs(20),
            evidence,
        }
    }

    /// Fetches [`RESOURCE`] with the agent library.
    pub fn fetch(
        &self,
        evidence: Arc<dyn EvidenceSource>,
        key: KeyKind,
    ) -> Result<Vec<u8>, AgentError> {
        self.fetch_path(evidence, key, RESOURCE)
    }

    pub fn fetch_path(
        &self,
        evidence: Arc<dyn EvidenceSource>,
        key: KeyKind,
        path: &str,
    ) -> Result<Vec<u8>, AgentError> {
        let mut client = Client::new(self.agent(evidence, key)).unwrap();
        let r = ResourcePath::parse(&format!("kbs:///{path}")).unwrap();
        client.get_resource(&r).map(|z| z.to_vec())
    }

    pub fn http(&self) -> Http {
        Http::new(&self.url, &self.ca).unwrap()
    }

    pub fn put_policy(&self, path: &str, policy: &str) {
        self.rt
            .block_on(keylatch_cli::admin::set_policy(
                &self.state.audit,
                self.state.store.as_ref(),
                path,
                policy,
            ))
            .unwrap();
    }
}

/// The broker's error body of a reply; asserts the status.
pub fn error_of(reply: &Reply, status: u16) -> ErrorBody {
    assert_eq!(reply.status, status, "body: {}", String::from_utf8_lossy(&reply.body));
    ErrorBody::parse(&reply.body).expect("JSON error body")
}

/// The broker error carried by an agent error.
pub fn agent_error(e: &AgentError) -> (u16, ErrorBody) {
    match e {
        AgentError::Refused { status, body: Some(b), .. }
        | AgentError::Denied { status, body: Some(b), .. } => (*status, b.clone()),
        other => panic!("not a broker refusal: {other:?}"),
    }
}

/// A hand-driven handshake, for requests the agent would never send.
pub struct Raw {
    pub http: Http,
    pub cookie: String,
    pub nonce: String,
    pub key: TeeKeyPair,
}

const T: Duration = Duration::from_secs(20);

/// The broker's reply to `body` POSTed to `/kbs/v0/auth`, whatever its status.
pub fn post_auth(http: &Http, body: &[u8]) -> Reply {
    http.post_json("auth", "/kbs/v0/auth", None, body, T).unwrap()
}

impl Raw {
    pub fn auth(broker: &Broker, tee: &str) -> Self {
        let http = broker.http();
        let request = json!({"version":"0.4.0","tee":tee,"extra-params":{"supported-hash-algorithms":["sha384"]}});
        let reply = post_auth(&http, request.to_string().as_bytes());
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let cookie = reply.set_cookie[0].split(';').next().unwrap().to_owned();
        let challenge: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(challenge["extra-params"], json!(""));
        let nonce = challenge["nonce"].as_str().unwrap().to_owned();
        Self { http, cookie, nonce, key: TeeKeyPair::generate(KeyKind::P256).unwrap() }
    }

    /// An attestation body: evidence from `source` bound to `bind_nonce`, `runtime-data.nonce` =
    /// `body_nonce`; `edit` may change the evidence JSON.
    pub fn body(
        &self,
        source: &dyn EvidenceSource,
        bind_nonce: &str,
        body_nonce: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Vec<u8> {
        let jwk = self.key.public_jwk();
        let rd = report_data_binding(bind_nonce, &jwk, "");
        let mut evidence = source.evidence(&rd).unwrap();
        edit(&mut evidence);
        json!({
            "init-data": null,
            "runtime-data": {"nonce": body_nonce, "tee-pubkey": jwk.to_json()},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
        })
        .to_string()
        .into_bytes()
    }

    pub fn attest(&self, body: &[u8]) -> Reply {
        self.http.post_json("attest", "/kbs/v0/attest", Some(&self.cookie), body, T).unwrap()
    }

    /// A correct attestation; returns the token.
    pub fn attest_ok(&self, source: &dyn EvidenceSource) -> String {
        let reply = self.attest(&self.body(source, &self.nonce, &self.nonce, |_| {}));
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    pub fn resource(&self, path: &str, cookie: bool, bearer: Option<&str>) -> Reply {
        let cookie = cookie.then_some(self.cookie.as_str());
        self.http.get("resource", &format!("/kbs/v0/resource/{path}"), cookie, bearer, T).unwrap()
    }
}

/// What this test process logged through [`LogWriter`] (and, in the CLI tests, every output of
/// the `keylatch` runs).
pub static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A log writer (for `tracing_subscriber`'s `with_writer`) that appends to [`LOGS`].
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
