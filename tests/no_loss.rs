//! Nothing lost, whatever the application does meanwhile: writers that move rows behind the
//! backfill's cursor, user triggers that set the migrated column, a backfill whose record says
//! done when it is not. Each case runs `zdm expand` and `zdm contract` through the binary
//! against a real server and checks every row afterwards.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use common::{ok, zdm};

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

/// A keyless `logs (a int, b text)` with `rows` rows (contracted), then `migration` expanded
/// gently while a writer updates `b` of random rows, which moves them to new pages; then
/// contract.
fn logs_migrated_under_writers(db: &common::TestDatabase, dir: &Path, rows: i64, migration: &str) {
    let url = db.url_of_database();
    std::fs::write(
        dir.join("0001_logs.sql"),
        "CREATE TABLE logs (a int, b text);",
    )
    .unwrap();
    ok(zdm(&url, dir, &["expand"]), "expand 0001");
    ok(zdm(&url, dir, &["contract"]), "contract 0001");
    db.connect()
        .batch_execute(&format!(
            "INSERT INTO logs SELECT g, 'row ' || g FROM generate_series(1, {rows}) g"
        ))
        .unwrap();
    std::fs::write(dir.join("0002_change.sql"), migration).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let app = writer(
        db,
        &stop,
        "UPDATE logs SET b = b || 'x' WHERE a = $1::bigint",
        rows,
    );
    let gentle = [
        "expand",
        "--max-rows-per-second",
        "4000",
        "--batch-size",
        "500",
    ];
    let expand = zdm(&url, dir, &gentle);
    stop.store(true, Ordering::SeqCst);
    let writes = app.join().unwrap();
    ok(expand, "expand 0002");
    ok(zdm(&url, dir, &["contract"]), "contract 0002");
    assert!(writes > 100, "the writer ran only {writes} updates");
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
    let dir = tempfile::tempdir().unwrap();
    let rows = 20_000;
    let widen = "ALTER TABLE logs ALTER COLUMN a TYPE bigint;";
    logs_migrated_under_writers(&db, dir.path(), rows, widen);
    let mut c = db.connect();
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

/// The first copy of a type change updates every row without comparing, except when a user
/// trigger would see it: an ENABLE ALWAYS trigger fires even under the replica role the copy
/// runs with, so a row the application already wrote through zdm's trigger must not be
/// updated again (its version would count a write nobody made).
#[test]
fn a_user_trigger_that_always_fires_sees_no_second_update() {
    let Some(db) = common::TestDatabase::create("noloss_always") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_docs.sql"),
        "CREATE TABLE docs (id int PRIMARY KEY, body text, n int, version int NOT NULL DEFAULT 0);
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END
$$;
CREATE TRIGGER bump BEFORE UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION bump();
ALTER TABLE docs ENABLE ALWAYS TRIGGER bump;",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0001");
    let rows = 4000;
    let mut c = db.connect();
    c.batch_execute(&format!(
        "INSERT INTO docs (id, body, n) SELECT g, 'doc', g FROM generate_series(1, {rows}) g"
    ))
    .unwrap();
    std::fs::write(
        dir.path().join("0002_widen.sql"),
        "ALTER TABLE docs ALTER COLUMN n TYPE bigint;",
    )
    .unwrap();
    let expand = Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args([
            "expand",
            "--max-rows-per-second",
            "2000",
            "--batch-size",
            "200",
        ])
        .arg(dir.path())
        .env("DATABASE_URL", &url)
        .env_remove("ZDM_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once zdm's trigger is there, the application writes the last row, which the backfill
    // (ascending keys, 2,000 rows a second) reaches about two seconds later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(
        &mut c,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'docs'::regclass AND tgname LIKE '~%'",
    ) == 0
    {
        assert!(std::time::Instant::now() < deadline, "no sync trigger");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    c.execute("UPDATE docs SET body = 'written' WHERE id = $1", &[&rows])
        .unwrap();
    ok(expand.wait_with_output().unwrap(), "expand 0002");
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0002");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM docs WHERE body = 'written'"),
        1
    );
    // Each row was updated once: by the backfill, or (the last) by the application.
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM docs WHERE version <> 1"),
        0,
        "a row was updated twice"
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

