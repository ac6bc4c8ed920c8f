//! `keylatch resource put|generate` (through `crate::custody`) and `keylatch policy set`: operator commands that work on
//! the store directly (until the admin API exists). Resources are sealed by the keystore with
//! a new version each time; plaintext stays in zeroizing memory and is never printed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use keylatch_keystore::Keystore;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::custody::{self, Actor, Cryptoperiod, Material};
use crate::policy::Policy;
use crate::protocol::resource::parse_path;
use crate::store::{SqliteStore, Store};

#[derive(Debug, clap::Args)]
pub struct ResourcePutArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `<repo>/<type>/<tag>`.
    pub path: String,
    /// File holding the resource (`-` for stdin).
    #[arg(long)]
    pub from: PathBuf,
    #[command(flatten)]
    pub period: super::custody::PeriodArgs,
}

#[derive(Debug, clap::Args)]
pub struct ResourceGenerateArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `<repo>/<type>/<tag>`.
    pub path: String,
    /// Length of the random key in bytes.
    #[arg(long, default_value_t = 32)]
    pub length: usize,
    #[command(flatten)]
    pub period: super::custody::PeriodArgs,
}

#[derive(Debug, clap::Args)]
pub struct PolicySetArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `<repo>/<type>/<tag>` of the resource the policy governs.
    pub path: String,
    /// Policy file (TOML, or JSON starting with `{`).
    #[arg(long)]
    pub from: PathBuf,
}

async fn open(config: &std::path::Path) -> anyhow::Result<(SqliteStore, Arc<dyn Keystore>)> {
    let config = Config::load(config)?;
    let store = SqliteStore::open(&config.store.path, false)
        .await
        .with_context(|| format!("opening {}", config.store.path.display()))?;
    Ok((store, crate::state::open_keystore(&config)?))
}

pub async fn put(args: &ResourcePutArgs) -> anyhow::Result<()> {
    let bytes = super::custody::read_secret(&args.from)?;
    add(&args.config, &args.path, Material::Plaintext(bytes), &args.period).await
}

pub async fn generate(args: &ResourceGenerateArgs) -> anyhow::Result<()> {
    add(&args.config, &args.path, Material::Generate(args.length), &args.period).await
}

async fn add(
    config: &std::path::Path,
    path: &str,
    material: Material,
    period: &super::custody::PeriodArgs,
) -> anyhow::Result<()> {
    let period = period.period()?;
    let o = super::custody::open(config).await?;
    let now = super::custody::now();
    let v = custody::put(&o.store, &o.keystore, Actor::CLI, now, path, material, period).await?;
    println!("{} version {} (KEK {})", v.path, v.version, v.kek_id);
    Ok(())
}

pub async fn policy_set(args: &PolicySetArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.from)
        .with_context(|| format!("reading {}", args.from.display()))?;
    let (store, _) = open(&args.config).await?;
    let (version, digest) = set_policy(&store, &args.path, &text).await?;
    println!("{} policy version {version} sha256 {digest}", args.path);
    Ok(())
}

/// Where a new resource version's bytes come from.
#[derive(Debug)]
pub enum Source {
    Bytes(Zeroizing<Vec<u8>>),
    /// A fresh random key of this many bytes, made inside the keystore.
    Random(usize),
}

/// Seals a new version of `path` as the CLI (through [`custody::put`]); returns the version.
pub async fn put_resource(
    store: &dyn Store,
    keystore: Arc<dyn Keystore>,
    path: &str,
    source: Source,
) -> anyhow::Result<u64> {
    let material = match source {
        Source::Bytes(b) => Material::Plaintext(b),
        Source::Random(n) => Material::Generate(n),
    };
    let now = super::custody::now();
    let v = custody::put(store, &keystore, Actor::CLI, now, path, material, Cryptoperiod::Inherit)
        .await?;
    Ok(v.version)
}

/// Parses, canonicalizes and stores a policy for `path`; returns (version, digest).
pub async fn set_policy(
    store: &dyn Store,
    path: &str,
    text: &str,
) -> anyhow::Result<(u64, String)> {
    let path = parse_path(path).map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    let policy = Policy::parse(text)?;
    let body = policy.canonical_json()?;
    let digest = policy.digest()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let version = store.put_policy(&path, &body, &digest, now).await?;
    Ok((version, digest))
}
