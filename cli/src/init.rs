//! `keylatch init --dir DIR [--simulated]`: a ready-to-serve broker directory on embedded
//! defaults — the commented `keylatch.toml`, the token-signing key, a local CA and a TLS server
//! certificate signed by it, the soft keystore's KEK, the SQLite database (mode 0600) and (with
//! `--simulated`) a simulation PKI with `allow_simulated = true`. Never overwrites anything.
//!
//! The packaged layout splits it: `--config-dir /etc/keylatch` takes the configuration, keys,
//! TLS files and simulation PKI (read-only to the service), `--dir /var/lib/keylatch` the state
//! the broker writes (database, KEK file), named in the configuration by absolute path; and
//! `--owner keylatch` gives everything `init` made to the service's user and its group.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use rand_core::OsRng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use verifier::sim::SimPki;

use super::{write_private, write_public};
use keylatch_broker::config::Config;
use keylatch_broker::store::SqliteStore;
use keylatch_broker::token::TokenKey;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to create (or an empty existing one). With --config-dir: the state directory
    /// (database, KEK file).
    #[arg(long)]
    pub dir: PathBuf,
    /// Write keylatch.toml, the keys and TLS files here instead (e.g. /etc/keylatch); the
    /// configuration names the state in --dir by absolute path.
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// Give every directory and file init makes to this user and its primary group (e.g.
    /// keylatch, the user keylatch.service runs as); needs root.
    #[arg(long)]
    pub owner: Option<String>,
    /// Also create a simulation PKI and accept simulated evidence (CI, demos).
    #[arg(long)]
    pub simulated: bool,
    /// Host names or IP addresses for the TLS certificate (default: localhost and 127.0.0.1).
    #[arg(long = "hostname")]
    pub hostnames: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// Keep the key-encryption key in this PKCS#11 module's token (an HSM) instead of a local
    /// file. Needs --pkcs11-token and --pkcs11-pin-file.
    #[arg(long, requires_all = ["pkcs11_token", "pkcs11_pin_file"])]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the initialized token that holds (or will hold) the KEK.
    #[arg(long, requires = "pkcs11_module")]
    pub pkcs11_token: Option<String>,
    /// File holding the token's user PIN (mode 0600); the configuration names the file, never
    /// the PIN.
    #[arg(long, requires = "pkcs11_module")]
    pub pkcs11_pin_file: Option<PathBuf>,
}

/// Where the key-encryption key lives.
#[derive(Debug, Clone)]
pub enum KeystoreChoice {
    /// A local KEK file (development).
    Soft,
    /// An HSM token through PKCS#11.
    Pkcs11 { module: PathBuf, token_label: String, pin_file: PathBuf },
}

impl InitArgs {
    fn keystore(&self) -> anyhow::Result<KeystoreChoice> {
        Ok(match (&self.pkcs11_module, &self.pkcs11_token, &self.pkcs11_pin_file) {
            (None, _, _) => KeystoreChoice::Soft,
            (Some(module), Some(token), Some(pin)) => {
                let pin = std::path::absolute(pin)
                    .with_context(|| format!("resolving {}", pin.display()))?;
                keylatch_broker::files::check_private(&pin)?;
                KeystoreChoice::Pkcs11 {
                    module: module.clone(),
                    token_label: token.clone(),
                    pin_file: pin,
                }
            }
            _ => bail!("--pkcs11-module needs --pkcs11-token and --pkcs11-pin-file"),
        })
    }
}

/// File names inside the directory.
pub const CONFIG_FILE: &str = "keylatch.toml";
pub const TOKEN_KEY_FILE: &str = "token-signing-key.pem";
pub const AUDIT_KEY_FILE: &str = keylatch_broker::config::DEFAULT_AUDIT_KEY;
/// The audit verifier key, for auditors (`keylatch audit verify --key audit.pub`).
pub const AUDIT_PUB_FILE: &str = "audit.pub";
pub const CA_FILE: &str = "tls/ca.pem";
pub const CERT_FILE: &str = "tls/server.pem";
pub const KEY_FILE: &str = "tls/server-key.pem";
pub const KEK_FILE: &str = "kek.json";
pub const DB_FILE: &str = "keylatch.db";
pub const SIM_DIR: &str = "sim-pki";

pub async fn run(args: &InitArgs) -> anyhow::Result<()> {
    let keystore = args.keystore()?;
    // Resolved before anything is written: an unknown user changes nothing.
    let owner = args.owner.as_deref().map(user_ids).transpose()?;
    let layout = match &args.config_dir {
        None => Layout::one(&args.dir),
        Some(config) => Layout {
            config: config.clone(),
            state: Some(
                std::path::absolute(&args.dir)
                    .with_context(|| format!("resolving {}", args.dir.display()))?,
            ),
        },
    };
    let config =
        init_layout(&layout, args.simulated, &args.hostnames, &args.listen, &keystore).await?;
    if let Some(ids) = owner {
        give(&layout, args.simulated, ids)?;
    }
    println!("wrote {}", config.display());
    println!("CA for clients: {}", layout.config.join(CA_FILE).display());
    println!("run: keylatch serve --config {}", config.display());
    Ok(())
}

