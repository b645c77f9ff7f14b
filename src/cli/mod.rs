//! The command line: clap definitions and the mapping of outcomes to exit codes.
//! One file per command. Exit codes: 0 ok, 1 findings (a lint error, a refused plan, a failed
//! step), 2 usage, connection or state error, 130 stopped by SIGINT or SIGTERM, 141 when the
//! reader of stdout went away (`zdm lint … | head`): the program ends quietly, as a shell tool
//! killed by SIGPIPE does.

mod completions;
mod init;
mod lint;
mod plan;
mod rules;
mod run;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use codespan_reporting::term::termcolor::ColorChoice;

use crate::config;

/// Exit code: nothing to report.
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one error-level finding.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: bad usage, unreadable input or another runtime error.
pub const EXIT_ERROR: u8 = 2;
/// Exit code: stdout was closed by its reader; what a shell reports for a tool ended by
/// SIGPIPE (128 + 13).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// When human output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When stdout is a terminal and NO_COLOR is not set
    Auto,
    Always,
    Never,
}

impl Color {
    /// The choice for output written to stdout.
    pub fn for_stdout(self) -> ColorChoice {
        match self {
            Color::Always => ColorChoice::Always,
            Color::Never => ColorChoice::Never,
            Color::Auto
                if std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none() =>
            {
                ColorChoice::Auto
            }
            Color::Auto => ColorChoice::Never,
        }
    }
}

/// Whether an error is stdout's reader having gone away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

const AFTER_HELP: &str = "\
Examples:
  zdm lint migrations/                 lint every migration, in order
  zdm lint --format github migrations/ annotate a pull request
  zdm plan migrations/0042_rename.sql  the expand, backfill and contract SQL of a migration
  zdm plan --format sql --out plan/ migrations/   SQL files for psql
  zdm rules                            list the rules
  zdm explain rename-column            why a rule exists and the safe form
  DATABASE_URL=postgres://app@db/prod zdm expand migrations/    before the deploy
  zdm status --check migrations/       exit 1 until every migration is done
  zdm contract migrations/             after the deploy
  zdm verify --database-url URL migrations/   prove each plan on a throw-away server
  zdm completions bash                 shell completions (also: zdm man)

Exit codes: 0 ok, 1 findings (lint), an unsafe or failed migration (plan, expand, contract,
abort) or something not done (status --check), 2 usage, I/O, connection or state error,
130 stopped by SIGINT/SIGTERM (expand, contract, abort).";

#[derive(Debug, Parser)]
#[command(
    name = "zdm",
    version,
    about = "Zero-downtime schema migrations for PostgreSQL",
    long_about = "zdm reads plain SQL migrations, says what each statement would do to a live \
                  table, rejects table-locking or breaking DDL in pull requests, and plans the \
                  unsafe ones as expand, batched backfill and contract.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Configuration file [default: ./zdm.toml when it exists]
    #[arg(long, global = true, value_name = "FILE", env = "ZDM_CONFIG")]
    config: Option<PathBuf>,
    /// When to colour human output and logs
    #[arg(long, global = true, value_enum, default_value = "auto")]
    color: Color,
    /// Log more (-v: debug, -vv: trace); logs go to stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Lint(lint::LintArgs),
    Plan(plan::PlanArgs),
    /// Run the expand phase and the backfills of pending migrations
    Expand(run::ExpandArgs),
    /// Run the contract phase of expanded migrations
    Contract(run::ContractArgs),
    /// Show where each migration stands
    Status(run::StatusArgs),
    /// Undo the expand of migrations not yet contracted
    Abort(run::AbortArgs),
    Verify(verify::VerifyArgs),
    Rules(rules::RulesArgs),
    Explain(rules::ExplainArgs),
    /// Write a commented zdm.toml for the migrations folder found here
    Init(init::InitArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff)
    Man(completions::ManArgs),
}

/// The migration set a run command works on: DIR, else `migrations` from zdm.toml, else
/// ./migrations; it must be a directory, since such commands run migrations in order.
fn load_migration_dir(
    dir: Option<&std::path::Path>,
    config: &config::Config,
) -> anyhow::Result<crate::source::MigrationSet> {
    let dir = dir
        .map(std::path::Path::to_path_buf)
        .or(config.migrations.clone())
        .unwrap_or_else(|| PathBuf::from("migrations"));
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a directory; zdm runs a migrations directory in order, so give the directory",
            dir.display()
        );
    }
    Ok(crate::source::MigrationSet::load(&dir, config.layout)?)
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    // Commands that change a database report each step they run.
    let runs = matches!(
        cli.command,
        Command::Expand(_) | Command::Contract(_) | Command::Abort(_)
    );
    init_logging(cli.verbose, if runs { "info" } else { "warn" }, cli.color);
    let result = match &cli.command {
        Command::Lint(args) => lint::run(args, cli.config.as_deref(), cli.color),
        Command::Plan(args) => plan::run(args, cli.config.as_deref(), cli.color),
        Command::Expand(args) => run::expand(args, cli.config.as_deref()),
        Command::Contract(args) => run::contract(args, cli.config.as_deref()),
        Command::Status(args) => run::status(args, cli.config.as_deref()),
        Command::Abort(args) => run::abort(args, cli.config.as_deref()),
        Command::Verify(args) => verify::run(args, cli.config.as_deref()),
        Command::Rules(args) => rules::list(args),
        Command::Explain(args) => rules::explain(args),
        Command::Init(args) => init::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(verbose: u8, default: &str, color: Color) {
    let level = match verbose {
        0 => default,
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZDM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none()
            }
        })
        .without_time()
        .try_init();
}
