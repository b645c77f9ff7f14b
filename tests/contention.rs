//! Lock contention: a session holds a lock that conflicts with a step's ACCESS EXCLUSIVE
//! request. zdm must never wait longer than lock_timeout per attempt (a queued ACCESS
//! EXCLUSIVE request blocks every later query on the table, so that wait is the application's
//! too), retry with backoff, then fail cleanly naming the blocker; once the blocker is gone the
//! same command resumes and finishes. Meanwhile a reader measures how long its queries on the
//! table take.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zdm::db::{RunError, RunOptions, Runner};
use zdm::lint::LintOptions;
use zdm::plan::plan_set;
use zdm::source::MigrationSet;

const LOCK_TIMEOUT: Duration = Duration::from_millis(200);

#[test]
fn waits_stay_within_lock_timeout_and_the_blocker_is_named() {
    let Some(db) = common::TestDatabase::create("contention") else {
        return;
    };
    let url = db.url_of_database();
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

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut blocker = db.connect();
    runtime.block_on(async {
        let mut rc = zdm::db::connect(&url).await.unwrap();
        let options = RunOptions {
            lock_timeout: LOCK_TIMEOUT,
            max_attempts: 3,
            ..RunOptions::default()
        };
        let mut runner = Runner::start(&mut rc, options).await.unwrap();
        runner.expand(&plans[..1]).await.unwrap();
        runner.contract(&plans[..1]).await.unwrap();
    });
    blocker
        .batch_execute("INSERT INTO accounts SELECT g, g FROM generate_series(1, 1000) g")
        .unwrap();

    // A long transaction holding ACCESS SHARE on the table, as a report query would.
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM accounts")
        .unwrap();
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);

    // The application reads the table all along, on its own thread; the slowest read is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut app = db.connect();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let began = Instant::now();
                app.query_one("SELECT balance FROM accounts WHERE id = 5", &[])
                    .unwrap();
                slowest = slowest.max(began.elapsed());
                reads += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (slowest, reads)
        })
    };

    let (err, took) = runtime.block_on(async {
        let mut rc = zdm::db::connect(&url).await.unwrap();
        let options = RunOptions {
            lock_timeout: LOCK_TIMEOUT,
            max_attempts: 3,
            ..RunOptions::default()
        };
        let mut runner = Runner::start(&mut rc, options).await.unwrap();
        let began = Instant::now();
        let err = runner.expand(&plans).await.unwrap_err();
        (err, began.elapsed())
    });
    stop.store(true, Ordering::SeqCst);
    let (slowest, reads) = reader.join().unwrap();

    // Three attempts of at most LOCK_TIMEOUT each, with backoff between them.
    assert!(matches!(err, RunError::Step { attempts: 3, .. }), "{err}");
    let text = err.to_string();
    eprintln!("{text}\nslowest read {slowest:?} over {reads} reads, gave up after {took:?}");
    assert!(text.contains("lock timeout"), "{text}");
    assert!(
        text.contains(&format!("pid {blocker_pid}")),
        "the blocker is named: {text}"
    );
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    assert!(reads > 10, "the reader ran only {reads} queries");
    assert!(
        slowest < LOCK_TIMEOUT + Duration::from_millis(150),
        "an application read waited {slowest:?}, longer than lock_timeout {LOCK_TIMEOUT:?}"
    );

    // The blocker goes away: the same command resumes the failed migration and finishes.
    blocker.batch_execute("COMMIT").unwrap();
    runtime.block_on(async {
        let mut rc = zdm::db::connect(&url).await.unwrap();
        let mut runner = Runner::start(&mut rc, RunOptions::default()).await.unwrap();
        assert_eq!(runner.expand(&plans).await.unwrap(), ["0002_flag"]);
    });
    let frozen: i64 = blocker
        .query_one("SELECT count(*) FROM accounts WHERE NOT frozen", &[])
        .unwrap()
        .get(0);
    assert_eq!(frozen, 1000);
}
