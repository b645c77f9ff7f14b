//! Lock contention: a long transaction holds a lock that conflicts with a step's ACCESS
//! EXCLUSIVE request, as a report query, `pg_dump` or a session left idle in its transaction
//! would. A queued ACCESS EXCLUSIVE request blocks every later query on the table, so zdm must
//! not queue behind the long holder at all: it waits for a lock window (no conflicting lock
//! held longer than lock_timeout) while asking for nothing, names the holder, and at its
//! deadline stops cleanly, resumable. Meanwhile the application reads the table and a watcher
//! checks `pg_locks` for a lock request of zdm's that waits.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zdm::db::{RunError, RunOptions, Runner};
use zdm::lint::LintOptions;
use zdm::plan::{MigrationPlan, plan_set};
use zdm::source::MigrationSet;

const LOCK_TIMEOUT: Duration = Duration::from_millis(200);

/// A table with 1,000 rows (migrated by zdm), and the plans of a migration that adds a column
/// under ACCESS EXCLUSIVE.
fn setup(db: &common::TestDatabase, runtime: &tokio::runtime::Runtime) -> Vec<MigrationPlan> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_schema.sql"),
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_flag.sql"),
        "ALTER TABLE accounts ADD COLUMN frozen boolean NOT NULL DEFAULT false;",
    )
    .unwrap();
    let plans = plan_set(
        &MigrationSet::load(dir.path(), None).unwrap(),
        &LintOptions::default(),
        None,
    )
    .all_planned()
    .unwrap();
    let url = db.url_of_database();
    runtime.block_on(async {
        let mut rc = zdm::db::connect(&url).await.unwrap();
        let mut runner = Runner::start(&mut rc, RunOptions::default()).await.unwrap();
        runner.expand(&plans[..1]).await.unwrap();
        runner.contract(&plans[..1]).await.unwrap();
    });
    db.connect()
        .batch_execute("INSERT INTO accounts SELECT g, g FROM generate_series(1, 1000) g")
        .unwrap();
    plans
}

/// What the application saw while zdm ran: its slowest read, how many reads, and the most
/// lock requests on the table that were waiting at one look at `pg_locks`.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Duration, u32, i64)>,
}

impl Watch {
    fn start(db: &common::TestDatabase) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let mut app = db.connect();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut slowest, mut reads, mut queued) = (Duration::ZERO, 0, 0i64);
                while !stop.load(Ordering::SeqCst) {
                    let began = Instant::now();
                    app.query_one("SELECT balance FROM accounts WHERE id = 5", &[])
                        .unwrap();
                    slowest = slowest.max(began.elapsed());
                    reads += 1;
                    let waiting: i64 = app
                        .query_one(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'accounts'::regclass",
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    queued = queued.max(waiting);
                    std::thread::sleep(Duration::from_millis(2));
                }
                (slowest, reads, queued)
            })
        };
        Watch { stop, thread }
    }

    fn finish(self) -> (Duration, u32, i64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn expand(
    url: &str,
    runtime: &tokio::runtime::Runtime,
    plans: &[MigrationPlan],
    options: RunOptions,
) -> (Result<Vec<String>, RunError>, Duration) {
    runtime.block_on(async {
        let mut rc = zdm::db::connect(url).await.unwrap();
        let mut runner = Runner::start(&mut rc, options).await.unwrap();
        let began = Instant::now();
        let result = runner.expand(plans).await;
        (result, began.elapsed())
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_long_reader_is_waited_out_without_queueing_and_named_at_the_deadline() {
    let Some(db) = common::TestDatabase::create("contention") else {
        return;
    };
    let runtime = runtime();
    let plans = setup(&db, &runtime);
    let url = db.url_of_database();

    // A long transaction holding ACCESS SHARE on the table, as a report query would.
    let mut blocker = db.connect();
    blocker
        .batch_execute(
            "SET application_name = 'nightly report'; BEGIN; SELECT count(*) FROM accounts",
        )
        .unwrap();
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    std::thread::sleep(LOCK_TIMEOUT * 2);

    let watch = Watch::start(&db);
    let options = RunOptions {
        lock_timeout: LOCK_TIMEOUT,
        lock_deadline: Duration::from_secs(3),
        ..RunOptions::default()
    };
    let (result, took) = expand(&url, &runtime, &plans, options);
    let (slowest, reads, queued) = watch.finish();
    let err = result.unwrap_err();
    let text = err.to_string();
    eprintln!("{text}\nslowest read {slowest:?} over {reads} reads, gave up after {took:?}");

    assert!(matches!(err, RunError::Step { .. }), "{err}");
    assert!(text.contains("no lock window"), "{text}");
    assert!(
        text.contains(&format!("pid {blocker_pid} \"nightly report\"")),
        "the blocker is named: {text}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "gave up after {took:?}"
    );
    assert!(reads > 10, "the reader ran only {reads} queries");
    assert_eq!(queued, 0, "a lock request on the table waited in the queue");
    assert!(
        slowest < LOCK_TIMEOUT,
        "an application read waited {slowest:?} although zdm never asked for the lock"
    );
    // The blocker was not touched: cancelling is opt-in.
    blocker.query_one("SELECT 1", &[]).unwrap();

    // zdm status shows the step and whom it waited for.
    let status = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin("zdm"))
        .args(["status", "--database-url", &url])
        .arg(tempdir_with(&plans).path())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains(&format!("pid {blocker_pid}")), "{shown}");

    // The report ends while a run waits: the step goes through within moments of it.
    let ender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        blocker.batch_execute("COMMIT").unwrap();
        Instant::now()
    });
    let options = RunOptions {
        lock_timeout: LOCK_TIMEOUT,
        ..RunOptions::default()
    };
    let (result, _) = expand(&url, &runtime, &plans, options);
    let finished = Instant::now();
    let ended = ender.join().unwrap();
    assert_eq!(result.unwrap(), ["0002_flag"]);
    assert!(
        finished.duration_since(ended) < Duration::from_secs(2),
        "expand finished {:?} after the reader ended",
        finished.duration_since(ended)
    );
    let frozen: i64 = db
        .connect()
        .query_one("SELECT count(*) FROM accounts WHERE NOT frozen", &[])
        .unwrap()
        .get(0);
    assert_eq!(frozen, 1000);
}

