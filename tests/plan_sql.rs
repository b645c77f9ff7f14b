//! Runs the `zdm plan --format sql` files of each operation against a real PostgreSQL, the way
//! psql does (one statement at a time, autocommit), and checks both application versions:
//! expand → old and new app work → down-expand → old app works and nothing of zdm remains →
//! expand → backfill → old and new app work → contract → new app works, data intact →
//! down-contract (where the plan has one) → old app works again.
//! Needs DATABASE_URL (scripts/test provides it).

use std::path::Path;

use postgres::{Client, NoTls};
use zdm::catalog::Catalog;
use zdm::lint::LintOptions;
use zdm::plan::{MigrationPlan, plan_file};
use zdm::source::{SourceFile, split_statements};

mod common;

use common::scenarios::{HELPERS, SCENARIOS, SCHEMA, SEED};

/// Runs SQL the way psql does: statement by statement, in autocommit.
fn run_file(client: &mut Client, sql: &str, what: &str) {
    for stmt in split_statements(sql).statements {
        if let Err(e) = client.simple_query(&stmt.text) {
            let message = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            panic!("{what}: `{}` failed: {message}", stmt.text);
        }
    }
}

fn app(client: &mut Client, queries: &[&str], what: &str) {
    for q in queries {
        if let Err(e) = client.simple_query(q) {
            let message = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            panic!("{what}: `{q}` failed: {message}");
        }
    }
}

fn files(plan: &MigrationPlan) -> std::collections::HashMap<String, String> {
    zdm::plan::render_sql_files(plan)
        .into_iter()
        .map(|(name, text)| (name.rsplit('.').nth(1).unwrap_or_default().to_owned(), text))
        .collect()
}

#[test]
fn sql_files_keep_both_application_versions_working() {
    let Some(test_db) = common::TestDatabase::create("plan_sql_admin") else {
        return;
    };
    let url = test_db.url.clone();
    let mut admin = Client::connect(&url, NoTls).expect("connect to DATABASE_URL");
    for (i, s) in SCENARIOS.iter().enumerate() {
        let db = format!("zdm_plan_{}_{i}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let mut config: postgres::Config = url.parse().unwrap();
        config.dbname(&db);
        let mut c = config.connect(NoTls).unwrap();
        let setup = format!("{SCHEMA}\n{}", s.setup);
        c.batch_execute(&format!("{setup}\n{SEED}\n{HELPERS}"))
            .unwrap();

        let mut catalog = Catalog::from_sql(&setup);
        let file = SourceFile::from_text(Path::new("0002_change.sql"), s.migration.to_owned());
        let plan = plan_file(&file, &mut catalog, &LintOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        let f = files(&plan);
        let phase = |c: &mut Client, name: &str| {
            if let Some(sql) = f.get(name) {
                run_file(c, sql, &format!("{}: {name}", s.name));
            }
        };
        let count = |c: &mut Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
        let users_before = count(&mut c, "SELECT count(*) FROM users");

        phase(&mut c, "expand");
        app(
            &mut c,
            s.old_app,
            &format!("{}: old app after expand", s.name),
        );
        phase(&mut c, "down-expand");
        app(
            &mut c,
            s.old_app,
            &format!("{}: old app after down-expand", s.name),
        );
        let leftovers = count(
            &mut c,
            "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE '\\_zdm\\_%') + (SELECT count(*) FROM pg_constraint WHERE conname LIKE '\\_zdm\\_%') + (SELECT count(*) FROM pg_proc WHERE proname LIKE '\\_zdm\\_%')",
        );
        assert_eq!(
            leftovers, 0,
            "{}: zdm objects left after down-expand",
            s.name
        );

        phase(&mut c, "expand");
        phase(&mut c, "backfill");
        app(
            &mut c,
            s.old_app,
            &format!("{}: old app after backfill", s.name),
        );
        app(
            &mut c,
            s.new_app,
            &format!("{}: new app after backfill", s.name),
        );
        phase(&mut c, "contract");
        app(
            &mut c,
            s.new_app,
            &format!("{}: new app after contract", s.name),
        );
        for check in s.checks {
            let ok: bool = c.query_one(*check, &[]).unwrap().get(0);
            assert!(ok, "{}: after contract, `{check}` is false", s.name);
        }
        // Undoing the contract, where the plan can, brings the old application back.
        if f.contains_key("down-contract") {
            phase(&mut c, "down-contract");
            app(
                &mut c,
                s.old_app,
                &format!("{}: old app after down-contract", s.name),
            );
        }
        if s.name != "drop table" {
            assert!(
                count(&mut c, "SELECT count(*) FROM users") >= users_before,
                "{}: rows lost",
                s.name
            );
        }
        drop(c);
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .unwrap();
    }
}
