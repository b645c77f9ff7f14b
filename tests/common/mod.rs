//! Shared by the integration tests that need PostgreSQL: each test gets its own database, so
//! the suites run in parallel.

// Each test crate compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod scenarios;

use std::path::Path;
use std::process::{Command, Output};

use postgres::{Client, NoTls};

/// A fresh database for one test, dropped again by [`TestDatabase::drop`]. Without
/// DATABASE_URL the test fails rather than passing without having run: `scripts/test` finds or
/// starts a server and sets it. (The `Option` lets a suite opt out with ZDM_SKIP_DB_TESTS=1.)
pub struct TestDatabase {
    admin: Client,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create(label: &str) -> Option<TestDatabase> {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            if std::env::var_os("ZDM_SKIP_DB_TESTS").is_some() {
                eprintln!("skipped: ZDM_SKIP_DB_TESTS is set");
                return None;
            }
            panic!(
                "DATABASE_URL is not set: run scripts/test, which finds or starts PostgreSQL (or set ZDM_SKIP_DB_TESTS=1 to skip the database tests)"
            );
        };
        let mut admin = Client::connect(&url, NoTls).expect("connect to DATABASE_URL");
        let name = format!("zdm_{label}_{}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        Some(TestDatabase { admin, name, url })
    }

    /// DATABASE_URL with the database name replaced by this test's database.
    pub fn url_of_database(&self) -> String {
        let (base, query) = match self.url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (self.url.as_str(), String::new()),
        };
        let host_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[host_end..].find('/') {
            Some(slash) => &base[..host_end + slash],
            None => base,
        };
        format!("{base}/{}{query}", self.name)
    }

    pub fn connect(&self) -> Client {
        let mut config: postgres::Config = self.url.parse().unwrap();
        config.dbname(&self.name);
        config.connect(NoTls).unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// The server's message for a failed query.
pub fn message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
}

/// Runs the zdm binary with `args` on the migrations folder `dir` against `url`.
pub fn zdm(url: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zdm"))
        .args(args)
        .arg(dir)
        .env("DATABASE_URL", url)
        .env_remove("ZDM_CONFIG")
        .output()
        .unwrap()
}

/// Fails the test unless the run succeeded; returns what it logged (stderr).
pub fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {stderr}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Runs `zdm verify --format json` on a folder of `0001_schema.sql` (`schema`) plus the
/// cases, each a migration of its own, checks the exit code against the counts, and returns
/// each migration's name (without its number), outcome and detail.
pub fn verify(schema: &str, cases: &[(&str, &str)]) -> Vec<(String, String, String)> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run scripts/test, which finds or starts PostgreSQL")
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_schema.sql"), schema).unwrap();
    for (i, (name, sql)) in cases.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{:04}_{name}.sql", i + 2)), sql).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_zdm"))
        .env_remove("ZDM_CONFIG")
        .current_dir(dir.path())
        .args(["verify", "--format", "json", "--database-url", &url, "."])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let failures =
        doc["counts"]["different"].as_u64().unwrap() + doc["counts"]["failed"].as_u64().unwrap();
    assert_eq!(out.status.code(), Some(if failures > 0 { 1 } else { 0 }));
    doc["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let path = m["path"].as_str().unwrap();
            let name = path.rsplit('/').next().unwrap();
            (
                name[5..].trim_end_matches(".sql").to_owned(),
                m["outcome"].as_str().unwrap().to_owned(),
                m["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
