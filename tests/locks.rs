//! Checks zdm's lock classification against a real PostgreSQL server: each statement runs in a
//! transaction, and the locks it holds (pg_locks) and whether it gave the table a new file
//! (pg_class.relfilenode, i.e. a rewrite) are compared with what `classify` says, and with
//! every lock the lint messages for the statement name ("an ACCESS EXCLUSIVE lock on t").
//! Needs DATABASE_URL (scripts/test provides it); skipped without it.

mod common;

use postgres::Client;
use zdm::catalog::Catalog;
use zdm::classify::{Env, LockMode, classify};
use zdm::lint::{LintOptions, lint_file};
use zdm::parse::{Name, parse_statement};
use zdm::source::{SourceFile, split_statements};

const SETUP: &str = "
CREATE TABLE p (id int PRIMARY KEY);
CREATE TABLE t (id int PRIMARY KEY, a int, b varchar(10), c text, n numeric(10,2), ts timestamp(3));
CREATE INDEX t_a_idx ON t (a);
INSERT INTO p SELECT g FROM generate_series(1, 10) g;
INSERT INTO t SELECT g, g, 'x', 'y', 1.5, now() FROM generate_series(1, 10) g;
ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID;
CREATE TABLE parted (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE parted_2023 PARTITION OF parted FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE loose (id int, at date);
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t;
";

/// Statements and the minimum server version their expectation holds for.
const CASES: &[(&str, u32)] = &[
    ("ALTER TABLE t ADD COLUMN x int", 11),
    ("ALTER TABLE t ADD COLUMN x int DEFAULT 0", 11),
    ("ALTER TABLE t ADD COLUMN x timestamptz DEFAULT now()", 11),
    (
        "ALTER TABLE t ADD COLUMN x uuid DEFAULT gen_random_uuid()",
        13,
    ),
    ("ALTER TABLE t ADD COLUMN x float8 DEFAULT random()", 11),
    ("ALTER TABLE t ADD COLUMN x bigserial", 11),
    (
        "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS (a * 2) STORED",
        12,
    ),
    (
        "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS IDENTITY",
        11,
    ),
    ("ALTER TABLE t ADD COLUMN x int REFERENCES p (id)", 11),
    ("ALTER TABLE t ALTER COLUMN a TYPE bigint", 11),
    ("ALTER TABLE t ALTER COLUMN b TYPE varchar(20)", 11),
    ("ALTER TABLE t ALTER COLUMN b TYPE text", 11),
    ("ALTER TABLE t ALTER COLUMN b TYPE varchar(5)", 11),
    ("ALTER TABLE t ALTER COLUMN c TYPE varchar", 11),
    ("ALTER TABLE t ALTER COLUMN n TYPE numeric(12,2)", 11),
    ("ALTER TABLE t ALTER COLUMN n TYPE numeric(12,4)", 11),
    ("ALTER TABLE t ALTER COLUMN ts TYPE timestamp(6)", 11),
    (
        "ALTER TABLE t ALTER COLUMN c TYPE varchar(50) USING upper(c)",
        11,
    ),
    ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", 11),
    ("ALTER TABLE t ALTER COLUMN a DROP NOT NULL", 11),
    ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 1", 11),
    (
        "ALTER TABLE t ADD CONSTRAINT ck CHECK (a > 0) NOT VALID",
        11,
    ),
    ("ALTER TABLE t ADD CONSTRAINT ck CHECK (a > 0)", 11),
    (
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES p (id) NOT VALID",
        11,
    ),
    ("ALTER TABLE t VALIDATE CONSTRAINT t_a_pos", 11),
    ("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)", 11),
    ("ALTER TABLE t RENAME COLUMN a TO a2", 11),
    ("ALTER TABLE t RENAME TO t2", 11),
    ("ALTER TABLE t DROP COLUMN c", 11),
    ("ALTER TABLE t SET UNLOGGED", 11),
    ("ALTER TABLE t SET (fillfactor = 70)", 11),
    ("ALTER TABLE t ALTER COLUMN a SET STATISTICS 500", 11),
    ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", 11),
    ("ALTER TABLE t DISABLE TRIGGER ALL", 11),
    // Two actions, one read by the recognizer and one by sqlparser: the strongest lock wins.
    (
        "ALTER TABLE t ALTER COLUMN a SET STATISTICS 500, ENABLE ROW LEVEL SECURITY",
        11,
    ),
    (
        "ALTER TABLE t ALTER COLUMN a SET STATISTICS 500, DISABLE TRIGGER ALL",
        11,
    ),
    ("ALTER TABLE parted DETACH PARTITION parted_2023", 11),
    (
        "ALTER TABLE parted ATTACH PARTITION loose FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        12,
    ),
    ("CREATE INDEX t_b_idx ON t (b)", 11),
    ("DROP INDEX t_a_idx", 11),
    ("DROP TABLE t CASCADE", 11),
    ("LOCK TABLE t IN SHARE MODE", 11),
    ("REFRESH MATERIALIZED VIEW mv", 11),
    ("CLUSTER t USING t_pkey", 11),
    ("REINDEX TABLE t", 11),
    ("REINDEX INDEX t_a_idx", 11),
    ("UPDATE t SET a = a + 1", 11),
];

fn mode(pg: &str) -> Option<LockMode> {
    LockMode::ALL.into_iter().find(|m| m.pg_locks_name() == pg)
}

/// The locks a message says a statement takes: each "<MODE> lock(s) on <relation>[ and
/// <relation>]", with the longest mode name that ends right before " lock".
fn claimed_in(message: &str) -> Vec<(LockMode, String)> {
    let mut modes: Vec<LockMode> = LockMode::ALL.into_iter().collect();
    modes.sort_by_key(|m| std::cmp::Reverse(m.to_string().len()));
    let mut claims = Vec::new();
    for (at, _) in message.match_indices(" lock") {
        let before = &message[..at];
        let Some(lock) = modes.iter().find(|m| {
            before.ends_with(&m.to_string())
                && before[..before.len() - m.to_string().len()]
                    .ends_with(|c: char| !c.is_ascii_uppercase())
        }) else {
            continue;
        };
        let rest = message[at..]
            .trim_start_matches(" locks")
            .trim_start_matches(" lock");
        let Some(rest) = rest.strip_prefix(" on ") else {
            continue;
        };
        let word = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                .collect::<String>()
                .trim_end_matches('.')
                .to_owned()
        };
        let first = word(rest);
        claims.push((*lock, first.clone()));
        if let Some(second) = rest[first.len()..].strip_prefix(" and ") {
            claims.push((*lock, word(second)));
        }
    }
    claims
}

