//! `keylatch token create`: the bootstrap command that mints an admin token directly in the
//! store (no running broker needed), so the first `admin` token can exist. Prints the token
//! once on stdout; only its SHA-256 is stored.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::admin::auth::{mint, Role, TokenRequest};
use crate::config::Config;
use crate::decision::{record_admin, record_intent, AdminRecord};

#[derive(Debug, clap::Args)]
pub struct TokenCreateArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `admin`, `key-custodian`, `policy-author` or `auditor`.
    #[arg(long)]
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

impl clap::ValueEnum for Role {
    fn value_variants<'a>() -> &'a [Self] {
        &Role::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

pub async fn create(args: &TokenCreateArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let store: std::sync::Arc<dyn crate::store::Store> =
        crate::store::open(&config.store).await.context("opening the store")?;
    let audit = crate::audit::for_cli(&config, std::sync::Arc::clone(&store))?;
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
        return Err(crate::decision::record_cli_failure(&audit, &cli, e.into()).await);
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
