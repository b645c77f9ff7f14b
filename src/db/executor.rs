//! Running plans on a live database: `zdm expand`, `zdm contract`, `zdm abort`, `zdm status`.
//!
//! Every step is recorded in the `zdm` schema. A transactional step runs in its own transaction
//! with `SET LOCAL lock_timeout`, and its state row is written in that same transaction, so a
//! killed process leaves it either done or not started. A CONCURRENTLY step is recorded as
//! started, run, then recorded done; on resume an INVALID index it left is dropped and rebuilt.
//! A backfill saves its cursor in the transaction of each batch. Lock timeouts, deadlocks and
//! serialization failures are retried with jittered exponential backoff.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{message, state};
use crate::parse::{Change, parse_statement};
use crate::plan::render::BatchParts;
use crate::plan::{Backfill, MigrationPlan, Step};
use crate::source::split_statements;

/// The key of zdm's advisory lock: one runner per database.
const RUNNER_LOCK: i64 = 0x7a64_6d5f_6c6f_636b; // "zdm_lock"

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The longest any step waits for a lock; a queued ACCESS EXCLUSIVE request blocks every
    /// later query on its table, so this is also the longest the application can be held up.
    pub lock_timeout: Duration,
    /// The longest one transactional statement may run (0: no limit).
    pub statement_timeout: Duration,
    /// Attempts of a step whose lock is not granted (or that deadlocks) before giving up.
    pub max_attempts: u32,
    pub batch_size: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lock_timeout: Duration::from_secs(1),
            statement_timeout: Duration::ZERO,
            max_attempts: 6,
            batch_size: 1000,
        }
    }
}

/// Why a run stopped. Each variant says what the user does next.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("another zdm runner is working on this database{}; wait for it to finish", .pid.map(|p| format!(" (backend pid {p})")).unwrap_or_default())]
    Busy { pid: Option<i32> },
    #[error(
        "{path}: the migration changed after it was applied (checksum {recorded}, now {current}); restore the file or write a new migration; nothing was run"
    )]
    Edited {
        path: String,
        recorded: String,
        current: String,
    },
    #[error(
        "{migration}: {step} failed after {attempts} attempt(s): {message}; the migration is marked failed: `zdm expand` resumes it, `zdm abort` undoes it"
    )]
    Step {
        migration: String,
        step: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "{migration}: expanding it needs the contract of {earlier} first (both change {table}); run `zdm contract`, then `zdm expand` again"
    )]
    NeedsContract {
        migration: String,
        earlier: String,
        table: String,
    },
    #[error("{migration} is {status}; {what}")]
    WrongState {
        migration: String,
        status: String,
        what: String,
    },
    #[error("database error: {0}")]
    Db(String),
}

impl From<tokio_postgres::Error> for RunError {
    fn from(e: tokio_postgres::Error) -> Self {
        RunError::Db(message(&e))
    }
}

/// A migration's state as `zdm status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: String,
    /// pending, expanding, expanded, contracting, done, aborting, aborted or failed.
    pub status: String,
    pub phase: Option<String>,
    pub last_error: Option<String>,
    pub backfilled_rows: i64,
}

/// Runs plans against one database, holding zdm's advisory lock for the runner's lifetime.
pub struct Runner<'a> {
    client: &'a mut Client,
    options: RunOptions,
}

