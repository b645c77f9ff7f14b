//! `zdm expand`, `contract`, `abort` and `status` against a real PostgreSQL, the way CI stages
//! use them: state recorded in the `zdm` schema, one runner at a time, resumable after a failed
//! step, an edited migration refused before anything runs.

mod common;

use std::path::Path;

use zdm::db::{RunError, RunOptions, Runner};
use zdm::lint::LintOptions;
use zdm::plan::{MigrationPlan, plan_set};
use zdm::source::MigrationSet;

fn plans(dir: &Path) -> Vec<MigrationPlan> {
    plan_set(
        &MigrationSet::load(dir, None).unwrap(),
        &LintOptions::default(),
        None,
    )
    .all_planned()
    .unwrap()
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[test]
fn lifecycle_abort_resume_and_refusals() {
    let Some(db) = common::TestDatabase::create("executor") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_init.sql"),
        "CREATE TABLE users (id bigint PRIMARY KEY, email text, full_name text, legacy int NOT NULL);\n\
         CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\n\
         INSERT INTO users SELECT g, 'u' || g || '@x', 'User ' || g, g FROM generate_series(1, 3000) g;\n\
         INSERT INTO orders SELECT g, g FROM generate_series(1, 3000) g;",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_changes.sql"),
        "ALTER TABLE users RENAME COLUMN full_name TO display_name;\n\
         ALTER TABLE users ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();\n\
         CREATE INDEX users_email_idx ON users (email);\n\
         ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
    )
    .unwrap();
    let all = plans(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = zdm::db::connect(&url).await.unwrap();
        let mut client = zdm::db::connect(&url).await.unwrap();
        let mut runner = Runner::start(&mut client, RunOptions::default()).await.unwrap();

        // A second runner is refused at once.
        let mut other = zdm::db::connect(&url).await.unwrap();
        match Runner::start(&mut other, RunOptions::default()).await {
            Err(RunError::Busy { pid, .. }) => assert!(pid.is_some()),
            Err(e) => panic!("expected Busy, got {e}"),
            Ok(_) => panic!("expected Busy, got a second runner"),
        }

        // 0001 alone: expand and contract.
        assert_eq!(runner.expand(&all[..1]).await.unwrap(), ["0001_init"]);
        assert_eq!(runner.contract(&all[..1]).await.unwrap(), ["0001_init"]);

        // An orphan order makes the foreign key's validation fail: 0002 is marked failed.
        app.batch_execute("INSERT INTO orders VALUES (9999, 424242)").await.unwrap();
        let err = runner.expand(&all).await.unwrap_err();
        assert!(matches!(err, RunError::Step { .. }), "{err}");
        assert!(err.to_string().contains("orders_user_fk"), "{err}");
        let status = zdm::db::status(&client_of(&url).await, &all).await.unwrap();
        assert_eq!(status[1].status, "failed");
        // The old application still works meanwhile.
        app.batch_execute("INSERT INTO users (id, email, full_name, legacy) VALUES (5001, 'o@x', 'Old', 1)").await.unwrap();

        // Fixed data: expand resumes and finishes; steps already done are not run again.
        app.batch_execute("DELETE FROM orders WHERE id = 9999").await.unwrap();
        assert_eq!(runner.expand(&all).await.unwrap(), ["0002_changes"]);
        app.batch_execute("INSERT INTO users (id, email, full_name, legacy) VALUES (5002, 'o2@x', 'Old 2', 1)").await.unwrap();
        app.batch_execute("INSERT INTO users (id, email, display_name, legacy) VALUES (5003, 'n@x', 'New', 1)").await.unwrap();
        assert_eq!(count(&app, "SELECT count(*) FROM users WHERE display_name IS DISTINCT FROM full_name").await, 0);
        assert_eq!(count(&app, "SELECT count(*) FROM users WHERE token IS NULL").await, 0);

        // Abort undoes the expand of 0002 only (0001 is contracted); nothing of zdm remains.
        assert_eq!(runner.abort(&all).await.unwrap(), ["0002_changes"]);
        app.batch_execute("INSERT INTO users (id, email, full_name, legacy) VALUES (5004, 'o3@x', 'Old 3', 1)").await.unwrap();
        assert_eq!(
            count(&app, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname IN ('display_name', 'token') AND NOT attisdropped").await,
            0
        );
        assert_eq!(count(&app, "SELECT count(*) FROM pg_proc WHERE proname LIKE '\\_zdm\\_%'").await, 0);

        // Expand again, contract, and the new application has everything.
        assert_eq!(runner.expand(&all).await.unwrap(), ["0002_changes"]);
        assert_eq!(runner.contract(&all).await.unwrap(), ["0002_changes"]);
        app.batch_execute("INSERT INTO users (id, email, display_name, legacy) VALUES (5005, 'n2@x', 'New 2', 1)").await.unwrap();
        assert_eq!(count(&app, "SELECT count(*) FROM users WHERE display_name IS NULL OR token IS NULL").await, 0);
        assert_eq!(count(&app, "SELECT count(*) FROM users WHERE display_name = 'User 17' AND id = 17").await, 1);
        let status = zdm::db::status(&client_of(&url).await, &all).await.unwrap();
        assert!(status.iter().all(|s| s.status == "done"), "{status:?}");

        // An applied migration whose file changed: refused, nothing runs.
        std::fs::write(dir.path().join("0002_changes.sql"), "ALTER TABLE users ADD COLUMN x int;").unwrap();
        let edited = plans(dir.path());
        let err = runner.expand(&edited).await.unwrap_err();
        assert!(matches!(err, RunError::Edited { .. }), "{err}");
        assert!(err.to_string().contains("0002_changes.sql"), "{err}");
    });
}

