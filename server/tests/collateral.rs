//! Collateral acquisition against a local HTTP server that replays the recorded vectors as AMD
//! KDS and Intel PCS/PCCS would serve them (never the internet): fetch then cache hit, 429 with
//! Retry-After, 5xx retries then a specific error, TDX expiry, offline sources and the
//! evidence's own certificate table taking precedence, and fetched collateral verifying real
//! evidence at the vectors' `at`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // reason: tests fail loudly

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keylatch_broker::collateral::HardwareCollateral;
use keylatch_broker::collateral::{
    CollateralConfig, CollateralFetcher, CollateralService, CollateralStore,
};
use keylatch_broker::evidence::Verifiers;
use keylatch_broker::store::SqliteStore;
use keylatch_broker::ErrorKind;
use serde_json::Value;
use verifier::snp::{SnpEndorsements, SnpTrustAnchors, SnpVerifier};
use verifier::tdx::{TdxCollateral, TdxTrustAnchors, TdxVerifier};
use verifier::Tee;

/// SNP evidence JSON decoded as the broker decodes it once per attest.
fn coco(evidence: &Value) -> verifier::CocoEvidence {
    verifier::CocoEvidence::from_value(Tee::Snp, evidence).unwrap()
}

fn at(case: &Path) -> time::OffsetDateTime {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
    time::OffsetDateTime::parse(
        expected["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// A scripted reply that overrides the recorded one.
#[derive(Clone)]
enum Scripted {
    Status(u16, Option<&'static str>),
}

/// The fake KDS + PCS: recorded bodies by path, a script of overrides, and hit counters.
struct Upstream {
    vcek: Option<(String, Vec<u8>)>,
    tdx: Option<TdxCollateralJson>,
    script: Mutex<VecDeque<Scripted>>,
    hits: AtomicUsize,
}

#[derive(Clone)]
struct TdxCollateralJson(Value);

fn enc(s: &str) -> HeaderValue {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push_str(&hex::encode_upper([b]));
        }
    }
    HeaderValue::from_str(&out).unwrap()
}

impl Upstream {
    fn reply(&self, uri: &Uri) -> Response {
        self.hits.fetch_add(1, Ordering::SeqCst);
        if let Some(Scripted::Status(code, retry_after)) = self.script.lock().unwrap().pop_front() {
            let mut h = HeaderMap::new();
            if let Some(r) = retry_after {
                h.insert("retry-after", HeaderValue::from_static(r));
            }
            return (StatusCode::from_u16(code).unwrap(), h, "scripted").into_response();
        }
        let path = uri.path();
        let query = uri.query().unwrap_or_default();
        if let Some((want, der)) = &self.vcek {
            if format!("{path}?{query}") == *want {
                return (StatusCode::OK, der.clone()).into_response();
            }
        }
        let Some(TdxCollateralJson(c)) = &self.tdx else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let s = |k: &str| c[k].as_str().unwrap().to_owned();
        // PCS serves a signed item as `{"<name>":<item>,"signature":"<hex>"}`, its issuer chain
        // in a header; the recorded collateral keeps `<key>`, `<key>_signature` and
        // `<key>_issuer_chain`.
        let signed = |header: &'static str, key: &str, name: &str| {
            let mut h = HeaderMap::new();
            h.insert(header, enc(&s(&format!("{key}_issuer_chain"))));
            let body = format!(
                r#"{{"{name}":{},"signature":"{}"}}"#,
                s(key),
                s(&format!("{key}_signature"))
            );
            (h, body).into_response()
        };
        match path {
            "/sgx/certification/v4/pckcrl" if query.contains("ca=platform") => {
                let mut h = HeaderMap::new();
                h.insert("SGX-PCK-CRL-Issuer-Chain", enc(&s("pck_crl_issuer_chain")));
                (h, hex::decode(s("pck_crl")).unwrap()).into_response()
            }
            "/tdx/certification/v4/tcb" => signed("TCB-Info-Issuer-Chain", "tcb_info", "tcbInfo"),
            "/tdx/certification/v4/qe/identity" => {
                signed("SGX-Enclave-Identity-Issuer-Chain", "qe_identity", "enclaveIdentity")
            }
            // A PCCS serves the root CA CRL as hex text.
            "/sgx/certification/v4/rootcacrl" => s("root_ca_crl").into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve(upstream: Arc<Upstream>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let u = Arc::clone(&upstream);
        async move { u.reply(&uri) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn config(base: &str) -> CollateralConfig {
    CollateralConfig {
        kds_url: base.to_owned(),
        pcs_url: base.to_owned(),
        requests_per_second: 50,
        max_retries: 2,
        backoff_initial_ms: 10,
        ..CollateralConfig::default()
    }
}

/// The collateral service as the server wires it: `config`, an optional offline TDX source,
/// `db`, and the edge's fetcher.
fn service(
    config: &CollateralConfig,
    tdx_offline: Option<&Path>,
    db: Arc<dyn CollateralStore>,
) -> CollateralService {
    let fetcher: Arc<dyn CollateralFetcher> =
        Arc::new(keylatch_server::fetch::UreqFetcher::new(config));
    CollateralService::new(config, tdx_offline, db, Some(fetcher)).unwrap()
}

async fn store(dir: &Path) -> Arc<dyn CollateralStore> {
    Arc::new(SqliteStore::open(&dir.join("kbs.db"), true).await.unwrap())
}

/// `up` served on a local port and the service over it with the test configuration and a fresh
/// database; also the base URL, and the directory, which must outlive the service.
async fn service_over(up: &Arc<Upstream>) -> (CollateralService, String, tempfile::TempDir) {
    let base = serve(Arc::clone(up)).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&config(&base), None, store(dir.path()).await);
    (svc, base, dir)
}

struct SnpCase {
    report: Vec<u8>,
    vcek: Vec<u8>,
    at: time::OffsetDateTime,
    kds_path: String,
}

fn milan_case(v: &Path) -> SnpCase {
    let case = v.join("snp/milan-v2-virtee");
    let report = std::fs::read(case.join("report.bin")).unwrap();
    let chip_id = &report[0x1A0..0x1E0];
    SnpCase {
        vcek: std::fs::read(case.join("vcek.der")).unwrap(),
        at: at(&case),
        // The exact KDS request: REPORTED_TCB per expected.json is bl=3 tee=0 snp=8 ucode=115.
        kds_path: format!(
            "/vcek/v1/Milan/{}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115",
            hex::encode(chip_id)
        ),
        report,
    }
}

/// An offline SNP certificate directory under `dir` holding `vcek` as the Milan VCEK.
fn offline_snp_certs(dir: &Path, vcek: &[u8]) -> PathBuf {
    let certs = dir.join("snp-certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("milan-vcek.der"), vcek).unwrap();
    certs
}

fn snp_upstream(c: &SnpCase, script: Vec<Scripted>) -> Arc<Upstream> {
    Arc::new(Upstream {
        vcek: Some((c.kds_path.clone(), c.vcek.clone())),
        tdx: None,
        script: Mutex::new(script.into()),
        hits: AtomicUsize::new(0),
    })
}

fn verify_snp(c: &SnpCase, e: &SnpEndorsements) -> verifier::Claims {
    SnpVerifier::new(SnpTrustAnchors::production().unwrap())
        .verify(&c.report, e, None, c.at)
        .unwrap()
}

#[tokio::test]
async fn vcek_is_fetched_from_kds_once_then_served_from_cache_and_store() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = milan_case(&v);
    let up = snp_upstream(&c, vec![]);
    let base = serve(Arc::clone(&up)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let svc = service(&config(&base), None, Arc::clone(&db));

    let first = svc.snp().for_report(&c.report).await.unwrap();
    assert_eq!(first.signer, c.vcek);
    assert_eq!(up.hits(), 1);
    let again = svc.snp().for_report(&c.report).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(up.hits(), 1, "second lookup is a memory hit");

    // A restarted broker (new service, same database) finds it in the store.
    let svc2 = service(&config(&base), None, db);
    assert_eq!(svc2.snp().for_report(&c.report).await.unwrap(), first);
    assert_eq!(up.hits(), 1, "store hit: no request");

    // The fetched VCEK verifies the real report.
    let claims = verify_snp(&c, &first);
    let snp = claims.snp.unwrap();
    assert_eq!(hex::encode(snp.chip_id.0), hex::encode(&c.report[0x1A0..0x1E0]));
    // REPORTED_TCB per expected.json: bl=3 tee=0 snp=8 ucode=115, as the KDS query asked.
    let t = snp.reported_tcb;
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode, t.fmc), (3, 0, 8, 115, None));
}

#[tokio::test]
async fn kds_429_with_retry_after_is_waited_out_then_succeeds() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = milan_case(&v);
    let up = snp_upstream(&c, vec![Scripted::Status(429, Some("1"))]);
    let (svc, _base, _dir) = service_over(&up).await;
    let e = svc.snp().for_report(&c.report).await.unwrap();
    assert_eq!(e.signer, c.vcek);
    assert_eq!(up.hits(), 2, "one 429, one success");
}

#[tokio::test]
async fn kds_5xx_is_retried_a_bounded_number_of_times_then_collateral_unavailable() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = milan_case(&v);
    let script = vec![Scripted::Status(503, None); 10];
    let up = snp_upstream(&c, script);
    let (svc, _base, _dir) = service_over(&up).await;
    let err = svc.snp().for_report(&c.report).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert_eq!(err.kind.type_id(), "collateral-unavailable");
    assert_eq!(keylatch_server::error::status(err.kind), StatusCode::SERVICE_UNAVAILABLE);
    assert!(err.detail.contains("gave up after 3 attempt(s): HTTP 503"), "{}", err.detail);
    assert_eq!(up.hits(), 3, "first try + max_retries = 2");
}

#[tokio::test]
async fn retry_after_beyond_max_backoff_gives_up_at_once() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = milan_case(&v);
    let up = snp_upstream(&c, vec![Scripted::Status(429, Some("3600"))]);
    let (svc, _base, _dir) = service_over(&up).await;
    let err = svc.snp().for_report(&c.report).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert!(err.detail.contains("Retry-After 3600s beyond max_backoff_s"), "{}", err.detail);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn offline_snp_directory_is_preferred_over_kds() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = milan_case(&v);
    let up = snp_upstream(&c, vec![]);
    let base = serve(Arc::clone(&up)).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = offline_snp_certs(dir.path(), &c.vcek);
    let cfg = CollateralConfig { snp_cert_dir: Some(certs), ..config(&base) };
    let svc = service(&cfg, None, store(dir.path()).await);
    let e = svc.snp().for_report(&c.report).await.unwrap();
    assert_eq!(e.signer, c.vcek);
    assert_eq!(up.hits(), 0);
    verify_snp(&c, &e);
}

#[tokio::test]
async fn missing_vcek_with_fetching_disabled_is_collateral_unavailable() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = milan_case(&v);
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollateralConfig { fetch: false, ..config("http://127.0.0.1:9") };
    let svc = service(&cfg, None, store(dir.path()).await);
    let err = svc.snp().for_report(&c.report).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert!(err.detail.contains("fetching is disabled"), "{}", err.detail);
}

