//! A throwaway PostgreSQL server started by the test itself: `initdb` and `pg_ctl start` in a
//! temporary directory, listening only on a Unix socket in a private directory (the port just
//! names the socket file, so nothing on the machine can collide with it), password (SCRAM)
//! authentication. PostgreSQL refuses to run as root, so under root (CI) every server command
//! runs as `nobody` through `setpriv`, in a directory handed to `nobody`.
//!
//! Cleanup does not rely on destructors (a server shared through a `static` is never dropped):
//! a reaper shell started first waits for end-of-file on a pipe only this process holds, then
//! stops the server and deletes the directory — when the server is dropped, or when the test
//! process exits however it exits.
//!
//! Binaries: `$KEYLATCH_PG_BIN`, else Debian's newest `/usr/lib/postgresql/<ver>/bin`, else
//! `PATH`. When PostgreSQL cannot run, [`PgServer::shared`] fails the test under `CI=true` and
//! otherwise returns `None` after printing the reason.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use rand_core::{OsRng, RngCore as _};
use sqlx::Connection as _;

/// The superuser the cluster is created with.
pub const USER: &str = "keylatch";

/// One running server.
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    port: u16,
    password: String,
    /// Its stdin is the pipe whose end-of-file tells the reaper to clean up.
    reaper: Option<Child>,
}

impl PgServer {
    /// The server shared by every test of this process; `None` (after printing why) when
    /// PostgreSQL cannot run here and this is not CI.
    pub fn shared() -> Option<&'static PgServer> {
        static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
        match SERVER.get_or_init(PgServer::start) {
            Ok(server) => Some(server),
            Err(reason) => unavailable(reason),
        }
    }

    /// A server of the test's own (for tests that stop it); `None` as for [`Self::shared`].
    pub fn private() -> Option<PgServer> {
        match PgServer::start() {
            Ok(server) => Some(server),
            Err(reason) => unavailable(&reason),
        }
    }

    fn start() -> Result<PgServer, String> {
        let bin = find_bin()?;
        let run_as = if current_uid()? == 0 { Some(nobody()?) } else { None };
        let dir = tempfile::Builder::new()
            .prefix("keylatch-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        let server = PgServer {
            reaper: Some(reaper(&dir)?),
            dir,
            bin,
            run_as,
            port: private_port()?,
            password: hex::encode(random::<16>()),
        };
        let sock = server.dir.join("sock");
        std::fs::create_dir(&sock).map_err(|e| format!("socket dir: {e}"))?;
        let pwfile = server.dir.join("pw");
        std::fs::write(&pwfile, format!("{}\n", server.password))
            .map_err(|e| format!("password file: {e}"))?;
        if let Some((uid, gid)) = server.run_as {
            for path in [&server.dir, &sock, &pwfile] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {} to nobody: {e}", path.display()))?;
            }
        }
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--auth=scram-sha-256".as_ref(),
                format!("--pwfile={}", pwfile.display()).as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        server.start_server()?;
        Ok(server)
    }

    /// `pg_ctl start`, waiting until the server accepts connections. Durability is the
    /// server's business, not these tests': fsync is off.
    pub fn start_server(&self) -> Result<(), String> {
        let opts = format!(
            "-c listen_addresses='' -k '{}' -p {} -c fsync=off -c max_connections=300",
            self.dir.join("sock").display(),
            self.port
        );
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "120".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
            ],
        )
    }

    /// `pg_ctl stop -m fast`: connections are cut, nothing committed is lost.
    pub fn stop_server(&self) -> Result<(), String> {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        )
    }

    /// The superuser's password (what a `password_file` holds).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A URL for `database` without the password.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}@localhost:{}/{database}?host={}",
            self.port,
            self.dir.join("sock").display()
        )
    }

    /// Creates a database no other test uses and returns its name.
    pub async fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let options: sqlx::postgres::PgConnectOptions =
            self.url("postgres").parse().expect("admin URL");
        let mut conn = sqlx::PgConnection::connect_with(&options.password(&self.password))
            .await
            .expect("connecting to the test server");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        name
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            Err(format!(
                "{tool} failed ({}): {}{}\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut reaper) = self.reaper.take() {
            drop(reaper.stdin.take());
            let _ = reaper.wait();
        }
    }
}

fn unavailable<T>(reason: &str) -> Option<T> {
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "PostgreSQL must run in CI (CI=true): {reason}"
    );
    println!("skipped: PostgreSQL unavailable: {reason}");
    None
}

/// The shell that, once its stdin reaches end-of-file, stops the server (immediate shutdown
/// of the postmaster, whose children follow) and removes `dir`.
fn reaper(dir: &Path) -> Result<Child, String> {
    const SCRIPT: &str = r#"
read _ignored
pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$1"
"#;
    let child = Command::new("sh")
        .args(["-c", SCRIPT, "reaper"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the cleanup shell: {e}"))?;
    // Nothing is ever written: only the pipe's closing matters.
    Ok(child)
}

fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("KEYLATCH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or_else(|| {
            "no initdb/pg_ctl (install Debian's `postgresql` package, or set KEYLATCH_PG_BIN)"
                .to_owned()
        })
}

fn id(args: &[&str]) -> Result<u32, String> {
    let out = Command::new("id").args(args).output().map_err(|e| format!("id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("id {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
}

fn current_uid() -> Result<u32, String> {
    id(&["-u"])
}

/// `nobody`'s user and group: the unprivileged identity the server runs as under root.
fn nobody() -> Result<(u32, u32), String> {
    Ok((id(&["-u", "nobody"])?, id(&["-g", "nobody"])?))
}

/// A port number no other server of this machine uses right now (only names the socket).
fn private_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("picking a port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("picking a port: {e}"))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}
