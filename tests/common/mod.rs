//! Shared by the integration tests that need PostgreSQL: each test gets its own database, so
//! the suites run in parallel.

// Each test crate compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod scenarios;

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