#[tokio::test]
async fn certificate_table_in_evidence_is_preferred_over_everything() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let case = v.join("coco/snp-genoa-v3");
    let evidence: Value =
        serde_json::from_slice(&std::fs::read(case.join("evidence.json")).unwrap()).unwrap();
    // Offline dir and KDS both hold the (wrong) Milan VCEK.
    let milan = milan_case(&v);
    let up = snp_upstream(&milan, vec![]);
    let base = serve(Arc::clone(&up)).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = offline_snp_certs(dir.path(), &milan.vcek);
    // CRLs are another question (amd_crl_* tests below); this one is about the VCEK only.
    let cfg = CollateralConfig { snp_cert_dir: Some(certs), amd_crl_check: false, ..config(&base) };
    let svc = service(&cfg, None, store(dir.path()).await);
    let hw = svc.resolve(&coco(&evidence), at(&case)).await.unwrap();
    assert!(hw.snp.is_none(), "the evidence's own VCEK is used");
    assert_eq!(up.hits(), 0);

    // Even handed a wrong VCEK, the verifier uses the evidence's table and succeeds.
    let hw = HardwareCollateral {
        snp: Some(SnpEndorsements::new(milan.vcek)),
        ..HardwareCollateral::default()
    };
    let verifiers = Verifiers::new(None, None, false, false).unwrap();
    let rd: [u8; 64] = {
        let report =
            verifier::snp::report_from_coco_evidence(&serde_json::to_vec(&evidence).unwrap())
                .unwrap();
        verifier::snp::parse_report(&report.report).unwrap().report_data
    };
    let claims = verifiers.verify_with(&coco(&evidence), &rd, at(&case), &hw).unwrap();
    assert_eq!(claims.snp.unwrap().product, verifier::claims::SnpProduct::Genoa);
}

