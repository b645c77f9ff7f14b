//! `zdm verify`: the proof that a plan means what its SQL means.
//!
//! For each migration of a set, on a server where zdm may create and drop scratch databases:
//! the schema the earlier migrations build (run as written) is filled with sample rows
//! (`seed`) and copied; one copy runs the migration as written, statement by statement; the
//! other runs zdm's expand and then its contract, with reads of both application versions
//! tried between the phases. Then the two are compared (`snapshot`): columns, constraints,
//! indexes, views, sequences, triggers and every row. The copies come from
//! `CREATE DATABASE … TEMPLATE`, so each migration starts from identical data.

mod seed;
mod snapshot;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::Client;

use super::{ConnectOptions, DbError, RunOptions, Runner, introspect, message};
use crate::lint::LintOptions;
use crate::plan::ops::passthrough::{ACCEPTED_LOCK, AS_WRITTEN};
use crate::plan::{MigrationPlan, plan_file};
use crate::source::{MigrationSet, SourceFile, split_statements};

use seed::Nulls;
pub use snapshot::Snapshot;

/// How one migration compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The same schema and rows either way.
    Equal,
    /// The first difference found.
    Different(String),
    /// Expand or contract failed where the SQL as written succeeded.
    Failed { phase: &'static str, error: String },
    /// The migration fails as written on sample data, so there is nothing to compare with.
    NotComparable(String),
    /// zdm refuses to plan it (the reason); it is run as written for the migrations after it.
    Refused(String),
    /// Its plan runs every statement as written, so there is nothing to prove.
    AsWritten,
}

impl Outcome {
    /// A short word for the outcome, used in the reports.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Equal => "equal",
            Outcome::Different(_) => "different",
            Outcome::Failed { .. } => "failed",
            Outcome::NotComparable(_) => "not comparable",
            Outcome::Refused(_) => "refused",
            Outcome::AsWritten => "as written",
        }
    }

    /// Whether this outcome disproves the plan.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Different(_) | Outcome::Failed { .. })
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Outcome::Different(d) | Outcome::NotComparable(d) | Outcome::Refused(d) => {
                Some(d.clone())
            }
            Outcome::Failed { phase, error } => Some(format!("{phase} failed: {error}")),
            Outcome::Equal | Outcome::AsWritten => None,
        }
    }
}

/// The result for one migration file.
#[derive(Debug, Clone)]
pub struct Verified {
    pub path: String,
    pub outcome: Outcome,
}

/// What `zdm verify` may be asked.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Compare migrations whose plan runs every statement as written, too.
    pub all: bool,
    /// Compare only these files (by path as shown); the others are run as written.
    pub only: Option<Vec<String>>,
}

/// Why verification could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(
        "cannot create scratch databases on {target}: {message}; zdm verify needs a server where its role may CREATE DATABASE (a throw-away server)"
    )]
    Scratch { target: String, message: String },
}

/// Verifies every forward migration of `set`, in order, calling `report` after each.
pub async fn verify_set(
    server: &ConnectOptions,
    set: &MigrationSet,
    lint: &LintOptions,
    options: &VerifyOptions,
    mut report: impl FnMut(&Verified),
) -> Result<Vec<Verified>, VerifyError> {
    let admin = server.connect().await?;
    let prefix = format!("_zdm_verify_{}", std::process::id());
    let scratch = Scratch {
        admin: &admin,
        server,
        prefix: prefix.clone(),
    };
    let chain = scratch.create("chain", None).await?;
    let result = async {
        let mut lint = lint.clone();
        lint.pg_version = super::server_major_version(&admin)
            .await
            .map_err(|e| scratch.error(e))?;
        let mut out = Vec::new();
        for file in &set.forward {
            let path = file.path.display().to_string();
            let wanted = options
                .only
                .as_ref()
                .is_none_or(|only| only.contains(&path));
            if wanted {
                let outcome = verify_one(&scratch, &chain, file, &lint, options).await?;
                let verified = Verified { path, outcome };
                report(&verified);
                out.push(verified);
            }
            // The next migration starts from this one's schema, run as written. No session
            // stays on the chain: a database is copied only while nobody is connected to it.
            // A migration that fails even on empty tables (a set whose history was edited:
            // `DROP VIEW v` of a view no migration creates) is run on past its failing
            // statements, so that the migrations after it find as much of their schema as it
            // can give; it is reported as not comparable.
            let chain_client = server.with_dbname(&chain).connect().await?;
            if let Err(e) = run_leniently(&chain_client, file).await {
                let verified = Verified {
                    path: file.path.display().to_string(),
                    outcome: Outcome::NotComparable(format!(
                        "fails as written on the schema of the migrations before it (no rows): {e}"
                    )),
                };
                if wanted
                    && out
                        .last()
                        .is_some_and(|v: &Verified| !v.outcome.is_failure())
                {
                    out.pop();
                }
                report(&verified);
                out.push(verified);
            }
        }
        Ok(out)
    }
    .await;
    scratch.drop(&chain).await;
    result
}