/// A folder of a tool zdm does not read yet, or a file of one it reads that uses what zdm
/// cannot follow, is refused before anything is read into a plan or run: a down section
/// would otherwise run forward, right after its up, or changes in another order.
#[test]
fn folders_of_other_tools_are_refused_never_run() {
    let Some(db) = common::TestDatabase::create("noloss_foreign") else {
        return;
    };
    let url = db.url_of_database();
    let projects: [(&str, &[(&str, &str)]); 4] = [
        (
            "goose",
            &[(
                "00001_users.sql",
                "-- +goose Up\n-- +goose ENVSUB ON\nCREATE TABLE users (id int);\n\n-- +goose Down\nDROP TABLE users;\n",
            )],
        ),
        (
            "Sqitch",
            &[
                (
                    "sqitch.plan",
                    "%project=app\n\nusers 2026-01-01T00:00:00Z A <a@b> # users\n@v1 2026-01-02T00:00:00Z A <a@b>\nusers [users@v1] 2026-01-03T00:00:00Z A <a@b> # reworked\n",
                ),
                ("deploy/users.sql", "CREATE TABLE users (id int);\n"),
                ("revert/users.sql", "DROP TABLE users;\n"),
            ],
        ),
        (
            "Liquibase",
            &[
                (
                    "changelog.xml",
                    "<databaseChangeLog>\n  <changeSet id=\"1\" author=\"a\">\n    <sqlFile path=\"0001_users.sql\" relativeToChangelogFile=\"true\"/>\n  </changeSet>\n  <changeSet id=\"2\" author=\"a\">\n    <createTable tableName=\"orders\"/>\n  </changeSet>\n</databaseChangeLog>\n",
                ),
                ("0001_users.sql", "CREATE TABLE users (id int);\n"),
            ],
        ),
        (
            "down section",
            &[(
                "0001_users.sql",
                "CREATE TABLE users (id int);\n-- down\nDROP TABLE users;\n",
            )],
        ),
    ];
    let mut c = db.connect();
    for (tool, files) in projects {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let target = if tool == "Sqitch" {
            dir.path().join("deploy")
        } else {
            dir.path().to_owned()
        };
        for command in ["expand", "plan", "lint"] {
            let out = zdm(&url, &target, &[command]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{tool}: {command} passed");
            assert!(stderr.contains(tool), "{tool}: {command}: {stderr}");
            assert!(stderr.contains("nothing was read or run"), "{stderr}");
        }
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'zdm'"
            ),
            0,
            "{tool}: zdm started a run"
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_tables WHERE tablename = 'users'"
            ),
            0
        );
    }
}

/// goose and Sqitch folders run forward only: goose's Down sections and Sqitch's revert
/// scripts are never run by expand, and Sqitch changes deploy in the plan's order, not the
/// scripts' name order.
#[test]
fn goose_and_sqitch_folders_run_forward_only_in_their_order() {
    let Some(db) = common::TestDatabase::create("noloss_goose_sqitch") else {
        return;
    };
    let url = db.url_of_database();
    let mut c = db.connect();
    let goose = tempfile::tempdir().unwrap();
    std::fs::write(
        goose.path().join("00001_users.sql"),
        "-- +goose Up\nCREATE TABLE users (id int);\n\n-- +goose Down\nDROP TABLE users;\n",
    )
    .unwrap();
    std::fs::write(
        goose.path().join("00002_users_name.sql"),
        "-- +goose Up\n-- +goose StatementBegin\nALTER TABLE users ADD COLUMN name text;\n-- +goose StatementEnd\n-- +goose Down\nALTER TABLE users DROP COLUMN name;\n",
    )
    .unwrap();
    common::ok(zdm(&url, goose.path(), &["expand"]), "goose expand");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
        ),
        2,
        "users (id, name) exists: no Down ran"
    );
    common::ok(zdm(&url, goose.path(), &["contract"]), "goose contract");

    let sqitch = tempfile::tempdir().unwrap();
    let files = [
        (
            "sqitch.plan",
            "%syntax-version=1.0.0\n%project=app\n\nzeta 2026-01-01T00:00:00Z A <a@b> # accounts\nalpha [zeta] 2026-01-02T00:00:00Z A <a@b> # a column\n",
        ),
        (
            "deploy/zeta.sql",
            "BEGIN;\nCREATE TABLE accounts (id int);\nCOMMIT;\n",
        ),
        ("revert/zeta.sql", "DROP TABLE accounts;\n"),
        ("verify/zeta.sql", "SELECT id FROM accounts WHERE false;\n"),
        (
            "deploy/alpha.sql",
            "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT;\n",
        ),
        (
            "revert/alpha.sql",
            "ALTER TABLE accounts DROP COLUMN note;\n",
        ),
    ];
    for (path, text) in files {
        let p = sqitch.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // By name, alpha would run first and fail on a table that does not exist yet.
    common::ok(zdm(&url, sqitch.path(), &["expand"]), "sqitch expand");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts'"
        ),
        2
    );
    let out = zdm(&url, &sqitch.path().join("deploy"), &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("zeta") && status.contains("alpha"),
        "{status}"
    );
}

