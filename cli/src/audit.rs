//! `keylatch audit ...`: `export` (store-direct, into the `keylatch-audit-export/1` layout),
//! `verify` (offline: every checkpoint signature, consistency between checkpoints, the tree
//! recomputed from the entries; the first divergence and its index), `query` (who got what,
//! when, on which chip) and `keygen` (a checkpoint key and its verifier key).

use std::path::PathBuf;

use anyhow::Context as _;
use keylatch_audit::query::{query, render_json, render_table, QueryFilter};
use keylatch_audit::{verify_log_dir, AuditError, LogExport, NoteVerifierKey, Report};

use keylatch_broker::config::Config;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// Directory to write (created if missing; checkpoints already there are kept). A
    /// checkpoint over every stored entry is signed first.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub connection: crate::remote::Connection,
    /// Directory to write (created if missing). Checkpoints fetched earlier stay, so a later
    /// fetch of a log that forked fails verification against them.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// An export directory.
    pub dir: PathBuf,
    /// The log's verifier key (`audit.pub`).
    #[arg(long)]
    pub key: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// An export directory.
    pub dir: PathBuf,
    /// Exact resource path.
    #[arg(long)]
    pub resource: Option<String>,
    /// Entries at or after this RFC 3339 time.
    #[arg(long, value_parser = super::parse_time)]
    pub since: Option<time::OffsetDateTime>,
    /// Entries before this RFC 3339 time.
    #[arg(long, value_parser = super::parse_time)]
    pub until: Option<time::OffsetDateTime>,
    /// A VM identity: SNP chip id, TDX PCK id or FMSPC (hex).
    #[arg(long)]
    pub chip_id: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The private key file to create (mode 0600).
    #[arg(long)]
    pub out: PathBuf,
    /// The verifier key file to create (default: `audit.pub` beside `--out`).
    #[arg(long)]
    pub public: Option<PathBuf>,
    /// The log origin (must equal `[audit] origin`).
    #[arg(long, default_value = keylatch_broker::config::DEFAULT_AUDIT_ORIGIN)]
    pub origin: String,
}

/// Exports the configured broker's log into `args.out`; returns how many entries.
pub async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let store: std::sync::Arc<dyn keylatch_broker::store::Store> =
        keylatch_broker::store::open(&config.store).await.context("opening the store")?;
    // Sign a checkpoint over everything stored first (the broker signs on its own schedule),
    // so the export is covered to its last entry. It goes through the same no-fork check as
    // every checkpoint: a tampered store makes the export fail here.
    let signer =
        keylatch_broker::audit::load_signer(&config.audit.signing_key, &config.audit.origin)?;
    let every_append = keylatch_broker::audit::Schedule { every_entries: 1, every_seconds: 0 };
    keylatch_broker::audit::AuditLog::direct(std::sync::Arc::clone(&store), signer, every_append)
        .checkpoint_if_due()
        .await
        .context("signing a checkpoint over the stored log")?;
    let n = export_store(store.as_ref(), &args.out).await?;
    println!("exported {n} entries to {}", args.out.display());
    Ok(())
}

/// Exports `store`'s log into `out`; returns how many entries.
pub async fn export_store(
    store: &dyn keylatch_broker::store::Store,
    out: &std::path::Path,
) -> anyhow::Result<usize> {
    let (log, jsonl) = keylatch_broker::audit::export::export_all(store).await?;
    let n = log.entries.len();
    keylatch_broker::audit::export::write_export(out, log, &jsonl)?;
    Ok(n)
}

/// Verifies an export directory against a verifier key file. `Ok(Err(_))`: the log diverges.
pub fn verify_dir(
    dir: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Result<Report, AuditError>> {
    let text =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let vkey = NoteVerifierKey::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let export = match LogExport::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return Ok(Err(AuditError::Export(e))),
    };
    Ok(verify_log_dir(&export, &vkey))
}

