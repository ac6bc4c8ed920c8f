//! `keylatch resource put|generate` (through `keylatch_broker::custody`) and `keylatch policy set`: operator commands that work on
//! the store directly (until the admin API exists). Resources are sealed by the keystore with
//! a new version each time; plaintext stays in zeroizing memory and is never printed.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use keylatch_keystore::Keystore;
use zeroize::Zeroizing;

use keylatch_broker::custody::{self, Actor, Cryptoperiod, Material};
use keylatch_broker::path::parse_path;
use keylatch_broker::policy::Policy;
use keylatch_broker::store::Store;

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
    let v = custody::put(
        o.store.as_ref(),
        &o.keystore,
        Actor::cli(&o.audit),
        now,
        path,
        material,
        period,
    )
    .await?;
    println!("{} version {} (KEK {})", v.path, v.version, v.kek_id);
    Ok(())
}

pub async fn policy_set(args: &PolicySetArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.from)
        .with_context(|| format!("reading {}", args.from.display()))?;
    let o = super::custody::open(&args.config).await?;
    let (version, digest) = set_policy(&o.audit, o.store.as_ref(), &args.path, &text).await?;
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
    audit: &keylatch_broker::audit::AuditLog,
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
    let v = custody::put(
        store,
        &keystore,
        Actor::cli(audit),
        now,
        path,
        material,
        Cryptoperiod::Inherit,
    )
    .await?;
    Ok(v.version)
}

/// Parses, canonicalizes and stores a policy for `path`; returns (version, digest).
/// Recorded as the CLI's `policy.set` admin action.
pub async fn set_policy(
    audit: &keylatch_broker::audit::AuditLog,
    store: &dyn Store,
    path: &str,
    text: &str,
) -> anyhow::Result<(u64, String)> {
    let path = parse_path(path).map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    // Validated before the intent, as the admin API does: a policy that does not parse is
    // refused without anything being attempted.
    Policy::parse(text)?;
    let cli = keylatch_broker::decision::AdminRecord {
        principal: "cli",
        role: "local",
        operation: "policy.set",
        target: Some(&path),
        ..keylatch_broker::decision::AdminRecord::default()
    };
    keylatch_broker::decision::record_intent(audit, &cli)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (version, digest) = match keylatch_broker::admin::policies::store_policy(
        store,
        &path,
        text,
        super::custody::now(),
    )
    .await
    {
        Ok(stored) => stored,
        Err(e) => return Err(keylatch_broker::decision::record_cli_failure(audit, &cli, e).await),
    };
    let detail = format!("policy version {version} sha256 {digest}");
    keylatch_broker::decision::record_admin(
        audit,
        &keylatch_broker::decision::AdminRecord {
            version: Some(version),
            allowed: true,
            outcome: "ok",
            detail: &detail,
            ..cli
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((version, digest))
}
