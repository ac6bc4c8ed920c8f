//! The Debian packages as an administrator installs them: `dpkg -i` of the `keylatch` and
//! `keylatch-agent` .deb files that `cargo deb -p keylatch` and `cargo deb -p guest-agent` made
//! (scripts/test.sh builds them into target/debian before the tests; `KEYLATCH_DEB_DIR` points
//! elsewhere). Checks the files each package installs, the `keylatch` system user and its
//! directories, and the unit (`systemd-analyze verify` clean, `security` exposure "OK" or
//! better); then `keylatch init` for the packaged layout (configuration in /etc/keylatch, state
//! in /var/lib/keylatch, owned by the `keylatch` user) and the unit's own `ExecStart` run as its
//! `User` (setpriv, as systemd would; this container runs no systemd) until `/healthz` and
//! `/readyz` answer; then purges both packages and what init wrote. Builds nothing itself.
//! Needs root; outside CI a missing piece prints `skipped: ...`, under `CI=true` it fails.

// reason: shared test bodies fail loudly; clippy.toml relaxes this only inside #[test] fns.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::Outcome;

const UNIT: &str = "/usr/lib/systemd/system/keylatch.service";

/// The newest `<name>_*.deb` in the packages directory.
fn deb(dir: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}_");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let path = e.path();
            e.file_name().to_string_lossy().starts_with(&prefix)
                && path.extension().is_some_and(|x| x == "deb")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// Runs a command, or `Outcome` with code `None` and the reason when it cannot start.
fn run(program: &str, args: &[&str]) -> Outcome {
    Command::new(program).args(args).output().map_or_else(
        |e| Outcome { code: None, stdout: Vec::new(), stderr: format!("{program}: {e}") },
        Outcome::from,
    )
}

/// The packaged layout's directories.
const CONFIG_DIR: &str = "/etc/keylatch";
const STATE_DIR: &str = "/var/lib/keylatch";

/// Purges both packages when the test ends, however it ends, and removes the directories
/// (tmpfiles.d made them; the test's `keylatch init` filled them), which existed only for this
/// test: it refuses to start on a machine that had them. The system user stays, as Debian keeps
/// users of purged packages.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "keylatch-agent", "keylatch"]).output();
        let _ = std::fs::remove_dir_all(CONFIG_DIR);
        let _ = std::fs::remove_dir_all(STATE_DIR);
    }
}

/// `stat -c '%U:%G %a' path`.
fn owner_and_mode(path: &str) -> String {
    run("stat", &["-c", "%U:%G %a", path]).success("stat").unwrap().stdout_text().trim().to_owned()
}

#[test]
fn deb_packages_install_the_broker_service_user_and_the_boot_integration() {
    let dir = std::env::var_os("KEYLATCH_DEB_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debian")),
        PathBuf::from,
    );
    let root = run("id", &["-u"]).stdout_text().trim() == "0";
    let (Some(broker), Some(agent), true) =
        (deb(&dir, "keylatch"), deb(&dir, "keylatch-agent"), root)
    else {
        e2e::prerequisite_missing(&format!(
            "needs root and keylatch_*.deb and keylatch-agent_*.deb in {} (cargo deb -p keylatch; \
             cargo deb -p guest-agent; scripts/test.sh builds them)",
            dir.display()
        ))
        .unwrap();
        return;
    };
    assert!(
        !Path::new(CONFIG_DIR).exists() && !Path::new(STATE_DIR).exists(),
        "{CONFIG_DIR} or {STATE_DIR} exists: this test installs, initializes and purges keylatch, \
         run it on a machine without it"
    );
    let _purge = Purge;
    run("dpkg", &["-i", broker.to_str().unwrap(), agent.to_str().unwrap()])
        .success("dpkg -i")
        .unwrap();

    let listed = run("dpkg", &["-L", "keylatch"]).stdout_text();
    for file in [
        "/usr/bin/keylatch",
        UNIT,
        "/usr/lib/sysusers.d/keylatch.conf",
        "/usr/lib/tmpfiles.d/keylatch.conf",
        "/usr/share/doc/keylatch/README.md",
    ] {
        assert!(listed.lines().any(|l| l == file), "keylatch lacks {file}:\n{listed}");
    }
    let listed = run("dpkg", &["-L", "keylatch-agent"]).stdout_text();
    for file in [
        "/usr/bin/keylatch-agent",
        "/usr/share/initramfs-tools/hooks/keylatch",
        "/usr/share/initramfs-tools/scripts/local-top/keylatch",
        "/usr/lib/dracut/modules.d/90keylatch/module-setup.sh",
        "/usr/lib/dracut/modules.d/90keylatch/keylatch-unlock.sh",
        "/usr/share/doc/keylatch-agent/examples/agent.toml",
    ] {
        assert!(listed.lines().any(|l| l == file), "keylatch-agent lacks {file}:\n{listed}");
    }
    // The example configuration is documentation, never a live /etc/keylatch/agent.toml.
    assert!(!Path::new("/etc/keylatch/agent.toml").exists());

    // The broker's own system user, with its state and configuration directories.
    let user = run("getent", &["passwd", "keylatch"]).success("getent passwd keylatch").unwrap();
    let fields: Vec<String> = user.stdout_text().trim().split(':').map(str::to_owned).collect();
    assert_eq!(fields.get(5).map(String::as_str), Some("/var/lib/keylatch"), "{fields:?}");
    assert!(fields.get(6).is_some_and(|s| s.ends_with("nologin")), "{fields:?}");
    let uid: u32 = fields.get(2).unwrap().parse().unwrap();
    assert!(uid < 1000, "keylatch is not a system user: uid {uid}");
    // The postinst applies tmpfiles.d only on a host booted with systemd (as debhelper's does);
    // elsewhere (this container) systemd-tmpfiles-setup would do it at the next boot: do that.
    if !Path::new("/run/systemd/system").is_dir() {
        run("systemd-tmpfiles", &["--create", "keylatch.conf"])
            .success("systemd-tmpfiles")
            .unwrap();
    }
    for (path, mode) in [(STATE_DIR, "700"), (CONFIG_DIR, "750")] {
        assert_eq!(owner_and_mode(path), format!("keylatch:keylatch {mode}"), "{path}");
    }

    // The unit: verified clean, and hardened to an exposure of "OK" or better.
    let verify = run("systemd-analyze", &["verify", UNIT]);
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    assert_eq!(verify.stderr.trim(), "", "systemd-analyze verify warns");
    let security = run("systemd-analyze", &["security", "--offline=true", UNIT]);
    let text = security.stdout_text();
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level for keylatch.service"))
        .unwrap_or_else(|| panic!("no exposure level:\n{text}\n{}", security.stderr));
    println!("{}", overall.trim());
    let score: f64 = overall
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable: {overall}"));
    assert!(score <= 2.0, "exposure {score} is not OK or better: {overall}");
    let enabled = run("systemctl", &["is-enabled", "keylatch.service"]);
    assert_eq!(enabled.stdout_text().trim(), "disabled", "enabled before `keylatch init`");

    packaged_init_serves_as_the_unit_runs_it();
}

