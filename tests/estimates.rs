//! `zdm plan --database-url` estimates each step's duration on the real data; these tests build
//! tables of 100k and 1M rows, take the estimate through the binary, run the same migration
//! with `zdm expand`, and compare each estimate with the step's measured duration (from the
//! expand's log). They also check that estimating changed nothing in the database.
//!
//! The target is 0.5×–2× (docs/benchmarks.md has the figures, and zdm-bench
//! `--estimate-sizes` the 10M-row run); the tests allow 0.33×–3× so a noisy CI machine does not
//! fail them, and a step both sides put under half a second passes within 250 ms.

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
        // A step of a few tens of milliseconds measures mostly the machine's noise.
        let close = (e - m).abs() < 0.25 && e.max(m) < 0.5;
        let ratio = e / m.max(0.001);
        assert!(
            close || (0.33..=3.0).contains(&ratio),
            "{rows} rows, {step}: estimated {e:.3} s, measured {m:.3} s ({ratio:.2}×)"
        );
    }
}

/// One after the other: two sizes measured side by side would slow each other down.
#[test]
fn estimates_match_the_measured_steps_at_100k_and_1m_rows() {
    check(100_000);
    check(1_000_000);
}

/// Builds a table of `rows` users in a fresh database, with a migration folder that widens
/// their age (a backfill).
fn users_with_a_backfill(label: &str, rows: u64) -> Option<(TestDatabase, tempfile::TempDir)> {
    let db = TestDatabase::create(label)?;
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, age int);
             INSERT INTO users (name, age) SELECT 'user ' || g, g % 90 FROM generate_series(1, {rows}) g;"
        ))
        .unwrap();
    client.batch_execute("VACUUM ANALYZE users").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_widen.sql"),
        "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
    )
    .unwrap();
    Some((db, dir))
}

#[test]
fn long_or_wal_heavy_backfills_are_warned_about_in_the_plan() {
    let Some((db, dir)) = users_with_a_backfill("estimate_warn", 50_000) else {
        return;
    };
    let config = dir.path().join("zdm.toml");
    std::fs::write(
        &config,
        "[estimate]\nwarn_backfill_seconds = 0\nwarn_wal_share = 0.000001\n",
    )
    .unwrap();
    let url = db.url_of_database();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zdm"))
        .arg("--config")
        .arg(&config)
        .args(["plan", "--database-url", &url])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("  estimate: expand "), "{text}");
    assert!(text.contains("table users: ~50000 rows"), "{text}");
    assert!(
        text.contains("warning: the backfill of users is estimated at"),
        "{text}"
    );
    assert!(text.contains("of WAL, more than"), "{text}");
    // The default thresholds (an hour, all of max_wal_size) say nothing about 50k rows.
    let quiet = std::process::Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args(["plan", "--format", "markdown", "--database-url", &url])
        .arg(dir.path())
        .env_remove("ZDM_CONFIG")
        .output()
        .unwrap();
    let quiet = String::from_utf8_lossy(&quiet.stdout);
    assert!(quiet.contains("**Estimate on this database:**"), "{quiet}");
    assert!(!quiet.contains("Warning"), "{quiet}");
}

/// A role that may read the catalog but not the table gets its plan, without an estimate and
/// with a warning that says why.
#[test]
fn a_plan_without_rights_to_read_the_table_has_no_estimate_but_still_plans() {
    let Some((db, dir)) = users_with_a_backfill("estimate_rights", 20_000) else {
        return;
    };
    let role = format!("zdm_catalog_reader_{}", std::process::id());
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role}; REVOKE ALL ON users FROM PUBLIC;"
        ))
        .unwrap();
    // Connect as the test's user, acting as the role from the start.
    let url = db.url_of_database();
    let separator = if url.contains('?') { '&' } else { '?' };
    let as_role = format!("{url}{separator}options=-c%20role%3D{role}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args(["plan", "--format", "json", "--database-url", &as_role])
        .arg(dir.path())
        .env_remove("ZDM_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning: no estimate:"), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["migrations"][0]["backfill"][0]["estimated_seconds"],
        serde_json::Value::Null
    );
    assert_eq!(
        plan["migrations"][0]["backfill"].as_array().unwrap().len(),
        1
    );
    drop(client);
    let mut admin = db.connect();
    // The role owns nothing; dropping it needs its (absent) privileges gone first.
    let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
}

/// `zdm expand` logs the estimate before it starts and the backfill's ETA; `zdm status` shows
/// a running backfill's estimate beside its measured rate; a stopped backfill resumes to the
/// end.
#[test]
fn expand_and_status_show_the_estimate_and_the_measured_rate() {
    let rows = 60_000;
    let Some((db, dir)) = users_with_a_backfill("estimate_status", rows) else {
        return;
    };
    let url = db.url_of_database();
    // About six seconds of backfill.
    let expand = std::process::Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args(["expand", "--max-rows-per-second", "10000"])
        .arg(dir.path())
        .env("DATABASE_URL", &url)
        .env_remove("ZDM_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = || -> serde_json::Value {
        let out = zdm(&url, dir.path(), &["status", "--format", "json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let backfill = loop {
        let s = status();
        let b = &s[0]["current_step"]["backfill"];
        if b["rows_done"].as_i64().unwrap_or(0) > 0 && b["elapsed_seconds"].as_f64() > Some(1.0) {
            break b.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backfill seen: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // The estimate follows the rate limit: at least rows / limit.
    let estimated = backfill["estimated_seconds"].as_f64().unwrap();
    assert!(estimated >= 5.5, "{backfill}");
    let rate = backfill["rows_per_second"].as_f64().unwrap();
    assert!(rate > 1000.0 && rate < 20_000.0, "{backfill}");
    assert!(
        backfill["eta_seconds_measured"].as_f64().is_some(),
        "{backfill}"
    );
    assert!(
        backfill["eta_seconds_estimated"].as_f64().is_some(),
        "{backfill}"
    );
    assert_eq!(backfill["total_rows"].as_i64(), Some(rows as i64));
    let human = String::from_utf8_lossy(&zdm(&url, dir.path(), &["status"]).stdout).into_owned();
    assert!(human.contains("backfill: "), "{human}");
    assert!(human.contains("estimated "), "{human}");
    assert!(human.contains("rows/s, ETA"), "{human}");

    // Stop it (it stops after the current batch) and resume it to the end.
    std::process::Command::new("kill")
        .args(["-TERM", &expand.id().to_string()])
        .status()
        .unwrap();
    let stopped = expand.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(130), "{log}");
    assert!(log.contains("0001_widen: estimate: expand"), "{log}");
    assert!(log.contains("backfill of users: estimated"), "{log}");
    ok(zdm(&url, dir.path(), &["expand"]), "expand resumed");
    let mut client = db.connect();
    let unset: i64 = client
        .query_one(
            "SELECT count(*) FROM users WHERE _zdm_users_age_new IS DISTINCT FROM age",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(unset, 0);
}
