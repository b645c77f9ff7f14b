//! zdm-bench: measures what "zero downtime" means for zdm, on a real PostgreSQL.
//!
//! For each scenario it runs the same application workload (clients at a fixed rate, the old
//! version's queries, then the new version's after a rolling deploy) against two identical
//! tables: one migrated by the naive statement, one by `zdm expand` and `zdm contract`. It also
//! times zdm's backfill against one bulk `UPDATE` on identical tables, at several sizes, and
//! write throughput with zdm's sync triggers installed against without. It prints a markdown
//! report and writes `results.json`, `results.md` and one SVG chart per scenario.
//!
//! ```console
//! $ cargo run --release --bin zdm-bench -- --database-url postgres://root@127.0.0.1/test
//! $ cargo run --release --bin zdm-bench -- --rows 10000000 --backfill-sizes 100000,1000000,10000000
//! ```

mod chart;
mod estimates;
mod process;
mod scenarios;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use zdm::catalog::Catalog;
use zdm::db::{ConnectOptions, ProcessEnv, RunOptions, Runner};
use zdm::lint::LintOptions;
use zdm::plan::{MigrationPlan, plan_file};
use zdm::source::SourceFile;

use scenarios::{SCENARIOS, Scenario, create_table};
use workload::{Stats, Workload, stats};

const BENCH_DB: &str = "zdm_bench";

#[derive(Debug, Parser)]
#[command(
    name = "zdm-bench",
    about = "Measure zdm's migrations under live traffic against the naive statements",
    after_help = "Examples:
  zdm-bench --database-url postgres://root@127.0.0.1/test
  zdm-bench --rows 10000000 --backfill-sizes 100000,1000000,10000000   the full run
  zdm-bench --scenario 'rename column' --skip-backfill --skip-triggers
  zdm-bench --skip-scenarios --skip-backfill --skip-triggers --skip-estimates \
      --expand-sizes 10000000 --expand-rounds 1      whole `zdm expand` at 10M rows only

It creates (and drops first) the database zdm_bench on the server.
Exit codes: 0 every target met, 1 a target missed, 2 an error."
)]
struct Args {
    /// A server to create the benchmark database on (libpq URL; PG* variables also work)
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Rows of each scenario table
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Application clients
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Queries per second of each client
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of workload before the migration (the baseline) and after it
    #[arg(long, default_value_t = 4)]
    settle: u64,
    /// Only these scenarios (repeatable); all by default
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Table sizes for the backfill throughput comparison
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    backfill_sizes: Vec<u64>,
    /// Rows of the trigger overhead tables
    #[arg(long, default_value_t = 200_000)]
    trigger_rows: u64,
    #[arg(long)]
    skip_scenarios: bool,
    #[arg(long)]
    skip_backfill: bool,
    #[arg(long)]
    skip_triggers: bool,
    /// Table sizes for timing whole `zdm expand` processes of a type change against the bulk
    /// statements
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    expand_sizes: Vec<u64>,
    /// Rounds of the whole-process comparison per size (bulk, then zdm with each worker
    /// setting, in turn); the report gives the medians
    #[arg(long, default_value_t = 3)]
    expand_rounds: usize,
    #[arg(long)]
    skip_expand: bool,
    /// Table sizes for comparing `zdm plan --database-url`'s estimates with the measured steps
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    estimate_sizes: Vec<u64>,
    #[arg(long)]
    skip_estimates: bool,
    /// The migration corpus to time `zdm lint` on, as folders and as file lists (beside
    /// squawk when it is on PATH); skipped when the folder is missing
    #[arg(long, default_value = "../shared/corpus")]
    corpus: PathBuf,
    /// Long readers, in seconds: each scenario runs again with zdm while a transaction that
    /// holds ACCESS SHARE on its table this long starts just before the migration (a report,
    /// `pg_dump`); zdm must not queue the application behind it
    #[arg(long, value_delimiter = ',', default_value = "6,60")]
    long_readers: Vec<u64>,
    #[arg(long)]
    skip_long_readers: bool,
    /// zdm's target batch duration in milliseconds (`zdm expand --batch-time`)
    #[arg(long, default_value_t = 10)]
    batch_time: u64,
    /// zdm's backfill workers in the scenarios (`zdm expand --backfill-workers`) [default:
    /// adaptive]
    #[arg(long)]
    backfill_workers: Option<usize>,
    /// Where results.json, results.md and the charts go
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    settings: Settings,
    scenarios: Vec<ScenarioResult>,
    backfill: Vec<BackfillResult>,
    triggers: Vec<TriggerResult>,
    expand: Vec<process::ExpandResult>,
    estimates: Vec<estimates::EstimateResult>,
    lint: Vec<process::LintResult>,
}