impl<'a> Runner<'a> {
    /// Takes the runner lock without waiting and makes sure the state schema exists.
    pub async fn start(
        client: &'a mut Client,
        options: RunOptions,
    ) -> Result<Runner<'a>, RunError> {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RUNNER_LOCK])
            .await?
            .get(0);
        if !got {
            let pid = client
                .query_opt(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                     AND ((classid::bigint << 32) | objid::bigint) = $1 LIMIT 1",
                    &[&RUNNER_LOCK],
                )
                .await?
                .map(|r| r.get(0));
            return Err(RunError::Busy { pid });
        }
        state::ensure_schema(client).await?;
        Ok(Runner { client, options })
    }

    /// Expands every migration not yet expanded, in order: expand steps, then backfills.
    pub async fn expand(&mut self, plans: &[MigrationPlan]) -> Result<Vec<String>, RunError> {
        let recorded = state::load(self.client).await?;
        check_checksums(plans, &recorded)?;
        // Expanded migrations whose contract is still to run, with the tables they change.
        let mut expanded_before: Vec<(String, HashSet<String>)> = recorded
            .iter()
            .filter(|m| m.status == "expanded" || m.status == "contracting")
            .filter(|m| m.plan["contract"].as_array().is_some_and(|c| !c.is_empty()))
            .map(|m| (m.id.clone(), tables_in_json(&m.plan)))
            .collect();
        let mut done = Vec::new();
        for plan in plans {
            let row = recorded.iter().find(|m| m.id == plan.id);
            let status = row.map(|m| m.status.as_str());
            if matches!(status, Some("expanded" | "contracting" | "done")) {
                continue;
            }
            if row.is_some_and(|m| m.status == "failed" && m.phase != "expand") {
                return Err(RunError::WrongState {
                    migration: plan.id.clone(),
                    status: "failed".into(),
                    what: "its contract or abort failed; run `zdm contract` or `zdm abort` again"
                        .into(),
                });
            }
            let tables = tables_of(plan);
            for (earlier, theirs) in &expanded_before {
                if let Some(table) = tables.intersection(theirs).next() {
                    return Err(RunError::NeedsContract {
                        migration: plan.id.clone(),
                        earlier: earlier.clone(),
                        table: table.clone(),
                    });
                }
            }
            if status == Some("aborted") {
                state::clear_steps(self.client, &plan.id).await?;
            }
            let plan_json = crate::plan::render::json_plan(plan);
            state::set_status(
                self.client,
                &plan.id,
                &plan.checksum,
                &plan_json,
                "expanding",
                "expand",
                None,
            )
            .await?;
            let result = async {
                for step in &plan.expand {
                    self.run_step(&plan.id, step).await?;
                }
                for (i, b) in plan.backfill.iter().enumerate() {
                    self.backfill(&plan.id, &format!("backfill-{}", i + 1), b)
                        .await?;
                }
                Ok::<(), RunError>(())
            }
            .await;
            if let Err(e) = result {
                state::set_status(
                    self.client,
                    &plan.id,
                    &plan.checksum,
                    &plan_json,
                    "failed",
                    "expand",
                    Some(&e.to_string()),
                )
                .await?;
                return Err(e);
            }
            state::set_status(
                self.client,
                &plan.id,
                &plan.checksum,
                &plan_json,
                "expanded",
                "expand",
                None,
            )
            .await?;
            tracing::info!("expanded {}", plan.id);
            if !plan.contract.is_empty() {
                expanded_before.push((plan.id.clone(), tables));
            }
            done.push(plan.id.clone());
        }
        Ok(done)
    }

    /// Contracts every expanded migration, in order, with the steps planned when it was expanded.
    pub async fn contract(&mut self, plans: &[MigrationPlan]) -> Result<Vec<String>, RunError> {
        let recorded = state::load(self.client).await?;
        check_checksums(plans, &recorded)?;
        let mut done = Vec::new();
        for plan in plans {
            let Some(row) = recorded.iter().find(|m| m.id == plan.id) else {
                break; // not expanded yet: later ones cannot be contracted before it
            };
            let resumable = row.status == "expanded"
                || row.status == "contracting"
                || (row.status == "failed" && row.phase == "contract");
            if row.status == "done" {
                continue;
            }
            if !resumable {
                break;
            }
            state::set_status(
                self.client,
                &row.id,
                &row.checksum,
                &row.plan,
                "contracting",
                "contract",
                None,
            )
            .await?;
            let result = async {
                for step in steps_from_json(&row.plan["contract"]) {
                    self.run_step(&row.id, &step).await?;
                }
                Ok::<(), RunError>(())
            }
            .await;
            if let Err(e) = result {
                state::set_status(
                    self.client,
                    &row.id,
                    &row.checksum,
                    &row.plan,
                    "failed",
                    "contract",
                    Some(&e.to_string()),
                )
                .await?;
                return Err(e);
            }
            state::set_status(
                self.client,
                &row.id,
                &row.checksum,
                &row.plan,
                "done",
                "contract",
                None,
            )
            .await?;
            tracing::info!("contracted {}", row.id);
            done.push(row.id.clone());
        }
        Ok(done)
    }

    /// Undoes the expand of every migration not yet contracted, newest first.
    pub async fn abort(&mut self, plans: &[MigrationPlan]) -> Result<Vec<String>, RunError> {
        let recorded = state::load(self.client).await?;
        let mut done = Vec::new();
        for plan in plans.iter().rev() {
            let Some(row) = recorded.iter().find(|m| m.id == plan.id) else {
                continue;
            };
            let abortable = matches!(row.status.as_str(), "expanding" | "expanded" | "aborting")
                || (row.status == "failed" && row.phase != "contract");
            if !abortable {
                continue;
            }
            state::set_status(
                self.client,
                &row.id,
                &row.checksum,
                &row.plan,
                "aborting",
                "abort",
                None,
            )
            .await?;
            let result = async {
                for step in steps_from_json(&row.plan["down"]["expand"]) {
                    self.run_step(&row.id, &step).await?;
                }
                Ok::<(), RunError>(())
            }
            .await;
            if let Err(e) = result {
                state::set_status(
                    self.client,
                    &row.id,
                    &row.checksum,
                    &row.plan,
                    "failed",
                    "abort",
                    Some(&e.to_string()),
                )
                .await?;
                return Err(e);
            }
            state::clear_steps(self.client, &row.id).await?;
            state::set_status(
                self.client,
                &row.id,
                &row.checksum,
                &row.plan,
                "aborted",
                "abort",
                None,
            )
            .await?;
            tracing::info!("aborted {}", row.id);
            done.push(row.id.clone());
        }
        Ok(done)
    }

    /// Runs one step unless it is recorded done.
    async fn run_step(&mut self, migration: &str, step: &Step) -> Result<(), RunError> {
        let previous = state::step_status(self.client, migration, &step.id).await?;
        if previous.as_deref() == Some("done") {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = if step.transaction {
                self.run_transactional(migration, step).await
            } else {
                self.run_concurrently(migration, step, previous.is_some())
                    .await
            };
            let Err(e) = result else {
                tracing::info!(migration, step = %step.id, "{}", step.description);
                return Ok(());
            };
            let retryable = e.code().is_some_and(|c| {
                *c == SqlState::LOCK_NOT_AVAILABLE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
            });
            let text = message(&e);
            state::record_attempt(self.client, migration, &step.id, &text).await?;
            if !retryable || attempt >= self.options.max_attempts {
                return Err(RunError::Step {
                    migration: migration.to_owned(),
                    step: format!("{} ({})", step.id, step.description),
                    attempts: attempt,
                    message: text,
                });
            }
            let wait = backoff(attempt);
            tracing::warn!(migration, step = %step.id, attempt, "{text}; retrying in {} ms", wait.as_millis());
            tokio::time::sleep(wait).await;
        }
    }

    async fn run_transactional(
        &mut self,
        migration: &str,
        step: &Step,
    ) -> Result<(), tokio_postgres::Error> {
        let timeouts = self.timeouts();
        let tx = self.client.transaction().await?;
        tx.batch_execute(&timeouts).await?;
        tx.batch_execute(&step.sql).await?;
        state::set_step(&tx, migration, &step.id, "done").await?;
        tx.commit().await
    }

    /// A CONCURRENTLY step: recorded as started, run outside a transaction, recorded done.
    /// A build a crash or failure left INVALID is dropped first, so it is rebuilt.
    async fn run_concurrently(
        &mut self,
        migration: &str,
        step: &Step,
        resumed: bool,
    ) -> Result<(), tokio_postgres::Error> {
        state::set_step(&*self.client, migration, &step.id, "started").await?;
        if let Some(index) = created_index(&step.sql) {
            let valid: Option<bool> = self
                .client
                .query_opt(
                    "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                    &[&index],
                )
                .await?
                .map(|r| r.get(0));
            match valid {
                Some(false) => {
                    tracing::warn!(migration, step = %step.id, "dropping the INVALID index {index} a failed build left");
                    self.client
                        .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
                        .await?;
                }
                Some(true) if resumed => {
                    return state::set_step(&*self.client, migration, &step.id, "done").await;
                }
                _ => {}
            }
        }
        self.client.batch_execute(&step.sql).await?;
        state::set_step(&*self.client, migration, &step.id, "done").await
    }

    fn timeouts(&self) -> String {
        format!(
            "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
            self.options.lock_timeout.as_millis(),
            self.options.statement_timeout.as_millis()
        )
    }

    /// Runs a backfill in keyset batches from its saved cursor; each batch and its cursor
    /// commit together.
    async fn backfill(
        &mut self,
        migration: &str,
        step_id: &str,
        b: &Backfill,
    ) -> Result<(), RunError> {
        if state::step_status(self.client, migration, step_id)
            .await?
            .as_deref()
            == Some("done")
        {
            return Ok(());
        }
        let parts = BatchParts::new(b);
        let mut types = Vec::new();
        for key in &b.key {
            let row = self
                .client
                .query_one(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2::text",
                    &[&parts.table, key],
                )
                .await?;
            types.push(row.get::<_, String>(0));
        }
        let as_text = parts
            .keys
            .iter()
            .map(|k| format!("{k}::text"))
            .collect::<Vec<_>>()
            .join(", ");
        let bound = |param: usize| {
            types
                .iter()
                .enumerate()
                .map(|(i, t)| format!("(${param}::text[])[{}]::{t}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let edge = |order: &str| {
            format!(
                "SELECT ARRAY[{as_text}] FROM {} ORDER BY {} LIMIT 1",
                parts.table,
                parts
                    .keys
                    .iter()
                    .map(|k| format!("{k} {order}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let (mut next, max): (Option<Vec<String>>, Option<Vec<String>>) =
            match state::cursor(self.client, migration, step_id).await? {
                Some(c) => (json_keys(&c["next"]), json_keys(&c["max"])),
                None => {
                    let max = self
                        .client
                        .query_opt(&edge("DESC"), &[])
                        .await?
                        .map(|r| r.get(0));
                    let min = self
                        .client
                        .query_opt(&edge("ASC"), &[])
                        .await?
                        .map(|r| r.get(0));
                    (min, max)
                }
            };
        let batch_sql = format!(
            "{}\nSELECT (SELECT ARRAY[{as_text}] FROM keys ORDER BY {} OFFSET {n} LIMIT 1), (SELECT count(*) FROM updated)",
            parts.ctes(&bound(1), &bound(2), self.options.batch_size),
            parts.key_list,
            n = self.options.batch_size
        );
        let statement = self.client.prepare(&batch_sql).await?;
        let mut total = 0i64;
        while let (Some(lower), Some(upper)) = (&next, &max) {
            let timeouts = self.timeouts();
            let tx = self.client.transaction().await?;
            tx.batch_execute(&timeouts).await?;
            // The sync triggers see this and leave the rows the backfill writes alone.
            tx.batch_execute("SELECT set_config('zdm.backfill', 'on', true)")
                .await?;
            let row = tx.query_one(&statement, &[lower, upper]).await?;
            let following: Option<Vec<String>> = row.get(0);
            let updated: i64 = row.get(1);
            state::save_cursor(
                &tx,
                migration,
                step_id,
                &json!({"next": following, "max": upper}),
                updated,
            )
            .await?;
            tx.commit().await?;
            total += updated;
            next = following;
        }
        state::set_step(&*self.client, migration, step_id, "done").await?;
        tracing::info!(
            migration,
            step = step_id,
            rows = total,
            "backfilled {}",
            b.table
        );
        Ok(())
    }
}

/// Each migration's state, for every migration of the plans (pending when never run).
pub async fn status(client: &Client, plans: &[MigrationPlan]) -> Result<Vec<Status>, RunError> {
    let schema: Option<String> = client
        .query_one("SELECT to_regclass('zdm.migrations')::text", &[])
        .await?
        .get(0);
    let recorded = if schema.is_some() {
        state::load(client).await?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for plan in plans {
        let row = recorded.iter().find(|m| m.id == plan.id);
        let backfilled_rows = if row.is_some() {
            client
                .query_one(
                    "SELECT coalesce(sum(rows_done), 0)::bigint FROM zdm.steps WHERE migration_id = $1",
                    &[&plan.id],
                )
                .await?
                .get(0)
        } else {
            0
        };
        out.push(Status {
            id: plan.id.clone(),
            status: row.map_or_else(|| "pending".to_owned(), |m| m.status.clone()),
            phase: row.map(|m| m.phase.clone()),
            last_error: row.and_then(|m| m.last_error.clone()),
            backfilled_rows,
        });
    }
    Ok(out)
}

fn check_checksums(
    plans: &[MigrationPlan],
    recorded: &[state::MigrationState],
) -> Result<(), RunError> {
    for plan in plans {
        if let Some(m) = recorded.iter().find(|m| m.id == plan.id)
            && m.checksum != plan.checksum
            && m.status != "aborted"
        {
            return Err(RunError::Edited {
                path: plan.path.clone(),
                recorded: m.checksum[..12].to_owned(),
                current: plan.checksum[..12].to_owned(),
            });
        }
    }
    Ok(())
}

/// Jittered exponential backoff: about 100 ms, 200 ms, 400 ms… up to 5 s.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    Duration::from_millis(base / 2 + nanos % (base / 2 + 1))
}

/// The index a `CREATE INDEX CONCURRENTLY` step builds, qualified as written.
fn created_index(sql: &str) -> Option<String> {
    let stmt = split_statements(sql).statements.into_iter().next()?;
    match parse_statement(&stmt) {
        Change::CreateIndex {
            name: Some(name),
            table,
            concurrently: true,
            ..
        } => {
            let name = crate::plan::ops::passthrough::index_in(&name, &table);
            Some(crate::sql::Qualified(&name).to_string())
        }
        _ => None,
    }
}

/// The relations a plan's steps lock or backfill.
fn tables_of(plan: &MigrationPlan) -> HashSet<String> {
    let mut out: HashSet<String> = plan
        .expand
        .iter()
        .chain(&plan.contract)
        .filter_map(|s| s.lock.as_ref().map(|l| l.relation.key().to_string()))
        .collect();
    out.extend(plan.backfill.iter().map(|b| b.table.key().to_string()));
    out
}

fn tables_in_json(plan: &Value) -> HashSet<String> {
    let mut out = HashSet::new();
    for phase in ["expand", "contract"] {
        for s in plan[phase].as_array().into_iter().flatten() {
            if let Some(r) = s["lock"]["relation"].as_str() {
                out.insert(r.trim_start_matches("public.").to_owned());
            }
        }
    }
    for b in plan["backfill"].as_array().into_iter().flatten() {
        if let Some(t) = b["table"].as_str() {
            out.insert(t.trim_start_matches("public.").to_owned());
        }
    }
    out
}

/// The steps of a phase, from the plan recorded at expand.
fn steps_from_json(steps: &Value) -> Vec<Step> {
    steps
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| Step {
            id: s["id"].as_str().unwrap_or_default().to_owned(),
            description: s["description"].as_str().unwrap_or_default().to_owned(),
            sql: s["sql"].as_str().unwrap_or_default().to_owned(),
            transaction: s["transaction"].as_bool().unwrap_or(true),
            lock: None,
        })
        .collect()
}

fn json_keys(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .map(|x| x.as_str().unwrap_or_default().to_owned())
            .collect()
    })
}