struct TdxCase {
    quote: Vec<u8>,
    collateral: Value,
    at: time::OffsetDateTime,
    path: PathBuf,
}

fn tdx_case(v: &Path) -> TdxCase {
    let case = v.join("tdx/v4-dcap-qvl");
    TdxCase {
        quote: std::fs::read(case.join("quote.bin")).unwrap(),
        collateral: serde_json::from_slice(&std::fs::read(case.join("collateral.json")).unwrap())
            .unwrap(),
        at: at(&case),
        path: case.join("collateral.json"),
    }
}

fn tdx_upstream(c: &TdxCase) -> Arc<Upstream> {
    Arc::new(Upstream {
        vcek: None,
        tdx: Some(TdxCollateralJson(c.collateral.clone())),
        script: Mutex::new(VecDeque::new()),
        hits: AtomicUsize::new(0),
    })
}

fn verify_tdx(c: &TdxCase, col: &TdxCollateral) -> verifier::Claims {
    TdxVerifier::new(TdxTrustAnchors::production()).verify(&c.quote, col, None, c.at).unwrap()
}

#[tokio::test]
async fn tdx_collateral_is_fetched_from_pcs_assembled_cached_and_verifies_the_quote() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = tdx_case(&v);
    let up = tdx_upstream(&c);
    let base = serve(Arc::clone(&up)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let svc = service(&config(&base), None, Arc::clone(&db));
    let now = c.at.unix_timestamp();
    let col = svc.tdx().for_quote(&c.quote, now).await.unwrap().unwrap();
    assert_eq!(up.hits(), 4, "PCK CRL, TCB info, QE identity, root CA CRL");
    // Assembled byte for byte like the recorded collateral.
    let recorded = TdxCollateral::from_json(&std::fs::read(&c.path).unwrap()).unwrap();
    assert_eq!(col.digest(), recorded.digest());
    let claims = verify_tdx(&c, &col);
    assert_eq!(claims.tdx.unwrap().tcb_status, verifier::claims::TcbStatus::UpToDate);

    svc.tdx().for_quote(&c.quote, now).await.unwrap().unwrap();
    assert_eq!(up.hits(), 4, "memory hit");
    let svc2 = service(&config(&base), None, db);
    let from_store = svc2.tdx().for_quote(&c.quote, now).await.unwrap().unwrap();
    assert_eq!(from_store.digest(), recorded.digest());
    assert_eq!(up.hits(), 4, "store hit");
}

