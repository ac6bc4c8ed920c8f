//! The remote subcommands: each builds one admin API request, sends it with [`AdminClient`]
//! and prints the JSON answer. Key bytes are read into zeroizing memory and sent base64-encoded.

use std::io::Read as _;
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
}

#[derive(Debug, clap::Subcommand)]
pub enum ResourceCmd {
    /// Store a new version: bytes from a file (`-` for stdin) or `--generate N` random bytes.
    Put {
        path: String,
        #[arg(long, conflicts_with = "generate")]
        from: Option<PathBuf>,
        #[arg(long)]
        generate: Option<usize>,
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
    }
}

fn resource(c: &AdminClient, cmd: &ResourceCmd) -> anyhow::Result<Value> {
    match cmd {
        ResourceCmd::Put { path, from, generate } => {
            let body = match (from, generate) {
                (Some(from), None) => {
                    let mut bytes = Zeroizing::new(Vec::new());
                    if from.as_os_str() == "-" {
                        std::io::stdin().read_to_end(&mut bytes).context("reading stdin")?;
                    } else {
                        *bytes = std::fs::read(from)
                            .with_context(|| format!("reading {}", from.display()))?;
                    }
                    let b64 = Zeroizing::new(
                        base64::engine::general_purpose::STANDARD.encode(bytes.as_slice()),
                    );
                    // Base64 needs no JSON escaping; the text is zeroized after the request.
                    Zeroizing::new(format!("{{\"value\":\"{}\"}}", b64.as_str()))
                }
                (None, Some(n)) => Zeroizing::new(json!({"generate": n}).to_string()),
                _ => anyhow::bail!("give --from FILE or --generate N"),
            };
            let path = format!("/admin/v1/resources/{}", resource_path(path));
            c.call_text("PUT", &path, Some(body.as_str()))
        }
        ResourceCmd::List => c.call("GET", "/admin/v1/resources", None),
        ResourceCmd::Show { path } => {
            c.call("GET", &format!("/admin/v1/resources/{}", resource_path(path)), None)
        }
        ResourceCmd::Delete { path } => {
            c.call("DELETE", &format!("/admin/v1/resources/{}", resource_path(path)), None)
        }
    }
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
