//! Each migration tool's folder layout, on a small project written for the test: zdm finds
//! the forward migrations in the tool's order, reads the down ones as downs, and honours the
//! tool's own no-transaction marker (and only that tool's).
//!
//! Every project has the same history: create `t`; then, twice, add a CHECK NOT VALID and
//! validate it in the same file. Validating in the same transaction as the NOT VALID add keeps
//! the ACCESS EXCLUSIVE lock through the scan (rule `validate-in-same-transaction`), so it is
//! flagged unless the tool runs that file without a transaction. The first of the two is
//! marked no-transaction in the tool's own way; the second is not.

use assert_cmd::Command;

const CREATE: &str = "CREATE TABLE t (id bigint PRIMARY KEY, a int, b int);\n";
const DROP: &str = "DROP TABLE t;\n";

fn validate(column: &str) -> String {
    format!(
        "SET lock_timeout = '1s';\nALTER TABLE t ADD CONSTRAINT t_{column}_check CHECK ({column} > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT t_{column}_check;\n"
    )
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Project { dir }
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::cargo_bin("zdm")
            .unwrap()
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "zdm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The forward migrations in the order `zdm plan` runs them.
    fn planned(&self, dir: &str) -> Vec<String> {
        self.json(&["plan", "--format", "json", dir])["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["path"].as_str().unwrap().to_owned())
            .collect()
    }

    /// (rule, path) of every lint finding.
    fn findings(&self, dir: &str) -> Vec<(String, String)> {
        self.json(&["lint", "--format", "json", dir])["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_owned(),
                    f["path"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The files flagged for validating in the NOT VALID add's transaction.
    fn validated_in_transaction(&self, dir: &str) -> Vec<String> {
        self.findings(dir)
            .into_iter()
            .filter(|(rule, _)| rule == "validate-in-same-transaction")
            .map(|(_, path)| path)
            .collect()
    }

    fn flags_drop_in(&self, dir: &str, down: &str) {
        let findings = self.findings(dir);
        assert!(
            findings
                .iter()
                .any(|(rule, path)| rule == "drop-table" && path == down),
            "the down migration {down} is read and linted: {findings:?}"
        );
    }
}

fn strings(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[test]
fn sqlx() {
    let p = Project::new(&[
        ("migrations/20240101000001_t.up.sql", CREATE),
        ("migrations/20240101000001_t.down.sql", DROP),
        (
            "migrations/20240101000002_a.up.sql",
            &format!("-- no-transaction\n{}", validate("a")),
        ),
        ("migrations/20240101000003_b.up.sql", &validate("b")),
    ]);
    assert_eq!(
        p.planned("migrations"),
        strings(&[
            "migrations/20240101000001_t.up.sql",
            "migrations/20240101000002_a.up.sql",
            "migrations/20240101000003_b.up.sql",
        ])
    );
    assert_eq!(
        p.validated_in_transaction("migrations"),
        strings(&["migrations/20240101000003_b.up.sql"])
    );
    p.flags_drop_in("migrations", "migrations/20240101000001_t.down.sql");
}

#[test]
fn diesel() {
    let p = Project::new(&[
        ("migrations/2024-01-01-000001_t/up.sql", CREATE),
        ("migrations/2024-01-01-000001_t/down.sql", DROP),
        ("migrations/2024-01-01-000002_a/up.sql", &validate("a")),
        (
            "migrations/2024-01-01-000002_a/metadata.toml",
            "run_in_transaction = false\n",
        ),
        ("migrations/2024-01-01-000003_b/up.sql", &validate("b")),
        (
            "migrations/2024-01-01-000003_b/metadata.toml",
            "run_in_transaction = true\n",
        ),
    ]);
    assert_eq!(
        p.planned("migrations"),
        strings(&[
            "migrations/2024-01-01-000001_t/up.sql",
            "migrations/2024-01-01-000002_a/up.sql",
            "migrations/2024-01-01-000003_b/up.sql",
        ])
    );
    assert_eq!(
        p.validated_in_transaction("migrations"),
        strings(&["migrations/2024-01-01-000003_b/up.sql"])
    );
    p.flags_drop_in("migrations", "migrations/2024-01-01-000001_t/down.sql");
}

/// golang-migrate has no marker: it sends each file as one query, which PostgreSQL runs as one
/// implicit transaction, so both files are flagged (and sqlx's marker means nothing here).
#[test]
fn golang_migrate() {
    let p = Project::new(&[
        ("migrations/000001_t.up.sql", CREATE),
        ("migrations/000001_t.down.sql", DROP),
        (
            "migrations/000002_a.up.sql",
            &format!("-- no-transaction\n{}", validate("a")),
        ),
        ("migrations/000010_b.up.sql", &validate("b")),
    ]);
    assert_eq!(
        p.planned("migrations"),
        strings(&[
            "migrations/000001_t.up.sql",
            "migrations/000002_a.up.sql",
            "migrations/000010_b.up.sql",
        ])
    );
    assert_eq!(
        p.validated_in_transaction("migrations"),
        strings(&["migrations/000002_a.up.sql", "migrations/000010_b.up.sql"])
    );
    p.flags_drop_in("migrations", "migrations/000001_t.down.sql");
}

/// Flyway: dotted versions order numerically (1.10 after 1.2), `U` files undo, `R__`
/// repeatables run after the versioned ones, and `executeInTransaction=false` may sit in the
/// script or in its `.conf` sidecar.
#[test]
fn flyway() {
    let dir = "src/main/resources/db/migration";
    let p = Project::new(&[
        (&format!("{dir}/V1__t.sql"), CREATE),
        (&format!("{dir}/U1__t.sql"), DROP),
        (&format!("{dir}/V1.2__a.sql"), &validate("a")),
        (
            &format!("{dir}/V1.2__a.sql.conf"),
            "executeInTransaction=false\n",
        ),
        (&format!("{dir}/V1.10__b.sql"), &validate("b")),
        (
            &format!("{dir}/V1.11__c.sql"),
            &format!("-- flyway:executeInTransaction=false\n{}", validate("c")),
        ),
        (
            &format!("{dir}/R__views.sql"),
            "CREATE OR REPLACE VIEW t_ids AS SELECT id FROM t;\n",
        ),
    ]);
    assert_eq!(
        p.planned(dir),
        [
            "V1__t.sql",
            "V1.2__a.sql",
            "V1.10__b.sql",
            "V1.11__c.sql",
            "R__views.sql"
        ]
        .map(|f| format!("{dir}/{f}"))
    );
    assert_eq!(
        p.validated_in_transaction(dir),
        [format!("{dir}/V1.10__b.sql")]
    );
    p.flags_drop_in(dir, &format!("{dir}/U1__t.sql"));
}

/// dbmate keeps up and down in one file; `transaction:false` sits on the section header.
#[test]
fn dbmate() {
    let p = Project::new(&[
        (
            "db/migrations/20240101000001_t.sql",
            &format!("-- migrate:up\n{CREATE}\n-- migrate:down\n{DROP}"),
        ),
        (
            "db/migrations/20240101000002_a.sql",
            &format!(
                "-- migrate:up transaction:false\n{}\n-- migrate:down\n",
                validate("a")
            ),
        ),
        (
            "db/migrations/20240101000003_b.sql",
            &format!("-- migrate:up\n{}\n-- migrate:down\n", validate("b")),
        ),
    ]);
    assert_eq!(
        p.planned("db/migrations"),
        strings(&[
            "db/migrations/20240101000001_t.sql",
            "db/migrations/20240101000002_a.sql",
            "db/migrations/20240101000003_b.sql",
        ])
    );
    assert_eq!(
        p.validated_in_transaction("db/migrations"),
        strings(&["db/migrations/20240101000003_b.sql"])
    );
    p.flags_drop_in("db/migrations", "db/migrations/20240101000001_t.sql");
}

/// goose keeps up and down in one file, annotated; `NO TRANSACTION` covers the whole file and
/// `StatementBegin`/`StatementEnd` enclose statements.
#[test]
fn goose() {
    let p = Project::new(&[
        (
            "db/migrations/00001_t.sql",
            &format!("-- +goose Up\n{CREATE}\n-- +goose Down\n{DROP}"),
        ),
        (
            "db/migrations/00002_a.sql",
            &format!(
                "-- +goose NO TRANSACTION\n-- +goose Up\n{}\n-- +goose Down\nSELECT 1;\n",
                validate("a")
            ),
        ),
        (
            "db/migrations/00010_b.sql",
            &format!(
                "-- +goose Up\n-- +goose StatementBegin\n{}-- +goose StatementEnd\n\n-- +goose Down\nSELECT 1;\n",
                validate("b")
            ),
        ),
    ]);
    assert_eq!(
        p.planned("db/migrations"),
        strings(&[
            "db/migrations/00001_t.sql",
            "db/migrations/00002_a.sql",
            "db/migrations/00010_b.sql",
        ])
    );
    // The Down section is not forward SQL: no expand or contract step drops the table.
    let plan = p.json(&["plan", "--format", "json", "db/migrations"]);
    let first = &plan["migrations"][0];
    for phase in ["expand", "contract"] {
        assert!(
            !first[phase].to_string().contains("DROP"),
            "{phase}: {first}"
        );
    }
    assert_eq!(
        p.validated_in_transaction("db/migrations"),
        strings(&["db/migrations/00010_b.sql"])
    );
    p.flags_drop_in("db/migrations", "db/migrations/00001_t.sql");
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["init"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "goose migrations in db/migrations",
        ));

    // A migration written in Go is a hole in the order zdm would see: refused, naming it.
    std::fs::write(
        p.dir.path().join("db/migrations/00003_backfill.go"),
        "package migrations\n",
    )
    .unwrap();
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["plan", "db/migrations"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("00003_backfill.go"))
        .stderr(predicates::str::contains("written in Go"));
}

/// Atlas: golang-migrate-like names beside `atlas.sum`; `-- atlas:txmode none` runs a file
/// outside a transaction; `-- atlas:nolint` silences the zdm rules that find what the named
/// Atlas analyzers find.
#[test]
fn atlas() {
    let p = Project::new(&[
        ("migrations/atlas.sum", "h1:abc=\n"),
        ("migrations/20240101000001_t.sql", CREATE),
        (
            "migrations/20240101000002_a.sql",
            &format!("-- atlas:txmode none\n\n{}", validate("a")),
        ),
        ("migrations/20240101000003_b.sql", &validate("b")),
        (
            "migrations/20240101000004_drop.sql",
            "SET lock_timeout = '1s';\n-- atlas:nolint DS103\nALTER TABLE t DROP COLUMN a;\n-- atlas:nolint destructive\nALTER TABLE t DROP COLUMN b;\nALTER TABLE t RENAME COLUMN id TO key;\n",
        ),
    ]);
    assert_eq!(
        p.planned("migrations"),
        strings(&[
            "migrations/20240101000001_t.sql",
            "migrations/20240101000002_a.sql",
            "migrations/20240101000003_b.sql",
            "migrations/20240101000004_drop.sql",
        ])
    );
    assert_eq!(
        p.validated_in_transaction("migrations"),
        strings(&["migrations/20240101000003_b.sql"])
    );
    let rules_in_drop: Vec<String> = p
        .findings("migrations")
        .into_iter()
        .filter(|(_, path)| path.ends_with("_drop.sql"))
        .map(|(rule, _)| rule)
        .collect();
    assert!(
        !rules_in_drop.iter().any(|r| r == "drop-column"),
        "both drops are nolinted: {rules_in_drop:?}"
    );
    assert!(
        rules_in_drop.iter().any(|r| r == "rename-column"),
        "the rename is not: {rules_in_drop:?}"
    );
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["init"])
        .assert()
        .success()
        .stdout(predicates::str::contains("Atlas migrations in migrations"));
}

/// Sqitch: `sqitch.plan` orders the changes; each runs as written through psql, so only a
/// script's own `BEGIN … COMMIT` is a transaction; revert scripts are the downs.
#[test]
fn sqitch() {
    let p = Project::new(&[
        (
            "sqitch.plan",
            "%syntax-version=1.0.0\n%project=app\n\nt 2026-01-01T00:00:00Z A <a@b> # t\nb [t] 2026-01-02T00:00:00Z A <a@b>\n@v1 2026-01-03T00:00:00Z A <a@b>\na [t] 2026-01-04T00:00:00Z A <a@b>\n",
        ),
        ("deploy/t.sql", CREATE),
        ("revert/t.sql", DROP),
        ("verify/t.sql", "SELECT id FROM t WHERE false;\n"),
        (
            "deploy/b.sql",
            &format!("BEGIN;\n{}COMMIT;\n", validate("b")),
        ),
        ("deploy/a.sql", &validate("a")),
    ]);
    assert_eq!(
        p.planned("."),
        strings(&["./deploy/t.sql", "./deploy/b.sql", "./deploy/a.sql"])
    );
    assert_eq!(p.planned("deploy").len(), 3);
    assert_eq!(
        p.validated_in_transaction("."),
        strings(&["./deploy/b.sql"])
    );
    p.flags_drop_in(".", "./revert/t.sql");
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["init"])
        .assert()
        .success()
        .stdout(predicates::str::contains("Sqitch migrations in ."));
}

/// Liquibase: a master changelog (YAML) includes formatted SQL and an XML changelog whose
/// changeset runs a SQL file; each changeset is a migration, `runInTransaction:false` is its
/// marker, `--rollback` lines are its down.
#[test]
fn liquibase() {
    let p = Project::new(&[
        (
            "db/changelog/db.changelog-master.yaml",
            "databaseChangeLog:\n  - include:\n      file: changes/z-create.sql\n      relativeToChangelogFile: true\n  - include:\n      file: changes/more.xml\n      relativeToChangelogFile: true\n",
        ),
        (
            "db/changelog/changes/z-create.sql",
            &format!("--liquibase formatted sql\n--changeset alice:1\n{CREATE}--rollback {DROP}"),
        ),
        (
            "db/changelog/changes/more.xml",
            "<?xml version=\"1.0\"?>\n<databaseChangeLog xmlns=\"http://www.liquibase.org/xml/ns/dbchangelog\">\n  <changeSet id=\"2\" author=\"alice\" runInTransaction=\"false\">\n    <sqlFile path=\"a.sql\" relativeToChangelogFile=\"true\"/>\n  </changeSet>\n  <include file=\"b.sql\" relativeToChangelogFile=\"true\"/>\n</databaseChangeLog>\n",
        ),
        ("db/changelog/changes/a.sql", &validate("a")),
        (
            "db/changelog/changes/b.sql",
            &format!(
                "--liquibase formatted sql\n--changeset bob:3\n{}--rollback ALTER TABLE t DROP CONSTRAINT t_b_check;\n\n--changeset bob:4 dbms:mssql\nDROP TABLE t;\n",
                validate("b")
            ),
        ),
    ]);
    let ids: Vec<String> = p.json(&["plan", "--format", "json", "db/changelog"])["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, strings(&["alice:1", "alice:2", "bob:3"]));
    assert_eq!(
        p.validated_in_transaction("db/changelog"),
        strings(&["db/changelog/changes/b.sql"])
    );
    p.flags_drop_in("db/changelog", "db/changelog/changes/z-create.sql");
    // The master changelog named itself reads the same.
    assert_eq!(p.planned("db/changelog/db.changelog-master.yaml").len(), 3);
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["init"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "Liquibase migrations in db/changelog",
        ));
}

/// Prisma wraps every migration in a transaction and has no marker.
#[test]
fn prisma() {
    let p = Project::new(&[
        ("prisma/migrations/20240101000001_t/migration.sql", CREATE),
        (
            "prisma/migrations/20240101000002_a/migration.sql",
            &validate("a"),
        ),
        (
            "prisma/migrations/migration_lock.toml",
            "provider = \"postgresql\"\n",
        ),
    ]);
    assert_eq!(
        p.planned("prisma/migrations"),
        strings(&[
            "prisma/migrations/20240101000001_t/migration.sql",
            "prisma/migrations/20240101000002_a/migration.sql",
        ])
    );
    assert_eq!(
        p.validated_in_transaction("prisma/migrations"),
        strings(&["prisma/migrations/20240101000002_a/migration.sql"])
    );
}

/// refinery's `U` files are unversioned forward migrations, not undos; its marker is a
/// `-- refinery:noTransaction` comment line.
#[test]
fn refinery() {
    let p = Project::new(&[
        ("Cargo.toml", "[dependencies]\nrefinery = \"0.8\"\n"),
        ("migrations/V1__t.sql", CREATE),
        (
            "migrations/U2__a.sql",
            &format!("-- refinery:noTransaction\n{}", validate("a")),
        ),
        ("migrations/V3__b.sql", &validate("b")),
    ]);
    assert_eq!(
        p.planned("migrations"),
        strings(&[
            "migrations/V1__t.sql",
            "migrations/U2__a.sql",
            "migrations/V3__b.sql",
        ])
    );
    assert_eq!(
        p.validated_in_transaction("migrations"),
        strings(&["migrations/V3__b.sql"])
    );
}

/// Where detection cannot tell (`V<n>__` files with no build file beside them are taken for
/// Flyway's), `layout` in zdm.toml decides, and `zdm init --layout` writes it.
#[test]
fn layout_named_in_zdm_toml_wins_over_detection() {
    let p = Project::new(&[
        ("migrations/V1__t.sql", CREATE),
        (
            "migrations/V2__a.sql",
            &format!("-- refinery:noTransaction\n{}", validate("a")),
        ),
    ]);
    assert_eq!(
        p.validated_in_transaction("migrations"),
        strings(&["migrations/V2__a.sql"]),
        "as Flyway, refinery's marker means nothing"
    );
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["init", "--layout", "refinery"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "refinery migrations in migrations",
        ));
    let config = std::fs::read_to_string(p.dir.path().join("zdm.toml")).unwrap();
    assert!(config.contains("layout = \"refinery\""), "{config}");
    // With no path, zdm reads the folder and the layout zdm.toml names.
    let flagged: Vec<serde_json::Value> = p.json(&["lint", "--format", "json"])["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "validate-in-same-transaction")
        .cloned()
        .collect();
    assert!(flagged.is_empty(), "{flagged:?}");

    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["init", "--force", "--layout", "sql-migrate"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("golang-migrate"));
    std::fs::write(p.dir.path().join("zdm.toml"), "layout = \"sql-migrate\"\n").unwrap();
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["lint"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("zdm.toml"))
        .stderr(predicates::str::contains("refinery"));
    // Liquibase named for a folder without a changelog: nothing to order the files by.
    std::fs::write(p.dir.path().join("zdm.toml"), "layout = \"liquibase\"\n").unwrap();
    Command::cargo_bin("zdm")
        .unwrap()
        .current_dir(p.dir.path())
        .args(["lint"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("master changelog"))
        .stderr(predicates::str::contains("nothing was read or run"));
}