/// A Liquibase changelog runs its changesets in the changelog's order, each a migration of
/// its own; `--rollback` lines and changesets for other databases never run forward.
#[test]
fn liquibase_changesets_run_forward_only_in_the_changelogs_order() {
    let Some(db) = common::TestDatabase::create("noloss_liquibase") else {
        return;
    };
    let url = db.url_of_database();
    let mut c = db.connect();
    let project = tempfile::tempdir().unwrap();
    let files = [
        (
            "db/changelog/db.changelog-master.yaml",
            "databaseChangeLog:\n  - include:\n      file: changes/z-accounts.sql\n      relativeToChangelogFile: true\n  - include:\n      file: db/changelog/changes/a-more.xml\n",
        ),
        (
            "db/changelog/changes/z-accounts.sql",
            "--liquibase formatted sql\n\n--changeset alice:1\nCREATE TABLE accounts (id int PRIMARY KEY);\n--rollback DROP TABLE accounts;\n\n--changeset alice:2 dbms:oracle\nDROP TABLE accounts;\n",
        ),
        (
            "db/changelog/changes/a-more.xml",
            "<databaseChangeLog>\n  <changeSet id=\"3\" author=\"bob\" runInTransaction=\"false\">\n    <sqlFile path=\"note.sql\" relativeToChangelogFile=\"true\"/>\n  </changeSet>\n</databaseChangeLog>\n",
        ),
        (
            "db/changelog/changes/note.sql",
            "ALTER TABLE accounts ADD COLUMN note text;\nINSERT INTO accounts VALUES (1, 'kept');\n",
        ),
    ];
    for (path, text) in files {
        let p = project.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let changelog = project.path().join("db/changelog");
    // By name, a-more.xml would run first and fail on a table that does not exist yet.
    common::ok(zdm(&url, &changelog, &["expand"]), "liquibase expand");
    common::ok(zdm(&url, &changelog, &["contract"]), "liquibase contract");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM accounts WHERE note = 'kept'"),
        1,
        "the table is there with its row: neither the rollback nor the oracle changeset ran"
    );
    let out = zdm(&url, &changelog, &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("alice:1") && status.contains("bob:3") && !status.contains("alice:2"),
        "{status}"
    );
    // Editing one changeset of a file leaves the others as they were applied.
    let accounts = project.path().join("db/changelog/changes/z-accounts.sql");
    let text = std::fs::read_to_string(&accounts).unwrap();
    std::fs::write(
        &accounts,
        format!("{text}\n--changeset alice:4\nCREATE INDEX accounts_note ON accounts (note);\n"),
    )
    .unwrap();
    common::ok(
        zdm(&url, &changelog, &["expand"]),
        "expand of a new changeset",
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'accounts_note'"
        ),
        1
    );
}