#[derive(Debug, Serialize)]
struct Machine {
    server_version: String,
    cpus: usize,
    shared_buffers: String,
}

#[derive(Debug, Serialize)]
struct Settings {
    rows: u64,
    clients: usize,
    rate_per_client: u32,
    lock_timeout_ms: u64,
    batch_time_ms: u64,
    backfill_workers: Option<usize>,
}

#[derive(Debug, Serialize)]
struct RunResult {
    /// `naive` or `zdm`.
    run: &'static str,
    migration_seconds: f64,
    baseline: Stats,
    /// From the start of the migration to the end of its last phase.
    during: Stats,
    error_examples: Vec<String>,
    phases: Vec<(String, f64, f64)>,
    /// The latency figures of each phase, to see where slow queries cluster.
    by_phase: Vec<(String, Stats)>,
    migration_error: Option<String>,
    /// When a long reader held the table (start s, end s on the workload's clock).
    long_reader: Option<(f64, f64)>,
}

impl RunResult {
    /// Seconds from the long reader's end to the end of expand (negative: expand ended first).
    fn expand_after_reader(&self) -> Option<f64> {
        let (_, reader_end) = self.long_reader?;
        let (_, _, expand_end) = self.phases.iter().find(|(name, _, _)| name == "expand")?;
        Some(expand_end - reader_end)
    }

    fn expand_seconds(&self) -> f64 {
        self.phases
            .iter()
            .find(|(name, _, _)| name == "expand")
            .map_or(0.0, |(_, from, to)| to - from)
    }
}

#[derive(Debug, Serialize)]
struct ScenarioResult {
    name: &'static str,
    naive: RunResult,
    zdm: RunResult,
    chart: String,
    /// zdm again, with a long reader on the table (see `--long-readers`).
    long_readers: Vec<RunResult>,
}

