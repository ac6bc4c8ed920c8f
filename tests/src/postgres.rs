//! A throwaway PostgreSQL server for tests: `initdb` in a temp directory, `pg_ctl start` with no
//! TCP listener (`listen_addresses = ''`), reached only through a Unix socket in that directory
//! on a private port number, password (SCRAM) authentication. One server per test process
//! ([`server`], a `OnceLock`), a fresh database per test ([`PgServer::database`]).
//!
//! PostgreSQL refuses to run as root; as root (CI containers, this machine) the server commands
//! run as `nobody` through `setpriv`, in a directory chowned to it. Statics are never dropped,
//! so cleanup is a watchdog started with the server: a shell (as the same user) blocked reading
//! a pipe whose only writer is the test process; when the process exits, however it exits, the
//! kernel closes the pipe and the watchdog stops the server (`pg_ctl stop -m immediate`) and
//! removes the directory.
//!
//! Binaries: `$KEYLATCH_PG_BIN`, else Debian's newest `/usr/lib/postgresql/<ver>/bin`.
//! When PostgreSQL is missing or cannot start, [`server`] prints `skipped: ...` and returns
//! `Ok(None)`, except under `CI=true`, where it is an error (so CI never skips silently).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context as _};

/// The role every test database belongs to.
pub const USER: &str = "keylatch";
const PASSWORD: &str = "pg-test-Secret-7";

/// A running server.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    /// The Unix socket directory (`?host=` in URLs).
    pub socket_dir: PathBuf,
    pub port: u16,
    /// A file holding the password, one line (for `[store] password_file`).
    pub password_file: PathBuf,
    data: PathBuf,
    /// The watchdog's stdin: closing it (process exit) stops the server.
    watchdog: Mutex<Option<Child>>,
    next_db: AtomicU32,
}

static SERVER: OnceLock<Result<Option<PgServer>, String>> = OnceLock::new();

/// The process's server, started on first use. `Ok(None)` = skipped (printed).
pub fn server() -> anyhow::Result<Option<&'static PgServer>> {
    let started = SERVER.get_or_init(|| match PgServer::start() {
        Ok(s) => Ok(Some(s)),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => Err(format!("{e:#}")),
        Err(e) => {
            crate::skipped(&format!(
                "PostgreSQL cannot run here ({e:#}); apt-get install postgresql (scripts/test.sh does)"
            ));
            Ok(None)
        }
    });
    match started {
        Ok(s) => Ok(s.as_ref()),
        Err(e) => bail!("PostgreSQL is required under CI=true: {e}"),
    }
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KEYLATCH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("no PostgreSQL under {}", root.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    // `id -u` rather than libc: the crate has no unsafe and no libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` as the server's user: `nobody` through setpriv when we are root, else ourselves.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {what}"))?;
    crate::Outcome::from(out).success(what).map(|_| ())
}

impl PgServer {
    fn start() -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let root = is_root();
        let dir = tempfile::Builder::new().prefix("keylatch-pg-").tempdir()?.keep();
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir)?;
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n"))?;
        if root {
            let mut chown = Command::new("chown");
            chown.args(["-R", "nobody:nogroup"]).arg(&dir);
            run(chown, "chown nobody")?;
        }
        // The brokers' copy: theirs (this process's user) and private, as keylatch requires.
        let password_file = dir.join("password");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&password_file)?;
            f.write_all(format!("{PASSWORD}\n").as_bytes())?;
        }
        let mut initdb = as_server_user(&bin.join("initdb"), root);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(&dir);
        run(initdb, "initdb")?;
        let port = crate::broker::free_port()?.port();
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {port} \
             -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            socket_dir.display()
        );
        let mut start = as_server_user(&bin.join("pg_ctl"), root);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options, "-w", "start"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = start.status().context("running pg_ctl start")?;
        if !status.success() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            bail!("pg_ctl start failed: {status}\n{log}");
        }
        let watchdog = Self::watchdog(&bin, &data, &dir, root)?;
        Ok(Self {
            bin,
            socket_dir,
            port,
            password_file,
            data,
            watchdog: Mutex::new(Some(watchdog)),
            next_db: AtomicU32::new(0),
        })
    }

    fn watchdog(bin: &Path, data: &Path, dir: &Path, root: bool) -> anyhow::Result<Child> {
        let script =
            "cat >/dev/null; \"$1\" -D \"$2\" stop -m immediate -w >/dev/null 2>&1; rm -rf \"$3\"";
        let mut cmd = as_server_user(Path::new("sh"), root);
        cmd.args(["-c", script, "watchdog"])
            .arg(bin.join("pg_ctl"))
            .arg(data)
            .arg(dir)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().context("starting the PostgreSQL watchdog")
    }

    /// Creates a fresh, empty database and returns its URL (no password inside; the password
    /// is in [`PgServer::password_file`]).
    pub fn database(&self) -> anyhow::Result<String> {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let mut createdb = Command::new(self.bin.join("createdb"));
        createdb
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", USER, &name])
            .env("PGPASSWORD", PASSWORD);
        run(createdb, "createdb")?;
        Ok(self.url(&name))
    }

    /// `postgres://keylatch@localhost:PORT/<db>?host=<socket dir>`.
    #[must_use]
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@localhost:{}/{db}?host={}", self.port, self.socket_dir.display())
    }

    /// The password, for clients in the test itself.
    #[must_use]
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The server's data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Runs one SQL command through psql on database `db` (returns its unaligned output).
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", db, "-XAtq", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        Ok(crate::Outcome::from(out).success("psql")?.stdout_text())
    }

    /// Stops the server now (the watchdog's stdin closes).
    pub fn stop(&self) {
        if let Ok(mut w) = self.watchdog.lock() {
            if let Some(mut child) = w.take() {
                drop(child.stdin.take());
                let _ = child.wait();
            }
        }
    }
}
