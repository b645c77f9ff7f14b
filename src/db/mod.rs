//! Everything that talks to PostgreSQL. The rest of zdm is pure; this module turns a live
//! database into the same types the offline pipeline uses.

mod backfill;
mod calibrate;
mod connect;
mod executor;
mod identity;
mod introspect;
mod lock_window;
mod records;
mod retry;
mod run;
mod state;
mod verify;

pub use calibrate::estimate_plans;
pub use connect::{ConnectOptions, Environment, ProcessEnv, SslMode};
pub use executor::{RUNNER_APPLICATION, Runner};
pub use identity::{Ambiguous, Identities, identify};
pub use introspect::introspect;
pub use records::{Status, StepState, plan_from_record, recorded_plans, recorded_statuses, status};
pub use run::{BackfillOptions, Phase, RunError, RunOptions, Stop};
pub use state::BackfillProgress;
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

/// A connection string with every password hidden, for messages: the URL's user info
/// (`postgres://app:***@db/prod`), a `password=` or `sslpassword=` query parameter, and the
/// same keys in the key=value form (`host=db password=***`, quoted values too).
pub fn redact(url: &str) -> String {
    if let Some(scheme) = url.find("://") {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let base = match base.rfind('@') {
            Some(at) if at > scheme => {
                let userinfo = &base[scheme + 3..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &base[..scheme + 3], &base[at..]),
                    None => base.to_owned(),
                }
            }
            _ => base.to_owned(),
        };
        let Some(query) = query else { return base };
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_password_key(k) => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        return format!("{base}?{}", params.join("&"));
    }
    redact_key_values(url)
}

fn is_password_key(key: &str) -> bool {
    key.trim().to_lowercase().ends_with("password")
}

/// The key=value form with password values replaced; values may be quoted (`'a b'`, with `\`
/// escapes), as libpq allows.
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key = &rest[..eq];
        out.push_str(key);
        out.push('=');
        let after = rest[eq + 1..].trim_start();
        out.push_str(&rest[eq + 1..eq + 1 + (rest.len() - eq - 1 - after.len())]);
        // The value ends at the closing quote, or at the next whitespace.
        let end = if let Some(quoted) = after.strip_prefix('\'') {
            let mut escaped = false;
            let mut close = quoted.len();
            for (i, ch) in quoted.char_indices() {
                match ch {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '\'' => {
                        close = i;
                        break;
                    }
                    _ => {}
                }
            }
            (close + 2).min(after.len())
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        let key_word = key
            .trim_end()
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or(key);
        if is_password_key(key_word) {
            out.push_str("***");
        } else {
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
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
        for (text, hidden) in [
            (
                "host=127.0.0.1 port=abc password=S3cret",
                "host=127.0.0.1 port=abc password=***",
            ),
            (
                "host=db password = 'S3 c\\'ret' user=app",
                "host=db password = *** user=app",
            ),
            (
                "postgres://u@127.0.0.1/db?password=S3cret&connect_timeout=abc",
                "postgres://u@127.0.0.1/db?password=***&connect_timeout=abc",
            ),
            (
                "postgresql://u:S3cret@h/db?sslpassword=S3cret",
                "postgresql://u:***@h/db?sslpassword=***",
            ),
        ] {
            assert_eq!(redact(text), hidden);
            assert!(!redact(text).contains("S3"), "{text}");
        }
    }
}