/// The migration files of `plans`, for the binary (`zdm status` reads the folder).
fn tempdir_with(plans: &[MigrationPlan]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "0001_schema.sql",
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL);",
        ),
        (
            "0002_flag.sql",
            "ALTER TABLE accounts ADD COLUMN frozen boolean NOT NULL DEFAULT false;",
        ),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    assert_eq!(plans.len(), 2);
    dir
}

#[test]
fn blockers_are_cancelled_only_when_asked() {
    let Some(db) = common::TestDatabase::create("contention_cancel") else {
        return;
    };
    let runtime = runtime();
    let plans = setup(&db, &runtime);
    let url = db.url_of_database();

    // A long report: one statement that holds ACCESS SHARE for 30 s.
    let mut report = db.connect();
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let running = std::thread::spawn(move || {
        report
            .query_one("SELECT count(*), pg_sleep(30) FROM accounts", &[])
            .map(|_| ())
            .map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            })
    });
    std::thread::sleep(Duration::from_millis(500));

    let options = RunOptions {
        lock_timeout: LOCK_TIMEOUT,
        lock_deadline: Duration::from_secs(20),
        cancel_blockers_after: Some(Duration::from_secs(1)),
        ..RunOptions::default()
    };
    let (result, took) = expand(&url, &runtime, &plans, options);
    assert_eq!(result.unwrap(), ["0002_flag"]);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let ended = running.join().unwrap();
    assert!(
        ended
            .as_ref()
            .is_err_and(|e| e.contains("canceling statement")),
        "the report {report_pid} was cancelled: {ended:?}"
    );
}

/// A CONCURRENTLY build waits for every transaction older than itself; zdm lets it wait (its
/// lock blocks no query) and names the transactions after a few seconds.
#[test]
fn a_concurrent_build_names_the_transactions_it_waits_for() {
    let Some(db) = common::TestDatabase::create("contention_cic") else {
        return;
    };
    let url = db.url_of_database();
    let mut reader = db.connect();
    reader
        .batch_execute(
            "CREATE TABLE events (id bigint PRIMARY KEY, kind int);
             INSERT INTO events SELECT g, g % 7 FROM generate_series(1, 1000) g;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_index.sql"),
        "CREATE INDEX events_kind_idx ON events (kind);",
    )
    .unwrap();
    reader
        .batch_execute("SET application_name = 'long export'; BEGIN; SELECT count(*) FROM events")
        .unwrap();
    let reader_pid: i32 = reader
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let ender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(8));
        reader.batch_execute("COMMIT").unwrap();
    });
    let out = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin("zdm"))
        .args(["expand", "--database-url", &url])
        .arg(dir.path())
        .env("ZDM_LOG", "zdm=info")
        .output()
        .unwrap();
    ender.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("waits for these transactions to end")
            && stderr.contains(&format!("pid {reader_pid} \"long export\"")),
        "{stderr}"
    );
    let valid: bool = db
        .connect()
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_kind_idx'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(valid);
}

/// A session idle in its transaction keeps its locks when its (absent) statement is cancelled;
/// `--terminate-blockers` ends the session itself.
#[test]
fn an_idle_transaction_is_ended_only_with_terminate() {
    let Some(db) = common::TestDatabase::create("contention_terminate") else {
        return;
    };
    let runtime = runtime();
    let plans = setup(&db, &runtime);
    let url = db.url_of_database();
    let mut idle = db.connect();
    idle.batch_execute("BEGIN; SELECT count(*) FROM accounts")
        .unwrap();

    // Cancelling does not end an idle transaction: the deadline comes, nothing was run.
    let options = RunOptions {
        lock_timeout: LOCK_TIMEOUT,
        lock_deadline: Duration::from_secs(3),
        cancel_blockers_after: Some(Duration::from_secs(1)),
        ..RunOptions::default()
    };
    let (result, _) = expand(&url, &runtime, &plans, options);
    assert!(
        result
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no lock window")),
        "{result:?}"
    );
    idle.query_one("SELECT 1", &[]).unwrap();

    let options = RunOptions {
        lock_timeout: LOCK_TIMEOUT,
        lock_deadline: Duration::from_secs(20),
        cancel_blockers_after: Some(Duration::from_secs(1)),
        terminate_blockers: true,
        ..RunOptions::default()
    };
    let (result, took) = expand(&url, &runtime, &plans, options);
    assert_eq!(result.unwrap(), ["0002_flag"]);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        idle.query_one("SELECT 1", &[]).is_err(),
        "the idle session was terminated"
    );
}