#[test]
fn lock_claims_are_read_from_messages() {
    assert_eq!(
        claimed_in(
            "an ACCESS EXCLUSIVE lock on t blocks its reads and writes, and a SHARE ROW EXCLUSIVE lock on p blocks writes"
        ),
        vec![
            (LockMode::AccessExclusive, "t".to_owned()),
            (LockMode::ShareRowExclusive, "p".to_owned())
        ]
    );
    assert_eq!(
        claimed_in("takes SHARE ROW EXCLUSIVE locks on t and p, blocking"),
        vec![
            (LockMode::ShareRowExclusive, "t".to_owned()),
            (LockMode::ShareRowExclusive, "p".to_owned())
        ]
    );
    assert_eq!(
        claimed_in("takes a SHARE lock on t."),
        vec![(LockMode::Share, "t".to_owned())]
    );
}

#[test]
fn classification_matches_the_server() {
    let Some(db) = common::TestDatabase::create("locks") else {
        return;
    };
    let mut client = db.connect();
    let version: u32 = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .unwrap()
        .get::<_, i32>(0) as u32;

    let catalog = Catalog::from_sql(SETUP);
    let mut failures = Vec::new();
    for (i, (sql, min_version)) in CASES.iter().enumerate() {
        if version < *min_version {
            continue;
        }
        let schema = format!("case{i}");
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path = {schema}; {SETUP}"
            ))
            .unwrap();
        let relfilenode = |c: &mut Client| -> u32 {
            c.query_one(
                "SELECT relfilenode FROM pg_class WHERE oid = 't'::regclass",
                &[],
            )
            .unwrap()
            .get(0)
        };
        let before = relfilenode(&mut client);
        // Relations by oid, so renamed and dropped ones are still recognised in pg_locks.
        let names: std::collections::HashMap<u32, String> = client
            .query(
                "SELECT oid, relname::text FROM pg_class WHERE relnamespace = current_schema()::regnamespace",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut tx = client.transaction().unwrap();
        tx.batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", common::message(&e)));
        let rows = tx
            .query(
                "SELECT l.relation, l.mode FROM pg_locks l \
                 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'",
                &[],
            )
            .unwrap();
        let rows: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| Some((names.get(&r.get::<_, u32>(0))?.clone(), r.get(1))))
            .collect();
        let after: Option<u32> = tx
            .query_opt(
                "SELECT relfilenode FROM pg_class WHERE oid = to_regclass('t')",
                &[],
            )
            .unwrap()
            .map(|r| r.get(0));
        tx.rollback().unwrap();
        client
            .batch_execute(&format!(
                "SET search_path = public; DROP SCHEMA {schema} CASCADE"
            ))
            .unwrap();

        let stmt = &split_statements(sql).statements[0];
        let change = parse_statement(stmt);
        let is_new = |_: &Name| false;
        let env = Env {
            pg_version: version,
            catalog: &catalog,
            is_new: &is_new,
        };
        let class = classify(&change, &env);
        // Per relation, the strongest lock zdm says any action takes is what the server holds.
        let mut claimed: std::collections::BTreeMap<String, LockMode> = Default::default();
        for effect in &class.effects {
            let lock = claimed
                .entry(effect.relation.name.clone())
                .or_insert(effect.lock);
            *lock = (*lock).max(effect.lock);
        }
        let held_on = |relation: &str| {
            rows.iter()
                .filter(|(name, _)| name == relation)
                .filter_map(|(_, m)| mode(m))
                .max()
        };
        for (relation, lock) in claimed {
            let held = held_on(&relation);
            if held != Some(lock) {
                failures.push(format!(
                    "{sql}: zdm says {lock} on {relation}, server holds {held:?}"
                ));
            }
        }
        // What the lint messages say, for the statement on a table an earlier migration made.
        let file =
            SourceFile::from_text(std::path::Path::new("0002_case.sql"), format!("{sql};\n"));
        let options = LintOptions {
            pg_version: version,
            ..LintOptions::default()
        };
        let report = lint_file(&file, &mut catalog.clone(), &options);
        for finding in &report.findings {
            for (lock, relation) in claimed_in(&finding.message) {
                let held = held_on(&relation);
                if held != Some(lock) {
                    failures.push(format!(
                        "{sql}: {} says {lock} on {relation}, server holds {held:?}: {}",
                        finding.rule, finding.message
                    ));
                }
            }
        }
        if class.effects.iter().all(|e| e.relation.name != "t")
            && rows
                .iter()
                .any(|(name, m)| name == "t" && m != "AccessShareLock")
        {
            failures.push(format!(
                "{sql}: zdm names no lock on t, the server holds one"
            ));
        }
        let rewrote = after.is_some_and(|a| a != before);
        let says_rewrite = class
            .effects
            .iter()
            .any(|e| e.relation.name == "t" && e.rewrite);
        if after.is_some() && rewrote != says_rewrite {
            failures.push(format!(
                "{sql}: zdm says rewrite={says_rewrite}, relfilenode changed={rewrote}"
            ));
        }
    }
    drop(client);
    assert!(
        failures.is_empty(),
        "classification differs from PostgreSQL {version}:\n{}",
        failures.join("\n")
    );
}

