//! A broker as an operator sets one up: [`BrokerDir`] is `keylatch init --simulated` in a
//! temporary directory, switched to a SoftHSM2 token (or left on the soft keystore) and to a
//! free port on 127.0.0.1, with the operator commands (`resource put|generate`, `policy set`)
//! run against it. [`Broker`] is a running `keylatch serve` on that directory: started when
//! it accepts TLS connections, its stderr in `logs/broker-<n>.log`, killed on drop.
//!
//! Everything the broker keeps lives in the directory, so a crash test can kill a [`Broker`]
//! and start another on the same [`BrokerDir`], and a multi-replica test can point several
//! directories' configurations at shared state with [`BrokerDir::edit_config`].

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::hsm::SoftHsm;
use crate::{bins, Outcome};

/// How long a broker may take to accept TLS before the harness gives up (a hang guard, not an
/// expectation: a healthy broker is ready in well under a second).
const START_GUARD: Duration = Duration::from_secs(60);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Attempts at finding a port no other process grabbed between probe and bind.
const BIND_ATTEMPTS: usize = 5;

/// A broker directory: configuration, keys, TLS, database, simulation PKI, token.
#[derive(Debug)]
pub struct BrokerDir {
    dir: tempfile::TempDir,
    /// The SoftHSM2 token holding the KEK (`None`: the soft keystore of `init`).
    pub hsm: Option<SoftHsm>,
    listen: Mutex<SocketAddr>,
    starts: AtomicUsize,
}

impl BrokerDir {
    /// `keylatch init --simulated`, then the pkcs11 keystore on a new SoftHSM2 token (the soft
    /// KEK file is removed). `Ok(None)` after printing `skipped: ...` without SoftHSM2.
    pub fn pkcs11() -> anyhow::Result<Option<Self>> {
        Self::pkcs11_with_hostnames(&[])
    }

    /// [`BrokerDir::pkcs11`] with a TLS certificate for `hostnames` (`keylatch init
    /// --hostname`, e.g. the address a VM reaches the broker at) instead of init's default.
    pub fn pkcs11_with_hostnames(hostnames: &[&str]) -> anyhow::Result<Option<Self>> {
        let dir = Self::init(hostnames)?;
        let Some(hsm) = SoftHsm::create(dir.path())? else {
            return Ok(None);
        };
        dir.edit_config(|t| {
            t.insert("keystore".into(), toml::Value::Table(hsm.keystore_toml()));
        })?;
        std::fs::remove_file(dir.path().join("kek.json")).context("removing the soft KEK")?;
        Ok(Some(Self { hsm: Some(hsm), ..dir }))
    }

    /// `keylatch init --simulated` as it is (soft keystore), on a free port.
    pub fn soft() -> anyhow::Result<Self> {
        Self::init(&[])
    }

    fn init(hostnames: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating the broker directory")?;
        let listen = free_port()?;
        let out = Command::new(bins::path(bins::KEYLATCH)?)
            .args(["init", "--simulated", "--listen", &listen.to_string(), "--dir"])
            .arg(dir.path())
            .args(hostnames.iter().flat_map(|h| ["--hostname", h]))
            .output()
            .context("running keylatch init")?;
        Outcome::from(out).success("keylatch init")?;
        Ok(Self { dir, hsm: None, listen: Mutex::new(listen), starts: AtomicUsize::new(0) })
    }

    /// The directory `keylatch init` filled.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    #[must_use]
    pub fn config(&self) -> PathBuf {
        self.path().join("keylatch.toml")
    }

    /// The CA clients pin (`tls/ca.pem`).
    #[must_use]
    pub fn ca(&self) -> PathBuf {
        self.path().join("tls/ca.pem")
    }

    /// The simulation PKI the broker trusts (`sim-pki`).
    #[must_use]
    pub fn sim_pki(&self) -> PathBuf {
        self.path().join("sim-pki")
    }

