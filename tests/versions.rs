//! Behaviour that depends on the PostgreSQL major version, tested on the server the suite runs
//! against: `scripts/test` runs it on one version, `scripts/test-matrix` on 13 to 18. Each test
//! asks the server for its version, runs zdm the way a user does (`zdm plan --database-url`,
//! `zdm expand`), and checks in the database what that version must do:
//!
//! | behaviour | from | checked by |
//! |---|---|---|
//! | ADD COLUMN with a constant or stable default is a catalog change | 11 | the table keeps its file; the value is a "missing" attribute |
//! | SET NOT NULL proven by a validated CHECK skips its scan | 12 | the server's own DEBUG1 "sufficient to prove" message |
//! | NOT NULL constraints can be added NOT VALID, then validated | 18 | the plan's steps and the validated constraint left behind |
//! | DETACH PARTITION … CONCURRENTLY | 14 | it runs (it fails inside a transaction); before 14 it is refused before anything runs |
//! | views with `security_invoker` | 15 | row-level security applies through the rename-table view; a note before 15 |

mod common;

use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use postgres::{Client, NoTls};

fn server_major(client: &mut Client) -> u32 {
    client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .unwrap()
        .get::<_, i32>(0) as u32
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn zdm(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::cargo_bin("zdm")
        .unwrap()
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

fn expand(url: &str, dir: &std::path::Path) {
    let out = zdm(&["expand", "--database-url", url], dir);
    assert!(
        out.status.success(),
        "zdm expand: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `zdm plan --format json --database-url` for the migrations in `dir`: planned for the
/// server's version and its live schema.
fn live_plan(url: &str, dir: &std::path::Path) -> serde_json::Value {
    let out = zdm(&["plan", "--format", "json", "--database-url", url], dir);
    assert!(
        out.status.success(),
        "zdm plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn step_sql(migration: &serde_json::Value, phase: &str) -> Vec<String> {
    migration[phase]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sql"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn fast_defaults_leave_the_table_file_alone() {
    let Some(db) = common::TestDatabase::create("v_default") else {
        return;
    };
    let mut c = db.connect();
    c.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY);
         INSERT INTO t SELECT g FROM generate_series(1, 20000) g;",
    )
    .unwrap();
    let file = |c: &mut Client| -> u32 {
        c.query_one(
            "SELECT relfilenode FROM pg_class WHERE oid = 't'::regclass",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = file(&mut c);
    let dir = project(&[(
        "0001_defaults.sql",
        "SET lock_timeout = '2s';\n\
         ALTER TABLE t ADD COLUMN plan text NOT NULL DEFAULT 'free';\n\
         ALTER TABLE t ADD COLUMN added_at timestamptz DEFAULT now();\n",
    )]);
    let url = db.url_of_database();
    let plan = live_plan(&url, dir.path());
    let migration = &plan["migrations"][0];
    assert!(
        migration["backfill"].as_array().unwrap().is_empty(),
        "a constant or stable default needs no backfill: {migration:#}"
    );
    expand(&url, dir.path());
    assert_eq!(file(&mut c), before, "the table was not rewritten");
    let missing: Vec<String> = c
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 't'::regclass AND atthasmissing ORDER BY attnum",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        missing,
        ["plan", "added_at"],
        "both defaults live in the catalog"
    );
    let filled: i64 = c
        .query_one(
            "SELECT count(*) FROM t WHERE plan = 'free' AND added_at IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(filled, 20000);
}

#[test]
fn set_not_null_skips_its_scan() {
    let Some(db) = common::TestDatabase::create("v_notnull") else {
        return;
    };
    let mut c = db.connect();
    let version = server_major(&mut c);
    c.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, email text);
         INSERT INTO t SELECT g, 'u' || g FROM generate_series(1, 5000) g;",
    )
    .unwrap();
    let dir = project(&[(
        "0001_required.sql",
        "ALTER TABLE t ALTER COLUMN email SET NOT NULL;\n",
    )]);
    let url = db.url_of_database();
    let plan = live_plan(&url, dir.path());
    let steps = step_sql(&plan["migrations"][0], "expand");
    let joined = steps.join("\n");
    if version >= 18 {
        assert!(
            joined.contains("NOT NULL \"email\" NOT VALID") && !joined.contains("CHECK"),
            "PostgreSQL 18 adds the NOT NULL constraint NOT VALID itself: {joined}"
        );
    } else {
        assert!(
            joined.contains("CHECK (\"email\" IS NOT NULL) NOT VALID")
                && joined.contains("SET NOT NULL"),
            "12–17 prove NOT NULL with a validated check: {joined}"
        );
    }

    // Run the plan's steps as its SQL files would, in a session that receives the server's
    // DEBUG1 messages: the SET NOT NULL step must be proven by the check, not scan.
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    let mut config: postgres::Config = url.parse().unwrap();
    config.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_owned()));
    let mut session = config.connect(NoTls).unwrap();
    session
        .batch_execute("SET client_min_messages = debug1")
        .unwrap();
    for sql in &steps {
        session
            .batch_execute(&format!("BEGIN; {sql}; COMMIT"))
            .unwrap_or_else(|e| panic!("{sql}: {}", common::message(&e)));
    }
    let notices = notices.lock().unwrap().clone();
    if version < 18 {
        assert!(
            notices
                .iter()
                .any(|n| n.contains("sufficient to prove that it does not contain nulls")),
            "the server proved NOT NULL from the check instead of scanning: {notices:?}"
        );
    }
    let required: bool = c
        .query_one(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'email'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(required);
    let left: Vec<(String, String, bool)> = c
        .query(
            "SELECT conname::text, contype::text, convalidated FROM pg_constraint WHERE conrelid = 't'::regclass AND conname LIKE '\\_zdm\\_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    if version >= 18 {
        assert!(
            left.len() == 1 && left[0].1 == "n" && left[0].2,
            "a validated NOT NULL constraint: {left:?}"
        );
    } else {
        assert!(left.is_empty(), "the helper check is dropped: {left:?}");
    }

    // And zdm expand reaches the same end state on another column.
    c.batch_execute("ALTER TABLE t ADD COLUMN name text; UPDATE t SET name = 'n'")
        .unwrap();
    let dir = project(&[(
        "0001_name.sql",
        "ALTER TABLE t ALTER COLUMN name SET NOT NULL;\n",
    )]);
    expand(&url, dir.path());
    let inserted = c.execute("INSERT INTO t (id, email) VALUES (0, 'x')", &[]);
    assert!(
        inserted.is_err_and(|e| e.code() == Some(&postgres::error::SqlState::NOT_NULL_VIOLATION)),
        "name is NOT NULL after expand"
    );
}

#[test]
fn detach_partition_concurrently_from_14() {
    let Some(db) = common::TestDatabase::create("v_detach") else {
        return;
    };
    let mut c = db.connect();
    let version = server_major(&mut c);
    c.batch_execute(
        "CREATE TABLE events (id bigint, at date) PARTITION BY RANGE (at);
         CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
         CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         INSERT INTO events SELECT g, date '2023-01-01' + (g % 700) FROM generate_series(1, 5000) g;",
    )
    .unwrap();
    let dir = project(&[(
        "0001_archive.sql",
        "ALTER TABLE events DETACH PARTITION events_2023 CONCURRENTLY;\n",
    )]);
    let url = db.url_of_database();
    let attached = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass",
            &[],
        )
        .unwrap()
        .get(0)
    };
    if version >= 14 {
        let plan = live_plan(&url, dir.path());
        let step = &plan["migrations"][0]["expand"][0];
        assert_eq!(step["transaction"], false, "{step:#}");
        assert_eq!(step["lock"]["mode"], "SHARE UPDATE EXCLUSIVE", "{step:#}");
        // PostgreSQL refuses DETACH … CONCURRENTLY in a transaction block, so this only
        // succeeds because the step runs outside one.
        expand(&url, dir.path());
        assert_eq!(attached(&mut c), 1);
        let rows: i64 = c
            .query_one("SELECT count(*) FROM events_2023", &[])
            .unwrap()
            .get(0);
        assert!(rows > 0, "the detached partition keeps its rows");
    } else {
        let out = zdm(&["expand", "--database-url", &url], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("0001_archive.sql:1") && stderr.contains("needs PostgreSQL 14"),
            "{stderr}"
        );
        assert_eq!(attached(&mut c), 2, "nothing ran");
        let state: Option<String> = c
            .query_one("SELECT to_regclass('zdm.migrations')::text", &[])
            .unwrap()
            .get(0);
        if state.is_some() {
            let recorded: i64 = c
                .query_one("SELECT count(*) FROM zdm.migrations", &[])
                .unwrap()
                .get(0);
            assert_eq!(recorded, 0, "nothing was recorded as started");
        }
    }
}