/// Prints the outcome; `false` when the log diverges.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<bool> {
    match verify_dir(&args.dir, &args.key)? {
        Ok(r) => {
            println!(
                "ok: {} entries [{}, {}) of log {}, root {}, {} checkpoints verified (latest size {})",
                r.end - r.start,
                r.start,
                r.end,
                r.origin,
                r.root,
                r.checkpoints,
                r.latest_checkpoint.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            );
            if let Some(u) = r.unanchored_from {
                println!("note: entries from {u} are not yet covered by a checkpoint");
            }
            Ok(true)
        }
        Err(e) => {
            let index = match &e {
                AuditError::Diverged(d) => d.first_bad_index(),
                AuditError::Export(_) => None,
            };
            match index {
                Some(i) => eprintln!("error: first bad index {i}: {e}"),
                None => eprintln!("error: {e}"),
            }
            Ok(false)
        }
    }
}

pub fn query_cmd(args: &QueryArgs) -> anyhow::Result<()> {
    let export = LogExport::read_dir(&args.dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let filter = QueryFilter {
        resource: args.resource.clone(),
        since: args.since,
        until: args.until,
        chip_id: args.chip_id.clone(),
    };
    let hits = query(&export, &filter);
    if args.json {
        println!("{}", render_json(&hits)?);
    } else {
        print!("{}", render_table(&hits));
    }
    Ok(())
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let public = args.public.clone().unwrap_or_else(|| {
        args.out.parent().unwrap_or_else(|| std::path::Path::new(".")).join("audit.pub")
    });
    let vkey = keylatch_broker::audit::generate_key(&args.out, &public, &args.origin)?;
    println!("wrote {} and {}", args.out.display(), public.display());
    print!("{vkey}");
    Ok(())
}

/// `keylatch audit fetch`: the log and every checkpoint from a running broker (auditor token),
/// written in the same layout `audit export` writes, for `audit verify` offline.
pub fn fetch(args: &FetchArgs) -> anyhow::Result<()> {
    let client = args.connection.client()?;
    // Checkpoints first, then the size: the log only grows, so every checkpoint fetched is
    // covered by the entries fetched after it.
    let cps = client.call("GET", "/admin/v1/audit/checkpoints", None)?;
    let mut checkpoints = Vec::new();
    for cp in cps
        .get("checkpoints")
        .and_then(serde_json::Value::as_array)
        .context("broker answer: no checkpoints")?
    {
        let size = cp
            .get("size")
            .and_then(serde_json::Value::as_u64)
            .context("checkpoint without size")?;
        let note = cp
            .get("note")
            .and_then(serde_json::Value::as_str)
            .context("checkpoint without note")?;
        checkpoints.push(keylatch_audit::export::CheckpointFile {
            name: keylatch_audit::export::checkpoint_file_name(size),
            text: note.as_bytes().to_vec(),
        });
    }
    let summary = client.call("GET", "/admin/v1/audit", None)?;
    let size = summary
        .get("size")
        .and_then(serde_json::Value::as_u64)
        .context("broker answer: no size")?;
    let mut jsonl = Vec::new();
    let mut start = 0;
    while start < size {
        let end = size.min(start + keylatch_broker::store::audit::MAX_READ);
        let page = client.call(
            "GET",
            &format!("/admin/v1/audit/entries?start={start}&end={end}"),
            None,
        )?;
        for line in page
            .get("lines")
            .and_then(serde_json::Value::as_array)
            .context("broker answer: no lines")?
        {
            let line = line.as_str().context("broker answer: a line is not text")?;
            jsonl.extend_from_slice(line.as_bytes());
            jsonl.push(b'\n');
        }
        start = end;
    }
    let fetched_checkpoints = checkpoints.len();
    let entries = keylatch_audit::export::parse_entries(&jsonl)
        .map_err(|e| anyhow::anyhow!("entries from the broker: {e}"))?;
    let n = entries.len();
    let export = LogExport {
        start: keylatch_audit::merkle::compact::Frontier::new(),
        entries,
        checkpoints,
        proofs: Vec::new(),
    };
    keylatch_broker::audit::export::write_export(&args.out, export, &jsonl)?;
    println!("fetched {n} entries and {fetched_checkpoints} checkpoints to {}", args.out.display());
    Ok(())
}
