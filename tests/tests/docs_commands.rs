//! The guides cannot drift from the binaries: every `keylatch`, `keylatch-agent` and `refval`
//! command line in a ```sh block of README.md and docs/*.md is checked against the real
//! binary's `--help`: each subcommand exists at its level, each `--flag` exists on the command
//! or one of its parents, and flags that take a value get one. What the commands do is tested
//! where the behaviour lives (the quickstart test runs the main path end to end; the crates' tests and
//! the other e2e tests cover the rest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // reason: test code

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::bins;

/// Splits a shell line into words: whitespace outside quotes, '...' and "..." kept together.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// Command lines (continuations joined) of the ```sh blocks of `file` that run our binaries.
fn doc_commands(file: &Path) -> Vec<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    let mut start = 0;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if pending.is_empty() {
            start = n + 1;
        }
        let (body, continued) = match trimmed.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (trimmed, false),
        };
        pending.push_str(body);
        pending.push(' ');
        if continued {
            continue;
        }
        let line = std::mem::take(&mut pending);
        // Only the command itself: drop comments, pipes and redirections.
        let line = line.split(" #").next().unwrap_or("");
        let line = line.split(['|', '>', ';']).next().unwrap_or("");
        let w = words(line);
        if w.first()
            .is_some_and(|b| [bins::KEYLATCH, bins::AGENT, bins::REFVAL].contains(&b.as_str()))
        {
            out.push((start, w));
        }
    }
    out
}

/// What one `--help` says: subcommands, and flags with whether they take a value.
struct Help {
    subcommands: Vec<String>,
    flags: BTreeMap<String, bool>,
}

fn help(bin: &Path, path: &[String]) -> Help {
    let out = Command::new(bin).args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{} {} --help failed", bin.display(), path.join(" "));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut subcommands = Vec::new();
    let mut flags = BTreeMap::new();
    let mut in_commands = false;
    for line in text.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_commands = false;
        }
        if in_commands {
            if let Some(name) = line.split_whitespace().next() {
                subcommands.push(name.to_owned());
            }
            continue;
        }
        // Option lines only (`  -x, --name <VALUE>  text`), not prose that mentions a flag.
        if !line.trim_start().starts_with('-') {
            continue;
        }
        let mut rest = line.trim_start().split("  ").next().unwrap_or("");
        while let Some(i) = rest.find("--") {
            let after = &rest[i + 2..];
            let name: String =
                after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            let takes_value = after[name.len()..].starts_with(" <");
            if !name.is_empty() {
                flags.entry(name.clone()).or_insert(takes_value);
            }
            rest = &after[name.len()..];
        }
    }
    Help { subcommands, flags }
}

fn check(file: &Path, line: usize, command: &[String]) -> Result<(), String> {
    let bin = bins::path(&command[0]).map_err(|e| e.to_string())?;
    let mut path: Vec<String> = Vec::new();
    let mut helps = vec![help(&bin, &path)];
    let mut positional_seen = false;
    let mut args = command[1..].iter().peekable();
    while let Some(arg) = args.next() {
        if let Some(flag) = arg.strip_prefix("--") {
            let (name, inline_value) = match flag.split_once('=') {
                Some((n, _)) => (n, true),
                None => (flag, false),
            };
            let Some(takes_value) = helps.iter().rev().find_map(|h| h.flags.get(name)) else {
                return Err(format!(
                    "{}:{line}: `{}`: no --{name} on `{} {}`",
                    file.display(),
                    command.join(" "),
                    command[0],
                    path.join(" ")
                ));
            };
            if *takes_value && !inline_value && args.next().is_none() {
                return Err(format!("{}:{line}: --{name} needs a value", file.display()));
            }
            continue;
        }
        let current = helps.last().unwrap();
        if !positional_seen && current.subcommands.iter().any(|s| s == arg) {
            path.push(arg.clone());
            helps.push(help(&bin, &path));
        } else if !positional_seen && !current.subcommands.is_empty() {
            return Err(format!(
                "{}:{line}: `{}`: `{arg}` is not a subcommand of `{} {}` ({:?})",
                file.display(),
                command.join(" "),
                command[0],
                path.join(" "),
                current.subcommands
            ));
        } else {
            positional_seen = true;
        }
    }
    if !helps.last().unwrap().subcommands.is_empty() && !positional_seen {
        return Err(format!(
            "{}:{line}: `{}` stops before a subcommand",
            file.display(),
            command.join(" ")
        ));
    }
    Ok(())
}

#[test]
fn every_documented_command_matches_the_binaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files: Vec<PathBuf> = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        for (line, command) in doc_commands(file) {
            checked += 1;
            if let Err(e) = check(file, line, &command) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} documented commands drifted:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The guides exist and hold commands: a parser that found nothing would pass vacuously.
    assert!(checked >= 40, "only {checked} documented commands found");
}

#[test]
fn the_checker_catches_a_wrong_flag_and_a_wrong_subcommand() {
    let file = Path::new("inline");
    let ok = words("keylatch resource list --config keylatch.toml --json");
    check(file, 1, &ok).unwrap();
    let bad_flag = words("keylatch resource list --config keylatch.toml --colour");
    assert!(check(file, 1, &bad_flag).unwrap_err().contains("no --colour"));
    let bad_sub = words("keylatch resource shred --config keylatch.toml x");
    assert!(check(file, 1, &bad_sub).unwrap_err().contains("not a subcommand"));
    let missing_value = words("keylatch resource list --config");
    assert!(check(file, 1, &missing_value).unwrap_err().contains("needs a value"));
}
