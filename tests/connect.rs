//! Connecting like libpq: `PG*` variables instead of a URL, and `sslmode` over real TLS.
//! The server decides which TLS checks apply: with `ssl = on` (scripts/test turns it on for
//! the servers it starts), `require` must encrypt and `verify-full` must refuse a certificate
//! no trusted root signed; with TLS off, `require` must refuse and `prefer` fall back.

mod common;

use std::process::Command;

use zdm::db::{ConnectOptions, Environment};

struct Vars(Vec<(&'static str, String)>);

impl Environment for Vars {
    fn var(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

fn with_sslmode(url: &str, mode: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode={mode}")
}

#[test]
fn sslmodes_against_the_server() {
    let Some(db) = common::TestDatabase::create("connect_tls") else {
        return;
    };
    let url = db.url_of_database();
    let server_ssl: String = db.connect().query_one("SHOW ssl", &[]).unwrap().get(0);
    let none = Vars(Vec::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let encrypted = |mode: &'static str| {
            let url = with_sslmode(&url, mode);
            let none = &none;
            async move {
                let client = ConnectOptions::resolve(Some(&url), none)
                    .unwrap()
                    .connect()
                    .await?;
                let ssl: bool = client
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                Ok::<bool, zdm::db::DbError>(ssl)
            }
        };
        assert!(!encrypted("disable").await.unwrap());
        if server_ssl == "on" {
            assert!(
                encrypted("prefer").await.unwrap(),
                "prefer uses TLS when offered"
            );
            assert!(encrypted("require").await.unwrap());
            // A self-signed certificate no trusted root signed is refused.
            let err = encrypted("verify-full").await.unwrap_err().to_string();
            assert!(
                err.contains("certificate") || err.contains("Certificate"),
                "{err}"
            );
        } else {
            assert!(
                !encrypted("prefer").await.unwrap(),
                "prefer falls back without TLS"
            );
            assert!(
                encrypted("require").await.is_err(),
                "require refuses a server without TLS"
            );
        }
    });
}

#[test]
fn pg_variables_replace_the_url() {
    let Some(db) = common::TestDatabase::create("connect_env") else {
        return;
    };
    let config: postgres::Config = db.url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id int PRIMARY KEY);",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zdm"))
            .args(args)
            .arg(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("ZDM_CONFIG")
            .env("PGHOST", &host)
            .env("PGPORT", &port)
            .env("PGUSER", &user)
            .env("PGDATABASE", &db.name)
            .env("PGPASSFILE", dir.path().join("missing-pgpass"))
            .output()
            .unwrap()
    };
    let out = run(&["expand"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["status"], "expanded");
    // The libpq resolution itself, on the same variables.
    let vars = Vars(vec![
        ("PGHOST", host.clone()),
        ("PGPORT", port.clone()),
        ("PGUSER", user.clone()),
        ("PGDATABASE", db.name.clone()),
    ]);
    let options = ConnectOptions::resolve(None, &vars).unwrap();
    assert_eq!(options.target, format!("{user}@{host}:{port}/{}", db.name));
}

/// A connection string that does not parse is named in the error, never with its password,
/// whichever form it takes.
#[test]
fn no_password_in_any_message() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "host=127.0.0.1 port=abc password=S3cret",
        "host=127.0.0.1 password='S3 cret' port=abc",
        "postgres://u@127.0.0.1/db?password=S3cret&connect_timeout=abc",
        "postgres://u:S3cret@127.0.0.1:abc/db",
    ] {
        for command in ["status", "expand", "plan"] {
            let out = Command::new(env!("CARGO_BIN_EXE_zdm"))
                .args([command, "--database-url", url])
                .arg(dir.path())
                .env_remove("PGPASSWORD")
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.status.success(), "{command} {url}: {all}");
            assert!(!all.contains("S3"), "{command} {url}: {all}");
            assert!(all.contains("127.0.0.1"), "{command} {url}: {all}");
        }
    }
}
