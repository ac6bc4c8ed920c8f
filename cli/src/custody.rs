//! `keylatch resource import|rotate|disable|enable|destroy|set-rotate-by|list|show`,
//! `keylatch key import-public-key|wrap-for-import` and `keylatch kek rotate|status|rewrap|retire`:
//! thin store-direct callers of [`keylatch_broker::custody`] (argument parsing and printing only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use keylatch_keystore::Keystore;
use zeroize::Zeroizing;

use keylatch_broker::config::Config;
use keylatch_broker::custody::{self, Actor, Cryptoperiod, Material};
use keylatch_broker::store::Store;

/// `--rotate-by` / `--cryptoperiod-days`.
#[derive(Debug, Clone, clap::Args)]
pub struct PeriodArgs {
    /// Rotate by this instant (RFC 3339, e.g. 2027-01-01T00:00:00Z).
    #[arg(long, conflicts_with = "cryptoperiod_days")]
    pub rotate_by: Option<String>,
    /// Rotate this many days after each new version.
    #[arg(long)]
    pub cryptoperiod_days: Option<u32>,
}

impl PeriodArgs {
    /// The cryptoperiod the flags ask for (`Inherit` when none is given).
    pub fn period(&self) -> anyhow::Result<Cryptoperiod> {
        Ok(match (&self.rotate_by, self.cryptoperiod_days) {
            (Some(t), _) => Cryptoperiod::Until(
                super::parse_time(t).map_err(anyhow::Error::msg)?.unix_timestamp(),
            ),
            (None, Some(d)) => Cryptoperiod::Days(d),
            (None, None) => Cryptoperiod::Inherit,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `<repo>/<type>/<tag>`.
    pub path: String,
    /// The BYOK blob made by `keylatch key wrap-for-import` (or any RSA-OAEP-SHA-256 + AES-KWP
    /// wrapper) for this broker's import public key.
    #[arg(long)]
    pub wrapped: PathBuf,
    #[command(flatten)]
    pub period: PeriodArgs,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[arg(long)]
    pub config: PathBuf,
    pub path: String,
    /// The new version's bytes from a file (`-` for stdin); default: generated in the keystore.
    #[arg(long, conflicts_with_all = ["wrapped", "length"])]
    pub from: Option<PathBuf>,
    /// The new version from a BYOK blob.
    #[arg(long, conflicts_with = "length")]
    pub wrapped: Option<PathBuf>,
    /// Length of the generated key (default: the current version's length).
    #[arg(long)]
    pub length: Option<usize>,
    #[command(flatten)]
    pub period: PeriodArgs,
}

#[derive(Debug, clap::Args)]
pub struct PathArgs {
    #[arg(long)]
    pub config: PathBuf,
    pub path: String,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[arg(long)]
    pub config: PathBuf,
    pub path: String,
    /// Confirms that every version is to be destroyed for good.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetRotateByArgs {
    #[arg(long)]
    pub config: PathBuf,
    pub path: String,
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Remove the rotate-by date and cryptoperiod.
    #[arg(long, conflicts_with_all = ["rotate_by", "cryptoperiod_days"])]
    pub clear: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[arg(long)]
    pub config: PathBuf,
    pub path: String,
}

#[derive(Debug, clap::Args)]
pub struct ImportPublicKeyArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// Write the PEM here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct WrapForImportArgs {
    /// The broker's import public key (PEM, from `keylatch key import-public-key`).
    #[arg(long)]
    pub public_key: PathBuf,
    /// The key to wrap (raw bytes).
    #[arg(long)]
    pub key: PathBuf,
    /// Where to write the BYOK blob (created, mode 0600).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct KekArgs {
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct KekStatusArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct KekRewrapArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// Stop after re-wrapping this many versions (run again to continue).
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct KekRetireArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// The KEK to destroy (see `keylatch kek status`).
    #[arg(long)]
    pub id: String,
}

/// The store, the keystore and the warning window of a broker configuration.
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub audit: keylatch_broker::audit::AuditLog,
    pub keystore: Arc<dyn Keystore>,
    pub window_s: i64,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("store", &self.store)
            .field("audit", &self.audit)
            .field("keystore", &self.keystore.describe())
            .field("window_s", &self.window_s)
            .finish()
    }
}