#[tokio::test]
async fn tdx_collateral_past_next_update_is_refetched_and_never_used_stale() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = tdx_case(&v);
    let up = tdx_upstream(&c);
    let (svc, _base, _dir) = service_over(&up).await;
    let col = svc.tdx().for_quote(&c.quote, c.at.unix_timestamp()).await.unwrap().unwrap();
    assert_eq!(up.hits(), 4);
    let next_update = col.next_update().unwrap();
    assert!(next_update > c.at.unix_timestamp());

    // Past nextUpdate the cached copy is not used: the service fetches again. The replayed
    // server only has the same (now stale) collateral, so the answer is a specific refusal,
    // never the stale collateral.
    let err = svc.tdx().for_quote(&c.quote, next_update).await.unwrap_err();
    assert_eq!(up.hits(), 8, "refetched all four items");
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert!(err.detail.contains("past its nextUpdate"), "{}", err.detail);
}

#[tokio::test]
async fn offline_tdx_collateral_is_preferred_over_pcs() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = tdx_case(&v);
    let up = tdx_upstream(&c);
    let base = serve(Arc::clone(&up)).await;
    let dir = tempfile::tempdir().unwrap();
    // As a file, and as a directory indexed by FMSPC.
    let offline = dir.path().join("tdx");
    std::fs::create_dir(&offline).unwrap();
    std::fs::copy(&c.path, offline.join("some-name.json")).unwrap();
    for source in [c.path.clone(), offline] {
        let svc = service(&config(&base), Some(&source), store(dir.path()).await);
        let col = svc.tdx().for_quote(&c.quote, c.at.unix_timestamp()).await.unwrap().unwrap();
        verify_tdx(&c, &col);
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn tdx_pcs_5xx_gives_up_with_collateral_unavailable() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let c = tdx_case(&v);
    let up = tdx_upstream(&c);
    *up.script.lock().unwrap() = vec![Scripted::Status(500, None); 10].into();
    let (svc, _base, _dir) = service_over(&up).await;
    let err = svc.tdx().for_quote(&c.quote, c.at.unix_timestamp()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert!(err.detail.contains("HTTP 500"), "{}", err.detail);
    assert_eq!(up.hits(), 3);
}

fn genoa_coco_evidence(v: &Path) -> (Value, time::OffsetDateTime) {
    let case = v.join("coco/snp-genoa-v3");
    let evidence = serde_json::from_slice(&std::fs::read(case.join("evidence.json")).unwrap());
    (evidence.unwrap(), at(&case))
}

/// Real Genoa evidence carrying its VCEK needs the Genoa CRL (the ASK's distribution point,
/// `/vcek/v1/Genoa/crl`): KDS answering 500, KDS not listening, and KDS without it are each
/// 503 `collateral-unavailable` on the path `attest` takes, before any verification.
#[tokio::test]
async fn amd_crl_kds_down_is_collateral_unavailable() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let (evidence, now) = genoa_coco_evidence(&v);
    let milan = milan_case(&v);

    let up = snp_upstream(&milan, vec![Scripted::Status(500, None); 10]);
    let (svc, _base, _dir) = service_over(&up).await;
    let err = svc.resolve(&coco(&evidence), now).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert!(err.detail.starts_with("AMD Genoa CRL from AMD KDS: "), "{}", err.detail);
    assert!(err.detail.contains("HTTP 500"), "{}", err.detail);
    assert_eq!(up.hits(), 3, "max_retries = 2");

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cfg = CollateralConfig { max_retries: 0, timeout_s: 2, ..config(&closed) };
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&cfg, None, store(dir.path()).await);
    let err = svc.resolve(&coco(&evidence), now).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert!(err.detail.starts_with("AMD Genoa CRL from AMD KDS: "), "{}", err.detail);

    let up = snp_upstream(&milan, vec![]);
    let (svc, base, _dir) = service_over(&up).await;
    let err = svc.resolve(&coco(&evidence), now).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert!(err.detail.contains(&format!("{base}/vcek/v1/Genoa/crl")), "{}", err.detail);
}

#[tokio::test]
async fn amd_crl_with_fetching_disabled_and_no_offline_crl_is_collateral_unavailable() {
    let Some(v) = keylatch_test_vectors::dir() else { return };
    let (evidence, now) = genoa_coco_evidence(&v);
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollateralConfig { fetch: false, ..config("http://127.0.0.1:9") };
    let svc = service(&cfg, None, store(dir.path()).await);
    let err = svc.resolve(&coco(&evidence), now).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::CollateralUnavailable);
    assert_eq!(
        err.detail,
        "no current AMD Genoa CRL (vcek chain) offline or cached, and fetching is disabled"
    );
}
