//! `--max-replication-lag` against a real streaming standby: while the standby's replay is
//! paused the backfill holds, and once replay resumes it finishes.
//!
//! Needs ZDM_STANDBY_URL, a standby of the DATABASE_URL server: scripts/test starts one beside
//! each throw-away server it starts, so `scripts/test-matrix` (and CI through it) runs this on
//! every major. Against a server it did not start (DATABASE_URL, or one on port 5432) there is
//! no standby, and the test says so and returns.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

/// Polls `done` every 100 ms; false when `limit` passes first.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn rows_done(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(rows_done), 0)::int8 FROM zdm.steps WHERE step_id LIKE 'backfill-%'",
        &[],
    )
    .map(|r| r.get(0))
    .unwrap_or(0)
}

#[test]
fn backfill_holds_while_the_standby_is_behind() {
    let Ok(standby_url) = std::env::var("ZDM_STANDBY_URL") else {
        eprintln!(
            "skipped: no ZDM_STANDBY_URL (scripts/test starts a standby with the throw-away servers it starts; scripts/test-matrix runs this)"
        );
        return;
    };
    let Some(db) = common::TestDatabase::create("replication") else {
        return;
    };
    let mut primary = db.connect();
    primary
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 20000) g;",
        )
        .unwrap();
    // The standby replays the new database too; connect once it has.
    let mut standby_config: postgres::Config = standby_url.parse().unwrap();
    standby_config.dbname(&db.name);
    let mut standby = None;
    let mut last_error = String::new();
    let connected = wait_until(Duration::from_secs(60), || {
        match standby_config.connect(NoTls) {
            Ok(client) => {
                standby = Some(client);
                true
            }
            Err(e) => {
                last_error = e.to_string();
                false
            }
        }
    });
    let Some(mut standby) = standby.filter(|_| connected) else {
        panic!("the standby did not get the test database within 60 s: {last_error}");
    };
    assert!(
        wait_until(Duration::from_secs(60), || {
            standby
                .query_one("SELECT count(*) FROM t", &[])
                .is_ok_and(|r| r.get::<_, i64>(0) == 20000)
        }),
        "the standby did not replay the table within 60 s"
    );
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_fill.sql"), "UPDATE t SET n = 1;\n").unwrap();
    // About ten seconds of work at 2,000 rows per second; the bound is one second.
    let mut zdm = Command::new(assert_cmd::cargo::cargo_bin("zdm"))
        .args([
            "expand",
            "--database-url",
            &db.url_of_database(),
            "--max-replication-lag",
            "1000",
            "--max-rows-per-second",
            "2000",
            "--batch-size",
            "200",
            "--max-batch-size",
            "200",
        ])
        .arg(dir.path())
        .env("ZDM_LOG", "zdm=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Replay is paused: the backfill gets about a second ahead of the standby, then holds.
    std::thread::sleep(Duration::from_secs(4));
    let held = rows_done(&mut primary);
    std::thread::sleep(Duration::from_secs(3));
    let still = rows_done(&mut primary);
    assert!(
        held < 20000 && still == held,
        "the backfill should hold while replay is paused: {held} rows, then {still}"
    );
    assert!(zdm.try_wait().unwrap().is_none(), "zdm is still waiting");

    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = zdm.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "zdm did not finish after replay resumed"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = zdm.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "zdm expand failed: {stderr}");
    assert!(
        stderr.contains("replication lag") && stderr.contains("waiting"),
        "the wait is logged: {stderr}"
    );
    let filled: i64 = primary
        .query_one("SELECT count(*) FROM t WHERE n = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(filled, 20000);
}
