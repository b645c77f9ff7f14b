//! Stopping `zdm expand` the hard way and the polite way, through the real binary: SIGTERM
//! mid-backfill (stops after the batch, exit 130), SIGKILL mid-backfill, SIGKILL while a
//! CREATE INDEX CONCURRENTLY waits. Each time the next `zdm expand` finishes the job, and no
//! row is lost or left out of sync while the old application keeps writing. And the default
//! backfill beside that application: gentle, and complete.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn zdm(url: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zdm"));
    cmd.arg("expand")
        .args(args)
        .arg(dir)
        .env("DATABASE_URL", url)
        .env_remove("ZDM_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `zdm expand` to the end, retrying while the session of a killed runner still holds
/// the runner lock (it ends when the server notices the client is gone).
fn expand_to_the_end(url: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = zdm(url, dir, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return;
        }
        assert!(
            stderr.contains("another zdm runner") && Instant::now() < deadline,
            "zdm expand failed: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn poll(client: &mut postgres::Client, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.query_one(sql, &[]).unwrap().get::<_, bool>(0) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn setup(db: &common::TestDatabase, dir: &Path, url: &str, rows: i64) {
    std::fs::write(
        dir.join("0001_items.sql"),
        "CREATE TABLE items (id bigint PRIMARY KEY, label text NOT NULL, qty int NOT NULL DEFAULT 0);",
    )
    .unwrap();
    expand_to_the_end(url, dir);
    let out = zdm(url, dir, &[]).arg("--help").output().unwrap();
    assert!(out.status.success());
    let mut c = db.connect();
    c.batch_execute(&format!(
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {rows}) g"
    ))
    .unwrap();
}

/// The old application: updates and inserts until stopped.
fn old_app(db: &common::TestDatabase, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut c = db.connect();
    std::thread::spawn(move || {
        let mut n = 0u64;
        let mut next_id = 10_000_000i64;
        while !stop.load(Ordering::SeqCst) {
            let id = 1 + (n as i64 * 7919) % 50_000;
            c.execute(
                "UPDATE items SET label = 'edited ' || $1::bigint WHERE id = $2",
                &[&(n as i64), &id],
            )
            .unwrap();
            c.execute(
                "INSERT INTO items (id, label) VALUES ($1::bigint, 'late ' || $1::bigint::text)",
                &[&next_id],
            )
            .unwrap();
            next_id += 1;
            n += 2;
        }
        n
    })
}

#[test]
fn killed_and_stopped_backfills_resume_without_losing_rows() {
    let Some(db) = common::TestDatabase::create("crash_backfill") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    setup(&db, dir.path(), &url, 50_000);
    std::fs::write(
        dir.path().join("0002_rename.sql"),
        "ALTER TABLE items RENAME COLUMN label TO title;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let app = old_app(&db, stop.clone());
    let mut c = db.connect();
    let slow = [
        "--batch-size",
        "200",
        "--batch-time",
        "0",
        "--batch-pause",
        "5",
    ];
    let rows_done = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT coalesce(max(rows_done), 0) FROM zdm.steps WHERE step_id = 'backfill-1'",
            &[],
        )
        .unwrap()
        .get(0)
    };

    // SIGTERM mid-backfill: the batch in flight commits, the process exits 130, nothing failed.
    let child = zdm(&url, dir.path(), &slow).spawn().unwrap();
    poll(
        &mut c,
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'zdm' AND tablename = 'steps') AND EXISTS (SELECT 1 FROM zdm.steps WHERE step_id = 'backfill-1' AND rows_done > 1000)",
        "the backfill to start",
    );
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped on request"), "{stderr}");
    let status: String = c
        .query_one(
            "SELECT status FROM zdm.migrations WHERE id = '0002_rename'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "expanding");
    let after_term = rows_done(&mut c);

    // SIGKILL mid-backfill, twice: each run goes on from the saved cursor.
    for _ in 0..2 {
        let before = rows_done(&mut c);
        let mut child = zdm(&url, dir.path(), &slow).spawn().unwrap();
        poll(
            &mut c,
            &format!(
                "SELECT rows_done > {} FROM zdm.steps WHERE step_id = 'backfill-1'",
                before + 1000
            ),
            "the backfill to go on",
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(rows_done(&mut c) > after_term);
    expand_to_the_end(&url, dir.path());
    stop.store(true, Ordering::SeqCst);
    let writes = app.join().unwrap();
    assert!(
        writes > 100,
        "the old application wrote only {writes} times"
    );

    let (status, out_of_sync, total): (String, i64, i64) = {
        let s = c
            .query_one(
                "SELECT status FROM zdm.migrations WHERE id = '0002_rename'",
                &[],
            )
            .unwrap()
            .get(0);
        let r = c
            .query_one(
                "SELECT count(*) FILTER (WHERE title IS DISTINCT FROM label), count(*) FROM items",
                &[],
            )
            .unwrap();
        (s, r.get(0), r.get(1))
    };
    assert_eq!(status, "expanded");
    assert_eq!(
        out_of_sync, 0,
        "rows out of sync after the resumed backfill"
    );
    assert_eq!(total, 50_000 + (writes / 2) as i64, "rows lost");
    // A stopped or killed backfill resumes: it never starts over, so the rows it updated add up
    // to the table, plus the rows the old application updated ahead of the cursor (the first
    // copy updates every row in range without comparing; half the writes are updates: about
    // 1,000 in a run here). Starting over after the last kill would add the 3,000 rows or more
    // done before it.
    let done = rows_done(&mut c);
    assert!(
        done <= 50_000 + (writes / 2) as i64,
        "{done} rows backfilled, {writes} writes"
    );
}

/// Rows a backfill step has updated, over its slices when it was cut into slices.
fn backfilled(c: &mut postgres::Client, step: &str) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(rows_done), 0)::bigint FROM zdm.steps WHERE step_id = $1 OR step_id LIKE $1 || '#%'",
        &[&step],
    )
    .unwrap()
    .get(0)
}