/// Where `init` writes: the configuration directory, and the state directory when apart.
#[derive(Debug, Clone)]
pub struct Layout {
    /// keylatch.toml, keys, TLS files, simulation PKI.
    pub config: PathBuf,
    /// Database and KEK file, by absolute path; `None`: in `config`, by relative path.
    pub state: Option<PathBuf>,
}

impl Layout {
    /// Everything in one directory.
    #[must_use]
    pub fn one(dir: &Path) -> Self {
        Self { config: dir.to_path_buf(), state: None }
    }

    fn state_dir(&self) -> &Path {
        self.state.as_deref().unwrap_or(&self.config)
    }
}

/// The uid and primary gid of the local user `name` (from /etc/passwd, where system users such
/// as the package's `keylatch` live).
fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .with_context(|| format!("--owner {name}: no such user in /etc/passwd"))
}

/// Gives the directories and every file `init` made in them to `(uid, gid)`; the modes stay.
fn give(layout: &Layout, simulated: bool, (uid, gid): (u32, u32)) -> anyhow::Result<()> {
    let config = &layout.config;
    let state = layout.state_dir();
    let mut paths = vec![config.clone(), config.join("tls"), state.to_path_buf()];
    for name in
        [CONFIG_FILE, TOKEN_KEY_FILE, AUDIT_KEY_FILE, AUDIT_PUB_FILE, CA_FILE, CERT_FILE, KEY_FILE]
    {
        paths.push(config.join(name));
    }
    if simulated {
        let sim = config.join(SIM_DIR);
        for entry in
            std::fs::read_dir(&sim).with_context(|| format!("reading {}", sim.display()))?
        {
            paths.push(entry?.path());
        }
        paths.push(sim);
    }
    for name in [KEK_FILE, DB_FILE, "keylatch.db-wal", "keylatch.db-shm"] {
        let path = state.join(name);
        if path.exists() {
            paths.push(path);
        }
    }
    paths.sort();
    paths.dedup();
    for path in paths {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .with_context(|| format!("giving {} to uid {uid}", path.display()))?;
    }
    Ok(())
}

/// Creates the broker directory; returns the path of its `keylatch.toml`.
pub async fn init_dir(
    dir: &Path,
    simulated: bool,
    hostnames: &[String],
    listen: &str,
    keystore: &KeystoreChoice,
) -> anyhow::Result<PathBuf> {
    init_layout(&Layout::one(dir), simulated, hostnames, listen, keystore).await
}

/// Creates the configuration (and state) directories; returns the path of `keylatch.toml`.
pub async fn init_layout(
    layout: &Layout,
    simulated: bool,
    hostnames: &[String],
    listen: &str,
    keystore: &KeystoreChoice,
) -> anyhow::Result<PathBuf> {
    let dir = layout.config.as_path();
    let state = layout.state_dir();
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() {
        bail!("{} exists; refusing to overwrite", config_path.display());
    }
    std::fs::create_dir_all(dir.join("tls"))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let text = config_text(simulated, listen, keystore, layout.state.as_deref());

    let token_key = TokenKey::generate()?;
    write_private(&dir.join(TOKEN_KEY_FILE), token_key.to_pkcs8_pem()?.as_bytes())?;
    keylatch_broker::audit::generate_key(
        &dir.join(AUDIT_KEY_FILE),
        &dir.join(AUDIT_PUB_FILE),
        keylatch_broker::config::DEFAULT_AUDIT_ORIGIN,
    )?;

    let names = if hostnames.is_empty() {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
    } else {
        hostnames.to_vec()
    };
    let (ca_pem, chain_pem, key_pem) = tls_files(&names)?;
    write_public(&dir.join(CA_FILE), ca_pem.as_bytes())?;
    write_public(&dir.join(CERT_FILE), chain_pem.as_bytes())?;
    write_private(&dir.join(KEY_FILE), key_pem.as_bytes())?;

    match keystore {
        KeystoreChoice::Soft => {
            keylatch_keystore::soft::SoftKeystore::create(&state.join(KEK_FILE))
                .map_err(|e| anyhow::anyhow!("creating the soft KEK: {e}"))?;
        }
        KeystoreChoice::Pkcs11 { .. } => {
            // Opening the token now finds (or generates, inside the token) the KEK and the
            // BYOK import key, and proves the module, label and PIN work before any
            // resource is stored.
            let config = Config::parse_str(&text, dir)?;
            keylatch_broker::state::open_keystore(&config)?;
        }
    }
    // The database holds sealed resources and the audit trail: created private (0600) before
    // SQLite opens it, so its WAL and shared-memory files inherit that mode too.
    write_private(&state.join(DB_FILE), b"")?;
    SqliteStore::open(&state.join(DB_FILE), true).await.context("creating the SQLite database")?;

    if simulated {
        let sim = dir.join(SIM_DIR);
        std::fs::create_dir_all(&sim).with_context(|| format!("creating {}", sim.display()))?;
        let pki = SimPki::generate(&mut OsRng).context("generating the simulation PKI")?;
        for (name, bytes) in pki.to_files().context("encoding the simulation PKI")? {
            if name.contains("key") {
                write_private(&sim.join(&name), &bytes)?;
            } else {
                write_public(&sim.join(&name), &bytes)?;
            }
        }
    }
    write_public(&config_path, text.as_bytes())?;
    Ok(config_path)
}

