//! `zdm plan --database-url` estimates each step's duration on the real data; these tests build
//! tables of 100k and 1M rows, take the estimate through the binary, run the same migration
//! with `zdm expand`, and compare each estimate with the step's measured duration (from the
//! expand's log). They also check that estimating changed nothing in the database.
//!
//! The target is 0.5×–2× (docs/benchmarks.md has the figures, and zdm-bench
//! `--estimate-sizes` the 10M-row run); the tests allow 0.33×–3× so a noisy CI machine does not
//! fail them, and a step both sides agree takes under 100 ms passes on the absolute difference.

mod common;

use std::collections::BTreeMap;

use common::{TestDatabase, ok, zdm};

const MIGRATION: &str = "\
ALTER TABLE users ALTER COLUMN age TYPE bigint;
CREATE INDEX users_name_idx ON users (name);
ALTER TABLE users ADD CONSTRAINT org_id_positive CHECK (org_id > 0);
ALTER TABLE users ADD CONSTRAINT users_org FOREIGN KEY (org_id) REFERENCES orgs (id);
";

/// What each step was estimated at and took, by name (`backfill-1`, `expand-3`…), in seconds.
fn estimated_and_measured(rows: u64) -> BTreeMap<String, (f64, f64)> {
    let Some(db) = TestDatabase::create(&format!("estimate_{rows}")) else {
        return BTreeMap::new();
    };
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "CREATE TABLE orgs (id int PRIMARY KEY);
             INSERT INTO orgs SELECT g FROM generate_series(1, 1000) g;
             CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                 name text NOT NULL, age int, org_id int);
             INSERT INTO users (name, age, org_id)
             SELECT 'user number ' || g, g % 90, 1 + g % 1000 FROM generate_series(1, {rows}) g;"
        ))
        .unwrap();
    // Outside a transaction block: VACUUM refuses to run in one.
    client.batch_execute("VACUUM ANALYZE users").unwrap();
    client.batch_execute("VACUUM ANALYZE orgs").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_widen.sql"), MIGRATION).unwrap();
    let url = db.url_of_database();

    // zdm's schema, the table's file (a rewrite changes it) and its rows.
    let fingerprint = |client: &mut postgres::Client| -> (Option<String>, String, i64) {
        let row = client
            .query_one(
                "SELECT to_regnamespace('zdm')::text,
                        (SELECT relfilenode::text FROM pg_class WHERE relname = 'users'),
                        (SELECT count(*) FROM users)",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let before = fingerprint(&mut client);
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args(["plan", "--format", "json", "--database-url", &url])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        fingerprint(&mut client),
        before,
        "estimating created or rewrote something"
    );
    let migration = &plan["migrations"][0];
    let mut estimated = BTreeMap::new();
    for step in migration["expand"].as_array().unwrap() {
        estimated.insert(
            step["id"].as_str().unwrap().to_owned(),
            step["estimated_seconds"]
                .as_f64()
                .expect("an estimate per step"),
        );
    }
    estimated.insert(
        "backfill-1".to_owned(),
        migration["backfill"][0]["estimated_seconds"]
            .as_f64()
            .unwrap(),
    );
    assert!(
        migration["estimated_seconds"]["backfill"].as_f64().unwrap() > 0.0,
        "{migration}"
    );

    let log = ok(zdm(&url, dir.path(), &["expand"]), "zdm expand");
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let (Some(step), Some(seconds)) = (field(line, "step"), field(line, "seconds")) else {
            continue;
        };
        if let (Some(e), Ok(m)) = (estimated.get(&step), seconds.parse::<f64>()) {
            out.insert(step, (*e, m));
        }
    }
    for (step, (e, m)) in &out {
        eprintln!(
            "{rows} rows, {step}: estimated {e:.3} s, measured {m:.3} s, ratio {:.2}",
            e / m.max(0.001)
        );
    }
    drop(client);
    drop(db);
    out
}

/// `name=value` or `name="value"` in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split_whitespace().next()?,
    };
    Some(value.to_owned())
}

fn check(rows: u64) {
    let compared = estimated_and_measured(rows);
    if compared.is_empty() {
        return;
    }
    for step in ["backfill-1", "expand-3", "expand-5", "expand-7"] {
        let &(e, m) = compared
            .get(step)
            .unwrap_or_else(|| panic!("{step} was not measured: {compared:?}"));
        let close = (e - m).abs() < 0.1 && e.max(m) < 0.1;
        let ratio = e / m.max(0.001);
        assert!(
            close || (0.33..=3.0).contains(&ratio),
            "{rows} rows, {step}: estimated {e:.3} s, measured {m:.3} s ({ratio:.2}×)"
        );
    }
}

#[test]
fn estimates_match_the_measured_steps_at_100k_rows() {
    check(100_000);
}

#[test]
fn estimates_match_the_measured_steps_at_1m_rows() {
    check(1_000_000);
}