#[derive(Debug, Serialize)]
struct BackfillResult {
    rows: u64,
    bulk_update_seconds: f64,
    zdm_backfill_seconds: f64,
    bulk_rows_per_second: f64,
    zdm_rows_per_second: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct TriggerResult {
    trigger: &'static str,
    rows: u64,
    bulk_update_rows_per_second_without: f64,
    bulk_update_rows_per_second_with: f64,
    bulk_ratio: f64,
    point_updates_per_second_without: f64,
    point_updates_per_second_with: f64,
    point_ratio: f64,
}

/// zdm's default `--lock-timeout`.
const LOCK_TIMEOUT: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZDM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let admin = ConnectOptions::resolve(args.database_url.as_deref(), &ProcessEnv)?;
    let admin_client = admin.connect().await?;
    admin_client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DB}"))
        .await?;
    admin_client
        .batch_execute(&format!("CREATE DATABASE {BENCH_DB}"))
        .await?;
    let conn = admin.with_dbname(BENCH_DB);
    let c = conn.connect().await?;
    let setting = |name: &'static str| {
        let c = &c;
        async move {
            c.query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
        }
    };
    let machine = Machine {
        server_version: setting("server_version").await?,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        shared_buffers: setting("shared_buffers").await?,
    };
    let pg_version = zdm::db::server_major_version(&c).await?;
    c.batch_execute(
        "CREATE TABLE bench_ref (id bigint PRIMARY KEY);
         INSERT INTO bench_ref SELECT generate_series(1, 1000);",
    )
    .await?;
    std::fs::create_dir_all(&args.out)?;
    let mut report = Report {
        machine,
        settings: Settings {
            rows: args.rows,
            clients: args.clients,
            rate_per_client: args.rate,
            lock_timeout_ms: LOCK_TIMEOUT.as_millis() as u64,
            batch_time_ms: args.batch_time,
            backfill_workers: args.backfill_workers,
        },
        scenarios: Vec::new(),
        backfill: Vec::new(),
        triggers: Vec::new(),
        expand: Vec::new(),
        estimates: Vec::new(),
        lint: Vec::new(),
    };
    let bench = Bench {
        args,
        conn: &conn,
        c: &c,
        options: LintOptions {
            pg_version,
            ..LintOptions::default()
        },
    };
    if !args.skip_scenarios {
        for s in SCENARIOS {
            if !args.scenarios.is_empty() && !args.scenarios.iter().any(|n| n == s.name) {
                continue;
            }
            eprintln!("scenario: {}", s.name);
            report.scenarios.push(bench.scenario(s).await?);
        }
    }
    if !args.skip_backfill {
        for &rows in &args.backfill_sizes {
            eprintln!("backfill throughput: {rows} rows");
            report.backfill.push(bench.backfill(rows).await?);
        }
    }
    if !args.skip_triggers {
        for (name, migration, update) in TRIGGERS {
            eprintln!("trigger overhead: {name}");
            report
                .triggers
                .push(bench.triggers(name, migration, update).await?);
        }
    }
    for &rows in args.expand_sizes.iter().filter(|_| !args.skip_expand) {
        eprintln!("zdm expand process: {rows} rows");
        report
            .expand
            .push(process::expand(&admin, rows, args.batch_time, args.expand_rounds).await?);
    }
    for &rows in args.estimate_sizes.iter().filter(|_| !args.skip_estimates) {
        eprintln!("estimates: {rows} rows");
        report
            .estimates
            .push(estimates::estimates(&admin, rows).await?);
    }
    if args.corpus.is_dir() {
        eprintln!("lint: {}", args.corpus.display());
        report.lint = process::lint(&args.corpus)?;
    }
    let (markdown, met) = render(&report);
    println!("{markdown}");
    std::fs::write(args.out.join("results.md"), &markdown)?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!("wrote {}", args.out.display());
    drop(c);
    admin_client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {BENCH_DB}"))
        .await?;
    Ok(met)
}

/// (name, migration installing the trigger, the bulk update that fires it with `{t}`).
const TRIGGERS: &[(&str, &str, &str)] = &[
    (
        "rename column (two-way sync)",
        "ALTER TABLE {t} RENAME COLUMN payload TO body;",
        "UPDATE {t} SET payload = md5(payload)",
    ),
    (
        "int to bigint (converting)",
        "ALTER TABLE {t} ALTER COLUMN a TYPE bigint;",
        "UPDATE {t} SET a = a + 1",
    ),
];

struct Bench<'a> {
    args: &'a Args,
    conn: &'a ConnectOptions,
    c: &'a tokio_postgres::Client,
    options: LintOptions,
}

