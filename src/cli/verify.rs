//! `zdm verify`: proves on sample data that each migration's plan leaves the schema and the
//! rows its SQL run as written leaves (see `db::verify`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::config::Config;
use crate::db::{ConnectOptions, Outcome, ProcessEnv, Verified, VerifyOptions, verify_set};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    Human,
    Json,
}

/// Prove that expand and contract leave what the SQL as written leaves
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  zdm verify --database-url postgres://postgres@localhost:5433/postgres migrations/
  zdm verify --format json migrations/ > verify.json
  zdm verify --only migrations/0042_rename.sql migrations/

For each migration, in order, on a throw-away server: the schema of the migrations before it
(run as written) is filled with sample rows and copied; one copy runs the migration as
written, the other runs zdm's expand and contract (with reads of the old and the new
application version between them); then columns, constraints, indexes, views, sequences,
triggers and every row are compared. zdm creates and drops scratch databases named
_zdm_verify_<pid>_* on the server, so never point it at production.

Outcomes: equal; different (the first difference is printed); failed (expand, contract or an
application read failed); not comparable (the migration fails as written on sample data);
refused (zdm does not plan it: the reason); as written (the plan runs every statement as
written; compared with --all).

Exit codes: 0 no migration different or failed, 1 some different or failed, 2 usage or
connection error, or a migration that fails as written on the schema before it.")]
pub struct VerifyArgs {
    /// The migrations directory [default: `migrations` from zdm.toml, else ./migrations]
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// A server where zdm may create and drop scratch databases (libpq URL or key=value)
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
    #[arg(long, value_enum, default_value_t = VerifyFormat::Human)]
    format: VerifyFormat,
    /// Compare also the migrations whose plan runs every statement as written
    #[arg(long)]
    all: bool,
    /// Compare only this migration file (repeatable); the others still run, as written
    #[arg(long, value_name = "FILE")]
    only: Vec<PathBuf>,
}

pub fn run(args: &VerifyArgs, config_path: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let config = Config::load(config_path, None)?;
    let set = super::load_migration_dir(args.dir.as_deref(), &config)?;
    let only = (!args.only.is_empty()).then(|| {
        args.only
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    });
    if let Some(only) = &only
        && let Some(missing) = only.iter().find(|p| {
            !set.forward
                .iter()
                .any(|f| f.path.display().to_string() == **p)
        })
    {
        anyhow::bail!("--only {missing}: not a forward migration of the migrations directory");
    }
    let server = ConnectOptions::resolve(args.database_url.as_deref(), &ProcessEnv)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let options = VerifyOptions {
        all: args.all,
        only,
    };
    let human = args.format == VerifyFormat::Human;
    let results = runtime.block_on(verify_set(&server, &set, &config.lint, &options, |v| {
        if human {
            print_human(v);
        }
    }))?;
    if !human {
        let items: Vec<_> = results
            .iter()
            .map(|v| {
                serde_json::json!({
                    "path": v.path,
                    "outcome": v.outcome.label(),
                    "detail": v.outcome.detail(),
                })
            })
            .collect();
        let count = |label: &str| {
            results
                .iter()
                .filter(|v| v.outcome.label() == label)
                .count()
        };
        let doc = serde_json::json!({
            "version": 1,
            "migrations": items,
            "counts": {
                "equal": count("equal"),
                "different": count("different"),
                "failed": count("failed"),
                "not_comparable": count("not comparable"),
                "refused": count("refused"),
                "as_written": count("as written"),
            },
        });
        writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        let failures = results.iter().filter(|v| v.outcome.is_failure()).count();
        let compared = results
            .iter()
            .filter(|v| matches!(v.outcome, Outcome::Equal) || v.outcome.is_failure())
            .count();
        writeln!(
            std::io::stdout(),
            "{compared} compared, {failures} different or failed"
        )?;
    }
    Ok(if results.iter().any(|v| v.outcome.is_failure()) {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

fn print_human(v: &Verified) {
    match v.outcome.detail() {
        Some(detail) => println!("{}: {}: {detail}", v.path, v.outcome.label()),
        None => println!("{}: {}", v.path, v.outcome.label()),
    }
}
