//! `keylatch bench ...`: runs `keylatch-bench ...` found next to the current executable (as
//! cargo runs its subcommands). The benchmarks live in their own program so that `keylatch`,
//! the broker, does not link the guest agent the release benchmark simulates guests with.

use std::ffi::OsString;

use anyhow::Context as _;

/// The benchmark program's name.
pub const BENCH_PROGRAM: &str = "keylatch-bench";

/// Everything after `keylatch bench`, passed on unchanged.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// Replaces this process with `keylatch-bench` and `args`; returns only on failure.
pub fn exec(args: &BenchArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let me = std::env::current_exe().context("locating the keylatch executable")?;
    let program = me.with_file_name(BENCH_PROGRAM);
    if !program.is_file() {
        anyhow::bail!(
            "`keylatch bench` runs {}, which is not installed next to keylatch \
             (build it with `cargo build -p keylatch-bench`)",
            program.display()
        );
    }
    let error = std::process::Command::new(&program).args(&args.args).exec();
    Err(anyhow::anyhow!("running {}: {error}", program.display()))
}