/// A local CA and a server certificate it signs: (CA PEM, chain PEM, server key PEM).
fn tls_files(names: &[String]) -> anyhow::Result<(String, String, zeroize::Zeroizing<String>)> {
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Keylatch local CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;

    let key = KeyPair::generate().context("server key")?;
    let mut leaf = CertificateParams::new(names.to_vec()).context("server certificate names")?;
    leaf.distinguished_name.push(DnType::CommonName, "keylatch");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + time::Duration::days(825);
    let leaf_cert =
        leaf.signed_by(&key, &ca_cert, &ca_key).context("signing the server certificate")?;
    let ca_pem = ca_cert.pem();
    Ok((
        ca_pem.clone(),
        format!("{}{ca_pem}", leaf_cert.pem()),
        zeroize::Zeroizing::new(key.serialize_pem()),
    ))
}

/// The commented configuration `init` writes. Every key is explained (see also CONFIG.md).
/// `state`: the directory of the database and KEK file, named by absolute path (`None`: next
/// to the configuration, by relative path).
#[must_use]
pub fn config_text(
    simulated: bool,
    listen: &str,
    keystore: &KeystoreChoice,
    state: Option<&Path>,
) -> String {
    let in_state = |name: &str| match state {
        Some(dir) => toml_string(&dir.join(name).display().to_string()),
        None => toml_string(name),
    };
    let (kek_file, db_file) = (in_state(KEK_FILE), in_state(DB_FILE));
    let keystore = match keystore {
        KeystoreChoice::Soft => format!(
            "# \"soft\": the key-encryption key in a local file (development only; the broker warns).\n\
             # \"pkcs11\": the KEK inside an HSM token, e.g.\n\
             # pkcs11 = {{ module = \"/usr/lib/softhsm/libsofthsm2.so\", token_label = \"keylatch\", pin = {{ file = \"hsm-pin\" }} }}\n\
             backend = \"soft\"\nkek_file = {kek_file}"
        ),
        KeystoreChoice::Pkcs11 { module, token_label, pin_file } => format!(
            "# \"pkcs11\": the key-encryption key is generated inside this HSM token and never\n\
             # leaves it. The PIN comes from the file (mode 0600) or `pin = {{ env = \"VAR\" }}`.\n\
             backend = \"pkcs11\"\npkcs11 = {{ module = {}, token_label = {}, pin = {{ file = {} }} }}",
            toml_string(&module.display().to_string()),
            toml_string(token_label),
            toml_string(&pin_file.display().to_string()),
        ),
    };
    let sim = if simulated {
        format!("allow_simulated = true\nsim_pki = \"{SIM_DIR}\"")
    } else {
        "allow_simulated = false\n# sim_pki = \"sim-pki\"".to_owned()
    };
    format!(
        r#"# Keylatch broker configuration. Relative paths are relative to this file's directory.
# Unknown keys are errors. Reference: broker/CONFIG.md.

# Address and port to listen on.
listen = "{listen}"

# Serve plain HTTP instead of HTTPS (only behind a TLS-terminating proxy on this host).
insecure_http = false

# How long a challenge nonce may be answered, and how long an attestation token is valid (s).
session_lifetime_s = 300
token_lifetime_s = 300

# ES256 (P-256, PKCS#8 PEM, mode 0600) key that signs attestation tokens.
token_signing_key = "{TOKEN_KEY_FILE}"

# Accept Trustee's unsigned `sample` TEE (development only; policies must still name it).
allow_sample = false

# Accept evidence signed by the simulation PKI in `sim_pki` (claims then say simulated: true,
# and a policy rule must set allow_simulated = true). With sim_pki set and allow_simulated =
# false, simulated evidence is recognized and refused by name.
{sim}

# Intel collateral (TCB info, QE identity, CRLs; JSON) for hardware TDX quotes: one file used
# for every quote, or a directory of such files chosen by FMSPC. Preferred over fetching while
# its nextUpdate has not passed.
# tdx_collateral = "tdx-collateral.json"

# Largest request body accepted (bytes); larger bodies are answered 413 too-large.
max_body_bytes = 2097152
# Seconds a client gets for each of its TLS handshake, request head and request body; slower
# clients are cut off (a slow body is answered 408 request-timeout).
client_timeout_s = 10

[tls]
# PEM certificate chain (leaf first) and its PKCS#8 key (mode 0600). Clients pin tls/ca.pem.
cert = "{CERT_FILE}"
key = "{KEY_FILE}"

[store]
# "sqlite": one file, one broker process. For several replicas behind a load balancer use
# backend = "postgres" with url = "postgres://keylatch@db:5432/keylatch?sslmode=verify-full"
# and password_file = "db-password" (mode 0600) instead of path; see broker/STORE.md.
backend = "sqlite"
path = {db_file}

[keystore]
{keystore}

[lifecycle]
# `keylatch resource list` flags resources whose rotate-by date (set with --rotate-by or
# --cryptoperiod-days) is within this many days as due soon, and past it as overdue.
rotation_warning_days = 30

[audit]
# Ed25519 key (PKCS#8 PEM, mode 0600) that signs the audit log's checkpoints. Auditors verify
# with audit.pub: `keylatch audit verify DIR --key audit.pub`.
signing_key = "{AUDIT_KEY_FILE}"
# The log's name (first line of every checkpoint; the verifier key's name).
origin = "{origin}"
# Sign a checkpoint every N entries, or every T seconds if the log grew.
checkpoint_every_entries = 1000
checkpoint_every_seconds = 60

[log]
# "text" (human-readable) or "json" (one object per line, with the request span's request_id).
format = "text"
# A tracing filter ("info", "warn", "keylatch_broker=debug,info"); RUST_LOG, when set, overrides it.
level = "info"

[rate_limit]
# Token bucket per client address (IPv6: per /64) on /kbs/v0/*: `per_second` sustained,
# `burst` at once; excess is answered 429 rate-limited with Retry-After. A guest needs 3
# requests, so the defaults let ~100 VMs behind one NAT address boot at once, then ~16/s.
# per_second = 0 disables the limit.
per_second = 50
burst = 300

[metrics]
# Serve Prometheus metrics at GET /metrics on this listener (counts only, no secrets).
enabled = true

# Signed reference-value bundles (`refval sign`), loaded at start. Policies name them.
# [[reference_values]]
# name = "web"                       # must equal the name inside the bundle
# bundle = "web.cose"
# author_keys = ["alice.pub.pem", "bob.pub.pem"]
# threshold = 2                      # distinct trusted signatures required

# Collateral for hardware evidence that does not carry it. SNP: the VCEK/VLEK from the
# evidence's certificate table, else snp_cert_dir, else AMD KDS (VCEKs only). TDX: tdx_collateral,
# else Intel PCS or a PCCS. Fetched items are cached in the store (TDX until its nextUpdate).
# When collateral cannot be had, attestation answers 503 "collateral-unavailable".
# [collateral]
# fetch = true                       # false: offline only, never contact KDS/PCS
# kds_url = "https://kds.amd.com"
# pcs_url = "https://api.trustedservices.intel.com"   # or your PCCS
# root_ca_crl_url = "..."            # default: Intel's for PCS, {{pcs_url}}/sgx/certification/v4/rootcacrl for a PCCS
# snp_cert_dir = "snp-certs"         # offline VCEK/VLEK certificates (*.der, *.pem)
# requests_per_second = 2            # per upstream service (KDS allows few)
# max_retries = 3                    # after HTTP 429, 5xx or a transport error
# backoff_initial_ms = 500           # doubled per retry; a Retry-After header wins
# max_backoff_s = 60                 # a longer Retry-After gives up at once
# timeout_s = 10                     # per HTTP request
# amd_crl_check = true               # SNP hardware chains need a current AMD CRL (KDS vcek|vlek/v1/{{product}}/crl)
# amd_crl_grace_s = 86400            # accepted this long after the CRL's nextUpdate
# amd_crl_dir = "amd-crls"           # offline AMD CRLs, preferred while current
# amd_crl_file = "{{kind}}-{{product}}.crl"   # their names: kind vcek|vlek, product Milan|Genoa|Turin
"#,
        origin = keylatch_broker::config::DEFAULT_AUDIT_ORIGIN
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}
