//! `zdm plan`: the expand, backfill and contract phases of each migration, for code review.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use std::io::Write;

use codespan_reporting::term::termcolor::{
    BufferedStandardStream, Color as Hue, ColorSpec, WriteColor,
};

use super::{Color, EXIT_OK};
use crate::config::Config;
use crate::plan::{PlanFormat, plan_set, render, write_sql_files};
use crate::source::MigrationSet;

const AFTER_HELP: &str = "\
Examples:
  zdm plan migrations/0042_rename_full_name.sql
  zdm plan --format markdown migrations/ > plan.md        a pull-request comment
  zdm plan --format json migrations/
  zdm plan --database-url postgres://app@db/prod migrations/0043_x.sql
      the schema from the database, and each step's estimated duration, blocking lock and WAL
      on its data (read only: a timed sample of each table the plan works on)
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
    /// With --database-url: estimate backfills as `zdm expand --backfill-workers N` runs them
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    backfill_workers: Option<u16>,
    /// With --database-url: estimate backfills as `zdm expand --max-rows-per-second` runs them
    #[arg(long, value_name = "ROWS")]
    max_rows_per_second: Option<u64>,
}

/// A connection to the database a plan is made against, kept while planning for the estimates.
struct Live {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    target: String,
    catalog: crate::catalog::Catalog,
    version: u32,
}

/// Connects and reads the catalog and the server's major version (catalog queries only).
fn connect_live(url: &str) -> anyhow::Result<Live> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let target = crate::db::redact(url);
    let (client, catalog, version) = runtime.block_on(async {
        let client = crate::db::connect(url).await?;
        let version = crate::db::server_major_version(&client)
            .await
            .map_err(|e| crate::db::DbError::Query {
                target: target.clone(),
                message: crate::db::message(&e),
            })?;
        let catalog = crate::db::introspect(&client, &target).await?;
        anyhow::Ok((client, catalog, version))
    })?;
    Ok(Live {
        runtime,
        client,
        target,
        catalog,
        version,
    })
}

pub fn run(args: &PlanArgs, config_path: Option<&Path>, color: Color) -> anyhow::Result<u8> {
    let mut config = Config::load(config_path, args.pg_version)?;
    let live = match &args.database_url {
        Some(url) => {
            let live = connect_live(url)?;
            // The server's version wins over --pg-version and zdm.toml.
            config.lint.pg_version = live.version;
            Some(live)
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
        let planned = plan_set(&set, &config.lint, live.as_ref().map(|l| l.catalog.clone()));
        plans.extend(planned.plans);
        refused.extend(planned.refused);
    }
    if let Some(live) = &live {
        let settings = crate::cost::Settings {
            backfill_workers: args.backfill_workers.map(usize::from),
            max_rows_per_second: args.max_rows_per_second,
            warn_backfill_seconds: config.estimate.warn_backfill_seconds,
            warn_wal_share: config.estimate.warn_wal_share,
        };
        let estimated = live.runtime.block_on(crate::db::estimate_plans(
            &live.client,
            &live.target,
            plans.iter_mut().collect(),
            &live.catalog,
            live.version,
            &settings,
        ));
        // The plan stands without its estimate (a role that may read the catalog but not the
        // tables, a statement timeout on a slow disk): say why, and go on.
        if let Err(e) = estimated {
            eprintln!("warning: no estimate: {e}");
        }
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
            let mut out = std::io::stdout().lock();
            for path in written {
                writeln!(out, "{}", path.display())?;
            }
        }
        (_, Some(_)) => bail!("--out is for --format sql"),
        (PlanFormat::Human, None) => {
            let mut out = BufferedStandardStream::stdout(color.for_stdout());
            write_coloured(&mut out, &render(&plans, &refused, PlanFormat::Human))?;
            out.flush()?;
        }
        (format, None) => std::io::stdout()
            .lock()
            .write_all(render(&plans, &refused, format).as_bytes())?,
    }
    Ok(if refused.is_empty() {
        EXIT_OK
    } else {
        super::EXIT_FINDINGS
    })
}

/// Writes the human plan with its landmarks coloured: migration headings, phase names, the
/// lock each step takes, and refusals.
fn write_coloured(out: &mut impl WriteColor, text: &str) -> std::io::Result<()> {
    let bold = ColorSpec::new().set_bold(true).clone();
    let phase = ColorSpec::new()
        .set_fg(Some(Hue::Cyan))
        .set_bold(true)
        .clone();
    let lock = ColorSpec::new().set_fg(Some(Hue::Yellow)).clone();
    let error = ColorSpec::new()
        .set_fg(Some(Hue::Red))
        .set_bold(true)
        .clone();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let spec = if line.starts_with("migration ") {
            Some(&bold)
        } else if line.trim_start().starts_with("error") || line.starts_with("refused") {
            Some(&error)
        } else if indent == 2 && !line.trim_start().starts_with("line ") {
            Some(&phase)
        } else {
            None
        };
        match (spec, line.rfind("  [")) {
            (Some(spec), _) => {
                out.set_color(spec)?;
                write!(out, "{line}")?;
                out.reset()?;
            }
            (None, Some(at)) if line.ends_with(']') => {
                write!(out, "{}", &line[..at])?;
                out.set_color(&lock)?;
                write!(out, "{}", &line[at..])?;
                out.reset()?;
            }
            (None, _) => write!(out, "{line}")?,
        }
        writeln!(out)?;
    }
    Ok(())
}