#[test]
fn rename_table_view_keeps_row_level_security_from_15() {
    let Some(db) = common::TestDatabase::create("v_invoker") else {
        return;
    };
    let mut c = db.connect();
    let version = server_major(&mut c);
    let reader = format!("zdm_reader_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS {reader};
         CREATE ROLE {reader} NOLOGIN;
         CREATE TABLE docs (id bigint PRIMARY KEY, owner text NOT NULL);
         INSERT INTO docs SELECT g, CASE WHEN g % 4 = 0 THEN '{reader}' ELSE 'someone' END FROM generate_series(1, 400) g;
         ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own_docs ON docs USING (owner = current_user);
         GRANT SELECT, INSERT ON docs TO {reader};"
    ))
    .unwrap();
    let dir = project(&[("0001_rename.sql", "ALTER TABLE docs RENAME TO documents;\n")]);
    let url = db.url_of_database();
    let plan = live_plan(&url, dir.path());
    let notes = plan["migrations"][0]["notes"].to_string();
    let expand_sql = step_sql(&plan["migrations"][0], "expand").join("\n");
    if version >= 15 {
        assert!(
            expand_sql.contains("security_invoker = true"),
            "{expand_sql}"
        );
    } else {
        assert!(!expand_sql.contains("security_invoker"), "{expand_sql}");
        assert!(notes.contains("row-level security"), "{notes}");
    }
    expand(&url, dir.path());

    // The old application, as the reader role, still reads through the old name: the grants
    // were copied to the view.
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&format!("SET LOCAL ROLE {reader}"))
        .unwrap();
    let seen: i64 = tx
        .query_one("SELECT count(*) FROM docs", &[])
        .unwrap_or_else(|e| panic!("reading through the view: {}", common::message(&e)))
        .get(0);
    tx.rollback().unwrap();
    if version >= 15 {
        assert_eq!(seen, 100, "the policy applies through the view");
    } else {
        assert_eq!(
            seen, 400,
            "before 15 the view reads as its owner (the plan says so)"
        );
    }
    // The role's privileges go with the database's objects; then the role itself.
    c.batch_execute(&format!("DROP OWNED BY {reader}")).unwrap();
    drop(c);
    drop(db);
    let mut admin = Client::connect(&std::env::var("DATABASE_URL").unwrap(), NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {reader}"))
        .unwrap();
}