/// Every rule's bad example, statement by statement on the server after its setup: each lock a
/// finding's message names ("an ACCESS EXCLUSIVE lock on users") is the strongest lock the
/// statement holds on that relation (pg_locks). Statements that cannot run in a transaction
/// block (CONCURRENTLY) run on their own and are not compared.
#[test]
fn every_lock_a_rule_example_names_is_the_one_the_server_takes() {
    let Some(db) = common::TestDatabase::create("lock_claims") else {
        return;
    };
    let mut client = db.connect();
    let version: u32 = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .unwrap()
        .get::<_, i32>(0) as u32;
    let options = LintOptions {
        pg_version: version,
        ..LintOptions::default()
    };
    let mut failures = Vec::new();
    let mut compared = 0;
    for (i, rule) in zdm::lint::rules::ALL.iter().enumerate() {
        let schema = format!("rule{i}");
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET search_path = {schema}"
            ))
            .unwrap();
        if client.batch_execute(rule.setup).is_err() {
            client
                .batch_execute(&format!(
                    "SET search_path = public; DROP SCHEMA {schema} CASCADE"
                ))
                .unwrap();
            continue;
        }
        let report = zdm::lint::lint_sql(rule.setup, rule.bad, &options);
        for stmt in split_statements(rule.bad).statements {
            let claims: Vec<(LockMode, String, &str)> = report
                .findings
                .iter()
                .filter(|f| f.start.line == stmt.start.line)
                .flat_map(|f| {
                    claimed_in(&f.message)
                        .into_iter()
                        .map(move |(lock, relation)| (lock, relation, f.rule))
                })
                .collect();
            let names: std::collections::HashMap<u32, String> = client
                .query(
                    "SELECT oid, relname::text FROM pg_class WHERE relnamespace = current_schema()::regnamespace",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let mut tx = client.transaction().unwrap();
            let held: Option<Vec<(String, String)>> = match tx.batch_execute(&stmt.text) {
                Ok(()) => Some(
                    tx.query(
                        "SELECT relation, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .filter_map(|r| Some((names.get(&r.get::<_, u32>(0))?.clone(), r.get(1))))
                    .collect(),
                ),
                Err(_) => None,
            };
            tx.rollback().unwrap();
            if let Some(held) = held {
                for (lock, relation, rule_name) in claims {
                    let strongest = held
                        .iter()
                        .filter(|(name, _)| *name == relation)
                        .filter_map(|(_, m)| mode(m))
                        .max();
                    compared += 1;
                    if strongest != Some(lock) {
                        failures.push(format!(
                            "{rule_name} on `{}`: says {lock} on {relation}, the server holds {strongest:?}",
                            stmt.text
                        ));
                    }
                }
            }
            // Later statements of the example build on this one.
            let _ = client.batch_execute(&stmt.text);
        }
        client
            .batch_execute(&format!(
                "SET search_path = public; DROP SCHEMA {schema} CASCADE"
            ))
            .unwrap();
    }
    drop(client);
    assert!(compared >= 10, "only {compared} lock claims compared");
    assert!(
        failures.is_empty(),
        "lock claims differ from PostgreSQL {version}:\n{}",
        failures.join("\n")
    );
}