/// Scratch databases on the server, named after this process.
struct Scratch<'a> {
    admin: &'a Client,
    server: &'a ConnectOptions,
    prefix: String,
}

impl Scratch<'_> {
    fn error(&self, e: tokio_postgres::Error) -> VerifyError {
        VerifyError::Scratch {
            target: self.server.target.clone(),
            message: message(&e),
        }
    }

    /// Creates `<prefix>_<label>`, as a copy of `template` when given.
    async fn create(&self, label: &str, template: Option<&str>) -> Result<String, VerifyError> {
        let name = format!("{}_{label}", self.prefix);
        self.drop(&name).await;
        let from = template
            .map(|t| format!(" TEMPLATE {}", crate::sql::Ident(t)))
            .unwrap_or_default();
        self.admin
            .batch_execute(&format!(
                "CREATE DATABASE {}{from}",
                crate::sql::Ident(&name)
            ))
            .await
            .map_err(|e| self.error(e))?;
        Ok(name)
    }

    async fn drop(&self, name: &str) {
        // Let the tasks of connections just dropped say goodbye to the server first: on this
        // single-threaded runtime they run only when this task yields, and FORCE would
        // otherwise cut them off mid-way (logged as a lost connection).
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                crate::sql::Ident(name)
            ))
            .await;
    }
}

async fn verify_one(
    scratch: &Scratch<'_>,
    chain: &str,
    file: &SourceFile,
    lint: &LintOptions,
    options: &VerifyOptions,
) -> Result<Outcome, VerifyError> {
    // Plan against the schema as it is, as `zdm expand` does.
    let client = scratch.server.with_dbname(chain).connect().await?;
    let mut catalog = introspect(&client, chain).await?;
    drop(client);
    let plan = match plan_file(file, &mut catalog, lint) {
        Ok(plan) => plan,
        Err(e) => return Ok(Outcome::Refused(e.to_string())),
    };
    if !options.all && runs_as_written(&plan) {
        return Ok(Outcome::AsWritten);
    }
    let first = compare(scratch, chain, file, &plan, Nulls::EveryFourthRow).await?;
    if !matches!(first, Outcome::NotComparable(_)) {
        return Ok(first);
    }
    match compare(scratch, chain, file, &plan, Nulls::None).await? {
        Outcome::NotComparable(_) => Ok(first),
        outcome => Ok(outcome),
    }
}

