//! `keylatch bench release`: simulated guests doing the whole KBS handshake (auth, attest with
//! freshly minted simulated evidence, resource, JWE decryption) over real HTTPS, `--concurrency`
//! at a time for `--duration` seconds, each release with a fresh session and key pair. Without
//! `--url` it first starts a throwaway broker on 127.0.0.1 (embedded defaults, simulation PKI,
//! one 32-byte resource and a policy allowing simulated guests), so the figures measure the
//! broker itself.
//!
//! Two ways to load it: closed loop (`--concurrency N` guests, each starting its next release
//! when the last one ends) and open loop (`--rate R`: a guest arrives every 1/R s whatever the
//! answers, and its latency counts from its scheduled arrival, so a slow broker cannot hide
//! behind guests that wait for it). Prints releases/s, latency percentiles, the CPU time of
//! this process per release (guests and broker together), the bytes it wrote to storage and
//! the device flushes per release.

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
    /// Closed loop: guests running at once. Open loop (`--rate`): the most guests in flight
    /// (arrivals beyond it wait, and their waiting counts in their latency).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Open loop: guests arriving per second, whatever the answers.
    #[arg(long)]
    pub rate: Option<f64>,
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
    /// The throwaway broker's store: its own SQLite file, or a PostgreSQL server the bench
    /// starts in a temporary directory and stops at exit, as the tests do (Debian's
    /// `postgresql` package). PostgreSQL's own writes are not in the bytes-written figure.
    #[arg(long, value_enum, default_value = "sqlite", conflicts_with = "url")]
    pub store: StoreArg,
    /// The throwaway broker's keystore: a KEK file, or a fresh SoftHSM2 token the bench
    /// initializes, reached through PKCS#11 (Debian's `softhsm2` package).
    #[arg(long, value_enum, default_value = "soft", conflicts_with = "url")]
    pub keystore: KeystoreArg,
}

/// Where the throwaway broker keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreArg {
    Sqlite,
    Postgres,
}

/// Where the throwaway broker's key-encryption key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeystoreArg {
    Soft,
    Pkcs11,
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

/// Closed-loop guests by default.
const DEFAULT_CONCURRENCY: usize = 4;
/// In-flight cap of the open loop by default.
const DEFAULT_OPEN_LOOP_CAP: usize = 256;

/// How the guests arrive.
#[derive(Debug, Clone, Copy)]
enum Load {
    Closed { guests: usize },
    Open { rate: f64, cap: usize },
}

