//! Nothing lost, whatever the application does meanwhile: writers that move rows behind the
//! backfill's cursor, user triggers that set the migrated column, a backfill whose record says
//! done when it is not. Each case runs `zdm expand` and `zdm contract` through the binary
//! against a real server and checks every row afterwards.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

fn zdm(url: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args(args)
        .arg(dir)
        .env("DATABASE_URL", url)
        .env_remove("ZDM_CONFIG")
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {stderr}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A writer running `sql` with a pseudo-random `$1` in `1..=rows` until stopped; returns how
/// many statements it ran.
fn writer(
    db: &common::TestDatabase,
    stop: &Arc<AtomicBool>,
    sql: &'static str,
    rows: i64,
) -> JoinHandle<u64> {
    let mut c = db.connect();
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let pick = 1 + (n as i64 * 7919 + 13) % rows;
            c.execute(sql, &[&pick]).unwrap();
            n += 1;
        }
        n
    })
}

fn count(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// A table without a key is walked by ctid. An UPDATE that does not touch the migrated column
/// moves the row to a page past the walk's end (the table is full, so no HOT update): the
/// backfill never sees it, and before zdm's trigger fired on every write, contract swapped in
/// a NULL for each such row.
#[test]
fn rows_moved_behind_a_ctid_walk_are_not_lost() {
    let Some(db) = common::TestDatabase::create("noloss_ctid") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    let rows = 20_000;
    std::fs::write(
        dir.path().join("0001_logs.sql"),
        "CREATE TABLE logs (a int, b text);",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    let mut c = db.connect();
    c.batch_execute(&format!(
        "INSERT INTO logs SELECT g, 'row ' || g FROM generate_series(1, {rows}) g"
    ))
    .unwrap();
    std::fs::write(
        dir.path().join("0002_widen.sql"),
        "ALTER TABLE logs ALTER COLUMN a TYPE bigint;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let app = writer(
        &db,
        &stop,
        "UPDATE logs SET b = b || 'x' WHERE a = $1::bigint",
        rows,
    );
    let expand = zdm(
        &url,
        dir.path(),
        &[
            "expand",
            "--max-rows-per-second",
            "4000",
            "--batch-size",
            "500",
        ],
    );
    stop.store(true, Ordering::SeqCst);
    let writes = app.join().unwrap();
    ok(expand, "expand 0002");
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0002");
    assert!(writes > 100, "the writer ran only {writes} updates");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM logs WHERE a IS NULL"),
        0
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(DISTINCT a) FROM logs WHERE a BETWEEN 1 AND 20000"
        ),
        rows
    );
    let ty: String = c
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'logs'::regclass AND attname = 'a'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ty, "bigint");
}

/// The backfill walks `username`, the table's only unique key, which the application changes:
/// a row renamed to sort before the cursor is never visited. The trigger keeps it right
/// anyway, and contract's check finds nothing left to copy.
#[test]
fn rows_whose_key_changes_behind_the_cursor_are_not_lost() {
    let Some(db) = common::TestDatabase::create("noloss_key") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    let rows = 20_000;
    std::fs::write(
        dir.path().join("0001_users.sql"),
        "CREATE TABLE users (username text NOT NULL UNIQUE, n int);",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    let mut c = db.connect();
    c.batch_execute(&format!(
        "INSERT INTO users SELECT 'u' || lpad(g::text, 6, '0'), g FROM generate_series(1, {rows}) g"
    ))
    .unwrap();
    std::fs::write(
        dir.path().join("0002_widen.sql"),
        "ALTER TABLE users ALTER COLUMN n TYPE bigint;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Renamed to sort before every 'u…' name: behind the cursor, wherever it is.
    let app = writer(
        &db,
        &stop,
        "UPDATE users SET username = 'a' || username WHERE n = $1::bigint AND username LIKE 'u%'",
        rows,
    );
    let expand = zdm(
        &url,
        dir.path(),
        &[
            "expand",
            "--max-rows-per-second",
            "4000",
            "--batch-size",
            "500",
        ],
    );
    stop.store(true, Ordering::SeqCst);
    let writes = app.join().unwrap();
    ok(expand, "expand 0002");
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0002");
    assert!(writes > 100, "the writer ran only {writes} updates");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM users WHERE n IS NULL"),
        0
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM users WHERE n::text = substr(username, length(username) - 5)::int::text"
        ),
        rows
    );
}

/// A user BEFORE UPDATE trigger bumps a version column that a type change migrates. zdm's
/// trigger must copy the value the user's trigger set (so it fires after it), and the
/// backfill's own updates must not bump anything.
#[test]
fn user_triggers_fire_before_zdm_and_not_for_the_backfill() {
    let Some(db) = common::TestDatabase::create("noloss_trigger") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_docs.sql"),
        "CREATE TABLE docs (id int PRIMARY KEY, body text, version int NOT NULL DEFAULT 0);
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END
$$;
CREATE TRIGGER bump BEFORE UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION bump();",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    let mut c = db.connect();
    c.batch_execute("INSERT INTO docs (id, body) SELECT g, 'doc' FROM generate_series(1, 100) g")
        .unwrap();
    std::fs::write(
        dir.path().join("0002_widen.sql"),
        "ALTER TABLE docs ALTER COLUMN version TYPE bigint;",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0002");
    for _ in 0..4 {
        c.batch_execute("UPDATE docs SET body = body || '!' WHERE id = 7")
            .unwrap();
    }
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0002");
    assert_eq!(
        count(&mut c, "SELECT version::bigint FROM docs WHERE id = 7"),
        4,
        "the shadow copied the version before the user's trigger set it"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM docs WHERE id <> 7 AND version <> 0"
        ),
        0,
        "the backfill fired the user's trigger"
    );
}

