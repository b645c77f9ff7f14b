//! Everything that talks to PostgreSQL. The rest of zdm is pure; this module turns a live
//! database into the same types the offline pipeline uses.

mod backfill;
mod connect;
mod executor;
mod introspect;
mod state;
mod verify;

pub use backfill::BackfillOptions;
pub use connect::{ConnectOptions, Environment, ProcessEnv, SslMode};
pub use executor::{
    RUNNER_APPLICATION, RunError, RunOptions, Runner, Status, StepState, Stop, plan_from_record,
    recorded_plans, status,
};
pub use introspect::introspect;
pub use verify::{Outcome, Verified, VerifyError, VerifyOptions, verify_set};

use tokio_postgres::Client;

/// Why zdm could not use the database. Each variant names what the user checks.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    #[error("reading the schema of {target} failed: {message}")]
    Query { target: String, message: String },
}

/// A connection URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Connects to `url` (libpq-style URL or key=value string), completed from the `PG*`
/// environment and the password file. The connection task runs on the current runtime until
/// the client is dropped.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    ConnectOptions::resolve(Some(url), &ProcessEnv)?
        .connect()
        .await
}

/// The server's own message when there is one, else the error with its causes
/// ("error connecting to server: Connection refused (os error 111)").
pub fn message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The server's major version (`server_version_num` / 10000).
pub async fn server_major_version(client: &Client) -> Result<u32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await?;
    Ok(row.get::<_, i32>(0) as u32)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_appear() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/prod"),
            "postgres://app:***@db:5432/prod"
        );
        assert_eq!(redact("postgres://app@db/prod"), "postgres://app@db/prod");
        assert_eq!(redact("postgres://a:b:c@db/x"), "postgres://a:***@db/x");
    }
}
