//! `keylatch bench release`: simulated guests doing the whole KBS handshake (auth, attest with
//! freshly minted simulated evidence, resource, JWE decryption) over real HTTPS, `--concurrency`
//! at a time for `--duration` seconds, each release with a fresh session and key pair. Without
//! `--url` it first starts a throwaway broker on 127.0.0.1 (embedded defaults, simulation PKI,
//! one 32-byte resource and a policy allowing simulated guests), so the figures measure the
//! broker itself. Prints releases/s and latency percentiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use keylatch_agent::evidence::sim::SimSource;
use keylatch_agent::evidence::SimTee;
use keylatch_agent::{fetch_resource, AgentConfig, ResourcePath};
use keylatch_wire::KeyKind;

use keylatch_broker::config::Config;
use keylatch_cli::TeeArg;
use keylatch_server::AppState;

#[derive(Debug, clap::Args)]
pub struct BenchReleaseArgs {
    /// Guests running at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, value_enum, default_value = "snp")]
    pub tee: TeeArg,
    /// The guests' ephemeral key type.
    #[arg(long, value_enum, default_value = "p256")]
    pub key: KeyArg,
    /// A running broker (`https://host:port`); without it a throwaway local broker is started.
    #[arg(long, requires_all = ["ca", "sim_pki"])]
    pub url: Option<String>,
    /// The remote broker's CA (PEM).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The simulation PKI the remote broker trusts.
    #[arg(long)]
    pub sim_pki: Option<PathBuf>,
    /// Resource to fetch on a remote broker.
    #[arg(long, default_value = "default/bench/key")]
    pub resource: String,
}

/// Ephemeral key kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyArg {
    P256,
    P384,
    Rsa3072,
}

const LOCAL_POLICY: &str =
    "[[rules]]\nname = \"bench\"\ntees = [\"snp\", \"tdx\"]\nallow_simulated = true\n";

pub async fn run(args: &BenchReleaseArgs) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.duration == 0 {
        bail!("--concurrency and --duration must be positive");
    }
    let tmp;
    let (url, ca, sim, resource, stop) = if let Some(url) = &args.url {
        let (Some(ca), Some(sim)) = (&args.ca, &args.sim_pki) else {
            bail!("--url needs --ca and --sim-pki")
        };
        (
            url.clone(),
            std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
            sim.clone(),
            args.resource.clone(),
            None,
        )
    } else {
        tmp = tempfile::tempdir().context("temporary directory")?;
        let (url, stop) = local_broker(tmp.path()).await?;
        let ca = std::fs::read(tmp.path().join(keylatch_cli::init::CA_FILE))?;
        (
            url,
            ca,
            tmp.path().join(keylatch_cli::init::SIM_DIR),
            "default/bench/key".to_owned(),
            Some(stop),
        )
    };
    let tee = match args.tee {
        TeeArg::Snp => SimTee::Snp,
        TeeArg::Tdx => SimTee::Tdx,
    };
    let source = Arc::new(SimSource::load(tee, &sim, None).map_err(|e| anyhow::anyhow!("{e}"))?);
    let config = AgentConfig {
        url: url.clone(),
        ca_pem: ca,
        key_kind: match args.key {
            KeyArg::P256 => KeyKind::P256,
            KeyArg::P384 => KeyKind::P384,
            KeyArg::Rsa3072 => KeyKind::Rsa3072,
        },
        init_data: None,
        deadline: Duration::from_secs(10),
        evidence: source,
    };
    let path =
        ResourcePath::parse(&format!("kbs:///{resource}")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let duration = Duration::from_secs(args.duration);
    let concurrency = args.concurrency;
    println!(
        "bench release: {url}, {concurrency} guests, {} s, tee {:?}, key {:?}",
        args.duration, args.tee, args.key
    );
    let (mut latencies, errors, elapsed) =
        tokio::task::spawn_blocking(move || drive(&config, &path, concurrency, duration)).await?;
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    report(&mut latencies, errors, elapsed);
    Ok(())
}

/// Runs the guests; returns (latencies of successful releases, error count, wall time).
fn drive(
    config: &AgentConfig,
    path: &ResourcePath,
    n: usize,
    duration: Duration,
) -> (Vec<Duration>, usize, Duration) {
    let start = Instant::now();
    let end = start + duration;
    let results: Vec<(Vec<Duration>, usize, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let (mut lat, mut errors, mut first_error) = (Vec::new(), 0usize, None);
                    while Instant::now() < end {
                        let t = Instant::now();
                        match fetch_resource(config, path) {
                            Ok(_key) => lat.push(t.elapsed()),
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    (lat, errors, first_error)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let elapsed = start.elapsed();
    let mut all = Vec::new();
    let mut errors = 0;
    for (lat, e, first) in results {
        all.extend(lat);
        errors += e;
        if let Some(first) = first {
            eprintln!("error (first of this guest): {first}");
        }
    }
    (all, errors, elapsed)
}

fn report(latencies: &mut [Duration], errors: usize, elapsed: Duration) {
    latencies.sort_unstable();
    let pct = |p: usize| {
        let i = (latencies.len() * p / 100).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    #[allow(clippy::cast_precision_loss)] // reason: counts far below 2^52
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!("releases: {} in {:.1} s ({errors} errors)", latencies.len(), elapsed.as_secs_f64());
    println!("releases/s: {rate:.1}");
    println!("latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}", pct(50), pct(90), pct(99));
}

/// Starts a throwaway broker in `dir`; returns its URL and the shutdown trigger.
async fn local_broker(
    dir: &std::path::Path,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let config_path = keylatch_cli::init::init_dir(
        dir,
        true,
        &[],
        "127.0.0.1:0",
        &keylatch_cli::init::KeystoreChoice::Soft,
    )
    .await?;
    let mut config = Config::load(&config_path)?;
    // Every simulated guest comes from 127.0.0.1: the per-address rate limit would measure
    // itself, not the broker.
    config.rate_limit.per_second = 0;
    let state = AppState::from_config(&config).await?;
    keylatch_cli::admin::put_resource(
        &state.audit,
        state.store.as_ref(),
        Arc::clone(&state.keystore),
        "default/bench/key",
        keylatch_cli::admin::Source::Random(32),
    )
    .await?;
    keylatch_cli::admin::set_policy(
        &state.audit,
        state.store.as_ref(),
        "default/bench/key",
        LOCAL_POLICY,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(keylatch_server::serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok((url, tx))
}
