//! `zdm lint`: the pull-request gate.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use codespan_reporting::term::termcolor::BufferedStandardStream;

use super::{Color, EXIT_FINDINGS, EXIT_OK};
use crate::config::Config;
use crate::lint::{Runner, lint_sets};
use crate::report::{Format, write_report};
use crate::source::{MigrationSet, SourceFile};

const AFTER_HELP: &str = "\
Examples:
  zdm lint migrations/
  zdm lint migrations/0042_add_index.sql       one file, with earlier migrations as context
  zdm lint --pg-version 12 --format json db/migrations
  zdm lint --format sarif migrations/ > zdm.sarif
  git diff --name-only origin/main -- migrations | xargs zdm lint
  echo 'DROP INDEX users_email_idx;' | zdm lint -
  zdm lint --runner zdm migrations/            the gate of a team whose migrations zdm runs

A directory is an ordered migration set (0001_x.sql, 20240101120000_x.sql, V1__x.sql, x.up.sql,
<version>_x/up.sql, <version>_x/migration.sql); .down.sql files are linted too.
Silence a finding with `-- zdm:ignore <rule> -- reason` on or just before the statement.
With --runner zdm (or `runner = \"zdm\"` in zdm.toml) a statement zdm expand/contract run online
is a note on how they run it; the errors left are what zdm refuses, what it runs with its lock
(zdm:allow-locking), and drops the old application may still read.

Exit codes: 0 no error-level finding, 1 at least one, 2 usage or I/O error.";

/// Check migrations for table-locking and breaking statements
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct LintArgs {
    /// Migration files or directories, `-` for standard input [default: `migrations` from
    /// zdm.toml, else ./migrations]
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// PostgreSQL major version the migrations run on [default: pg_version from zdm.toml, else 14]
    #[arg(long, value_name = "N")]
    pg_version: Option<u32>,
    /// Who runs the migrations: `zdm` (zdm expand/contract) or `other` (a tool that runs the
    /// SQL as written) [default: runner from zdm.toml, else other]
    #[arg(long, value_name = "RUNNER", value_parser = ["zdm", "other"])]
    runner: Option<String>,
}

pub fn run(args: &LintArgs, config_path: Option<&Path>, color: Color) -> anyhow::Result<u8> {
    let mut config = Config::load(config_path, args.pg_version)?;
    match args.runner.as_deref() {
        Some("zdm") => config.lint.runner = Runner::Zdm,
        Some(_) => config.lint.runner = Runner::Other,
        None => {}
    }
    let paths = if args.paths.is_empty() {
        let default = config
            .migrations
            .clone()
            .unwrap_or_else(|| PathBuf::from("migrations"));
        if !default.exists() {
            bail!(
                "no path given and {} does not exist; run `zdm lint <PATH>` or set `migrations` in zdm.toml",
                default.display()
            );
        }
        vec![default]
    } else {
        args.paths.clone()
    };
    // Files named one by one are read as one set per folder (see `MigrationSet::load_paths`);
    // standard input is a file of its own with no earlier migrations.
    let (stdin, named): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.into_iter().partition(|p| p.as_os_str() == "-");
    let mut sets = MigrationSet::load_paths(&named, config.layout)?;
    if !stdin.is_empty() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read standard input as UTF-8")?;
        sets.push(MigrationSet::single(SourceFile::from_text(
            Path::new("<stdin>"),
            text,
        )));
    }
    tracing::debug!(sets = sets.len(), "linting");
    let report = lint_sets(&sets, &config.lint);
    let choice = color.for_stdout();
    // Buffered: a report of thousands of findings is otherwise one write call per piece.
    let mut out = BufferedStandardStream::stdout(choice);
    write_report(&mut out, &report, args.format).context("cannot write the report")?;
    std::io::Write::flush(&mut out).context("cannot write the report")?;
    Ok(if report.has_errors() {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}