pub async fn open(config: &Path) -> anyhow::Result<Opened> {
    let config = Config::load(config)?;
    let store = keylatch_broker::store::open(&config.store).await.context("opening the store")?;
    let keystore = keylatch_broker::state::open_keystore(&config)?;
    let audit = keylatch_broker::audit::for_cli(&config, Arc::clone(&store))?;
    Ok(Opened { store, audit, keystore, window_s: config.lifecycle.warning_window_s() })
}

/// Store only (commands that never touch the keystore).
async fn open_store(
    config: &Path,
) -> anyhow::Result<(Arc<dyn Store>, i64, keylatch_broker::audit::AuditLog)> {
    let config = Config::load(config)?;
    let store = keylatch_broker::store::open(&config.store).await.context("opening the store")?;
    let audit = keylatch_broker::audit::for_cli(&config, Arc::clone(&store))?;
    Ok((store, config.lifecycle.warning_window_s(), audit))
}

#[must_use]
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Reads a secret file (`-` for stdin) into zeroizing memory.
pub fn read_secret(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read as _;
    let mut bytes = Zeroizing::new(Vec::new());
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("reading stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(bytes)
}

fn rfc3339(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

fn print_added(v: &custody::VersionAdded) {
    println!(
        "{} version {} (KEK {}; rotate by {})",
        v.path,
        v.version,
        v.kek_id,
        rfc3339(v.rotate_by)
    );
}

pub async fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let blob = std::fs::read(&args.wrapped)
        .with_context(|| format!("reading {}", args.wrapped.display()))?;
    let o = open(&args.config).await?;
    let v = custody::put(
        o.store.as_ref(),
        &o.keystore,
        Actor::cli(&o.audit),
        now(),
        &args.path,
        Material::Wrapped(blob),
        args.period.period()?,
    )
    .await?;
    print_added(&v);
    Ok(())
}

pub async fn rotate(args: &RotateArgs) -> anyhow::Result<()> {
    let material = match (&args.from, &args.wrapped, args.length) {
        (Some(f), _, _) => Some(Material::Plaintext(read_secret(f)?)),
        (None, Some(w), _) => Some(Material::Wrapped(
            std::fs::read(w).with_context(|| format!("reading {}", w.display()))?,
        )),
        (None, None, Some(n)) => Some(Material::Generate(n)),
        (None, None, None) => None,
    };
    let o = open(&args.config).await?;
    let v = custody::rotate(
        o.store.as_ref(),
        &o.keystore,
        Actor::cli(&o.audit),
        now(),
        &args.path,
        material,
        args.period.period()?,
    )
    .await?;
    print_added(&v);
    Ok(())
}

pub async fn disable(args: &PathArgs) -> anyhow::Result<()> {
    let (store, _, audit) = open_store(&args.config).await?;
    custody::disable(store.as_ref(), Actor::cli(&audit), now(), &args.path).await?;
    println!("{} disabled", args.path);
    Ok(())
}

pub async fn enable(args: &PathArgs) -> anyhow::Result<()> {
    let (store, _, audit) = open_store(&args.config).await?;
    custody::enable(store.as_ref(), Actor::cli(&audit), now(), &args.path).await?;
    println!("{} enabled", args.path);
    Ok(())
}

pub async fn destroy(args: &DestroyArgs) -> anyhow::Result<()> {
    if !args.yes {
        anyhow::bail!("destroying {} is final; add --yes to confirm", args.path);
    }
    let (store, _, audit) = open_store(&args.config).await?;
    let n = custody::destroy(store.as_ref(), Actor::cli(&audit), now(), &args.path).await?;
    println!("{} destroyed ({n} versions removed)", args.path);
    Ok(())
}

pub async fn set_rotate_by(args: &SetRotateByArgs) -> anyhow::Result<()> {
    let period = if args.clear { Cryptoperiod::Clear } else { args.period.period()? };
    if period == Cryptoperiod::Inherit {
        anyhow::bail!("give --rotate-by, --cryptoperiod-days or --clear");
    }
    let (store, _, audit) = open_store(&args.config).await?;
    let t =
        custody::set_cryptoperiod(store.as_ref(), Actor::cli(&audit), now(), &args.path, period)
            .await?;
    println!("{} rotate by {}", args.path, rfc3339(t));
    Ok(())
}

pub async fn list(args: &ListArgs) -> anyhow::Result<()> {
    let (store, window_s, _) = open_store(&args.config).await?;
    let all = custody::list(store.as_ref(), now(), window_s).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<9} {:>7} {:>8}  {:<20} DUE",
        "PATH", "STATE", "CURRENT", "VERSIONS", "ROTATE BY"
    );
    for r in &all {
        let due = serde_json::to_value(r.due)?;
        println!(
            "{:<40} {:<9} {:>7} {:>8}  {:<20} {}",
            r.path,
            r.state.as_str(),
            r.current_version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            r.versions,
            rfc3339(r.rotate_by),
            due.as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

pub async fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let (store, window_s, _) = open_store(&args.config).await?;
    let detail = custody::show(store.as_ref(), now(), window_s, &args.path).await?;
    println!("{}", serde_json::to_string_pretty(&detail)?);
    Ok(())
}

pub async fn import_public_key(args: &ImportPublicKeyArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let keystore = keylatch_broker::state::open_keystore(&config)?;
    let der = custody::import_public_key(&keystore).await?;
    let pem = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &der)
        .map_err(|e| anyhow::anyhow!("PEM encoding: {e}"))?;
    match &args.out {
        Some(out) => super::write_public(out, pem.as_bytes())?,
        None => print!("{pem}"),
    }
    Ok(())
}

