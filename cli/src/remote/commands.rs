//! The remote subcommands: each builds one admin API request, sends it with [`AdminClient`]
//! and prints the JSON answer. Key bytes are read into zeroizing memory and sent base64-encoded.
//! The resource commands cover every resource operation of the API: put, import (BYOK),
//! rotate, disable, enable, set-rotate-by, list, show, delete, and the keystore's import key.

use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{resource_path, segment, AdminClient, Connection};
use keylatch_broker::admin::auth::Role;
use keylatch_broker::policy::Policy;

/// `keylatch admin [--url --ca --token-file] <command>`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Resources (key-custodian; auditors may list and show).
    #[command(subcommand)]
    Resource(ResourceCmd),
    /// Release policies (key-custodian; auditors may list and get).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Reference-value bundles (policy-author; auditors may list and show).
    #[command(subcommand)]
    Refval(RefvalCmd),
    /// Admin tokens (admin).
    #[command(subcommand)]
    Token(TokenCmd),
    /// The keystore (key-custodian).
    #[command(subcommand)]
    Keystore(KeystoreCmd),
}

#[derive(Debug, clap::Subcommand)]
pub enum KeystoreCmd {
    /// The RSA import public key that BYOK blobs are wrapped to (PEM; give it to
    /// `keylatch key wrap-for-import --public-key`).
    ImportKey {
        /// Write the PEM here (created, never overwritten) instead of printing the answer.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The new version's key: exactly one source.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
pub struct MaterialArgs {
    /// The bytes from a file (`-` for stdin).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// N random bytes made in the keystore.
    #[arg(long)]
    pub generate: Option<usize>,
    /// A BYOK blob (`keylatch key wrap-for-import` output), unwrapped in the keystore.
    #[arg(long)]
    pub wrapped: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ResourceCmd {
    /// Store a new version (creating the resource when new) from one of `--from`,
    /// `--generate` or `--wrapped`.
    Put {
        path: String,
        #[command(flatten)]
        material: MaterialArgs,
    },
    /// Store a new version from a BYOK blob (wrapped to `keystore import-key`).
    Import {
        path: String,
        #[arg(long)]
        wrapped: PathBuf,
    },
    /// Make a new version of an existing resource current (default: random bytes of the
    /// current length, made in the keystore); older versions stay.
    Rotate {
        path: String,
        #[command(flatten)]
        material: MaterialArgs,
    },
    /// Stop releasing a resource.
    Disable {
        path: String,
    },
    /// Release a disabled resource again.
    Enable {
        path: String,
    },
    /// Set (`--rotate-by`, RFC 3339) or clear (`--clear`) the date it should be rotated by.
    SetRotateBy {
        path: String,
        #[arg(long, required_unless_present = "clear")]
        rotate_by: Option<String>,
        #[arg(long, conflicts_with = "rotate_by")]
        clear: bool,
    },
    List,
    /// Metadata of one resource (versions, policy); never its bytes.
    Show {
        path: String,
    },
    /// Delete every version.
    Delete {
        path: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// Set a policy from a file (TOML, or JSON starting with `{`).
    Set {
        path: String,
        #[arg(long)]
        from: PathBuf,
    },
    Get {
        path: String,
        #[arg(long)]
        version: Option<u64>,
    },
    List,
}

#[derive(Debug, clap::Subcommand)]
pub enum RefvalCmd {
    /// Publish a signed bundle (`refval sign` output) under NAME.
    Push {
        name: String,
        bundle: PathBuf,
    },
    List,
    Show {
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token; the answer holds it once.
    Create {
        #[arg(long, value_parser = crate::token::role_parser())]
        role: Role,
        #[arg(long)]
        name: String,
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    List,
    Revoke {
        id: String,
    },
}

/// `keylatch refval push`: publish one bundle.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub conn: Connection,
    pub name: String,
    pub bundle: PathBuf,
}

/// Publishes the bundle file at `bundle` as `name`.
pub fn push(client: &AdminClient, name: &str, bundle: &std::path::Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let body = json!({"bundle": base64::engine::general_purpose::STANDARD.encode(bytes)});
    client.call("PUT", &format!("/admin/v1/reference-values/{}", segment(name)), Some(&body))
}

pub fn run_push(args: &PushArgs) -> anyhow::Result<Value> {
    push(&args.conn.client()?, &args.name, &args.bundle)
}

/// Runs one `keylatch admin` command; returns the answer to print.
pub fn run(args: &AdminArgs) -> anyhow::Result<Value> {
    let c = args.conn.client()?;
    match &args.command {
        AdminCommand::Resource(cmd) => resource(&c, cmd),
        AdminCommand::Policy(cmd) => policy(&c, cmd),
        AdminCommand::Refval(RefvalCmd::Push { name, bundle }) => push(&c, name, bundle),
        AdminCommand::Refval(RefvalCmd::List) => c.call("GET", "/admin/v1/reference-values", None),
        AdminCommand::Refval(RefvalCmd::Show { name }) => {
            c.call("GET", &format!("/admin/v1/reference-values/{}", segment(name)), None)
        }
        AdminCommand::Token(cmd) => token(&c, cmd),
        AdminCommand::Keystore(KeystoreCmd::ImportKey { out }) => {
            let answer = c.call("GET", "/admin/v1/keystore/import-key", None)?;
            let Some(out) = out else { return Ok(answer) };
            let pem = answer
                .get("public_key_pem")
                .and_then(Value::as_str)
                .context("the answer holds no public_key_pem")?;
            crate::write_public(out, pem.as_bytes())?;
            Ok(json!({"written": out}))
        }
    }
}

/// The `PUT` body of a new version, as text in zeroizing memory (it may hold key bytes).
fn material_body(material: &MaterialArgs, rotate: bool) -> anyhow::Result<Zeroizing<String>> {
    let b64 =
        |bytes: &[u8]| Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes));
    // Base64 needs no JSON escaping; the text is zeroized after the request.
    let field = match (&material.from, material.generate, &material.wrapped) {
        (Some(from), None, None) => {
            let bytes = crate::custody::read_secret(from)?;
            Zeroizing::new(format!("\"value\":\"{}\"", b64(&bytes).as_str()))
        }
        (None, Some(n), None) => Zeroizing::new(format!("\"generate\":{n}")),
        (None, None, Some(w)) => {
            let blob = std::fs::read(w).with_context(|| format!("reading {}", w.display()))?;
            Zeroizing::new(format!("\"wrapped\":\"{}\"", b64(&blob).as_str()))
        }
        (None, None, None) if rotate => Zeroizing::new(String::new()),
        _ => anyhow::bail!("give one of --from FILE, --generate N or --wrapped FILE"),
    };
    let sep = if field.is_empty() { "" } else { "," };
    Ok(Zeroizing::new(format!("{{\"rotate\":{rotate}{sep}{}}}", field.as_str())))
}

fn resource(c: &AdminClient, cmd: &ResourceCmd) -> anyhow::Result<Value> {
    match cmd {
        ResourceCmd::Put { path, material } => {
            let body = material_body(material, false)?;
            c.call_text("PUT", &at(path), Some(body.as_str()))
        }
        ResourceCmd::Import { path, wrapped } => {
            let material =
                MaterialArgs { from: None, generate: None, wrapped: Some(wrapped.clone()) };
            let body = material_body(&material, false)?;
            c.call_text("PUT", &at(path), Some(body.as_str()))
        }
        ResourceCmd::Rotate { path, material } => {
            let body = material_body(material, true)?;
            c.call_text("PUT", &at(path), Some(body.as_str()))
        }
        ResourceCmd::Disable { path } => {
            c.call("PATCH", &at(path), Some(&json!({"state": "disabled"})))
        }
        ResourceCmd::Enable { path } => {
            c.call("PATCH", &at(path), Some(&json!({"state": "active"})))
        }
        ResourceCmd::SetRotateBy { path, rotate_by, clear } => {
            let body = match rotate_by {
                Some(t) if !clear => json!({"rotate_by": t}),
                _ => json!({"clear_rotate_by": true}),
            };
            c.call("PATCH", &at(path), Some(&body))
        }
        ResourceCmd::List => c.call("GET", "/admin/v1/resources", None),
        ResourceCmd::Show { path } => c.call("GET", &at(path), None),
        ResourceCmd::Delete { path } => c.call("DELETE", &at(path), None),
    }
}

/// The API path of resource `path`.
fn at(path: &str) -> String {
    format!("/admin/v1/resources/{}", resource_path(path))
}

fn policy(c: &AdminClient, cmd: &PolicyCmd) -> anyhow::Result<Value> {
    match cmd {
        PolicyCmd::Set { path, from } => {
            let text = std::fs::read_to_string(from)
                .with_context(|| format!("reading {}", from.display()))?;
            let body: Value = serde_json::from_str(&Policy::parse(&text)?.canonical_json()?)?;
            c.call("PUT", &format!("/admin/v1/policies/{}", resource_path(path)), Some(&body))
        }
        PolicyCmd::Get { path, version } => {
            let q = version.map(|v| format!("?version={v}")).unwrap_or_default();
            c.call("GET", &format!("/admin/v1/policies/{}{q}", resource_path(path)), None)
        }
        PolicyCmd::List => c.call("GET", "/admin/v1/policies", None),
    }
}

fn token(c: &AdminClient, cmd: &TokenCmd) -> anyhow::Result<Value> {
    match cmd {
        TokenCmd::Create { role, name, prefixes, expires_in_days } => {
            let body = json!({
                "name": name, "role": role, "prefixes": prefixes,
                "expires_in_days": expires_in_days,
            });
            c.call("POST", "/admin/v1/tokens", Some(&body))
        }
        TokenCmd::List => c.call("GET", "/admin/v1/tokens", None),
        TokenCmd::Revoke { id } => {
            c.call("DELETE", &format!("/admin/v1/tokens/{}", segment(id)), None)
        }
    }
}
