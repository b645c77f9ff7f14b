//! `zdm expand`, `zdm contract`, `zdm abort` and `zdm status`: running plans on a database.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::config::Config;
use crate::db::{self, BackfillOptions, ConnectOptions, ProcessEnv, RunError, RunOptions, Runner};
use crate::plan::{MigrationPlan, plan_file};

/// Exit code of a run stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

const CONNECTION_HELP: &str = "\
Connection: --database-url or DATABASE_URL (a libpq URL or key=value string), completed by
PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT and ~/.pgpass
(PGPASSFILE); sslmode disable, allow, prefer (the default), require, verify-ca or verify-full.";

/// Where the migrations are and which database to run them on
#[derive(Debug, Args)]
pub struct Target {
    /// The migrations directory [default: `migrations` from zdm.toml, else ./migrations]
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The database (libpq URL or key=value string); PG* variables fill in what it leaves out
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// How a run treats the live database
#[derive(Debug, Args)]
pub struct Pace {
    /// The longest one attempt of a step waits for a lock, in milliseconds (at least 1:
    /// PostgreSQL's 0 would mean waiting forever, with the application's queries queued behind
    /// zdm); application queries queued behind zdm's lock request wait at most this long. zdm
    /// asks only when no session has held a conflicting lock longer than this (a lock window)
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    lock_timeout: u64,
    /// How long a step may wait for its lock in all, in seconds: waiting for a lock window
    /// (which holds up no one) and short attempts with escalating pauses; then zdm stops with
    /// the blocking sessions named, and the next run resumes there
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    lock_deadline: u64,
    /// Cancel the statement of a session that has held a lock a step needs for longer than
    /// this, in seconds (pg_cancel_backend; a session idle in its transaction keeps its lock
    /// unless --terminate-blockers); never zdm's own sessions. Off by default
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    cancel_blockers_after: Option<u64>,
    /// With --cancel-blockers-after: terminate the blocking sessions (pg_terminate_backend),
    /// which also ends a transaction left idle
    #[arg(long, requires = "cancel_blockers_after")]
    terminate_blockers: bool,
    /// The lock wait of CONCURRENTLY steps, which wait for every older transaction to end
    /// [default: --lock-deadline]; their lock blocks no application query. zdm names the
    /// transactions they wait for every few seconds
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    concurrent_lock_timeout: Option<u64>,
    /// The longest one statement may run, in milliseconds (0: no limit)
    #[arg(long, value_name = "MS", default_value_t = 0)]
    statement_timeout: u64,
    /// Attempts of a step that times out on a lock or deadlocks before it fails [default: as
    /// many as --lock-deadline allows]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: Option<u32>,
    /// Rows in the first backfill batch
    #[arg(long, value_name = "ROWS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Adapt the batch size so a batch takes about this long (0: keep --batch-size); a batch
    /// holds its rows' locks until it commits, so an application write to one of its rows
    /// waits up to this long
    #[arg(long, value_name = "MS", default_value_t = 10)]
    batch_time: u64,
    /// The largest batch the adaptation may reach
    #[arg(long, value_name = "ROWS", default_value_t = 50_000)]
    max_batch_size: u64,
    /// Backfill at most this many rows per second
    #[arg(long, value_name = "ROWS")]
    max_rows_per_second: Option<u64>,
    /// Pause after each backfill batch, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    batch_pause: u64,
    /// Hold the backfill while a standby's replay lag exceeds this, in milliseconds
    #[arg(long, value_name = "MS")]
    max_replication_lag: Option<u64>,
    /// Connections that backfill a large table side by side, each its own slice of the key
    /// range [default: chosen while it runs, from 1 up to 4 (up to the cores of a server on
    /// this machine), adding one while the rows per second rise; 1 with --max-rows-per-second
    /// or --batch-pause, and 1 with batches of at most 2 ms that wait for their WAL flush while
    /// other sessions of the database are working]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    backfill_workers: Option<u16>,
}

impl Pace {
    fn options(&self) -> RunOptions {
        let ms = Duration::from_millis;
        RunOptions {
            lock_timeout: ms(self.lock_timeout),
            lock_deadline: Duration::from_secs(self.lock_deadline),
            cancel_blockers_after: self.cancel_blockers_after.map(Duration::from_secs),
            terminate_blockers: self.terminate_blockers,
            concurrent_lock_timeout: self.concurrent_lock_timeout.map(ms),
            sessions: None,
            statement_timeout: ms(self.statement_timeout),
            max_attempts: self.max_attempts,
            backfill: BackfillOptions {
                batch_size: self.batch_size,
                target_batch_time: ms(self.batch_time),
                max_batch_size: self.max_batch_size.max(self.batch_size),
                max_rows_per_second: self.max_rows_per_second,
                pause: ms(self.batch_pause),
                max_replication_lag: self.max_replication_lag.map(ms),
                workers: self.backfill_workers.map(usize::from),
                max_workers: self.backfill_workers.map_or(4, usize::from),
            },
            stop: db::Stop::default(),
            rerun_backfill: false,
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  DATABASE_URL=postgres://app@db/prod zdm expand migrations/
  zdm expand --max-rows-per-second 5000 --batch-pause 50 migrations/   gentler backfills
  zdm expand --lock-deadline 900 --cancel-blockers-after 120 migrations/
      wait up to 15 minutes for lock windows; cancel a query that has held the table 2 minutes

Runs the expand steps and the backfills of every migration not yet expanded, in order; the
old application keeps working and the new one can start. Logs each migration's estimate first
(as `zdm plan --database-url` shows it) and each step's duration; a backfill's ETA starts from
the estimate and follows the measured rate once batches run. Resumes where a failed, stopped or
killed run ended. Stops before a migration that needs an earlier one's contract. A step that
needs a lock the application could queue behind waits, asking for nothing, while another
session has held a conflicting lock longer than --lock-timeout, and names it.
SIGINT/SIGTERM stop after the current batch or step (a second one stops at once).

{CONNECTION_HELP}

Exit codes: 0 done, 1 a step failed (the migration is marked failed: run expand again to
resume, or abort) or a migration cannot be planned, 2 usage, connection or state error,
130 stopped on request."))]
pub struct ExpandArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    pace: Pace,
    /// Expand a migration again although an aborted run of it had started an UPDATE backfill
    /// that abort could not undo (its rows would be updated a second time)
    #[arg(long)]
    rerun_backfill: bool,
    /// Expand new migrations numbered below one already applied
    #[arg(long)]
    out_of_order: bool,
}

#[derive(Debug, Args)]
#[command(after_help = format!("Example:
  zdm contract migrations/      after every instance runs the new application

Runs the contract steps of every expanded migration, in order, exactly as planned when it was
expanded.

{CONNECTION_HELP}

Exit codes: 0 done, 1 a step failed, 2 usage, connection or state error, 130 stopped."))]
pub struct ContractArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    pace: Pace,
}

#[derive(Debug, Args)]
#[command(after_help = format!("Example:
  zdm abort migrations/         undo the expand of migrations not yet contracted

Undoes, newest first, the expand of every migration that is expanding, expanded or failed in
expand, leaving the schema the old application expects.

{CONNECTION_HELP}

Exit codes: 0 done, 1 a step failed, 2 usage, connection or state error, 130 stopped."))]
pub struct AbortArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    pace: Pace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  zdm status migrations/
  zdm status --check migrations/              exit 1 unless every migration is done
  zdm status --format json migrations/ | jq .

{CONNECTION_HELP}

Exit codes: 0 (with --check: everything is done), 1 with --check: something is not done or a
file changed after it was applied, 2 usage or connection error."))]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum, default_value_t = StatusFormat::Human)]
    format: StatusFormat,
    /// Exit 1 unless every migration in DIR is done (deploy gates, readiness probes)
    #[arg(long)]
    check: bool,
}

/// Everything a command needs before it touches the database: the plans of every migration
/// (read and planned in full first) and a runtime with a connection.
struct Prepared {
    plans: Vec<MigrationPlan>,
    /// Which recorded migration each file is; what is missing or out of order.
    identities: db::Identities,
    runtime: tokio::runtime::Runtime,
    connection: ConnectOptions,
    /// The schema as read from the database before planning, for the estimates.
    catalog: crate::catalog::Catalog,
    pg_version: u32,
}

/// Plans the directory offline, as `zdm plan` shows it, for the server's version, and returns
/// the session that read the server, which the command goes on with (a second connection
/// would cost the server another backend start).
/// `Ok(None)`: a migration cannot be planned, already reported like `zdm plan` does (exit 1).
fn prepare(
    target: &Target,
    config_path: Option<&std::path::Path>,
) -> anyhow::Result<Option<(Prepared, tokio_postgres::Client)>> {
    let mut config = Config::load(config_path, None)?;
    let set = super::load_migration_dir(target.dir.as_deref(), &config)?;
    let connection = ConnectOptions::resolve(target.database_url.as_deref(), &ProcessEnv)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Every migration is planned in full before anything runs. Started migrations keep the
    // plan they were started with; pending ones are planned against the live schema (the
    // server's version and catalog), replaying the pending ones before them, as
    // `zdm plan --database-url` does.
    let planned = runtime.block_on(async {
        let client = connection.connect().await?;
        config.lint.pg_version = db::server_major_version(&client).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot read the server version of {}: {}",
                connection.target,
                db::message(&e)
            )
        })?;
        let recorded = db::recorded_plans(&client).await?;
        let identities = db::identify(&set.forward, &recorded)?;
        for (id, path) in &identities.renamed {
            tracing::info!("{path} is migration {id}, applied under that name (same content)");
        }
        let mut catalog = db::introspect(&client, &connection.target).await?;
        let live = catalog.clone();
        let mut plans = Vec::new();
        for (file, id) in set.forward.iter().zip(&identities.ids) {
            let id = id.clone();
            // A repeatable migration whose text changed is planned afresh from the new text.
            let changed = |plan: &crate::plan::recorded::RecordedPlan| {
                file.repeatable && plan.checksum != crate::plan::checksum(file.identity_text())
            };
            let mut plan = match recorded.get(&id) {
                Some(plan) if !changed(plan) => db::plan_from_record(file, plan),
                _ => match plan_file(file, &mut catalog, &config.lint) {
                    Ok(plan) => plan,
                    Err(e) => return anyhow::Ok(Err(e)),
                },
            };
            plan.id = id;
            plans.push(plan);
        }
        anyhow::Ok(Ok((plans, identities, live, client)))
    })?;
    match planned {
        Ok((plans, identities, catalog, client)) => Ok(Some((
            Prepared {
                plans,
                identities,
                runtime,
                connection,
                catalog,
                pg_version: config.lint.pg_version,
            },
            client,
        ))),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(None)
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Command {
    Expand,
    Contract,
    Abort,
}

pub fn expand(args: &ExpandArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let mut options = args.pace.options();
    options.rerun_backfill = args.rerun_backfill;
    run(
        &args.target,
        options,
        config,
        Command::Expand,
        args.out_of_order,
    )
}

pub fn contract(args: &ContractArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    run(
        &args.target,
        args.pace.options(),
        config,
        Command::Contract,
        false,
    )
}

pub fn abort(args: &AbortArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    run(
        &args.target,
        args.pace.options(),
        config,
        Command::Abort,
        false,
    )
}

fn run(
    target: &Target,
    options: RunOptions,
    config: Option<&std::path::Path>,
    command: Command,
    out_of_order: bool,
) -> anyhow::Result<u8> {
    let Some((mut prepared, mut client)) = prepare(target, config)? else {
        return Ok(EXIT_FINDINGS);
    };
    let thresholds = Config::load(config, None)?.estimate;
    let mut plans = std::mem::take(&mut prepared.plans);
    let stop = options.stop.clone();
    prepared.runtime.block_on(async {
        stop_on_signals(stop);
        check_identities(&client, &prepared.identities, command, out_of_order).await?;
        estimate_before_running(
            &client, &prepared, &mut plans, command, &options, thresholds,
        )
        .await?;
        let options = RunOptions {
            sessions: Some(prepared.connection.clone()),
            ..options
        };
        let mut runner = Runner::start(&mut client, options).await?;
        let plans = &plans;
        let (result, verb) = match command {
            Command::Expand => (runner.expand(plans).await, "expand"),
            Command::Contract => (runner.contract(plans).await, "contract"),
            Command::Abort => (runner.abort(plans).await, "abort"),
        };
        match result {
            Ok(done) => {
                if done.is_empty() {
                    println!("nothing to {verb}");
                }
                for id in done {
                    println!("{id}: {}", past(verb));
                }
                Ok(EXIT_OK)
            }
            Err(e @ RunError::Interrupted { .. }) => {
                eprintln!("error: {e}");
                Ok(EXIT_INTERRUPTED)
            }
            Err(
                e @ (RunError::Step { .. }
                | RunError::NeedsContract { .. }
                | RunError::WrongState { .. }),
            ) => {
                eprintln!("error: {e}");
                Ok(EXIT_FINDINGS)
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// A running backfill in `zdm status`: rows, the estimate made when it started, and the rate
/// and time left as measured since.
fn backfill_line(b: &db::BackfillProgress) -> String {
    let secs = |s: f64| crate::plan::human_duration((s * 1000.0) as u64);
    let of = b
        .total_rows
        .map(|t| format!(" of about {t}"))
        .unwrap_or_default();
    let estimated = match (b.estimated_seconds, b.estimated_eta()) {
        (Some(total), Some(left)) => {
            format!("; estimated {} in all, {} left", secs(total), secs(left))
        }
        _ => "; no estimate".to_owned(),
    };
    let measured = match (b.measured_rate(), b.measured_eta()) {
        (Some(rate), Some(left)) => format!("; measured {rate:.0} rows/s, ETA {}", secs(left)),
        (Some(rate), None) => format!("; measured {rate:.0} rows/s"),
        _ => String::new(),
    };
    format!(
        "backfill: {} rows{of} after {}{estimated}{measured}",
        b.rows_done,
        secs(b.elapsed_seconds)
    )
}

/// Estimates the migrations this command will run and logs each one's estimate and warnings
/// before the first step, so a long backfill is known before it starts. The backfills' ETAs
/// start from these estimates. A calibration that fails is a warning: the run goes on.
async fn estimate_before_running(
    client: &tokio_postgres::Client,
    prepared: &Prepared,
    all: &mut [MigrationPlan],
    command: Command,
    options: &RunOptions,
    thresholds: crate::config::EstimateThresholds,
) -> anyhow::Result<()> {
    let statuses = db::recorded_statuses(client).await?;
    let runs = |id: &str| {
        matches!(
            (command, statuses.get(id).map(String::as_str)),
            (
                Command::Expand,
                None | Some("expanding" | "failed" | "aborted")
            ) | (
                Command::Contract,
                Some("expanded" | "contracting" | "failed")
            )
        )
    };
    let plans: Vec<&mut MigrationPlan> = all.iter_mut().filter(|p| runs(&p.id)).collect();
    if plans.is_empty() {
        return Ok(());
    }
    let settings = crate::cost::Settings {
        backfill_workers: options.backfill.workers,
        max_rows_per_second: options.backfill.max_rows_per_second,
        warn_backfill_seconds: thresholds.warn_backfill_seconds,
        warn_wal_share: thresholds.warn_wal_share,
    };
    let estimated = db::estimate_plans(
        client,
        &prepared.connection.target,
        plans,
        &prepared.catalog,
        prepared.pg_version,
        &settings,
    )
    .await;
    if let Err(e) = estimated {
        tracing::warn!("no estimate: {e}");
        return Ok(());
    }
    for plan in all.iter().filter(|p| runs(&p.id)) {
        let Some(e) = &plan.estimate else { continue };
        tracing::info!(
            "{}: estimate: {}",
            plan.id,
            crate::plan::estimate_summary(e, plan)
        );
        for w in &e.warnings {
            tracing::warn!("{}: {w}", plan.id);
        }
    }
    Ok(())
}

/// Refuses to run with a started migration whose file is gone (zdm needs its file to contract
/// or abort it; a done one is only named), and expand with a new file numbered below an
/// applied migration unless `--out-of-order` says so.
async fn check_identities(
    client: &tokio_postgres::Client,
    identities: &db::Identities,
    command: Command,
    out_of_order: bool,
) -> anyhow::Result<()> {
    let statuses = db::recorded_statuses(client).await?;
    for (id, path) in &identities.missing {
        match statuses.get(id).map(String::as_str) {
            Some("done") | None => tracing::warn!(
                "migration {id} was applied from {path}, which is gone; its record stays in zdm.migrations"
            ),
            Some(status) => anyhow::bail!(
                "migration {id} is {status}, but its file {path} is gone: restore the file (zdm runs its contract or abort from the state, but checks it against the file); nothing was run"
            ),
        }
    }
    if matches!(command, Command::Expand)
        && !out_of_order
        && let Some((path, later)) = identities.out_of_order.first()
    {
        anyhow::bail!(
            "{path} is new, but numbered before {later}, which is already applied: run in this order it would not be the order of the files; renumber it after the last applied migration, or pass --out-of-order to run it now; nothing was run"
        );
    }
    Ok(())
}

fn past(verb: &str) -> &'static str {
    match verb {
        "expand" => "expanded",
        "contract" => "contracted",
        _ => "aborted",
    }
}

/// SIGINT and SIGTERM ask the runner to stop after its current batch or step; a second one
/// ends the process at once, which is safe too: every step and batch commits with its state.
fn stop_on_signals(stop: db::Stop) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            for n in 0.. {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if n > 0 {
                    eprintln!("stopping now; the next run resumes");
                    std::process::exit(EXIT_INTERRUPTED.into());
                }
                tracing::warn!("stopping after the current batch or step (again to stop at once)");
                stop.request();
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.request();
            }
        }
    });
}

pub fn status(args: &StatusArgs, config: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let Some((prepared, client)) = prepare(&args.target, config)? else {
        return Ok(EXIT_FINDINGS);
    };
    let statuses = prepared
        .runtime
        .block_on(async { anyhow::Ok(db::status(&client, &prepared.plans).await?) })?;
    let mut out = std::io::stdout().lock();
    match args.format {
        StatusFormat::Json => {
            let v: Vec<_> = statuses
                .iter()
                .map(|s| {
                    serde_json::json!({"id": s.id, "status": s.status, "phase": s.phase,
                        "edited": s.edited, "last_error": s.last_error,
                        "backfilled_rows": s.backfilled_rows,
                        "current_step": s.current_step.as_ref().map(|c| serde_json::json!({
                            "id": c.id, "description": c.description, "status": c.status,
                            "attempts": c.attempts, "last_error": c.last_error,
                            "waiting_for": c.waiting_for,
                            "backfill": c.backfill.as_ref().map(|b| serde_json::json!({
                                "rows_done": b.rows_done, "total_rows": b.total_rows,
                                "elapsed_seconds": b.elapsed_seconds,
                                "estimated_seconds": b.estimated_seconds,
                                "rows_per_second": b.measured_rate(),
                                "eta_seconds_measured": b.measured_eta(),
                                "eta_seconds_estimated": b.estimated_eta(),
                            }))})),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        StatusFormat::Human => {
            for s in &statuses {
                let edited = if s.edited {
                    "  (file changed after it was applied)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{:<40} {:<12} {:>10} rows backfilled{edited}",
                    s.id, s.status, s.backfilled_rows
                )?;
                if let Some(step) = &s.current_step {
                    writeln!(
                        out,
                        "    {} {}: {} ({} attempt(s))",
                        step.status, step.id, step.description, step.attempts
                    )?;
                    if let Some(b) = &step.backfill {
                        writeln!(out, "    {}", backfill_line(b))?;
                    }
                    if let Some(blockers) = &step.waiting_for {
                        writeln!(out, "    waiting for a lock window: held by {blockers}")?;
                    }
                }
                if let Some(e) = s.last_error.as_deref() {
                    writeln!(out, "    error: {e}")?;
                }
            }
        }
    }
    let ids = &prepared.identities;
    for (id, path) in &ids.missing {
        eprintln!(
            "{id}: applied from {path}, which is gone (restore it, or keep its record knowingly)"
        );
    }
    for (path, later) in &ids.out_of_order {
        eprintln!("{path}: new, but numbered before {later}, which is already applied");
    }
    let ready = statuses.iter().all(|s| s.status == "done" && !s.edited)
        && ids.missing.is_empty()
        && ids.out_of_order.is_empty();
    Ok(if args.check && !ready {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}