/// `BEGIN … COMMIT` in a migration means all or nothing: the block runs as one transaction,
/// so a failing second INSERT leaves no first row behind, and abort finds nothing changed.
#[test]
fn a_begin_commit_block_runs_as_one_transaction() {
    let Some(db) = common::TestDatabase::create("noloss_block") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id int PRIMARY KEY, note text);",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0001");
    std::fs::write(
        dir.path().join("0002_rows.sql"),
        "BEGIN;\nINSERT INTO t VALUES (1, 'first');\nINSERT INTO t VALUES (1, 'duplicate');\nCOMMIT;\n",
    )
    .unwrap();
    let out = zdm(&url, dir.path(), &["expand"]);
    assert!(!out.status.success());
    let mut c = db.connect();
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM t"),
        0,
        "the first INSERT committed alone"
    );
    ok(zdm(&url, dir.path(), &["abort"]), "abort 0002");
    assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 0);

    // Fixed, the block runs once, whole.
    std::fs::write(
        dir.path().join("0002_rows.sql"),
        "BEGIN;\nINSERT INTO t VALUES (1, 'first');\nINSERT INTO t VALUES (2, 'second');\nCOMMIT;\n",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0002");
    assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 2);

    // Row writes and a statement zdm runs in phases cannot share one transaction: refused.
    std::fs::write(
        dir.path().join("0003_mixed.sql"),
        "BEGIN;\nINSERT INTO t VALUES (3, 'third');\nCREATE INDEX t_note ON t (note);\nCOMMIT;\n",
    )
    .unwrap();
    let out = zdm(&url, dir.path(), &["plan"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("0003_mixed.sql:3") && all.contains("one transaction"),
        "{all}"
    );
}

/// A recorded plan edited in the state table is not run: a contract step rewritten by hand,
/// or one whose SQL was removed (it would run as an empty statement and be marked done).
#[test]
fn a_tampered_recorded_plan_is_refused() {
    let Some(db) = common::TestDatabase::create("noloss_tamper") else {
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
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0001");
    let mut c = db.connect();
    c.batch_execute("INSERT INTO acct SELECT g, g FROM generate_series(1, 100) g")
        .unwrap();
    std::fs::write(
        dir.path().join("0002_widen.sql"),
        "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;",
    )
    .unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0002");
    let original: String = c
        .query_one(
            "SELECT plan::text FROM zdm.migrations WHERE id = '0002_widen'",
            &[],
        )
        .unwrap()
        .get(0);
    for edit in [
        "jsonb_set(plan, '{contract,0,sql}', '\"\"')",
        "jsonb_set(plan, '{contract,0,sql}', '\"DELETE FROM acct\"')",
    ] {
        c.batch_execute(&format!(
            "UPDATE zdm.migrations SET plan = {edit} WHERE id = '0002_widen'"
        ))
        .unwrap();
        for command in ["contract", "abort"] {
            let out = zdm(&url, dir.path(), &[command]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{edit}: {command} ran: {stderr}");
            assert!(stderr.contains("cannot be trusted"), "{stderr}");
        }
        assert_eq!(count(&mut c, "SELECT count(*) FROM acct"), 100);
        c.execute(
            "UPDATE zdm.migrations SET plan = $1::text::jsonb WHERE id = '0002_widen'",
            &[&original],
        )
        .unwrap();
    }
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0002");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM acct WHERE bal = id"),
        100
    );
}

