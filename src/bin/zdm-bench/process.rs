//! Figures of the `zdm` binary as users run it, whole processes timed: `zdm expand` of a type
//! change against the bulk statements it replaces, with one, two and an adaptive number of
//! backfill workers; and `zdm lint` of the corpus as folders and as file lists, beside squawk
//! when it is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use zdm::db::ConnectOptions;

/// The `zdm` binary built beside this one.
pub fn zdm_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("zdm");
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build --release`",
        path.display()
    );
    Ok(path)
}

#[derive(Debug, Serialize)]
pub struct ExpandResult {
    pub rows: u64,
    /// Rounds of the comparison; the figures are the medians over them.
    pub rounds: usize,
    /// `ADD COLUMN age_new bigint; UPDATE users SET age_new = age` on an identical table.
    pub bulk_seconds: f64,
    /// The whole `zdm expand` process of `ALTER COLUMN age TYPE bigint`, per worker setting.
    pub runs: Vec<(String, f64)>,
    /// Every round's figures, bulk first then the worker settings in order.
    pub samples: Vec<Vec<f64>>,
}

impl ExpandResult {
    /// rows/s of zdm against rows/s of the bulk statements.
    pub fn ratio(&self, seconds: f64) -> f64 {
        self.bulk_seconds / seconds.max(1e-9)
    }
}

const TABLE: &str =
    "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, age int);";

/// The worker settings timed: `--backfill-workers 1`, `2`, and the default.
const WORKER_SETTINGS: [&str; 3] = ["1", "2", "adaptive"];

/// Times the bulk statements and `zdm expand` with each worker setting, each on a fresh
/// database holding the same table, `rounds` times in turn, and keeps the medians: on a
/// shared two-core machine one run of a sub-second job moves by half from run to run (a
/// checkpoint, another process), and a round that alternates the two sides gives both the
/// same luck.
pub async fn expand(
    admin: &ConnectOptions,
    rows: u64,
    batch_time_ms: u64,
    rounds: usize,
) -> anyhow::Result<ExpandResult> {
    let rounds = rounds.max(1);
    let mut samples = Vec::new();
    for round in 0..rounds {
        if rounds > 1 {
            eprintln!("  round {} of {rounds}", round + 1);
        }
        samples.push(expand_round(admin, rows, batch_time_ms).await?);
    }
    let median = |i: usize| {
        let mut column: Vec<f64> = samples.iter().map(|round| round[i]).collect();
        column.sort_by(f64::total_cmp);
        column[column.len() / 2]
    };
    Ok(ExpandResult {
        rows,
        rounds,
        bulk_seconds: median(0),
        runs: WORKER_SETTINGS
            .iter()
            .enumerate()
            .map(|(i, w)| ((*w).to_owned(), median(i + 1)))
            .collect(),
        samples,
    })
}

/// One round: the bulk statements' seconds, then zdm's for each of [`WORKER_SETTINGS`].
async fn expand_round(
    admin: &ConnectOptions,
    rows: u64,
    batch_time_ms: u64,
) -> anyhow::Result<Vec<f64>> {
    let fresh = |db: String| async move {
        let c = admin.connect().await?;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await?;
        c.batch_execute(&format!("CREATE DATABASE {db}")).await?;
        let options = admin.with_dbname(&db);
        let t = options.connect().await?;
        t.batch_execute(&format!(
            "{TABLE} INSERT INTO users (name, age) SELECT 'user ' || g, g % 90 FROM generate_series(1, {rows}) g;"
        ))
        .await?;
        t.batch_execute("VACUUM ANALYZE users").await?;
        t.batch_execute("CHECKPOINT").await?;
        anyhow::Ok((options, t))
    };
    let (_, bulk) = fresh("zdm_bench_bulk".into()).await?;
    let began = Instant::now();
    bulk.batch_execute(
        "ALTER TABLE users ADD COLUMN age_new bigint; UPDATE users SET age_new = age",
    )
    .await?;
    let bulk_seconds = began.elapsed().as_secs_f64();
    drop(bulk);
    let zdm = zdm_binary()?;
    let dir = std::env::temp_dir().join(format!("zdm-bench-expand-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("0001_age.sql"),
        "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
    )?;
    let mut seconds_of = vec![bulk_seconds];
    for workers in WORKER_SETTINGS {
        let db = format!("zdm_bench_expand_{workers}");
        let (options, client) = fresh(db.clone()).await?;
        drop(client);
        let mut cmd = Command::new(&zdm);
        // `target` is user@host:port/db; a password comes from PGPASSWORD or ~/.pgpass.
        cmd.arg("expand")
            .arg("--database-url")
            .arg(format!("postgres://{}", options.target))
            .arg("--batch-time")
            .arg(batch_time_ms.to_string());
        if workers != "adaptive" {
            cmd.args(["--backfill-workers", workers]);
        }
        cmd.arg(&dir)
            .env_remove("ZDM_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let began = Instant::now();
        let out = cmd.output()?;
        let seconds = began.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "zdm expand failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let check = options.connect().await?;
        let unset: i64 = check
            .query_one(
                "SELECT count(*) FROM users WHERE _zdm_users_age_new IS DISTINCT FROM age",
                &[],
            )
            .await?
            .get(0);
        anyhow::ensure!(unset == 0, "the backfill left {unset} rows unset");
        drop(check);
        admin
            .connect()
            .await?
            .batch_execute(&format!("DROP DATABASE {db}"))
            .await?;
        seconds_of.push(seconds);
    }
    admin
        .connect()
        .await?
        .batch_execute("DROP DATABASE zdm_bench_bulk")
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(seconds_of)
}

#[derive(Debug, Serialize)]
pub struct LintResult {
    pub project: String,
    pub files: usize,
    pub folder_seconds: f64,
    pub list_seconds: f64,
    pub squawk_seconds: Option<f64>,
}

/// The fastest of three runs of a command, in seconds.
fn best_of_three(mut make: impl FnMut() -> Command) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let began = Instant::now();
        make()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        best = best.min(began.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn sql_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            sql_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "sql") {
            out.push(p);
        }
    }
}

/// Lints each project of the corpus as a folder and as the list of its files.
pub fn lint(corpus: &Path) -> anyhow::Result<Vec<LintResult>> {
    let zdm = zdm_binary()?;
    let squawk = Command::new("squawk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut projects: Vec<PathBuf> = std::fs::read_dir(corpus)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    projects.sort();
    let mut out = Vec::new();
    for project in projects {
        let mut files = Vec::new();
        sql_files(&project, &mut files);
        if files.is_empty() {
            continue;
        }
        let folder_seconds = best_of_three(|| {
            let mut c = Command::new(&zdm);
            c.arg("lint").arg(&project).env_remove("ZDM_CONFIG");
            c
        })?;
        let list_seconds = best_of_three(|| {
            let mut c = Command::new(&zdm);
            c.arg("lint").args(&files).env_remove("ZDM_CONFIG");
            c
        })?;
        let squawk_seconds = if squawk {
            Some(best_of_three(|| {
                let mut c = Command::new("squawk");
                c.args(&files);
                c
            })?)
        } else {
            None
        };
        out.push(LintResult {
            project: project
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            files: files.len(),
            folder_seconds,
            list_seconds,
            squawk_seconds,
        });
    }
    Ok(out)
}