async fn client_of(url: &str) -> tokio_postgres::Client {
    zdm::db::connect(url).await.unwrap()
}

/// `--max-rows-per-second` holds a backfill to its rate; adaptive batches grow when batches
/// are fast.
#[test]
fn backfill_pace_limits_and_adapts() {
    let Some(db) = common::TestDatabase::create("executor_pace") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id bigint PRIMARY KEY, a int, b int);",
    )
    .unwrap();
    std::fs::write(dir.path().join("0002_fill.sql"), "UPDATE t SET b = a * 2;").unwrap();
    std::fs::write(dir.path().join("0003_fill.sql"), "UPDATE t SET b = a * 3;").unwrap();
    let all = plans(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let c = zdm::db::connect(&url).await.unwrap();
        let mut rc = zdm::db::connect(&url).await.unwrap();
        let limited = RunOptions {
            backfill: zdm::db::BackfillOptions {
                batch_size: 250,
                target_batch_time: std::time::Duration::ZERO,
                max_rows_per_second: Some(10_000),
                ..Default::default()
            },
            ..RunOptions::default()
        };
        let mut runner = Runner::start(&mut rc, limited).await.unwrap();
        runner.expand(&all[..1]).await.unwrap();
        c.batch_execute("INSERT INTO t SELECT g, g FROM generate_series(1, 6000) g")
            .await
            .unwrap();
        let began = std::time::Instant::now();
        runner.expand(&all[..2]).await.unwrap();
        let took = began.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(500),
            "6000 rows at 10000 rows/s took only {took:?}"
        );
        assert_eq!(
            count(&c, "SELECT count(*) FROM t WHERE b = a * 2").await,
            6000
        );
        drop(runner);

        // Adaptive batches from a 10-row start finish the same backfill correctly (the sizing
        // itself is unit-tested in src/db/backfill.rs).
        let adaptive = RunOptions {
            backfill: zdm::db::BackfillOptions {
                batch_size: 10,
                target_batch_time: std::time::Duration::from_secs(1),
                ..Default::default()
            },
            ..RunOptions::default()
        };
        let mut runner = Runner::start(&mut rc, adaptive).await.unwrap();
        runner.contract(&all[..2]).await.unwrap();
        let began = std::time::Instant::now();
        runner.expand(&all).await.unwrap();
        assert!(began.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            count(&c, "SELECT count(*) FROM t WHERE b = a * 3").await,
            6000
        );
    });
}