/// Customer side, offline: wraps a key for the broker's import public key.
pub fn wrap_for_import(args: &WrapForImportArgs) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.public_key)
        .with_context(|| format!("reading {}", args.public_key.display()))?;
    let (label, spki) = der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: not PEM: {e}", args.public_key.display()))?;
    if label != "PUBLIC KEY" {
        anyhow::bail!("{}: expected a PUBLIC KEY PEM, found {label}", args.public_key.display());
    }
    let key = read_secret(&args.key)?;
    let blob = keylatch_keystore::wrap_for_import(&spki, &key)
        .map_err(|e| anyhow::anyhow!("wrapping: {e}"))?;
    super::write_private(&args.out, &blob)?;
    println!("wrote {} ({} bytes)", args.out.display(), blob.len());
    Ok(())
}

pub async fn kek_rotate(args: &KekArgs) -> anyhow::Result<()> {
    let o = open(&args.config).await?;
    let id = custody::kek_rotate(&o.keystore, Actor::cli(&o.audit)).await?;
    println!("current KEK: {id} (run `keylatch kek rewrap` to move every version to it)");
    Ok(())
}

pub async fn kek_status(args: &KekStatusArgs) -> anyhow::Result<()> {
    let o = open(&args.config).await?;
    o.store.health().await?;
    let status = custody::kek_status(o.store.as_ref(), &o.keystore).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    for k in &status.keks {
        let mark = match (k.current, k.held) {
            (true, _) => " (current)",
            (false, false) => " (NOT HELD by the keystore)",
            (false, true) => "",
        };
        println!("{}{mark}: {} versions", k.id, k.versions);
    }
    for v in &status.versions {
        println!("  {} v{}: {}", v.path, v.version, v.kek_id);
    }
    Ok(())
}

pub async fn kek_rewrap(args: &KekRewrapArgs) -> anyhow::Result<()> {
    let o = open(&args.config).await?;
    let r = custody::kek_rewrap(o.store.as_ref(), &o.keystore, Actor::cli(&o.audit), args.limit)
        .await?;
    println!(
        "re-wrapped {}, already current {}, remaining {}",
        r.rewrapped, r.already_current, r.remaining
    );
    Ok(())
}

pub async fn kek_retire(args: &KekRetireArgs) -> anyhow::Result<()> {
    let o = open(&args.config).await?;
    custody::kek_retire(o.store.as_ref(), &o.keystore, Actor::cli(&o.audit), &args.id).await?;
    println!("KEK {} destroyed", args.id);
    Ok(())
}
