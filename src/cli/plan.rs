//! `zdm plan`: the expand, backfill and contract phases of each migration, for code review.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::EXIT_OK;
use crate::config::Config;
use crate::plan::{PlanFormat, plan_set, render, write_sql_files};
use crate::source::MigrationSet;

const AFTER_HELP: &str = "\
Examples:
  zdm plan migrations/0042_rename_full_name.sql
  zdm plan --format markdown migrations/ > plan.md        a pull-request comment
  zdm plan --format json migrations/
  zdm plan --database-url postgres://app@db/prod migrations/0043_x.sql   schema from the database
  zdm plan --format sql --out plan/ migrations/           <id>.expand.sql, <id>.backfill.sql, …
  psql -v ON_ERROR_STOP=1 -f plan/0042_rename_full_name.expand.sql

A statement that cannot run online (VACUUM FULL, CLUSTER, LOCK TABLE, an EXCLUDE constraint…)
makes its migration refused, with the reason and the alternatives, unless the statement is
marked `-- zdm:allow-locking -- reason`. The migrations after a refused one are still planned,
against the schema it leaves when run as written; every format lists the refusals.

Exit codes: 0 planned, 1 a statement cannot run online, 2 usage or I/O error.";

/// Show the expand, backfill and contract phases of migrations
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct PlanArgs {
    /// Migration files or directories [default: `migrations` from zdm.toml, else ./migrations]
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format; `sql` writes files into --out
    #[arg(long, value_enum, default_value = "human")]
    format: PlanFormat,
    /// Directory for `--format sql` files
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// PostgreSQL major version the migrations run on [default: pg_version from zdm.toml, else 14]
    #[arg(long, value_name = "N")]
    pg_version: Option<u32>,
    /// Read the current schema (and the server version) from this database instead of
    /// replaying earlier migrations; only catalog queries are run
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// Connects, reads the catalog and the server's major version, and disconnects.
fn read_live_catalog(url: &str) -> anyhow::Result<(crate::catalog::Catalog, u32)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = crate::db::connect(url).await?;
        let target = crate::db::redact(url);
        let version = crate::db::server_major_version(&client)
            .await
            .map_err(|e| crate::db::DbError::Query {
                target: target.clone(),
                message: crate::db::message(&e),
            })?;
        let catalog = crate::db::introspect(&client, &target).await?;
        Ok((catalog, version))
    })
}

pub fn run(args: &PlanArgs, config_path: Option<&Path>) -> anyhow::Result<u8> {
    let mut config = Config::load(config_path, args.pg_version)?;
    let live = match &args.database_url {
        Some(url) => {
            let (catalog, version) = read_live_catalog(url)?;
            // The server's version wins over --pg-version and zdm.toml.
            config.lint.pg_version = version;
            Some(catalog)
        }
        None => None,
    };
    let paths = if args.paths.is_empty() {
        vec![
            config
                .migrations
                .clone()
                .unwrap_or_else(|| PathBuf::from("migrations")),
        ]
    } else {
        args.paths.clone()
    };
    let mut plans = Vec::new();
    let mut refused = Vec::new();
    for set in MigrationSet::load_paths(&paths, config.layout)? {
        let planned = plan_set(&set, &config.lint, live.clone());
        plans.extend(planned.plans);
        refused.extend(planned.refused);
    }
    // Refusals go to stderr too when stdout is for a machine or a file.
    if args.format != PlanFormat::Human {
        for e in &refused {
            eprintln!("error: {e}");
        }
    }
    match (args.format, &args.out) {
        (PlanFormat::Sql, Some(dir)) => {
            let written = write_sql_files(&plans, dir)
                .with_context(|| format!("cannot write into {}", dir.display()))?;
            for path in written {
                println!("{}", path.display());
            }
        }
        (_, Some(_)) => bail!("--out is for --format sql"),
        (format, None) => print!("{}", render(&plans, &refused, format)),
    }
    Ok(if refused.is_empty() {
        EXIT_OK
    } else {
        super::EXIT_FINDINGS
    })
}