/// A rename keeps both names equal during the rollout, whatever the user's triggers do.
#[test]
fn a_rename_stays_in_sync_with_a_user_trigger() {
    let Some(db) = common::TestDatabase::create("noloss_rename") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_docs.sql"),
        "CREATE TABLE docs (id int PRIMARY KEY, body text, version int NOT NULL DEFAULT 0);
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END
$$;
CREATE TRIGGER bump BEFORE UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION bump();",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    let mut c = db.connect();
    c.batch_execute("INSERT INTO docs (id, body) SELECT g, 'doc' FROM generate_series(1, 100) g")
        .unwrap();
    std::fs::write(
        dir.path().join("0002_rename.sql"),
        "ALTER TABLE docs RENAME COLUMN version TO revision;",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0002");
    for _ in 0..3 {
        c.batch_execute("UPDATE docs SET body = body || '!' WHERE id = 7")
            .unwrap();
    }
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM docs WHERE revision IS DISTINCT FROM version"
        ),
        0,
        "the two names disagree during the rollout"
    );
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0002");
    assert_eq!(
        count(&mut c, "SELECT revision::bigint FROM docs WHERE id = 7"),
        3
    );
}

/// The record says the backfill is done, but the shadow is not filled (a step marked done by
/// hand, a restored backup of the state): contract's check copies the values before the swap.
#[test]
fn contract_checks_the_copy_before_it_swaps() {
    let Some(db) = common::TestDatabase::create("noloss_check") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_acct.sql"),
        "CREATE TABLE acct (id int PRIMARY KEY, bal int);",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    let mut c = db.connect();
    c.batch_execute("INSERT INTO acct SELECT g, g FROM generate_series(1, 5000) g")
        .unwrap();
    std::fs::write(
        dir.path().join("0002_widen.sql"),
        "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0002");
    let shadow: String = c
        .query_one(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'acct'::regclass AND attname LIKE '\\_zdm\\_%' AND NOT attisdropped",
            &[],
        )
        .unwrap()
        .get(0);
    // The copy undone behind zdm's back: session_replication_role keeps the trigger out.
    c.batch_execute(&format!(
        "SET session_replication_role = replica; UPDATE acct SET \"{shadow}\" = NULL WHERE id % 3 = 0; RESET session_replication_role"
    ))
    .unwrap();
    let stderr = ok(zdm(&url, dir.path(), &["contract"]), "contract 0002");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM acct WHERE bal IS NULL"),
        0
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM acct WHERE bal = id"),
        5000
    );
    assert!(stderr.contains("1666 rows differed"), "{stderr}");
}

/// An expression with a typo fails before the migration's first step, naming the file and
/// line; no trigger is left behind to fail the application's writes.
#[test]
fn a_bad_expression_fails_before_anything_runs() {
    let Some(db) = common::TestDatabase::create("noloss_expr") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_users.sql"),
        "CREATE TABLE users (id int PRIMARY KEY, name text, nn int);",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    let mut c = db.connect();
    c.batch_execute("INSERT INTO users SELECT g, 'n' || g, g FROM generate_series(1, 10) g")
        .unwrap();
    let cases = [
        "-- a comment\n-- zdm:backfill lower(nmae)\nALTER TABLE users ADD COLUMN name_lower text NOT NULL;",
        "\n\nALTER TABLE users ALTER COLUMN nn TYPE bigint USING nnn::bigint;",
    ];
    for sql in cases {
        std::fs::write(dir.path().join("0002_bad.sql"), sql).unwrap();
        let out = zdm(&url, dir.path(), &["expand"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sql}: expand passed");
        assert!(stderr.contains("0002_bad.sql:3"), "{stderr}");
        assert!(stderr.contains("does not exist"), "{stderr}");
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass"
            ),
            0
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped"
            ),
            3,
            "{sql}: a step ran"
        );
        c.batch_execute("INSERT INTO users VALUES (100, 'x', 1); DELETE FROM users WHERE id = 100")
            .unwrap();
    }
}

/// A directive is pasted into a trigger and an UPDATE, so it must be one expression: text
/// that closes the expression and adds a statement is refused by plan and expand alike.
#[test]
fn a_directive_that_is_not_one_expression_is_refused() {
    let Some(db) = common::TestDatabase::create("noloss_inject") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE victim (id int);\nCREATE TABLE t (id int PRIMARY KEY, y int);",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    let mut c = db.connect();
    c.batch_execute("INSERT INTO victim VALUES (1); INSERT INTO t VALUES (1, 1)")
        .unwrap();
    std::fs::write(
        dir.path().join("0002_z.sql"),
        "-- zdm:backfill 0 FROM (SELECT NEW.*) AS q); DELETE FROM victim; NEW.z := (SELECT 0\nALTER TABLE t ADD COLUMN z int NOT NULL;",
    )
    .unwrap();
    for command in ["plan", "expand"] {
        let out = zdm(&url, dir.path(), &[command]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{command} passed: {all}");
        assert!(all.contains("not one SQL expression"), "{command}: {all}");
        assert!(all.contains("0002_z.sql"), "{command}: {all}");
    }
    c.batch_execute("INSERT INTO t VALUES (2, 2)").unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM victim"), 1);
}