    /// The address the configuration listens on.
    #[must_use]
    pub fn listen(&self) -> SocketAddr {
        *self.listen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rewrites `keylatch.toml` through `edit` (comments are not kept).
    pub fn edit_config(&self, edit: impl FnOnce(&mut toml::Table)) -> anyhow::Result<()> {
        let path = self.config();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table =
            text.parse().with_context(|| format!("parsing {}", path.display()))?;
        edit(&mut table);
        std::fs::write(&path, toml::to_string(&table)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// `keylatch` with this directory's token in its environment.
    pub fn keylatch(&self) -> anyhow::Result<Command> {
        let mut cmd = Command::new(bins::path(bins::KEYLATCH)?);
        if let Some(hsm) = &self.hsm {
            let (k, v) = hsm.env();
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// `keylatch SUBCOMMAND... --config keylatch.toml ARGS...`, required to succeed.
    pub fn admin(&self, subcommand: &[&str], args: &[&OsStr]) -> anyhow::Result<Outcome> {
        let out = self
            .keylatch()?
            .args(subcommand)
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .context("running keylatch")?;
        Outcome::from(out).success(&format!("keylatch {}", subcommand.join(" ")))
    }

    /// `keylatch resource put PATH --from FILE` with `bytes`; returns the new version.
    pub fn resource_put(&self, path: &str, bytes: &[u8]) -> anyhow::Result<u64> {
        self.admin_from(&["resource", "put"], path, bytes, "version")
    }

    /// `keylatch resource generate PATH --length N`; returns the new version.
    pub fn resource_generate(&self, path: &str, length: usize) -> anyhow::Result<u64> {
        let length = length.to_string();
        let out = self.admin(
            &["resource", "generate"],
            &[path.as_ref(), "--length".as_ref(), length.as_ref()],
        )?;
        version_in(&out.stdout_text(), "version")
    }

    /// `keylatch policy set PATH --from FILE` with `policy` (TOML or JSON); returns the version.
    pub fn policy_set(&self, path: &str, policy: &str) -> anyhow::Result<u64> {
        self.admin_from(&["policy", "set"], path, policy.as_bytes(), "policy version")
    }

    /// `keylatch SUBCOMMAND PATH --from FILE` with `contents` in a 0600 temporary file (removed
    /// afterwards); returns the number after `label` in its output.
    fn admin_from(
        &self,
        subcommand: &[&str],
        path: &str,
        contents: &[u8],
        label: &str,
    ) -> anyhow::Result<u64> {
        let file = tempfile::NamedTempFile::new_in(self.path())?;
        std::fs::write(file.path(), contents)?;
        let out =
            self.admin(subcommand, &[path.as_ref(), "--from".as_ref(), file.path().as_os_str()])?;
        version_in(&out.stdout_text(), label)
    }

    /// `keylatch token create --role ROLE [--prefix P]...`: a fresh admin-API bearer token.
    pub fn admin_token(&self, role: &str, prefixes: &[&str]) -> anyhow::Result<String> {
        let mut args: Vec<&OsStr> =
            vec!["--role".as_ref(), role.as_ref(), "--name".as_ref(), "e2e".as_ref()];
        for prefix in prefixes {
            args.push("--prefix".as_ref());
            args.push(OsStr::new(prefix));
        }
        let out = self.admin(&["token", "create"], &args)?;
        Ok(out.stdout_text().trim().to_owned())
    }

    /// `keylatch audit export` into a fresh directory, then `keylatch audit verify` on it with
    /// the broker's `audit.pub`, as an auditor would offline; returns the verified entries
    /// (each line of `entries.jsonl`, whose `entry` holds `kind`, `decision`, ...). Errors with
    /// the verifier's report when the log does not verify.
    pub fn verified_audit(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let export = tempfile::tempdir_in(self.path()).context("creating the export directory")?;
        let out = export.path().join("audit");
        self.admin(&["audit", "export"], &["--out".as_ref(), out.as_os_str()])?;
        let verify = Command::new(bins::path(bins::KEYLATCH)?)
            .args(["audit", "verify"])
            .arg(&out)
            .arg("--key")
            .arg(self.path().join("audit.pub"))
            .output()
            .context("running keylatch audit verify")?;
        Outcome::from(verify).success("keylatch audit verify")?;
        let jsonl = std::fs::read_to_string(out.join("entries.jsonl"))?;
        jsonl
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("entries.jsonl line {l:?}")))
            .collect()
    }

    /// Starts `keylatch serve` and returns once it completes TLS handshakes with the CA in
    /// `tls/ca.pem`. A port taken meanwhile by another process is replaced by a free one.
    pub fn start(&self) -> anyhow::Result<Broker> {
        let mut last = String::new();
        for _ in 0..BIND_ATTEMPTS {
            match self.spawn()?.ready(&self.ca())? {
                Ok(broker) => return Ok(broker),
                Err(log) if log.contains("binding") && log.contains("in use") => {
                    let port = free_port()?;
                    *self.listen.lock().unwrap_or_else(PoisonError::into_inner) = port;
                    self.edit_config(|t| {
                        t.insert("listen".into(), toml::Value::String(port.to_string()));
                    })?;
                    last = log;
                }
                Err(log) => bail!("keylatch serve exited before accepting TLS:\n{log}"),
            }
        }
        bail!("keylatch serve found no free port in {BIND_ATTEMPTS} attempts:\n{last}")
    }

    /// Moves the broker's state to PostgreSQL: `[store] backend = "postgres"` with `url` and
    /// `password_file` (do it before any operator command, which then writes there).
    pub fn use_postgres(&self, url: &str, password_file: &Path) -> anyhow::Result<()> {
        self.edit_config(|t| {
            let mut store = toml::Table::new();
            store.insert("backend".into(), "postgres".into());
            store.insert("url".into(), url.into());
            store.insert("password_file".into(), password_file.display().to_string().into());
            t.insert("store".into(), toml::Value::Table(store));
        })
    }

    /// Starts one more `keylatch serve` on this directory's configuration (same store, keys and
    /// TLS) but on its own free port, as a replica behind a load balancer would run: its copy
    /// of the configuration is `replica-<n>.toml` beside `keylatch.toml`.
    pub fn start_replica(&self) -> anyhow::Result<Broker> {
        let text = std::fs::read_to_string(self.config())?;
        let mut table: toml::Table = text.parse()?;
        let mut last = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port()?;
            let n = self.starts.load(Ordering::Relaxed);
            let config = self.path().join(format!("replica-{n}.toml"));
            table.insert("listen".into(), toml::Value::String(port.to_string()));
            std::fs::write(&config, toml::to_string(&table)?)?;
            match self.spawn_with(&config, port)?.ready(&self.ca())? {
                Ok(broker) => return Ok(broker),
                Err(log) if log.contains("binding") && log.contains("in use") => last = log,
                Err(log) => bail!("keylatch serve (replica) exited before accepting TLS:\n{log}"),
            }
        }
        bail!("keylatch serve (replica) found no free port in {BIND_ATTEMPTS} attempts:\n{last}")
    }

    fn spawn(&self) -> anyhow::Result<Broker> {
        self.spawn_with(&self.config(), self.listen())
    }

    fn spawn_with(&self, config: &Path, addr: SocketAddr) -> anyhow::Result<Broker> {
        let logs = self.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let log = logs.join(format!("broker-{n}.log"));
        let stderr = std::fs::File::create(&log)?;
        let child = self
            .keylatch()?
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting keylatch serve")?;
        Ok(Broker { child, addr, log, ca: self.ca(), sim_pki: self.sim_pki() })
    }
}

/// A running `keylatch serve`. Dropping it kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    ca: PathBuf,
    sim_pki: PathBuf,
}

impl Broker {
    /// `https://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the broker wrote to stderr so far (its log).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What a guest agent needs to reach this broker, trusting the broker's own simulation PKI.
    #[must_use]
    pub fn target(&self) -> crate::AgentTarget {
        crate::AgentTarget {
            url: self.url(),
            ca: self.ca.clone(),
            sim_pki: self.sim_pki.clone(),
            deadline_s: 10,
        }
    }