/// Seeds a copy of the chain, copies it again, and compares the migration run as written on
/// one with zdm's expand and contract on the other.
async fn compare(
    scratch: &Scratch<'_>,
    chain: &str,
    file: &SourceFile,
    plan: &MigrationPlan,
    nulls: Nulls,
) -> Result<Outcome, VerifyError> {
    let written = scratch.create("written", Some(chain)).await?;
    let result = async {
        let written_client = scratch.server.with_dbname(&written).connect().await?;
        seed::seed(&written_client, nulls)
            .await
            .map_err(|e| scratch.error(e))?;
        // Only now, with the rows in, the copy for zdm; no session may be on the template.
        drop(written_client);
        let zdm = scratch.create("zdm", Some(&written)).await?;
        let outcome = async {
            let written_client = scratch.server.with_dbname(&written).connect().await?;
            let mut zdm_client = scratch.server.with_dbname(&zdm).connect().await?;
            let before = snapshot::take(&written_client, &today())
                .await
                .map_err(|e| scratch.error(e))?;
            // Which tables each application version can insert into without zdm: only those
            // are tried between the phases.
            let old_inserts = seed::try_inserts(&written_client, &before.columns)
                .await
                .map_err(|e| scratch.error(e))?;
            if let Err(e) = run_as_written(&written_client, file).await {
                return Ok(Outcome::NotComparable(format!(
                    "the migration fails as written on sample data: {e}"
                )));
            }
            let after = snapshot::take(&written_client, &today())
                .await
                .map_err(|e| scratch.error(e))?;
            let new_inserts = seed::try_inserts(&written_client, &after.columns)
                .await
                .map_err(|e| scratch.error(e))?;
            // A migration that adds a constraint the old version's rows break (a required
            // column it does not write, a foreign key the sample values miss) breaks its
            // inserts as written too; zdm cannot make those pass, so those tables are not
            // tried. A missing column (a rename, a drop) is zdm's to bridge, and is tried.
            let old_after = seed::try_inserts(&written_client, &before.columns)
                .await
                .map_err(|e| scratch.error(e))?;
            let mut old_inserts = old_inserts;
            old_inserts.extend(
                old_after
                    .into_iter()
                    .filter(|(_, e)| e.is_constraint_violation()),
            );
            let apps = Apps {
                old: writable(&before, &old_inserts),
                new: writable(&after, &new_inserts),
            };
            if let Err((phase, error)) = run_zdm(&mut zdm_client, plan, &apps).await {
                return Ok(Outcome::Failed { phase, error });
            }
            let mut result = snapshot::take(&zdm_client, &today())
                .await
                .map_err(|e| scratch.error(e))?;
            if snapshot::first_difference(&after, &result).is_none() {
                return Ok(Outcome::Equal);
            }
            // Values the migration computes with random() or the like differ from run to
            // run: run it as written once more, and compare only what two such runs agree on.
            drop(written_client);
            let again = written_again(scratch, chain, file, nulls).await?;
            let mut after = after;
            snapshot::mask_disagreements(&mut after, &mut result, &again);
            Ok::<_, VerifyError>(match snapshot::first_difference(&after, &result) {
                Some(d) => Outcome::Different(d),
                None => Outcome::Equal,
            })
        }
        .await;
        scratch.drop(&zdm).await;
        outcome
    }
    .await;
    scratch.drop(&written).await;
    result
}

/// The migration run as written a second time, on sample rows seeded the same way.
async fn written_again(
    scratch: &Scratch<'_>,
    chain: &str,
    file: &SourceFile,
    nulls: Nulls,
) -> Result<Snapshot, VerifyError> {
    let again = scratch.create("again", Some(chain)).await?;
    let result = async {
        let client = scratch.server.with_dbname(&again).connect().await?;
        seed::seed(&client, nulls)
            .await
            .map_err(|e| scratch.error(e))?;
        // It succeeded once on the same rows; a failure now shows in the comparison.
        let _ = run_as_written(&client, file).await;
        snapshot::take(&client, &today())
            .await
            .map_err(|e| scratch.error(e))
    }
    .await;
    scratch.drop(&again).await;
    result
}

/// Whether a plan only runs the migration's statements as written.
fn runs_as_written(plan: &MigrationPlan) -> bool {
    plan.operations
        .iter()
        .all(|o| [AS_WRITTEN, ACCEPTED_LOCK].contains(&o.kind))
}

/// The longest one statement may run on sample data: a migration that loops until its data
/// is in some shape (`WHILE EXISTS (…) LOOP UPDATE …`) may never get there on sample rows.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a migration's statements one after the other, as a plain runner would.
async fn run_as_written(client: &Client, file: &SourceFile) -> Result<(), String> {
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            STATEMENT_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| message(&e))?;
    for stmt in split_statements(&file.text).statements {
        if let Err(e) = client.batch_execute(&stmt.text).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(format!("line {}: {}", stmt.start.line, message(&e)));
        }
    }
    Ok(())
}

/// The tables and columns of each application version: the old one knows the schema before
/// the migration, the new one the schema after it. Only tables the version can insert into
/// without zdm (on the copy run as written) are tried.
struct Apps {
    old: BTreeMap<String, Vec<String>>,
    new: BTreeMap<String, Vec<String>>,
}

fn writable(
    schema: &Snapshot,
    failed: &BTreeMap<String, seed::InsertError>,
) -> BTreeMap<String, Vec<String>> {
    schema
        .columns
        .iter()
        .filter(|(t, _)| !failed.contains_key(*t))
        .map(|(t, c)| (t.clone(), c.clone()))
        .collect()
}