/// Migrations are known by content as well as by name: a renamed applied file is not applied
/// again, a missing one and an out-of-order new one are named (and `status --check` fails),
/// and two files that are one version are an error.
#[test]
fn migrations_are_known_by_content_not_only_by_name() {
    let Some(db) = common::TestDatabase::create("noloss_identity") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("0001_t.sql"), "CREATE TABLE t (id int PRIMARY KEY);").unwrap();
    std::fs::write(d.join("0003_rows.sql"), "INSERT INTO t VALUES (1);").unwrap();
    ok(zdm(&url, d, &["expand"]), "expand");
    ok(zdm(&url, d, &["contract"]), "contract");
    let mut c = db.connect();

    // Renamed: the same migration, not applied again (the INSERT would fail on the key).
    std::fs::rename(d.join("0003_rows.sql"), d.join("0003_first_row.sql")).unwrap();
    let out = zdm(&url, d, &["expand"]);
    ok(out, "expand after a rename");
    assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 1);
    ok(
        zdm(&url, d, &["status", "--check"]),
        "status after a rename",
    );

    // A new file numbered below an applied one: expand refuses unless told.
    std::fs::write(d.join("0002_late.sql"), "INSERT INTO t VALUES (2);").unwrap();
    let out = zdm(&url, d, &["expand"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("0002_late.sql") && stderr.contains("--out-of-order"),
        "{stderr}"
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 1);
    let out = zdm(&url, d, &["status", "--check"]);
    assert!(
        !out.status.success(),
        "status --check passed with an out-of-order file"
    );
    ok(
        zdm(&url, d, &["expand", "--out-of-order"]),
        "expand --out-of-order",
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 2);
    ok(zdm(&url, d, &["contract"]), "contract");

    // A file removed while its migration is expanded: contract refuses, status --check fails.
    std::fs::write(
        d.join("0004_col.sql"),
        "ALTER TABLE t RENAME COLUMN id TO key;",
    )
    .unwrap();
    ok(zdm(&url, d, &["expand"]), "expand 0004");
    let moved = dir.path().join("0004_col.sql.bak");
    std::fs::rename(d.join("0004_col.sql"), &moved).unwrap();
    let out = zdm(&url, d, &["contract"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("0004_col") && stderr.contains("gone"),
        "{stderr}"
    );
    let out = zdm(&url, d, &["status", "--check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0004_col"));
    std::fs::rename(&moved, d.join("0004_col.sql")).unwrap();
    ok(zdm(&url, d, &["contract"]), "contract 0004");

    // Two files of one version.
    std::fs::write(d.join("0005_y.sql"), "SELECT 1;").unwrap();
    std::fs::write(d.join("0005_y.up.sql"), "SELECT 2;").unwrap();
    let out = zdm(&url, d, &["expand"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("0005_y.sql") && stderr.contains("0005_y.up.sql"),
        "{stderr}"
    );
}

/// int → bigint on a serial primary key: planned offline from the files and live from the
/// database, the plans are the same; run, aborted, run again and contracted, the key keeps
/// its sequence (value and ownership) and inserts of both application versions keep working.
#[test]
fn a_serial_key_widens_end_to_end_and_live_plans_match_offline_ones() {
    let Some(db) = common::TestDatabase::create("noloss_serial") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("0001_orders.sql"),
        "CREATE TABLE orders (id serial PRIMARY KEY, note text);",
    )
    .unwrap();
    ok(zdm(&url, d, &["expand"]), "expand 0001");
    ok(zdm(&url, d, &["contract"]), "contract 0001");
    let mut c = db.connect();
    c.batch_execute("INSERT INTO orders (note) SELECT 'o' || g FROM generate_series(1, 2000) g")
        .unwrap();
    std::fs::write(
        d.join("0002_widen.sql"),
        "ALTER TABLE orders ALTER COLUMN id TYPE bigint;",
    )
    .unwrap();

    let plan_of = |args: &[&str]| -> serde_json::Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zdm"));
        cmd.args(["plan", "--format", "json"]).args(args).arg(d);
        cmd.env_remove("DATABASE_URL").env_remove("ZDM_CONFIG");
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut plan = all["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "0002_widen")
            .unwrap()
            .clone();
        without_estimates(&mut plan);
        plan
    };
    // The same steps; only the live plan has estimates.
    assert_eq!(plan_of(&[]), plan_of(&["--database-url", &url]));

    ok(zdm(&url, d, &["expand"]), "expand 0002");
    c.batch_execute("INSERT INTO orders (note) VALUES ('old app, expanded')")
        .unwrap();
    let out = zdm(&url, d, &["abort"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ok(out, "abort 0002");
    assert!(stdout.contains("0002_widen: aborted"), "{stdout}");
    ok(zdm(&url, d, &["expand"]), "expand 0002 again");
    c.batch_execute("INSERT INTO orders (note) VALUES ('old app, expanded again')")
        .unwrap();
    ok(zdm(&url, d, &["contract"]), "contract 0002");
    let id: i64 = c
        .query_one(
            "INSERT INTO orders (note) VALUES ('new app') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(id, 2003);
    assert_eq!(count(&mut c, "SELECT count(DISTINCT id) FROM orders"), 2003);
    let owner: Option<String> = c
        .query_one("SELECT pg_get_serial_sequence('orders', 'id')", &[])
        .unwrap()
        .get(0);
    assert_eq!(owner.as_deref(), Some("public.orders_id_seq"));
    let primary: i64 = count(
        &mut c,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'p' AND conname = 'orders_pkey'",
    );
    assert_eq!(primary, 1);
}

/// What was created on a column after the plan (an index, a CHECK) would be dropped with it by
/// the swap without a word: contract stops before, naming them, and changes nothing.
#[test]
fn contract_never_drops_what_it_does_not_rebuild() {
    let Some(db) = common::TestDatabase::create("noloss_dependents") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("0001_t.sql"),
        "CREATE TABLE t (id int PRIMARY KEY, n int);\nCREATE TABLE u (id int PRIMARY KEY, label text);",
    )
    .unwrap();
    ok(zdm(&url, d, &["expand"]), "expand 0001");
    ok(zdm(&url, d, &["contract"]), "contract 0001");
    let mut c = db.connect();
    c.batch_execute(
        "INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;
         INSERT INTO u SELECT g, 'l' || g FROM generate_series(1, 100) g",
    )
    .unwrap();
    std::fs::write(
        d.join("0002_widen.sql"),
        "ALTER TABLE t ALTER COLUMN n TYPE bigint;\n",
    )
    .unwrap();
    std::fs::write(
        d.join("0003_rename.sql"),
        "ALTER TABLE u RENAME COLUMN label TO title;\n",
    )
    .unwrap();
    ok(zdm(&url, d, &["expand"]), "expand");
    // Made by hand during the rollout, unknown to the plans.
    c.batch_execute(
        "CREATE UNIQUE INDEX t_n_positive ON t (n) WHERE n > 0;
         ALTER TABLE t ADD CONSTRAINT n_small CHECK (n < 1000000);
         CREATE INDEX t_title ON u (title);",
    )
    .unwrap();
    let out = zdm(&url, d, &["contract"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("t_n_positive") && stderr.contains("n_small"),
        "{stderr}"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('t_n_positive', 't_title')"
        ),
        2
    );
    c.batch_execute("DROP INDEX t_n_positive; ALTER TABLE t DROP CONSTRAINT n_small")
        .unwrap();
    let out = zdm(&url, d, &["contract"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("t_title"), "{stderr}");
    c.batch_execute("DROP INDEX t_title").unwrap();
    ok(zdm(&url, d, &["contract"]), "contract");
    assert_eq!(count(&mut c, "SELECT count(*) FROM t WHERE n = id"), 100);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM u WHERE title = 'l' || id"),
        100
    );
}

/// ADD COLUMN with a volatile default on a table walked by ctid: a row the old application
/// updates moves past the walk's end, and before the fill trigger covered UPDATEs it kept a
/// NULL that the statement as written would never leave.
#[test]
fn an_added_column_reaches_rows_moved_behind_the_walk() {
    let Some(db) = common::TestDatabase::create("noloss_addcol") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = 20_000;
    let tag = "ALTER TABLE logs ADD COLUMN tag uuid DEFAULT gen_random_uuid();";
    logs_migrated_under_writers(&db, dir.path(), rows, tag);
    let mut c = db.connect();
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM logs WHERE tag IS NULL"),
        0
    );
    assert_eq!(count(&mut c, "SELECT count(DISTINCT tag) FROM logs"), rows);
}

/// A plan's JSON without the estimate fields, which only a plan made against a database has.
fn without_estimates(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !k.starts_with("estimate") && k != "work");
            map.values_mut().for_each(without_estimates);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_estimates),
        _ => {}
    }
}