impl Bench<'_> {
    /// zdm's plan of a migration on the live schema, as `zdm expand` makes it.
    async fn plan(&self, id: &str, sql: &str) -> anyhow::Result<MigrationPlan> {
        let mut catalog: Catalog = zdm::db::introspect(self.c, BENCH_DB).await?;
        let file = SourceFile::from_text(Path::new(&format!("{id}.sql")), sql.to_owned());
        Ok(plan_file(&file, &mut catalog, &self.options)?)
    }

    async fn runner_options(&self) -> RunOptions {
        let mut options = RunOptions {
            lock_timeout: LOCK_TIMEOUT,
            ..RunOptions::default()
        };
        options.backfill.target_batch_time = Duration::from_millis(self.args.batch_time);
        if let Some(workers) = self.args.backfill_workers {
            options.backfill.workers = Some(workers);
            options.backfill.max_workers = workers;
        }
        // As `zdm expand` runs: the backfill's workers connect like the runner.
        options.sessions = Some(self.conn.clone());
        options
    }

    async fn scenario(&self, s: &Scenario) -> anyhow::Result<ScenarioResult> {
        let naive = self.scenario_run(s, "naive", None).await?;
        let zdm = self.scenario_run(s, "zdm", None).await?;
        let mut long_readers = Vec::new();
        if !self.args.skip_long_readers {
            for &seconds in &self.args.long_readers {
                eprintln!("scenario: {} with a {seconds} s reader", s.name);
                let reader = Some(Duration::from_secs(seconds));
                long_readers.push(self.scenario_run(s, "zdm", reader).await?.0);
            }
        }
        let chart = format!("{}.svg", s.slug());
        chart::latency_chart(
            &self.args.out.join(&chart),
            &format!("{}: latency of every application query", s.name),
            &[
                chart::Panel {
                    title: format!("naive: {}", s.migration_for("t")),
                    samples: &naive.1,
                    phases: &naive.0.phases,
                },
                chart::Panel {
                    title: "zdm expand, rolling deploy, zdm contract".to_owned(),
                    samples: &zdm.1,
                    phases: &zdm.0.phases,
                },
            ],
        )?;
        Ok(ScenarioResult {
            name: s.name,
            naive: naive.0,
            zdm: zdm.0,
            chart,
            long_readers,
        })
    }

    async fn scenario_run(
        &self,
        s: &Scenario,
        run: &'static str,
        long_reader: Option<Duration>,
    ) -> anyhow::Result<(RunResult, Vec<workload::Sample>)> {
        let table = match long_reader {
            None => format!("{}_{run}", s.slug()),
            Some(d) => format!("{}_{run}_reader{}", s.slug(), d.as_secs()),
        };
        create_table(self.c, &table, self.args.rows).await?;
        let migration = s.migration_for(&table);
        let plan = if run == "zdm" {
            Some(self.plan(&table, &migration).await?)
        } else {
            None
        };
        let (old, new) = s.versions(&table);
        let next_id = Arc::new(AtomicI64::new(self.args.rows as i64 + 1));
        let rows = self.args.rows as i64;
        let wl = Workload::start(
            self.conn,
            self.args.clients,
            self.args.rate,
            rows,
            old,
            new,
            next_id,
        )
        .await?;
        let settle = Duration::from_secs(self.args.settle);
        tokio::time::sleep(settle).await;
        let mut phases = vec![("baseline".to_owned(), 0.0, wl.now())];
        // A report starts just before the migration: ACCESS SHARE on the table until it ends.
        let reader = match long_reader {
            None => None,
            Some(hold) => {
                let client = self.conn.connect().await?;
                client
                    .batch_execute(&format!("BEGIN; SELECT count(*) FROM {table}"))
                    .await?;
                let start = wl.now();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    client.batch_execute("COMMIT").await
                });
                Some((task, start, start + hold.as_secs_f64()))
            }
        };
        let started = wl.now();
        let began = Instant::now();
        let mut migration_error = None;
        let mut runner_client = self.conn.connect().await?;
        match &plan {
            None => {
                if let Err(e) = self.c.batch_execute(&migration).await {
                    migration_error = Some(zdm::db::message(&e));
                }
                phases.push(("statement".to_owned(), started, wl.now()));
                let t = wl.now();
                wl.rolling_deploy(Duration::from_secs(1)).await;
                phases.push(("deploy".to_owned(), t, wl.now()));
            }
            Some(plan) => {
                let mut runner =
                    Runner::start(&mut runner_client, self.runner_options().await).await?;
                let plans = std::slice::from_ref(plan);
                if let Err(e) = runner.expand(plans).await {
                    migration_error = Some(e.to_string());
                }
                phases.push(("expand".to_owned(), started, wl.now()));
                let t = wl.now();
                wl.rolling_deploy(Duration::from_secs(1)).await;
                phases.push(("deploy".to_owned(), t, wl.now()));
                let t = wl.now();
                if let Err(e) = runner.contract(plans).await {
                    migration_error.get_or_insert(e.to_string());
                }
                phases.push(("contract".to_owned(), t, wl.now()));
            }
        }
        let migration_seconds = began.elapsed().as_secs_f64();
        let finished = wl.now();
        let long_reader = match reader {
            None => None,
            Some((task, start, end)) => {
                task.await??;
                Some((start, end))
            }
        };
        tokio::time::sleep(settle).await;
        phases.push(("after".to_owned(), finished, wl.now()));
        let (samples, errors) = wl.finish().await;
        self.c
            .batch_execute(&format!("DROP TABLE IF EXISTS {table} CASCADE"))
            .await?;
        let result = RunResult {
            run,
            migration_seconds,
            // The first second warms the connections up.
            baseline: stats(&samples, 1.0, started),
            during: stats(&samples, started, finished),
            error_examples: errors.into_iter().take(3).collect(),
            by_phase: phases
                .iter()
                .map(|(name, from, to)| (name.clone(), stats(&samples, *from, *to)))
                .collect(),
            phases,
            migration_error,
            long_reader,
        };
        Ok((result, samples))
    }

    async fn backfill(&self, rows: u64) -> anyhow::Result<BackfillResult> {
        let create = |t: &str| {
            format!(
                "DROP TABLE IF EXISTS {t};
                 CREATE TABLE {t} (id bigint PRIMARY KEY, a int NOT NULL, b int);
                 INSERT INTO {t} SELECT g, g FROM generate_series(1, {rows}) g;"
            )
        };
        let (bulk, batched) = (format!("bf_bulk_{rows}"), format!("bf_zdm_{rows}"));
        for t in [&bulk, &batched] {
            self.c.batch_execute(&create(t)).await?;
            self.c.batch_execute(&format!("VACUUM ANALYZE {t}")).await?;
        }
        let plan = self
            .plan(&batched, &format!("UPDATE {batched} SET b = a;"))
            .await?;
        let _ = self.c.batch_execute("CHECKPOINT").await;
        let began = Instant::now();
        self.c
            .batch_execute(&format!("UPDATE {bulk} SET b = a"))
            .await?;
        let bulk_seconds = began.elapsed().as_secs_f64();
        let _ = self.c.batch_execute("CHECKPOINT").await;
        let mut rc = self.conn.connect().await?;
        let mut runner = Runner::start(&mut rc, self.runner_options().await).await?;
        let began = Instant::now();
        runner.expand(std::slice::from_ref(&plan)).await?;
        let zdm_seconds = began.elapsed().as_secs_f64();
        let missing: i64 = self
            .c
            .query_one(
                &format!("SELECT count(*) FROM {batched} WHERE b IS DISTINCT FROM a"),
                &[],
            )
            .await?
            .get(0);
        anyhow::ensure!(missing == 0, "the backfill left {missing} rows unset");
        self.c
            .batch_execute(&format!("DROP TABLE {bulk}; DROP TABLE {batched}"))
            .await?;
        let per_second = |s: f64| rows as f64 / s.max(1e-9);
        Ok(BackfillResult {
            rows,
            bulk_update_seconds: bulk_seconds,
            zdm_backfill_seconds: zdm_seconds,
            bulk_rows_per_second: per_second(bulk_seconds),
            zdm_rows_per_second: per_second(zdm_seconds),
            ratio: bulk_seconds / zdm_seconds.max(1e-9),
        })
    }

    async fn triggers(
        &self,
        name: &'static str,
        migration: &str,
        update: &str,
    ) -> anyhow::Result<TriggerResult> {
        let rows = self.args.trigger_rows;
        let (plain, synced) = ("tg_plain", "tg_synced");
        create_table(self.c, plain, rows).await?;
        create_table(self.c, synced, rows).await?;
        let plan = self
            .plan(
                &format!("trigger_{synced}"),
                &migration.replace("{t}", synced),
            )
            .await?;
        let mut rc = self.conn.connect().await?;
        let mut runner = Runner::start(&mut rc, self.runner_options().await).await?;
        runner.expand(std::slice::from_ref(&plan)).await?;
        let mut bulk = [0.0; 2];
        let mut point = [0.0; 2];
        for (i, t) in [plain, synced].into_iter().enumerate() {
            self.c.batch_execute(&format!("VACUUM {t}")).await?;
            let began = Instant::now();
            self.c.batch_execute(&update.replace("{t}", t)).await?;
            bulk[i] = rows as f64 / began.elapsed().as_secs_f64();
            point[i] = self
                .point_updates(&format!("{} WHERE id = $1", update.replace("{t}", t)), rows)
                .await?;
        }
        runner.abort(std::slice::from_ref(&plan)).await?;
        self.c
            .batch_execute(&format!("DROP TABLE {plain}; DROP TABLE {synced}"))
            .await?;
        Ok(TriggerResult {
            trigger: name,
            rows,
            bulk_update_rows_per_second_without: bulk[0],
            bulk_update_rows_per_second_with: bulk[1],
            bulk_ratio: bulk[1] / bulk[0],
            point_updates_per_second_without: point[0],
            point_updates_per_second_with: point[1],
            point_ratio: point[1] / point[0],
        })
    }

    /// Single-row updates per second from the benchmark's clients, as fast as they go, 3 s.
    async fn point_updates(&self, sql: &str, rows: u64) -> anyhow::Result<f64> {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for k in 0..self.args.clients {
            let client = self.conn.connect().await?;
            let sql = sql.to_owned();
            tasks.push(tokio::spawn(async move {
                let statement = client.prepare(&sql).await?;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let id = 1 + ((n * 7919 + k as u64 * 104_729) % rows) as i64;
                    client.execute(&statement, &[&id]).await?;
                    n += 1;
                }
                Ok::<u64, tokio_postgres::Error>(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        Ok(total as f64 / 3.0)
    }
}

/// The latency targets a zdm run missed: a failed query, p99 over twice the baseline's, a
/// query slower than `max_ms` (`max_name` says what that limit is; its value by default).
fn missed_targets(run: &RunResult, max_ms: f64, max_name: &str) -> Vec<String> {
    let mut missed = Vec::new();
    if run.during.errors > 0 || run.migration_error.is_some() {
        missed.push("failed queries".to_owned());
    }
    let ratio = run.during.p99_ms / run.baseline.p99_ms.max(0.001);
    if ratio > 2.0 {
        missed.push(format!("p99 {ratio:.1}× baseline"));
    }
    if run.during.max_ms > max_ms {
        let limit = if max_name.is_empty() {
            format!("{max_ms:.0} ms")
        } else {
            max_name.to_owned()
        };
        missed.push(format!("max {:.0} ms > {limit}", run.during.max_ms));
    }
    missed
}

fn verdict(missed: &[String]) -> String {
    if missed.is_empty() {
        "met".to_owned()
    } else {
        format!("missed: {}", missed.join(", "))
    }
}

/// The markdown report, and whether every target was met.
fn render(r: &Report) -> (String, bool) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut met = true;
    let _ = writeln!(
        out,
        "PostgreSQL {}, {} CPUs, shared_buffers {}; {} rows per scenario table, {} clients × {} queries/s, lock_timeout {} ms, backfill batch target {} ms.\n",
        r.machine.server_version,
        r.machine.cpus,
        r.machine.shared_buffers,
        r.settings.rows,
        r.settings.clients,
        r.settings.rate_per_client,
        r.settings.lock_timeout_ms,
        r.settings.batch_time_ms
    );
    if !r.scenarios.is_empty() {
        out.push_str("### Under load: the naive statement against zdm\n\n");
        out.push_str("| scenario | run | migration (s) | queries | failed | baseline p99 (ms) | p99 during (ms) | max during (ms) | targets |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n");
        let limit = r.settings.lock_timeout_ms as f64 + 100.0;
        for s in &r.scenarios {
            for run in [&s.naive, &s.zdm] {
                let verdict = if run.run == "zdm" {
                    let missed = missed_targets(run, limit, "");
                    met &= missed.is_empty();
                    verdict(&missed)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {} | {} | {:.1} | {:.1} | {:.0} | {verdict} |",
                    s.name,
                    run.run,
                    run.migration_seconds,
                    run.during.queries,
                    run.during.errors,
                    run.baseline.p99_ms,
                    run.during.p99_ms,
                    run.during.max_ms
                );
            }
        }
        if r.scenarios.iter().any(|s| !s.long_readers.is_empty()) {
            out.push_str("\n### With a long reader: lock windows\n\nA transaction holding ACCESS SHARE on the table starts just before `zdm expand`. Targets: no failed query, p99 ≤ 2× baseline, max ≤ baseline max + 100 ms, expand ends within 2 s of the reader.\n\n| scenario | reader (s) | expand (s) | expand ended after the reader (s) | queries | failed | baseline p99 (ms) | p99 during (ms) | baseline max (ms) | max during (ms) | targets |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
            for s in &r.scenarios {
                for run in &s.long_readers {
                    let reader = run.long_reader.map_or(0.0, |(a, b)| b - a);
                    let after = run.expand_after_reader().unwrap_or(0.0);
                    let mut missed =
                        missed_targets(run, run.baseline.max_ms + 100.0, "baseline max + 100 ms");
                    if after > 2.0 {
                        missed.push(format!("expand ended {after:.1} s after the reader"));
                    }
                    met &= missed.is_empty();
                    let verdict = verdict(&missed);
                    let _ = writeln!(
                        out,
                        "| {} | {reader:.0} | {:.1} | {after:.1} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {verdict} |",
                        s.name,
                        run.expand_seconds(),
                        run.during.queries,
                        run.during.errors,
                        run.baseline.p99_ms,
                        run.during.p99_ms,
                        run.baseline.max_ms,
                        run.during.max_ms
                    );
                }
            }
        }
        out.push_str("\nzdm's p99 (ms) by phase:\n\n| scenario | phases |\n|---|---|\n");
        for s in &r.scenarios {
            let phases: Vec<String> = s
                .zdm
                .by_phase
                .iter()
                .map(|(name, st)| format!("{name} {:.1} (max {:.0})", st.p99_ms, st.max_ms))
                .collect();
            let _ = writeln!(out, "| {} | {} |", s.name, phases.join(", "));
        }
        out.push('\n');
    }
    if !r.backfill.is_empty() {
        out.push_str("### Backfill against one bulk UPDATE (identical tables, same run)\n\n| rows | bulk UPDATE (s) | zdm backfill (s) | bulk rows/s | zdm rows/s | zdm / bulk |\n|---:|---:|---:|---:|---:|---:|\n");
        for b in &r.backfill {
            met &= b.ratio >= 0.8;
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |",
                b.rows,
                b.bulk_update_seconds,
                b.zdm_backfill_seconds,
                b.bulk_rows_per_second,
                b.zdm_rows_per_second,
                b.ratio
            );
        }
        if let (Some(first), Some(last)) = (r.backfill.first(), r.backfill.last()) {
            let scaling = last.zdm_rows_per_second / first.zdm_rows_per_second;
            met &= scaling >= 0.9;
            let _ = writeln!(
                out,
                "\nzdm rows/s at {} rows is {scaling:.2}× its rate at {} rows.",
                last.rows, first.rows
            );
        }
        out.push('\n');
    }
    if !r.triggers.is_empty() {
        out.push_str("### Write throughput with zdm's triggers against without\n\n| trigger | rows | bulk UPDATE rows/s without | with | ratio | point updates/s without | with | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for t in &r.triggers {
            met &= t.bulk_ratio >= 0.5 && t.point_ratio >= 0.5;
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
                t.trigger,
                t.rows,
                t.bulk_update_rows_per_second_without,
                t.bulk_update_rows_per_second_with,
                t.bulk_ratio,
                t.point_updates_per_second_without,
                t.point_updates_per_second_with,
                t.point_ratio
            );
        }
    }
    if !r.expand.is_empty() {
        out.push_str("\n### Whole `zdm expand` of `ALTER COLUMN age TYPE bigint` against `ADD COLUMN age_new bigint; UPDATE … SET age_new = age`\n\n");
        out.push_str("Medians over the rounds (`--expand-rounds`); each round times the bulk statements and then zdm with each setting, on fresh identical tables.\n\n");
        out.push_str("| rows | rounds | bulk (s) | workers | zdm expand (s) | zdm rows/s ÷ bulk rows/s | target |\n|---:|---:|---:|---|---:|---:|---|\n");
        for e in &r.expand {
            for (workers, seconds) in &e.runs {
                let ratio = e.ratio(*seconds);
                let target = if workers != "adaptive" {
                    String::new()
                } else {
                    let least = if e.rows >= 1_000_000 { 1.0 } else { 0.9 };
                    met &= ratio >= least;
                    if ratio >= least {
                        format!("≥ {least}: met")
                    } else {
                        format!("≥ {least}: **missed**")
                    }
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2} | {workers} | {seconds:.2} | {ratio:.2} | {target} |",
                    e.rows, e.rounds, e.bulk_seconds
                );
            }
        }
        // Speed that holds as the table grows: adaptive rows/s at each larger size against
        // the rate at 1M rows.
        let adaptive_rate = |e: &process::ExpandResult| {
            e.runs
                .iter()
                .find(|(workers, _)| workers == "adaptive")
                .map(|(_, seconds)| e.rows as f64 / seconds)
        };
        let at_1m = r.expand.iter().find(|e| e.rows == 1_000_000);
        if let Some(base) = at_1m.and_then(adaptive_rate) {
            for e in r.expand.iter().filter(|e| e.rows > 1_000_000) {
                let Some(rate) = adaptive_rate(e) else {
                    continue;
                };
                let ratio = rate / base;
                met &= ratio >= 0.9;
                let _ = writeln!(
                    out,
                    "\nAdaptive rows/s at {} rows ÷ at 1000000 rows: {rate:.0} ÷ {base:.0} = {ratio:.2} (target ≥ 0.9: {})",
                    e.rows,
                    if ratio >= 0.9 { "met" } else { "**missed**" }
                );
            }
        }
    }
    if !r.estimates.is_empty() {
        out.push_str("\n### `zdm plan --database-url` estimates against the measured steps of `zdm expand`\n\n");
        out.push_str("| rows | step | estimated (s) | measured (s) | estimated ÷ measured | target 0.5–2× |\n|---:|---|---:|---:|---:|---|\n");
        for e in &r.estimates {
            for (id, estimated, measured) in &e.steps {
                let what = estimates::COMPARED
                    .iter()
                    .find(|(s, _)| s == id)
                    .map_or(id.as_str(), |(_, what)| what);
                let ratio = estimated / measured.max(1e-3);
                let ok = (0.5..=2.0).contains(&ratio);
                met &= ok;
                let _ = writeln!(
                    out,
                    "| {} | {what} | {estimated:.2} | {measured:.2} | {ratio:.2} | {} |",
                    e.rows,
                    if ok { "met" } else { "**missed**" }
                );
            }
            let _ = writeln!(
                out,
                "| {} | `zdm plan --database-url` itself | | {:.2} | | |",
                e.rows, e.plan_seconds
            );
        }
    }
    if !r.lint.is_empty() {
        out.push_str("\n### `zdm lint` of each corpus project: folder, file list, squawk on the same list (best of three)\n\n");
        out.push_str("| project | files | folder (s) | file list (s) | list ÷ folder | squawk (s) |\n|---|---:|---:|---:|---:|---:|\n");
        for l in &r.lint {
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} | {:.3} | {:.2} | {} |",
                l.project,
                l.files,
                l.folder_seconds,
                l.list_seconds,
                l.list_seconds / l.folder_seconds.max(1e-9),
                l.squawk_seconds
                    .map_or("not installed".to_owned(), |s| format!("{s:.3}"))
            );
        }
    }
    (out, met)
}
