//! `keylatch resource put|generate` and `keylatch policy set`: operator commands that work on
//! the store directly (until the admin API exists). Resources are sealed by the keystore with
//! a new version each time; plaintext stays in zeroizing memory and is never printed.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use keylatch_keystore::{Keystore, ResourceBinding, SealedResource};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::policy::Policy;
use crate::protocol::resource::parse_path;
use crate::store::{Store, StoredResource};

#[derive(Debug, clap::Args)]
pub struct ResourcePutArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `<repo>/<type>/<tag>`.
    pub path: String,
    /// File holding the resource (`-` for stdin).
    #[arg(long)]
    pub from: PathBuf,
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

async fn open(config: &std::path::Path) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn Keystore>)> {
    let config = Config::load(config)?;
    let store = crate::store::open(&config.store).await.context("opening the store")?;
    Ok((store, crate::state::open_keystore(&config)?))
}

pub async fn put(args: &ResourcePutArgs) -> anyhow::Result<()> {
    let mut bytes = Zeroizing::new(Vec::new());
    if args.from.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("reading stdin")?;
    } else {
        *bytes = std::fs::read(&args.from)
            .with_context(|| format!("reading {}", args.from.display()))?;
    }
    let (store, keystore) = open(&args.config).await?;
    let version = put_resource(&*store, keystore, &args.path, Source::Bytes(bytes)).await?;
    println!("{} version {version}", args.path);
    Ok(())
}

pub async fn generate(args: &ResourceGenerateArgs) -> anyhow::Result<()> {
    let (store, keystore) = open(&args.config).await?;
    let version = put_resource(&*store, keystore, &args.path, Source::Random(args.length)).await?;
    println!("{} version {version} ({} random bytes)", args.path, args.length);
    Ok(())
}

pub async fn policy_set(args: &PolicySetArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.from)
        .with_context(|| format!("reading {}", args.from.display()))?;
    let (store, _) = open(&args.config).await?;
    let (version, digest) = set_policy(&*store, &args.path, &text).await?;
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

/// Seals a new version of `path` and stores it; returns the version.
pub async fn put_resource(
    store: &dyn Store,
    keystore: Arc<dyn Keystore>,
    path: &str,
    source: Source,
) -> anyhow::Result<u64> {
    let path = parse_path(path).map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    let version = store.next_resource_version(&path).await?;
    let binding = ResourceBinding::new(path.clone(), version);
    let sealed: SealedResource = tokio::task::spawn_blocking(move || match source {
        Source::Bytes(b) => keystore.seal(&binding, &b),
        Source::Random(n) => keystore.generate(&binding, n),
    })
    .await?
    .map_err(|e| anyhow::anyhow!("keystore: {e}"))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    store
        .put_resource(&StoredResource { path, version, sealed, enabled: true, created: now })
        .await?;
    Ok(version)
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