/// `keylatch init` as root for the packaged layout, then the unit's `ExecStart` as its `User`.
fn packaged_init_serves_as_the_unit_runs_it() {
    let addr = e2e::broker::free_port().unwrap();
    let init = run(
        "/usr/bin/keylatch",
        &[
            "init",
            "--config-dir",
            CONFIG_DIR,
            "--dir",
            STATE_DIR,
            "--owner",
            "keylatch",
            "--listen",
            &addr.to_string(),
        ],
    )
    .success("keylatch init (packaged layout)")
    .unwrap();
    println!("{}", init.stdout_text().trim());
    // Everything init wrote belongs to the service's user; keys and state stay 0600 and the
    // directories keep the modes tmpfiles.d gave them.
    for (path, mode) in [
        (CONFIG_DIR, "750"),
        (STATE_DIR, "700"),
        ("/etc/keylatch/keylatch.toml", "644"),
        ("/etc/keylatch/token-signing-key.pem", "600"),
        ("/etc/keylatch/audit-signing-key.pem", "600"),
        ("/etc/keylatch/tls/server-key.pem", "600"),
        ("/etc/keylatch/tls/ca.pem", "644"),
        ("/var/lib/keylatch/keylatch.db", "600"),
        ("/var/lib/keylatch/kek.json", "600"),
    ] {
        assert_eq!(owner_and_mode(path), format!("keylatch:keylatch {mode}"), "{path}");
    }

    // The unit's own command line and user, as systemd would start them.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let key = |k: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{UNIT} has no {k}="))
            .trim()
            .to_owned()
    };
    let exec = key("ExecStart");
    assert_eq!(exec, "/usr/bin/keylatch serve --config /etc/keylatch/keylatch.toml");
    let (user, group) = (key("User"), key("Group"));
    let mut serve = Command::new("setpriv");
    serve
        .args(["--reuid", &user, "--regid", &group, "--init-groups", "--"])
        .args(exec.split_whitespace())
        .current_dir("/");
    let log = Path::new(STATE_DIR).join("test-serve.log");
    let broker =
        e2e::Broker::start_command(serve, addr, Path::new("/etc/keylatch/tls/ca.pem"), &log)
            .unwrap();
    // Alive, and ready: it opened the database and the KEK file as the keylatch user.
    broker.client().unwrap().healthy().unwrap();
    let wal = owner_and_mode("/var/lib/keylatch/keylatch.db-wal");
    assert_eq!(wal, "keylatch:keylatch 600", "the database's WAL");
    assert_eq!(broker.terminate().unwrap(), Some(0), "stops cleanly on SIGTERM");
}