    /// A raw HTTPS client for this broker, pinning its CA ([`crate::https`]).
    pub fn client(&self) -> anyhow::Result<crate::https::Client> {
        crate::https::Client::new(&self.ca, self.addr)
    }

    /// Runs `command`, a `keylatch serve --config ...` made by the caller (for instance behind
    /// `setpriv`, as the user a systemd unit names), with its stderr in `log`, and returns once
    /// it accepts TLS on `addr` with the CA `ca`. (Its [`Broker::target`] trusts no sim PKI.)
    pub fn start_command(
        mut command: Command,
        addr: SocketAddr,
        ca: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let broker = Self {
            child,
            addr,
            log: log.to_path_buf(),
            ca: ca.to_path_buf(),
            sim_pki: PathBuf::new(),
        };
        broker
            .ready(ca)?
            .map_err(|log| anyhow::anyhow!("{command:?} exited before accepting TLS:\n{log}"))
    }

    /// SIGKILL, as a crash: no shutdown code runs. Returns once the process is reaped.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().context("killing keylatch serve")?;
        self.child.wait().context("reaping keylatch serve")?;
        Ok(())
    }

    /// SIGTERM (graceful shutdown); returns the exit code once the process has exited.
    pub fn terminate(mut self) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().to_string();
        let out = Command::new("kill").args(["-TERM", &pid]).output().context("running kill")?;
        Outcome::from(out).success("kill -TERM")?;
        Ok(self.child.wait().context("waiting for keylatch serve")?.code())
    }

    /// Polls until a TLS handshake with `ca` succeeds (`Ok(Ok)`), or the process exits
    /// (`Ok(Err(log))`).
    fn ready(mut self, ca: &Path) -> anyhow::Result<Result<Self, String>> {
        let tls = client_config(ca)?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Err(format!("({status})\n{}", self.log())));
            }
            if handshake(&tls, self.addr).is_ok() {
                return Ok(Ok(self));
            }
            if started.elapsed() > START_GUARD {
                bail!("keylatch serve not accepting TLS on {}:\n{}", self.addr, self.log());
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?)
}

/// A rustls client that trusts only the PEM certificates in `ca`.
pub fn client_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One complete TLS handshake with the server at `addr` (named by its IP address).
pub fn handshake(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> anyhow::Result<()> {
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name)?;
    let mut sock = TcpStream::connect(addr)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(())
}

/// The number after `label ` in a command's output (`... version 3`).
fn version_in(stdout: &str, label: &str) -> anyhow::Result<u64> {
    let rest = stdout
        .split(&format!("{label} "))
        .nth(1)
        .with_context(|| format!("no `{label}` in {stdout:?}"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().with_context(|| format!("no number after `{label}` in {stdout:?}"))
}