/// Runs every statement of a migration, each in its own transaction (its own BEGIN and
/// COMMIT left out, so that one failure does not undo the others), past the ones that fail;
/// returns the first failure.
async fn run_leniently(client: &Client, file: &SourceFile) -> Result<(), String> {
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            STATEMENT_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| message(&e))?;
    let mut first = None;
    for stmt in split_statements(&file.text).statements {
        let transaction_control = matches!(
            crate::parse::parse_statement(&stmt),
            crate::parse::Change::Begin | crate::parse::Change::Commit
        );
        if transaction_control {
            continue;
        }
        let mut result = client.batch_execute(&stmt.text).await;
        // A schema the application's setup creates outside its migrations (GoTrue's `auth`)
        // is created here as that setup would, and the statement tried again.
        if let Err(e) = &result
            && let Some(schema) = missing_schema(e)
        {
            let _ = client.batch_execute("ROLLBACK").await;
            let create = format!("CREATE SCHEMA IF NOT EXISTS {}", crate::sql::Ident(&schema));
            if client.batch_execute(&create).await.is_ok() {
                result = client.batch_execute(&stmt.text).await;
            }
        }
        if let Err(e) = result {
            let _ = client.batch_execute("ROLLBACK").await;
            first.get_or_insert_with(|| format!("line {}: {}", stmt.start.line, message(&e)));
        }
    }
    first.map_or(Ok(()), Err)
}

/// The schema named by a "schema … does not exist" error (SQLSTATE 3F000).
fn missing_schema(e: &tokio_postgres::Error) -> Option<String> {
    let db = e.as_db_error()?;
    if db.code() != &tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME {
        return None;
    }
    let rest = db.message().strip_prefix("schema \"")?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// Expand, the reads and writes of both application versions, contract, and the new
/// version's reads and writes.
async fn run_zdm(
    client: &mut Client,
    plan: &MigrationPlan,
    apps: &Apps,
) -> Result<(), (&'static str, String)> {
    let options = RunOptions {
        lock_timeout: Duration::from_secs(5),
        statement_timeout: STATEMENT_TIMEOUT,
        ..RunOptions::default()
    };
    {
        let mut runner = Runner::start(client, options.clone())
            .await
            .map_err(|e| ("expand", e.to_string()))?;
        let plans = std::slice::from_ref(plan);
        runner
            .expand(plans)
            .await
            .map_err(|e| ("expand", e.to_string()))?;
    }
    app_reads(client, &apps.old, "the old application after expand").await?;
    app_writes(client, &apps.old, "the old application after expand").await?;
    app_reads(client, &apps.new, "the new application after expand").await?;
    app_writes(client, &apps.new, "the new application after expand").await?;
    {
        let mut runner = Runner::start(client, options)
            .await
            .map_err(|e| ("contract", e.to_string()))?;
        runner
            .contract(std::slice::from_ref(plan))
            .await
            .map_err(|e| ("contract", e.to_string()))?;
    }
    app_reads(client, &apps.new, "the new application after contract").await?;
    app_writes(client, &apps.new, "the new application after contract").await?;
    Ok(())
}

/// One INSERT per table of the columns the application version knows, rolled back.
async fn app_writes(
    client: &Client,
    tables: &BTreeMap<String, Vec<String>>,
    who: &str,
) -> Result<(), (&'static str, String)> {
    let failed = seed::try_inserts(client, tables)
        .await
        .map_err(|e| ("writes", message(&e)))?;
    match failed.into_iter().next() {
        Some((table, error)) => Err((
            "writes",
            format!("{who} cannot insert into {table}: {}", error.message),
        )),
        None => Ok(()),
    }
}

/// Reads every column of every table the application version knows.
async fn app_reads(
    client: &Client,
    tables: &BTreeMap<String, Vec<String>>,
    who: &str,
) -> Result<(), (&'static str, String)> {
    for (table, columns) in tables {
        let columns: Vec<String> = columns
            .iter()
            .map(|c| crate::sql::Ident(c).to_string())
            .collect();
        let sql = format!("SELECT {} FROM {table} LIMIT 1", columns.join(", "));
        if let Err(e) = client.query(&sql, &[]).await {
            return Err((
                "reads",
                format!("{who} cannot read {table}: {}", message(&e)),
            ));
        }
    }
    Ok(())
}

/// The dates of this run, whose values (`now()` and the like) differ between the two copies.
fn today() -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Yesterday, today and tomorrow in UTC cover every time zone the server may render in.
    [-1, 0, 1]
        .iter()
        .map(|d| civil_date(now / 86_400 + d))
        .collect()
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(20_789), "2026-12-02");
    }
}
