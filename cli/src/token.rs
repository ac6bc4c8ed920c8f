//! `keylatch token create`: the bootstrap command that mints an admin token directly in the
//! store (no running broker needed), so the first `admin` token can exist. Prints the token
//! once on stdout; only its SHA-256 is stored.

use std::path::PathBuf;

use anyhow::Context as _;

use keylatch_broker::admin::auth::{mint, Role, TokenRequest};
use keylatch_broker::config::Config;
use keylatch_broker::decision::{record_admin, record_intent, AdminRecord};

#[derive(Debug, clap::Args)]
pub struct TokenCreateArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `admin`, `key-custodian`, `policy-author` or `auditor`.
    #[arg(long, value_parser = role_parser())]
    pub role: Role,
    /// A name for the holder (shown in audit records).
    #[arg(long)]
    pub name: String,
    /// Confine the token to resource paths under this prefix (repeatable; key-custodian and
    /// auditor only).
    #[arg(long = "prefix")]
    pub prefixes: Vec<String>,
    /// Expire the token after this many days (default: no expiry).
    #[arg(long)]
    pub expires_in_days: Option<u32>,
}

/// Parses a role name, listing the four in `--help` and in the error.
#[must_use]
pub fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Role::ALL.map(Role::as_str))
        .try_map(|s| s.parse::<Role>())
}

pub async fn create(args: &TokenCreateArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let store: std::sync::Arc<dyn keylatch_broker::store::Store> =
        keylatch_broker::store::open(&config.store).await.context("opening the store")?;
    let audit = keylatch_broker::audit::for_cli(&config, std::sync::Arc::clone(&store))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let req = TokenRequest {
        name: args.name.clone(),
        role: args.role,
        prefixes: args.prefixes.clone(),
        expires_in_days: args.expires_in_days,
        created_by: "cli".to_owned(),
    };
    let token = mint(&req, now).map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    let cli = AdminRecord {
        principal: "cli",
        role: "local",
        operation: "token.create",
        target: Some(&token.record.id),
        ..AdminRecord::default()
    };
    record_intent(&audit, &cli).await?;
    if let Err(e) = store.create_admin_token(&token.record).await {
        return Err(keylatch_broker::decision::record_cli_failure(&audit, &cli, e.into()).await);
    }
    let detail = format!("role {} name {}", args.role, token.record.name);
    record_admin(&audit, &AdminRecord { allowed: true, outcome: "ok", detail: &detail, ..cli })
        .await?;
    eprintln!(
        "created {} ({}, role {}); the token is shown once:",
        token.record.id, token.record.name, args.role
    );
    println!("{}", token.secret.as_str());
    Ok(())
}