pub async fn run(args: &BenchReleaseArgs) -> anyhow::Result<()> {
    let load = match args.rate {
        None => Load::Closed { guests: args.concurrency.unwrap_or(DEFAULT_CONCURRENCY) },
        Some(rate) if rate.is_finite() && rate > 0.0 => {
            Load::Open { rate, cap: args.concurrency.unwrap_or(DEFAULT_OPEN_LOOP_CAP) }
        }
        Some(_) => bail!("--rate must be a positive number of guests per second"),
    };
    if matches!(load, Load::Closed { guests: 0 } | Load::Open { cap: 0, .. }) || args.duration == 0
    {
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
        let (url, stop) = local_broker(tmp.path(), args.store, args.keystore).await?;
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
    if args.url.is_none() {
        println!("local broker: store {:?}, keystore {:?}", args.store, args.keystore);
    }
    match load {
        Load::Closed { guests } => println!(
            "bench release: {url}, closed loop, {guests} guests, {} s, tee {:?}, key {:?}",
            args.duration, args.tee, args.key
        ),
        Load::Open { rate, cap } => println!(
            "bench release: {url}, open loop, {rate} guests/s (at most {cap} in flight), {} s, \
             tee {:?}, key {:?}",
            args.duration, args.tee, args.key
        ),
    }
    // Timed before the load starts, on the same machine, with nothing else of ours running.
    let floor = crate::floor::Floor::measure(args.tee)?;
    let before = Usage::now();
    let mut run = tokio::task::spawn_blocking(move || match load {
        Load::Closed { guests } => closed_loop(&config, &path, guests, duration),
        Load::Open { rate, cap } => open_loop(&config, &path, rate, cap, duration),
    })
    .await?;
    let used = Usage::now().since(&before);
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    let rate = report(&mut run, &used);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    floor.print(cores, rate);
    Ok(())
}

/// What the guests did.
#[derive(Debug, Default)]
struct Run {
    /// Of the successful releases.
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Run {
    fn record(&mut self, started: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => self.latencies.push(started.elapsed()),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(runs: impl IntoIterator<Item = Run>, elapsed: Duration) -> Run {
        let mut all = Run { elapsed, ..Run::default() };
        for run in runs {
            all.latencies.extend(run.latencies);
            all.errors += run.errors;
            if all.first_error.is_none() {
                all.first_error = run.first_error;
            }
        }
        all
    }
}

/// One whole release by one guest (a fresh session and key pair).
fn release_once(config: &AgentConfig, path: &ResourcePath) -> Result<(), String> {
    fetch_resource(config, path).map(drop).map_err(|e| e.to_string())
}

/// `guests` guests, each starting its next release as soon as its last one ended.
fn closed_loop(
    config: &AgentConfig,
    path: &ResourcePath,
    guests: usize,
    duration: Duration,
) -> Run {
    let start = Instant::now();
    let end = start + duration;
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..guests)
            .map(|_| {
                s.spawn(|| {
                    let mut run = Run::default();
                    while Instant::now() < end {
                        let started = Instant::now();
                        run.record(started, release_once(config, path));
                    }
                    run
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    Run::merge(runs, start.elapsed())
}

/// A guest every `1/rate` s for `duration`, at most `cap` in flight; each latency counts from
/// the guest's scheduled arrival, not from when a worker took it.
fn open_loop(
    config: &AgentConfig,
    path: &ResourcePath,
    rate: f64,
    cap: usize,
    duration: Duration,
) -> Run {
    let (arrivals, queue) = std::sync::mpsc::channel::<Instant>();
    let queue = std::sync::Mutex::new(queue);
    let start = Instant::now();
    let runs: Vec<Run> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..cap)
            .map(|_| {
                s.spawn(|| {
                    let mut run = Run::default();
                    loop {
                        let next = queue.lock().map_err(drop).and_then(|q| q.recv().map_err(drop));
                        let Ok(scheduled) = next else { break };
                        run.record(scheduled, release_once(config, path));
                    }
                    run
                })
            })
            .collect();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut scheduled = start;
        while scheduled < start + duration {
            std::thread::sleep(scheduled.saturating_duration_since(Instant::now()));
            if arrivals.send(scheduled).is_err() {
                break;
            }
            scheduled += interval;
        }
        drop(arrivals);
        workers.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    Run::merge(runs, start.elapsed())
}

/// What this process used, read from `/proc` (Linux): CPU time of all its threads, bytes it
/// caused to be written to storage, and the flushes the disk completed (the whole device:
/// Linux counts no fsyncs per process, and on the bench machine the bench is what syncs).
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    cpu: Duration,
    written: u64,
    flushes: u64,
}

impl Usage {
    fn now() -> Self {
        Self {
            cpu: process_cpu().unwrap_or_default(),
            written: proc_field("/proc/self/io", "write_bytes:").unwrap_or(0),
            flushes: device_flushes().unwrap_or(0),
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(before.cpu),
            written: self.written.saturating_sub(before.written),
            flushes: self.flushes.saturating_sub(before.flushes),
        }
    }
}

/// Linux's USER_HZ, the unit of `/proc/self/stat`'s CPU times, on every architecture it runs.
const CLOCK_TICKS_PER_S: u64 = 100;

/// utime + stime of every thread of this process.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / CLOCK_TICKS_PER_S))
}

/// The number after `key` in a `key: value` file such as `/proc/self/io`.
fn proc_field(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok())
}

/// Flush requests completed, summed over the whole disks in `/proc/diskstats` (field 16 after
/// the device name, Linux 5.5 and later); partitions are left out so nothing counts twice.
fn device_flushes() -> Option<u64> {
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let mut total = 0;
    for line in stats.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = fields.get(2) else { continue };
        let whole_disk = std::path::Path::new("/sys/block").join(name).exists();
        if let (true, Some(flushes)) = (whole_disk, fields.get(3 + 15)) {
            total += flushes.parse::<u64>().unwrap_or(0);
        }
    }
    Some(total)
}

/// Prints the figures; returns the releases per second.
fn report(run: &mut Run, used: &Usage) -> f64 {
    if let Some(first) = &run.first_error {
        eprintln!("first error: {first}");
    }
    run.latencies.sort_unstable();
    let latencies = &run.latencies;
    let pct = |p: usize| {
        let i = (latencies.len() * p / 100).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    #[allow(clippy::cast_precision_loss)] // reason: counts far below 2^52
    let (count, rate) = {
        let count = latencies.len().max(1) as f64;
        (count, latencies.len() as f64 / run.elapsed.as_secs_f64())
    };
    println!(
        "releases: {} in {:.1} s ({} errors)",
        latencies.len(),
        run.elapsed.as_secs_f64(),
        run.errors
    );
    println!("releases/s: {rate:.1}");
    println!("latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}", pct(50), pct(90), pct(99));
    #[allow(clippy::cast_precision_loss)] // reason: byte and flush counts far below 2^52
    {
        println!(
            "per release: {:.2} ms CPU (user+sys of this process: guests and broker), \
             {:.0} bytes written, {:.2} device flushes",
            used.cpu.as_secs_f64() * 1e3 / count,
            used.written as f64 / count,
            used.flushes as f64 / count,
        );
    }
    rate
}

/// Starts a throwaway broker in `dir`; returns its URL and the shutdown trigger.
async fn local_broker(
    dir: &std::path::Path,
    store: StoreArg,
    keystore: KeystoreArg,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let keystore = match keystore {
        KeystoreArg::Soft => keylatch_cli::init::KeystoreChoice::Soft,
        KeystoreArg::Pkcs11 => {
            let hsm = e2e::SoftHsm::create(dir)?
                .context("--keystore pkcs11 needs SoftHSM2 (apt-get install softhsm2)")?;
            let (name, conf) = hsm.env();
            // Before any PKCS#11 call: SoftHSM2 reads its configuration when loaded.
            std::env::set_var(name, conf);
            keylatch_cli::init::KeystoreChoice::Pkcs11 {
                module: e2e::hsm::MODULE.into(),
                token_label: hsm.label.clone(),
                pin_file: hsm.pin_file.clone(),
            }
        }
    };
    let config_path =
        keylatch_cli::init::init_dir(dir, true, &[], "127.0.0.1:0", &keystore).await?;
    let mut config = Config::load(&config_path)?;
    if store == StoreArg::Postgres {
        let server = e2e::postgres::server()?
            .context("--store postgres needs PostgreSQL (apt-get install postgresql)")?;
        config.store.backend = keylatch_broker::config::StoreBackend::Postgres;
        config.store.url = Some(server.database()?);
        config.store.password_file = Some(server.password_file.clone());
        config.store.path = None;
    }
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
