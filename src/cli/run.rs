//! `zdm expand`, `zdm contract`, `zdm abort` and `zdm status`: running plans on a database.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::config::Config;
use crate::db::{self, RunOptions, Runner};
use crate::plan::{MigrationPlan, plan_set};
use crate::source::MigrationSet;

/// Where the migrations are and which database to run them on
#[derive(Debug, Args)]
pub struct Target {
    /// The migrations directory [default: `migrations` from zdm.toml, else ./migrations]
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The database (libpq URL or key=value string)
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: String,
    /// The longest a step may wait for a lock, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    lock_timeout: u64,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  DATABASE_URL=postgres://app@db/prod zdm expand migrations/\n\nRuns the expand steps and the backfills of every migration not yet expanded; the old\napplication keeps working. Resumes where a failed or killed run stopped.\nExit codes: 0 done, 1 a step failed (the migration is marked failed), 2 usage or connection error."
)]
pub struct ExpandArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  zdm contract migrations/      after every instance runs the new application"
)]
pub struct ContractArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  zdm abort migrations/         undo the expand of migrations not yet contracted"
)]
pub struct AbortArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  zdm status migrations/\n  zdm status --check migrations/     exit 1 unless every migration is done (deploy gates)"
)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Print JSON
    #[arg(long)]
    json: bool,
    /// Exit 1 unless every migration in DIR is done
    #[arg(long)]
    check: bool,
}

/// Plans the directory (offline, as `zdm plan` shows it) and connects.
fn prepare(target: &Target, config_path: Option<&std::path::Path>) -> anyhow::Result<Prepared> {
    let mut config = Config::load(config_path, None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The server's version decides the lock facts the plans rely on.
    config.lint.pg_version = runtime.block_on(async {
        let client = db::connect(&target.database_url).await?;
        db::server_major_version(&client)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the server version: {}", db::message(&e)))
    })?;
    let dir = target
        .dir
        .clone()
        .or(config.migrations.clone())
        .unwrap_or_else(|| PathBuf::from("migrations"));
    let set = MigrationSet::load(&dir)?;
    // Every migration is planned in full before anything runs.
    let plans = plan_set(&set, &config.lint, None)?;
    let options = RunOptions {
        lock_timeout: Duration::from_millis(target.lock_timeout),
        ..RunOptions::default()
    };
    Ok((plans, runtime, options))
}

type Prepared = (Vec<MigrationPlan>, tokio::runtime::Runtime, RunOptions);

/// A migration that cannot be planned is reported like `zdm plan` does (exit 1), not as a
/// runtime error.
fn prepared(result: anyhow::Result<Prepared>) -> anyhow::Result<Option<Prepared>> {
    match result {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.downcast_ref::<crate::plan::PlanError>().is_some() => {
            eprintln!("error: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub fn expand(args: &ExpandArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    run(&args.target, config, "expand")
}

pub fn contract(args: &ContractArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    run(&args.target, config, "contract")
}

pub fn abort(args: &AbortArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    run(&args.target, config, "abort")
}

fn run(target: &Target, config: Option<&std::path::Path>, what: &str) -> anyhow::Result<u8> {
    let Some((plans, runtime, options)) = prepared(prepare(target, config))? else {
        return Ok(EXIT_FINDINGS);
    };
    runtime.block_on(async {
        let mut client = db::connect(&target.database_url).await?;
        let mut runner = Runner::start(&mut client, options).await?;
        let result = match what {
            "expand" => runner.expand(&plans).await,
            "contract" => runner.contract(&plans).await,
            _ => runner.abort(&plans).await,
        };
        match result {
            Ok(done) => {
                if done.is_empty() {
                    println!("nothing to {what}");
                }
                Ok(EXIT_OK)
            }
            Err(
                e @ (db::RunError::Step { .. }
                | db::RunError::NeedsContract { .. }
                | db::RunError::WrongState { .. }),
            ) => {
                eprintln!("error: {e}");
                Ok(EXIT_FINDINGS)
            }
            Err(e) => Err(e.into()),
        }
    })
}

pub fn status(args: &StatusArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let Some((plans, runtime, _)) = prepared(prepare(&args.target, config))? else {
        return Ok(EXIT_FINDINGS);
    };
    let statuses = runtime.block_on(async {
        let client = db::connect(&args.target.database_url).await?;
        anyhow::Ok(db::status(&client, &plans).await?)
    })?;
    if args.json {
        let v: Vec<_> = statuses
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.id, "status": s.status, "phase": s.phase,
                    "last_error": s.last_error, "backfilled_rows": s.backfilled_rows})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for s in &statuses {
            let error = s
                .last_error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default();
            println!(
                "{:<40} {:<12} {:>10} rows backfilled{error}",
                s.id, s.status, s.backfilled_rows
            );
        }
    }
    let all_done = statuses.iter().all(|s| s.status == "done");
    Ok(if args.check && !all_done {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}
