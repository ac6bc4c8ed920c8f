//! Where the binaries under test are. Cargo exposes `CARGO_BIN_EXE_*` only to a package's own
//! tests, so the harness looks in the target directory it was built into (the test executable
//! lives in `target/<profile>/deps/`). A binary older than the sources it is built from is
//! refused: testing yesterday's broker would pass or fail for the wrong reasons.
//!
//! `KEYLATCH_BIN_DIR` points elsewhere (a release build, an installed package); binaries found
//! through it are taken as they are.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context as _};

/// The broker binary (package `keylatch`, directory `cli/`).
pub const KEYLATCH: &str = "keylatch";
/// The guest agent binary (package `guest-agent`).
pub const AGENT: &str = "keylatch-agent";
/// The policy authors' tool (package `refval`).
pub const REFVAL: &str = "refval";

/// The directory of the package each binary belongs to.
fn package_dir(bin: &str) -> &'static str {
    match bin {
        AGENT => "guest-agent",
        REFVAL => "refval",
        _ => "cli",
    }
}

const BUILD_HINT: &str = "run `cargo build -p keylatch -p guest-agent -p refval --bins` first \
     (`cargo nextest run --workspace` and scripts/test.sh build them)";

/// The path of a built binary, checked to exist and to be newer than its sources.
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KEYLATCH_BIN_DIR") {
        let bin = PathBuf::from(dir).join(name);
        if !bin.is_file() {
            bail!("{} not found (KEYLATCH_BIN_DIR)", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not in target/<profile>/deps", exe.display()))?;
    let bin = profile_dir.join(name);
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map_err(|e| anyhow::anyhow!("{} missing ({e}): {BUILD_HINT}", bin.display()))?;
    if let Some((source, _)) = newest_source(package_dir(name))?.filter(|(_, t)| *t > built) {
        bail!("{} is older than {}: {BUILD_HINT}", bin.display(), source.display());
    }
    Ok(bin)
}

/// The most recently modified `.rs` or `.sql` file of `package` and of the workspace crates it
/// depends on (normal dependencies, transitively).
fn newest_source(package: &str) -> anyhow::Result<Option<(PathBuf, SystemTime)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack: Vec<PathBuf> = crate_dirs(&root, package)?
        .iter()
        .flat_map(|c| [root.join(c).join("src"), root.join(c).join("migrations")])
        .filter(|d| d.is_dir())
        .collect();
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let is_source = path.extension().is_some_and(|e| e == "rs" || e == "sql");
            if !is_source {
                continue;
            }
            let modified = std::fs::metadata(&path)?.modified()?;
            if newest.as_ref().is_none_or(|(_, t)| modified > *t) {
                newest = Some((path, modified));
            }
        }
    }
    Ok(newest)
}

/// `package` and every workspace crate it depends on, as directories relative to `root`: the
/// path dependencies of `[workspace.dependencies]`, followed through each crate's
/// `[dependencies]`.
fn crate_dirs(root: &Path, package: &str) -> anyhow::Result<Vec<String>> {
    let manifest = |dir: &Path| -> anyhow::Result<toml::Table> {
        let path = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.parse().with_context(|| format!("parsing {}", path.display()))
    };
    let workspace = manifest(root)?;
    let local: Vec<(String, String)> = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table)
        .into_iter()
        .flatten()
        .filter_map(|(name, spec)| {
            let path = spec.get("path")?.as_str()?;
            Some((name.clone(), path.to_owned()))
        })
        .collect();
    let mut seen = vec![package.to_owned()];
    let mut todo = vec![package.to_owned()];
    while let Some(dir) = todo.pop() {
        let deps = manifest(&root.join(&dir))?;
        let names = deps.get("dependencies").and_then(toml::Value::as_table).into_iter().flatten();
        for (name, _) in names {
            if let Some((_, path)) = local.iter().find(|(n, _)| n == name) {
                if !seen.contains(path) {
                    seen.push(path.clone());
                    todo.push(path.clone());
                }
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_sources_are_its_crate_and_its_workspace_dependencies() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut dirs = crate_dirs(&root, "guest-agent").unwrap();
        dirs.sort();
        assert_eq!(dirs, ["guest-agent", "verifier", "wire"]);
        let broker = crate_dirs(&root, "cli").unwrap();
        for dir in ["cli", "server", "broker", "keystore", "reference-values", "verifier", "wire"] {
            assert!(broker.iter().any(|d| d == dir), "{dir} missing from {broker:?}");
        }
        // The broker binary does not link the guest agent (the benches that simulate guests are
        // the separate keylatch-bench).
        assert!(!broker.iter().any(|d| d == "guest-agent"), "{broker:?}");
    }
}