/// Three workers, each on its own slice of the key range with its own cursor, killed twice
/// mid-backfill while the old application writes: every slice resumes where its last batch
/// committed, and the table ends complete with no row updated twice by the backfill.
#[test]
fn killed_parallel_backfills_resume_every_slice_exactly() {
    let Some(db) = common::TestDatabase::create("crash_parallel") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    setup(&db, dir.path(), &url, 200_000);
    std::fs::write(
        dir.path().join("0002_rename.sql"),
        "ALTER TABLE items RENAME COLUMN label TO title;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let app = old_app(&db, stop.clone());
    let mut c = db.connect();
    let parallel = [
        "--backfill-workers",
        "3",
        "--batch-size",
        "100",
        "--batch-time",
        "0",
    ];
    for _ in 0..2 {
        let before = backfilled(&mut c, "backfill-1");
        let mut child = zdm(&url, dir.path(), &parallel).spawn().unwrap();
        poll(
            &mut c,
            &format!(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'zdm' AND tablename = 'steps') \
                 AND (SELECT coalesce(sum(rows_done), 0) FROM zdm.steps WHERE step_id LIKE 'backfill-1#%') > {}",
                before + 5000
            ),
            "the workers to go on",
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let slices: i64 = c
        .query_one(
            "SELECT count(*) FROM zdm.steps WHERE step_id LIKE 'backfill-1#%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(slices >= 3, "the table was cut into {slices} slices");
    expand_to_the_end(&url, dir.path());
    stop.store(true, Ordering::SeqCst);
    let writes = app.join().unwrap();
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE title IS DISTINCT FROM label), count(*) FROM items",
            &[],
        )
        .unwrap();
    let (out_of_sync, total): (i64, i64) = (r.get(0), r.get(1));
    assert_eq!(
        out_of_sync, 0,
        "rows out of sync after the resumed backfill"
    );
    assert_eq!(total, 200_000 + (writes / 2) as i64, "rows lost");
    // Resumed slices never start over: the rows the backfill updated add up to at most the
    // table as it was, plus the rows the application updated ahead of a cursor (the first copy
    // updates every row in range without comparing; half the writes are updates: about 1,400
    // in a run here). Starting over after the second kill would add the 10,000 rows done
    // before it.
    let done = backfilled(&mut c, "backfill-1");
    assert!(
        done <= 200_000 + (writes / 2) as i64,
        "{done} rows backfilled, {writes} writes"
    );
    assert!(done > 150_000, "{done} rows backfilled");
}

/// The default backfill while the old application writes: zdm sees the other session and
/// runs gentle batches (one worker, short batches that wait for their own WAL flush, so the
/// application's commits do not flush them), and no row is lost or left out of sync.
#[test]
fn the_default_backfill_turns_gentle_while_the_application_writes() {
    let Some(db) = common::TestDatabase::create("gentle_backfill") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    setup(&db, dir.path(), &url, 120_000);
    std::fs::write(
        dir.path().join("0002_rename.sql"),
        "ALTER TABLE items RENAME COLUMN label TO title;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let app = old_app(&db, stop.clone());
    let out = zdm(&url, dir.path(), &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "zdm expand failed: {stderr}");
    assert!(
        stderr.contains(
            "other sessions are working: backfill batches of \"items\" take at most 2 ms"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("workers=1"), "{stderr}");
    stop.store(true, Ordering::SeqCst);
    let writes = app.join().unwrap();
    let mut c = db.connect();
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE title IS DISTINCT FROM label), count(*) FROM items",
            &[],
        )
        .unwrap();
    let (out_of_sync, total): (i64, i64) = (r.get(0), r.get(1));
    assert_eq!(out_of_sync, 0, "rows out of sync after the gentle backfill");
    assert_eq!(total, 120_000 + (writes / 2) as i64, "rows lost");
}

#[test]
fn killed_during_create_index_concurrently_rebuilds_the_invalid_index() {
    let Some(db) = common::TestDatabase::create("crash_index") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    setup(&db, dir.path(), &url, 20_000);
    std::fs::write(
        dir.path().join("0002_index.sql"),
        "CREATE INDEX items_label_idx ON items (label);",
    )
    .unwrap();
    let mut c = db.connect();
    let major: i32 = c
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .unwrap()
        .get(0);
    // An open transaction with a snapshot: CREATE INDEX CONCURRENTLY waits for it to end.
    let mut blocker = db.connect();
    blocker
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM items")
        .unwrap();
    let mut child = zdm(&url, dir.path(), &["--lock-timeout", "60000"])
        .spawn()
        .unwrap();
    poll(
        &mut c,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'zdm runner' AND wait_event_type = 'Lock' AND query LIKE 'CREATE INDEX CONCURRENTLY%')",
        "the index build to wait",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    if major >= 14 {
        // client_connection_check_interval: the server cancels the orphaned build.
        poll(
            &mut c,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'zdm runner')",
            "the killed runner's session to end",
        );
        let valid: bool = c
            .query_one(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_label_idx'::regclass",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(!valid, "the interrupted build leaves an INVALID index");
    }
    blocker.batch_execute("COMMIT").unwrap();
    expand_to_the_end(&url, dir.path());
    let (valid, indexes): (bool, i64) = {
        let r = c
            .query_one(
                "SELECT bool_and(indisvalid), count(*) FROM pg_index WHERE indrelid = 'items'::regclass AND indexrelid <> 'items_pkey'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(valid, "the index was rebuilt valid");
    assert_eq!(indexes, 1, "exactly one index, no leftover");
    let status: String = c
        .query_one(
            "SELECT status FROM zdm.migrations WHERE id = '0002_index'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "expanded");
}

/// Every wait ends on a signal: SIGTERM during a ten-minute `--batch-pause` stops the run
/// within a moment, and `--lock-timeout 0` (wait forever) is refused before anything runs.
#[test]
fn waits_are_bounded_and_end_on_a_signal() {
    let Some(db) = common::TestDatabase::create("crash_sleep") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    setup(&db, dir.path(), &url, 5_000);
    std::fs::write(
        dir.path().join("0002_rename.sql"),
        "ALTER TABLE items RENAME COLUMN label TO title;",
    )
    .unwrap();
    let refused = zdm(&url, dir.path(), &["--lock-timeout", "0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--lock-timeout"));

    let mut c = db.connect();
    let long_pause = [
        "--batch-size",
        "100",
        "--batch-time",
        "0",
        "--batch-pause",
        "600000",
    ];
    let child = zdm(&url, dir.path(), &long_pause).spawn().unwrap();
    poll(
        &mut c,
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'zdm' AND tablename = 'steps') AND EXISTS (SELECT 1 FROM zdm.steps WHERE step_id = 'backfill-1' AND rows_done > 0)",
        "the first batch",
    );
    let began = Instant::now();
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "stopped only after {:?}",
        began.elapsed()
    );
    expand_to_the_end(&url, dir.path());
}

fn migration_status(c: &mut postgres::Client, id: &str) -> String {
    c.query_one("SELECT status FROM zdm.migrations WHERE id = $1", &[&id])
        .unwrap()
        .get(0)
}

fn run(url: &str, dir: &Path, command: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zdm"));
    c.arg(command)
        .args(args)
        .arg(dir)
        .env("DATABASE_URL", url)
        .env_remove("ZDM_CONFIG");
    c.output().unwrap()
}

/// An abort killed half-way leaves the migration aborting: expand refuses it (its steps are
/// still marked done, so it would record an expand that is not there), and abort finishes.
#[test]
fn an_interrupted_abort_resumes_as_an_abort() {
    let Some(db) = common::TestDatabase::create("crash_abort") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    setup(&db, dir.path(), &url, 1_000);
    assert!(run(&url, dir.path(), "contract", &[]).status.success());
    std::fs::write(
        dir.path().join("0002_rename.sql"),
        "ALTER TABLE items RENAME COLUMN label TO title;",
    )
    .unwrap();
    expand_to_the_end(&url, dir.path());
    let mut c = db.connect();
    let mut blocker = db.connect();
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM items")
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args(["abort", "--lock-timeout", "50", "--max-attempts", "1000"])
        .arg(dir.path())
        .env("DATABASE_URL", &url)
        .env_remove("ZDM_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll(
        &mut c,
        "SELECT status = 'aborting' FROM zdm.migrations WHERE id = '0002_rename'",
        "the abort to start",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    blocker.batch_execute("COMMIT").unwrap();
    // The killed runner's session may hold the runner lock a moment longer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = run(&url, dir.path(), "expand", &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !stderr.contains("another zdm runner") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expand ran: {stderr}");
    assert!(stderr.contains("zdm abort"), "{stderr}");
    assert_eq!(migration_status(&mut c, "0002_rename"), "aborting");
    let out = run(&url, dir.path(), "abort", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(migration_status(&mut c, "0002_rename"), "aborted");
    expand_to_the_end(&url, dir.path());
    assert_eq!(migration_status(&mut c, "0002_rename"), "expanded");
    let (out_of_sync, rows): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*) FILTER (WHERE title IS DISTINCT FROM label), count(*) FROM items",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((out_of_sync, rows), (0, 1_000));
}

/// An UPDATE whose new values read the old ones must never run twice over a row: stopped
/// half-way and aborted (abort cannot undo it, and says so), it is not expanded again unless
/// the user says `--rerun-backfill`.
#[test]
fn a_started_update_is_not_run_again_from_the_start() {
    let Some(db) = common::TestDatabase::create("crash_rerun") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_acct.sql"),
        "CREATE TABLE acct (id int PRIMARY KEY, bal int);",
    )
    .unwrap();
    expand_to_the_end(&url, dir.path());
    assert!(run(&url, dir.path(), "contract", &[]).status.success());
    let mut c = db.connect();
    c.batch_execute("INSERT INTO acct SELECT g, g FROM generate_series(1, 5000) g")
        .unwrap();
    std::fs::write(
        dir.path().join("0002_double.sql"),
        "UPDATE acct SET bal = bal * 2 WHERE bal > 0;",
    )
    .unwrap();
    let slow = [
        "--batch-size",
        "100",
        "--batch-time",
        "0",
        "--batch-pause",
        "100",
    ];
    let child = zdm(&url, dir.path(), &slow).spawn().unwrap();
    poll(
        &mut c,
        "SELECT EXISTS (SELECT 1 FROM zdm.steps WHERE step_id = 'backfill-1' AND rows_done >= 300)",
        "the backfill to start",
    );
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let doubled: i64 = c
        .query_one("SELECT count(*) FROM acct WHERE bal = 2 * id", &[])
        .unwrap()
        .get(0);
    assert!((300..5000).contains(&doubled), "{doubled}");

    let out = run(&url, dir.path(), "abort", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot undo"), "{stderr}");
    assert!(stderr.contains(&format!("{doubled} rows")), "{stderr}");

    let out = run(&url, dir.path(), "expand", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expand ran again: {stderr}");
    assert!(stderr.contains("--rerun-backfill"), "{stderr}");
    let four_times: i64 = c
        .query_one("SELECT count(*) FROM acct WHERE bal = 4 * id", &[])
        .unwrap()
        .get(0);
    assert_eq!(four_times, 0);

    // Told so, it runs; the user accepted that the first rows are doubled twice.
    let out = run(&url, dir.path(), "expand", &["--rerun-backfill"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let four_times: i64 = c
        .query_one("SELECT count(*) FROM acct WHERE bal = 4 * id", &[])
        .unwrap()
        .get(0);
    assert_eq!(four_times, doubled);
}
