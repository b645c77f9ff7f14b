//! The executor commands as CI stages call them, on `migrations-example/`: expand, the deploy
//! gate, contract, until everything is done. Needs DATABASE_URL (scripts/test provides it).

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

fn zdm(url: &str) -> Command {
    let mut cmd = Command::cargo_bin("zdm").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", url)
        .env_remove("ZDM_CONFIG");
    cmd
}

#[test]
fn expand_gate_contract_on_the_example() {
    let Some(db) = common::TestDatabase::create("cli_run") else {
        return;
    };
    let url = db.url_of_database();
    let dir = "migrations-example";
    zdm(&url)
        .args(["status", "--check", dir])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("0001_create_users").and(predicate::str::contains("pending")),
        );
    // 0005 changes orders, whose 0004 contract is still to run: expand stops there and says so.
    zdm(&url)
        .args(["expand", dir])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "needs the contract of 0004_orders_amount_bigint",
        ));
    zdm(&url).args(["contract", dir]).assert().code(0);
    zdm(&url).args(["expand", dir]).assert().code(0);
    zdm(&url).args(["status", "--check", dir]).assert().code(1);
    zdm(&url).args(["contract", dir]).assert().code(0);
    let out = zdm(&url)
        .args(["status", "--format", "json", "--check", dir])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 11);
    assert!(v.as_array().unwrap().iter().all(|m| m["status"] == "done"));
    zdm(&url)
        .args(["expand", dir])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("nothing to expand"));
}

/// A database whose tables no migration created (zdm adopted on an existing schema): pending
/// migrations are planned against the live catalog, so the backfill finds the primary key.
#[test]
fn pending_migrations_are_planned_against_the_live_schema() {
    let Some(db) = common::TestDatabase::create("cli_run_live") else {
        return;
    };
    let url = db.url_of_database();
    db.connect()
        .batch_execute(
            "CREATE TABLE people (pid bigint PRIMARY KEY, full_name text);
             INSERT INTO people SELECT g, 'p' || g FROM generate_series(1, 500) g;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_rename.sql"),
        "ALTER TABLE people RENAME COLUMN full_name TO display_name;",
    )
    .unwrap();
    // Offline, zdm cannot know the key.
    zdm(&url)
        .arg("plan")
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("zdm does not know"));
    zdm(&url).arg("expand").arg(dir.path()).assert().code(0);
    zdm(&url).arg("contract").arg(dir.path()).assert().code(0);
    let n: i64 = db
        .connect()
        .query_one(
            "SELECT count(*) FROM people WHERE display_name = 'p' || pid",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
}

/// Nothing of a migration runs when any statement of it cannot be planned, and an applied
/// migration whose file changed stops every command before it runs anything.
#[test]
fn unplannable_and_edited_migrations_run_nothing() {
    let Some(db) = common::TestDatabase::create("cli_run_refusals") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id int PRIMARY KEY, a int);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_bad.sql"),
        "ALTER TABLE t ADD COLUMN b int;\nALTER TABLE t ADD COLUMN c int;\nALTER TABLE t SET TABLESPACE somewhere_else;",
    )
    .unwrap();
    zdm(&url)
        .arg("expand")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("0002_bad.sql:3"));
    let mut c = db.connect();
    let tables: i64 = c
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 't'", &[])
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "nothing ran, not even the plannable 0001");

    std::fs::remove_file(dir.path().join("0002_bad.sql")).unwrap();
    zdm(&url).arg("expand").arg(dir.path()).assert().code(0);
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id int PRIMARY KEY, a int, z int);",
    )
    .unwrap();
    for command in ["expand", "contract", "status"] {
        let code = if command == "status" { 0 } else { 2 };
        let assert = zdm(&url).arg(command).arg(dir.path()).assert().code(code);
        if command == "status" {
            assert.stdout(predicate::str::contains(
                "file changed after it was applied",
            ));
        } else {
            assert.stderr(predicate::str::contains(
                "0001_t.sql: the migration changed",
            ));
        }
    }
    zdm(&url)
        .args(["status", "--check"])
        .arg(dir.path())
        .assert()
        .code(1);
}

/// Flyway's repeatable migrations (`R__`) run after the versioned ones and again whenever their
/// text changes; an edited versioned migration is still refused.
#[test]
fn flyway_repeatables_run_again_when_changed() {
    let Some(db) = common::TestDatabase::create("cli_repeatable") else {
        return;
    };
    let url = db.url_of_database();
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("src/main/resources/db/migration");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(project.path().join("pom.xml"), "<project/>").unwrap();
    std::fs::write(
        dir.join("V1__orders.sql"),
        "CREATE TABLE orders (id bigint PRIMARY KEY, cents int);\nINSERT INTO orders VALUES (1, 250);\n",
    )
    .unwrap();
    let view = dir.join("R__order_view.sql");
    std::fs::write(
        &view,
        "CREATE OR REPLACE VIEW order_view AS SELECT id FROM orders;\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = zdm(&url);
        cmd.args(args).arg(&dir);
        cmd.assert()
    };
    run(&["expand"]).code(0);
    run(&["contract"]).code(0);
    run(&["status", "--check"]).code(0);

    std::fs::write(
        &view,
        "CREATE OR REPLACE VIEW order_view AS SELECT id, cents / 100.0 AS amount FROM orders;\n",
    )
    .unwrap();
    run(&["status", "--check"])
        .code(1)
        .stdout(predicate::str::contains("pending"));
    run(&["expand"])
        .code(0)
        .stdout(predicate::str::contains("R__order_view"));
    run(&["contract"]).code(0);
    run(&["status", "--check"]).code(0);
    let mut client = db.connect();
    let amount: String = client
        .query_one("SELECT amount::text FROM order_view WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(amount, "2.5000000000000000");

    std::fs::write(
        dir.join("V1__orders.sql"),
        "CREATE TABLE orders (id bigint PRIMARY KEY);\n",
    )
    .unwrap();
    run(&["expand"]).code(2).stderr(predicate::str::contains(
        "V1__orders.sql: the migration changed",
    ));
}
