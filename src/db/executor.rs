//! Running plans on a live database: `zdm expand`, `zdm contract`, `zdm abort`, `zdm status`.
//!
//! Every step is recorded in the `zdm` schema. A transactional step runs in its own transaction
//! with `SET LOCAL lock_timeout`, and its state row is written in that same transaction, so a
//! killed process leaves it either done or not started. A CONCURRENTLY step is recorded as
//! started, run, then recorded done; on resume an INVALID index it left is dropped and rebuilt.
//! A backfill saves its cursor in the transaction of each batch. Lock timeouts, deadlocks and
//! serialization failures are retried with jittered exponential backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::backfill::{BackfillOptions, BackfillRun};
use super::{message, state};
use crate::parse::{Change, Name, parse_statement};
use crate::plan::{Assignment, Backfill, Down, MigrationPlan, Step};
use crate::source::{SourceFile, split_statements};

/// The key of zdm's advisory lock: one runner per database.
const RUNNER_LOCK: i64 = 0x7a64_6d5f_6c6f_636b; // "zdm_lock"

/// The `application_name` of a runner's session. A session of that name still running after
/// a new runner took the lock was left by a killed runner, and is ended.
pub const RUNNER_APPLICATION: &str = "zdm runner";

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The longest any step waits for a lock; a queued ACCESS EXCLUSIVE request blocks every
    /// later query on its table, so this is also the longest the application can be held up.
    pub lock_timeout: Duration,
    /// The lock wait of CONCURRENTLY steps, which also wait for every older transaction to
    /// end. Their SHARE UPDATE EXCLUSIVE lock blocks no application query, so this may be
    /// raised on databases with long transactions; by default it is `lock_timeout`.
    pub concurrent_lock_timeout: Option<Duration>,
    /// The longest one statement may run (zero: no limit).
    pub statement_timeout: Duration,
    /// Attempts of a step whose lock is not granted (or that deadlocks) before giving up.
    pub max_attempts: u32,
    pub backfill: BackfillOptions,
    pub stop: Stop,
    /// Expand a migration again even though an aborted run of it had started a backfill that
    /// is not safe to repeat (an UPDATE whose new values depend on the old): the user has put
    /// the rows back or accepts the second application.
    pub rerun_backfill: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lock_timeout: Duration::from_secs(1),
            concurrent_lock_timeout: None,
            statement_timeout: Duration::ZERO,
            max_attempts: 6,
            backfill: BackfillOptions::default(),
            stop: Stop::default(),
            rerun_backfill: false,
        }
    }
}

/// The phase a runner is in, for what a failure message advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Expand,
    Contract,
    Abort,
}

impl Phase {
    fn advice(self) -> &'static str {
        match self {
            Phase::Expand => "fix the cause, then `zdm expand` resumes it; `zdm abort` undoes it",
            Phase::Contract => "fix the cause, then `zdm contract` resumes it",
            Phase::Abort => {
                "fix the cause (an undo may need data the new application did not write), then run `zdm abort` again; `zdm expand` goes forward instead"
            }
        }
    }
}

/// A request to stop after the current batch or step (SIGINT, SIGTERM). Every wait of the
/// runner (a retry's backoff, a rate limit, a pause, a replication-lag hold) is a
/// [`Stop::sleep`], which ends as soon as a stop is requested.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<StopSignal>);

#[derive(Debug, Default)]
pub struct StopSignal {
    requested: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Stop {
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.wake.notify_waiters();
    }

    pub fn requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration`, or until a stop is requested.
    pub async fn sleep(&self, duration: Duration) {
        let woken = self.0.wake.notified();
        tokio::pin!(woken);
        // Registered before the flag is read, so a request in between still wakes it.
        woken.as_mut().enable();
        if self.requested() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = woken => {}
        }
    }
}

/// Why a run stopped. Each variant says what the user does next.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "another zdm runner is working on this database{}; wait for it to finish (a session left by a killed runner ends when its statement does, or with `SELECT pg_terminate_backend(pid)`)",
        .holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    Busy {
        pid: Option<i32>,
        holder: Option<String>,
    },
    #[error(
        "{path}: the migration changed after it was applied (checksum {recorded}, now {current}); restore the file or write a new migration; nothing was run"
    )]
    Edited {
        path: String,
        recorded: String,
        current: String,
    },
    #[error(
        "{migration}: {step} failed after {attempts} attempt(s): {message}; the migration is marked failed: {}",
        .phase.advice()
    )]
    Step {
        migration: String,
        step: String,
        attempts: u32,
        message: String,
        phase: Phase,
    },
    #[error(
        "{path}:{line}: an expression of this statement fails against the database: {message}; fix the statement (or its -- zdm: directive) and run the command again; nothing of this migration was run"
    )]
    Expression {
        path: String,
        line: usize,
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
    #[error(
        "{migration}: stopped on request; its state is saved: run the same command again to resume, or `zdm abort` to undo"
    )]
    Interrupted { migration: String },
    /// A backfill batch failed; the runner retries it or reports it as a failed `Step`.
    #[error("backfill batch failed: {}", message(.0))]
    Batch(tokio_postgres::Error),
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
    /// The step in progress (or that failed), with its description, attempts and last error.
    pub current_step: Option<StepState>,
    /// The file changed after the migration was applied.
    pub edited: bool,
}

/// A recorded step, as `zdm status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepState {
    pub id: String,
    pub description: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Runs plans against one database, holding zdm's advisory lock for the runner's lifetime.
pub struct Runner<'a> {
    client: &'a mut Client,
    options: RunOptions,
    phase: Phase,
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
            let row = client
                .query_opt(
                    "SELECT l.pid, format('backend pid %s, %s, %s', l.pid, a.state, \
                            coalesce('since ' || date_trunc('second', a.query_start)::text, 'no query')) \
                     FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted \
                       AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
                    &[&RUNNER_LOCK],
                )
                .await?;
            return Err(RunError::Busy {
                pid: row.as_ref().map(|r| r.get(0)),
                holder: row.map(|r| r.get(1)),
            });
        }
        // Name the session, and on PostgreSQL 14+ have the server check that zdm is still
        // there during long statements: a killed runner's CREATE INDEX CONCURRENTLY is then
        // cancelled within a second instead of holding the runner lock until it finishes.
        client
            .batch_execute(&format!(
                "SET application_name = {}",
                crate::sql::literal(RUNNER_APPLICATION)
            ))
            .await?;
        if super::server_major_version(client).await? >= 14 {
            client
                .batch_execute("SET client_connection_check_interval = '1s'")
                .await?;
        }
        state::ensure_schema(client).await?;
        // A role named zdm with the default search_path ("$user", public) would create the
        // migrations' unqualified tables inside zdm's own state schema.
        let schema: Option<String> = client
            .query_one("SELECT current_schema()::text", &[])
            .await?
            .get(0);
        if schema.as_deref() == Some("zdm") {
            return Err(RunError::WrongState {
                migration: "the session".into(),
                status: "resolving unqualified names to the zdm state schema".into(),
                what: "the role is probably named zdm and search_path starts with \"$user\": connect as another role, or set search_path (e.g. options=-csearch_path=public in the URL)".into(),
            });
        }
        Ok(Runner {
            client,
            options,
            phase: Phase::Expand,
        })
    }

    /// Expands every migration not yet expanded, in order: expand steps, then backfills.
    pub async fn expand(&mut self, plans: &[MigrationPlan]) -> Result<Vec<String>, RunError> {
        self.phase = Phase::Expand;
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
            let reapply = row.is_some_and(|m| reapplies(plan, m));
            if matches!(status, Some("expanded" | "contracting" | "done")) && !reapply {
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
            // An interrupted abort has undone part of the expand: its steps are still marked
            // done, so expanding now would skip them and record an expand that is not there.
            if status == Some("aborting") {
                return Err(RunError::WrongState {
                    migration: plan.id.clone(),
                    status: "being aborted (an abort was interrupted)".into(),
                    what: "run `zdm abort` to finish undoing it, then `zdm expand`".into(),
                });
            }
            if let Some(kept) = row.and_then(|m| m.not_undone.as_deref())
                && status == Some("aborted")
                && !self.options.rerun_backfill
            {
                return Err(RunError::WrongState {
                    migration: plan.id.clone(),
                    status: "aborted".into(),
                    what: format!(
                        "{kept}, which abort could not undo, and running the UPDATE again would apply it a second time to those rows; put them back (or check that a second application is what you want) and run `zdm expand --rerun-backfill`"
                    ),
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
            if status == Some("aborted") || reapply {
                state::clear_steps(self.client, &plan.id).await?;
                state::set_not_undone(&*self.client, &plan.id, None).await?;
            }
            self.check_expressions(plan).await?;
            let plan_json = crate::plan::render::recorded_plan(plan);
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
                // Each backfill runs where its statement stands among the expand steps.
                for position in 0..=plan.expand.len() {
                    for (i, b) in plan.backfill.iter().enumerate() {
                        let here = b.after_step.min(plan.expand.len()) == position;
                        if here {
                            self.backfill(&plan.id, &format!("backfill-{}", i + 1), b)
                                .await?;
                        }
                    }
                    if let Some(step) = plan.expand.get(position) {
                        self.run_step(&plan.id, step).await?;
                    }
                }
                Ok::<(), RunError>(())
            }
            .await;
            if let Err(e) = result {
                return Err(self
                    .record_failure(&plan.id, &plan.checksum, &plan_json, "expand", e)
                    .await);
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
        self.phase = Phase::Contract;
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
            check_record(row)?;
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
                // The completeness check: before anything drops or replaces a source column,
                // the shadow copies are walked again and every row still out of sync (one the
                // backfill missed, a step marked done by hand) is copied. Outside the swap's
                // lock; rows written after the check are kept right by zdm's triggers.
                let recorded_backfills = row.plan["backfill"].as_array().into_iter().flatten();
                for (i, b) in recorded_backfills.enumerate() {
                    if let Some(b) = backfill_from_json(b).filter(|b| b.shadow_copy) {
                        self.backfill(&row.id, &format!("check-{}", i + 1), &b)
                            .await?;
                    }
                }
                for step in steps_from_json(&row.plan["contract"]) {
                    self.run_step(&row.id, &step).await?;
                }
                Ok::<(), RunError>(())
            }
            .await;
            if let Err(e) = result {
                return Err(self
                    .record_failure(&row.id, &row.checksum, &row.plan, "contract", e)
                    .await);
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
        self.phase = Phase::Abort;
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
            check_record(row)?;
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
                return Err(self
                    .record_failure(&row.id, &row.checksum, &row.plan, "abort", e)
                    .await);
            }
            let not_undone = changed_by_backfills(self.client, row).await?;
            if let Some(text) = &not_undone {
                tracing::warn!("{}: {text}; abort cannot undo that", row.id);
            }
            // Forgetting the steps and recording `aborted` commit together: a crash between
            // them would otherwise leave an aborting migration with no record of its steps.
            let tx = self.client.transaction().await?;
            state::set_not_undone(&tx, &row.id, not_undone.as_deref()).await?;
            state::clear_steps(&tx, &row.id).await?;
            state::set_status(
                &tx,
                &row.id,
                &row.checksum,
                &row.plan,
                "aborted",
                "abort",
                None,
            )
            .await?;
            tx.commit().await?;
            tracing::info!("aborted {}", row.id);
            done.push(row.id.clone());
        }
        Ok(done)
    }

    /// Tries the expressions the plan builds into triggers and backfills against the live
    /// schema (see [`crate::plan::ExpressionCheck`]) in a transaction that is rolled back,
    /// before the migration's first step: a typo fails here, naming the file and line, instead
    /// of after a trigger that evaluates it on every application write is installed.
    async fn check_expressions(&mut self, plan: &MigrationPlan) -> Result<(), RunError> {
        let timeouts = self.timeouts();
        for check in &plan.checks {
            let tx = self.client.transaction().await?;
            tx.batch_execute(&timeouts).await?;
            let result = tx.batch_execute(&check.sql).await;
            tx.rollback().await?;
            let Err(e) = result else { continue };
            let Some(db) = e.as_db_error() else {
                return Err(e.into());
            };
            if made_by_the_migration(plan, check, db) {
                tracing::debug!(migration = %plan.id, "expression check deferred to its step: {}", db.message());
                continue;
            }
            return Err(RunError::Expression {
                path: plan.path.clone(),
                line: check.line,
                message: db.message().to_owned(),
            });
        }
        Ok(())
    }

    /// Records a migration as failed with the error that stopped it. A stop on request is not a
    /// failure: the migration keeps its status and resumes. When the connection itself is gone
    /// the record cannot be written; the next run finds the migration in its running status and
    /// resumes it all the same.
    async fn record_failure(
        &mut self,
        id: &str,
        checksum: &str,
        plan: &Value,
        phase: &str,
        e: RunError,
    ) -> RunError {
        if matches!(e, RunError::Interrupted { .. }) {
            return e;
        }
        let text = e.to_string();
        if let Err(db) = state::set_status(
            self.client,
            id,
            checksum,
            plan,
            "failed",
            phase,
            Some(&text),
        )
        .await
        {
            tracing::warn!("cannot record that {id} failed: {}", message(&db));
        }
        e
    }

    /// Runs one step unless it is recorded done, retrying lock timeouts, deadlocks and
    /// serialization failures with jittered exponential backoff.
    async fn run_step(&mut self, migration: &str, step: &Step) -> Result<(), RunError> {
        if self.options.stop.requested() {
            return Err(RunError::Interrupted {
                migration: migration.to_owned(),
            });
        }
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
                self.run_concurrently(migration, step, previous.is_some() || attempt > 1)
                    .await
            };
            let Err(e) = result else {
                tracing::info!(migration, step = %step.id, "{}", step.description);
                return Ok(());
            };
            let code = e.code().cloned();
            let lock_wait = code == Some(SqlState::LOCK_NOT_AVAILABLE);
            let retryable = is_retryable(&e);
            let mut text = message(&e);
            if e.as_db_error().is_none() && self.client.is_closed() {
                // The connection is gone: nothing more can run or be recorded now.
                return Err(RunError::Db(format!(
                    "{migration}: the connection was lost during {} ({text}); run the command again to resume",
                    step.id
                )));
            }
            if lock_wait && let Some(relation) = step.lock.as_ref().map(|l| l.relation.to_string())
            {
                let holders = lock_holders(self.client, &relation).await;
                if !holders.is_empty() {
                    text = format!("{text} on {relation}, held by {}", holders.join("; "));
                }
            }
            state::record_attempt(self.client, migration, &step.id, &text).await?;
            if !retryable || attempt >= self.options.max_attempts {
                if lock_wait {
                    text.push_str(
                        ": end or wait out the blocking session, then run the command again (a longer --lock-timeout makes the application wait as long)",
                    );
                }
                return Err(RunError::Step {
                    migration: migration.to_owned(),
                    step: format!("{} ({})", step.id, step.description),
                    attempts: attempt,
                    message: text,
                    phase: self.phase,
                });
            }
            let wait = backoff(attempt);
            tracing::warn!(
                migration,
                step = %step.id,
                "attempt {attempt} of {}: {text}; retrying in {} ms",
                self.options.max_attempts,
                wait.as_millis()
            );
            self.options.stop.sleep(wait).await;
            if self.options.stop.requested() {
                return Err(RunError::Interrupted {
                    migration: migration.to_owned(),
                });
            }
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
    /// A build a crash or failure left INVALID is dropped first, so it is rebuilt; a valid one
    /// a crashed run finished is kept.
    async fn run_concurrently(
        &mut self,
        migration: &str,
        step: &Step,
        resumed: bool,
    ) -> Result<(), tokio_postgres::Error> {
        state::set_step(&*self.client, migration, &step.id, "started").await?;
        let lock_timeout = self
            .options
            .concurrent_lock_timeout
            .unwrap_or(self.options.lock_timeout);
        self.client
            .batch_execute(&format!(
                "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
                lock_timeout.as_millis(),
                self.options.statement_timeout.as_millis()
            ))
            .await?;
        let result = async {
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
                    Some(true) if resumed => return Ok(()),
                    _ => {}
                }
            }
            self.client.batch_execute(&step.sql).await
        }
        .await;
        // Back to no limits for zdm's own bookkeeping, whatever happened.
        let reset = self
            .client
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await;
        result?;
        reset?;
        state::set_step(&*self.client, migration, &step.id, "done").await
    }

    fn timeouts(&self) -> String {
        format!(
            "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
            self.options.lock_timeout.as_millis(),
            self.options.statement_timeout.as_millis()
        )
    }

    /// Runs a backfill unless it is recorded done; see `backfill.rs`.
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
        let timeouts = self.timeouts();
        let run = BackfillRun {
            client: &mut *self.client,
            options: &self.options.backfill,
            timeouts,
            stop: &self.options.stop,
            max_attempts: self.options.max_attempts,
            migration,
            step_id,
        };
        match run.run(b).await {
            Err(RunError::Batch(e)) => {
                let text = message(&e);
                if self.client.is_closed() {
                    return Err(RunError::Db(format!(
                        "{migration}: the connection was lost during the backfill of {} ({text}); its cursor is saved: run the command again to resume",
                        b.table
                    )));
                }
                state::record_attempt(self.client, migration, step_id, &text).await?;
                Err(RunError::Step {
                    migration: migration.to_owned(),
                    step: format!("{step_id} (backfill {})", b.table),
                    attempts: 1,
                    message: text,
                    phase: self.phase,
                })
            }
            other => other,
        }
    }
}

/// Whether a check failed only because the migration itself makes what is missing before
/// the statement (a type, function or table it creates or renames, a column type the
/// planner's stand-in names): then the expression is checked by its own step instead.
fn made_by_the_migration(
    plan: &MigrationPlan,
    check: &crate::plan::ExpressionCheck,
    db: &tokio_postgres::error::DbError,
) -> bool {
    let missing = [
        SqlState::UNDEFINED_FUNCTION,
        SqlState::UNDEFINED_TABLE,
        SqlState::UNDEFINED_OBJECT,
        SqlState::UNDEFINED_COLUMN,
    ];
    if !missing.contains(db.code()) {
        return false;
    }
    // `type "x" does not exist`, `relation "x" does not exist`, `function f(integer) does not
    // exist`: the name, lower-cased and without its arguments.
    let message = db.message();
    let name = match message.split('"').nth(1) {
        Some(quoted) => quoted.to_owned(),
        None => message
            .trim_start_matches("function ")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
    .to_lowercase();
    let name = name.rsplit('.').next().unwrap_or(&name).to_owned();
    if name.is_empty() {
        return false;
    }
    if check
        .column_types
        .iter()
        .any(|t| t.to_lowercase().contains(&name))
    {
        return true;
    }
    if *db.code() == SqlState::UNDEFINED_COLUMN {
        return false;
    }
    plan.expand.iter().any(|step| {
        let sql = step.sql.to_lowercase();
        sql.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == name)
            && ["create ", "alter ", "rename "]
                .iter()
                .any(|w| sql.contains(w))
            && !step.sql.contains(&check.sql)
            && !sql.contains("returns trigger")
    })
}

/// Checks a recorded plan before any of its steps runs: its checksum (a plan edited in the
/// state table is not run), and that every step and backfill is whole (a step without SQL
/// would run as an empty statement and be marked done). Plans recorded before zdm kept a
/// format version carry no checksum; their steps are still checked.
fn check_record(m: &state::MigrationState) -> Result<(), RunError> {
    let tampered = |what: String| RunError::WrongState {
        migration: m.id.clone(),
        status: "recorded with a plan that cannot be trusted".into(),
        what: format!(
            "{what}; the state in zdm.migrations was changed outside zdm: restore it from a backup, or drop the migration's objects by hand and delete its row"
        ),
    };
    let plan = &m.plan;
    match plan["plan_checksum"].as_str() {
        Some(sum) if sum != crate::plan::render::plan_checksum(plan) => {
            return Err(tampered(format!(
                "its plan's checksum {} does not match its content",
                sum.chars().take(12).collect::<String>()
            )));
        }
        None if !plan["format"].is_null() => {
            return Err(tampered("its plan has no checksum".into()));
        }
        _ => {}
    }
    for phase in ["expand", "contract"] {
        check_steps(&plan[phase], phase).map_err(&tampered)?;
    }
    check_steps(&plan["down"]["expand"], "down expand").map_err(&tampered)?;
    for (i, b) in plan["backfill"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if backfill_from_json(b).is_none() {
            return Err(tampered(format!(
                "backfill {} of its plan is incomplete",
                i + 1
            )));
        }
    }
    Ok(())
}

fn check_steps(steps: &Value, phase: &str) -> Result<(), String> {
    for (i, s) in steps.as_array().into_iter().flatten().enumerate() {
        let whole = s["id"].as_str().is_some_and(|id| !id.is_empty())
            && s["sql"].as_str().is_some_and(|sql| !sql.trim().is_empty())
            && s["transaction"].is_boolean();
        if !whole {
            return Err(format!(
                "step {} of its {phase} has no id, SQL or transaction flag",
                i + 1
            ));
        }
    }
    Ok(())
}

/// What the backfills of a migration just aborted changed that running them again would not
/// reproduce: each backfill not safe to repeat (see [`Backfill::repeatable`]) that had
/// updated rows of columns the abort left in place, as `the backfill of acct had updated 5000 rows`. None when there is none.
async fn changed_by_backfills(
    client: &Client,
    row: &state::MigrationState,
) -> Result<Option<String>, RunError> {
    let mut changed = Vec::new();
    let recorded = row.plan["backfill"].as_array().into_iter().flatten();
    for (i, b) in recorded.enumerate() {
        let Some(b) = backfill_from_json(b) else {
            continue;
        };
        if b.repeatable() {
            continue;
        }
        // The abort dropped what the backfill wrote (a column the migration added): nothing
        // of it is left to apply twice.
        let columns: Vec<&str> = b.set.iter().map(|a| a.column.as_str()).collect();
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) \
                 AND attname = ANY($2) AND attnum > 0 AND NOT attisdropped",
                &[&crate::sql::Qualified(&b.table).to_string(), &columns],
            )
            .await?
            .get(0);
        if left == 0 {
            continue;
        }
        let rows = state::rows_done(client, &row.id, &format!("backfill-{}", i + 1)).await?;
        if rows > 0 {
            changed.push(format!(
                "the backfill of {} had updated {rows} rows",
                b.table
            ));
        }
    }
    Ok((!changed.is_empty()).then(|| changed.join("; ")))
}

pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Who holds locks on a relation now, for messages: `pid 123 (idle in transaction for 4 s:
/// SELECT …)`. Best effort: an error here only leaves the message shorter.
async fn lock_holders(client: &Client, relation: &str) -> Vec<String> {
    let rows = client
        .query(
            "SELECT format('pid %s (%s, %s for %s s: %s)', a.pid, l.mode, a.state,
                           coalesce(extract(epoch FROM now() - a.xact_start)::int, 0),
                           left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80))
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.relation = to_regclass($1) AND l.granted AND a.pid <> pg_backend_pid()
             ORDER BY a.xact_start LIMIT 3",
            &[&relation],
        )
        .await;
    rows.map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

/// The status of every recorded migration, by id (none before zdm's first run).
pub async fn recorded_statuses(client: &Client) -> Result<HashMap<String, String>, RunError> {
    let schema: Option<String> = client
        .query_one("SELECT to_regclass('zdm.migrations')::text", &[])
        .await?
        .get(0);
    if schema.is_none() {
        return Ok(HashMap::new());
    }
    Ok(state::load(client)
        .await?
        .into_iter()
        .map(|m| (m.id, m.status))
        .collect())
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
        let current_step = match row {
            Some(m) if m.status != "done" && m.status != "aborted" => {
                state::latest_step(client, &plan.id)
                    .await?
                    .map(|step| StepState {
                        description: step_description(&m.plan, &step.id),
                        id: step.id,
                        status: step.status,
                        attempts: step.attempts,
                        last_error: step.last_error,
                    })
            }
            _ => None,
        };
        let reapply = row.is_some_and(|m| reapplies(plan, m));
        out.push(Status {
            id: plan.id.clone(),
            status: match row {
                Some(m) if !reapply => m.status.clone(),
                _ => "pending".to_owned(),
            },
            phase: row.map(|m| m.phase.clone()),
            last_error: row.and_then(|m| m.last_error.clone()),
            backfilled_rows,
            current_step,
            edited: row
                .is_some_and(|m| m.checksum != plan.checksum && m.status != "aborted" && !reapply),
        });
    }
    Ok(out)
}

/// A step's description from a recorded plan (`expand-2`, `backfill-1`, `down-expand-1`…).
fn step_description(plan: &Value, id: &str) -> String {
    if let Some(n) = id
        .strip_prefix("backfill-")
        .and_then(|n| n.parse::<usize>().ok())
    {
        return format!(
            "backfill {}",
            plan["backfill"][n - 1]["table"].as_str().unwrap_or("?")
        );
    }
    let phases = [&plan["expand"], &plan["contract"], &plan["down"]["expand"]];
    phases
        .iter()
        .filter_map(|p| p.as_array())
        .flatten()
        .find(|s| s["id"] == id)
        .and_then(|s| s["description"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A repeatable migration whose file changed since it was applied runs again: once done, or
/// once expanded when its contract has nothing to do (the usual `CREATE OR REPLACE`).
fn reapplies(plan: &MigrationPlan, recorded: &state::MigrationState) -> bool {
    let applied = match recorded.status.as_str() {
        "done" => true,
        "expanded" => recorded.plan["contract"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        _ => false,
    };
    plan.repeatable && applied && recorded.checksum != plan.checksum
}

fn check_checksums(
    plans: &[MigrationPlan],
    recorded: &[state::MigrationState],
) -> Result<(), RunError> {
    for plan in plans {
        if let Some(m) = recorded.iter().find(|m| m.id == plan.id)
            && m.checksum != plan.checksum
            && m.status != "aborted"
            && !reapplies(plan, m)
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
pub(crate) fn backoff(attempt: u32) -> Duration {
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

/// The plans recorded for migrations zdm has started (any status but aborted), by id: these,
/// not a new plan of the file, are what resuming, contracting or aborting them runs.
pub async fn recorded_plans(client: &Client) -> Result<HashMap<String, Value>, RunError> {
    let schema: Option<String> = client
        .query_one("SELECT to_regclass('zdm.migrations')::text", &[])
        .await?
        .get(0);
    if schema.is_none() {
        return Ok(HashMap::new());
    }
    let mut plans = HashMap::new();
    for m in state::load(client).await? {
        if m.status != "aborted" {
            check_record(&m)?;
            plans.insert(m.id, m.plan);
        }
    }
    Ok(plans)
}

/// A started migration's plan as recorded, with the checksum of its file as it is now (so an
/// edited file is still caught).
pub fn plan_from_record(file: &SourceFile, recorded: &Value) -> MigrationPlan {
    MigrationPlan {
        id: crate::plan::migration_id(&file.path),
        path: file.path.display().to_string(),
        checksum: crate::plan::checksum(&file.text),
        operations: Vec::new(),
        expand: steps_from_json(&recorded["expand"]),
        backfill: recorded["backfill"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(backfill_from_json)
            .collect(),
        contract: steps_from_json(&recorded["contract"]),
        down: Down {
            expand: steps_from_json(&recorded["down"]["expand"]),
            contract: recorded["down"]["contract"]
                .as_array()
                .map(|_| steps_from_json(&recorded["down"]["contract"])),
        },
        repeatable: file.repeatable,
        // A recorded plan was checked before its first step ran.
        checks: Vec::new(),
        notes: recorded["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
    }
}

fn backfill_from_json(b: &Value) -> Option<Backfill> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    Some(Backfill {
        table: Name::parse_display(b["table"].as_str()?)?,
        key: b["key"]
            .as_array()?
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        set: b["set"]
            .as_array()?
            .iter()
            .filter_map(|a| {
                Some(Assignment {
                    column: text(&a["column"])?,
                    expr: text(&a["expr"])?,
                })
            })
            .collect(),
        filter: text(&b["where"]),
        alias: text(&b["alias"]),
        from: text(&b["from"]),
        // Plans recorded before backfills had a place among the steps ran them after expand.
        after_step: b["after_step"].as_u64().map_or(usize::MAX, |n| n as usize),
        shadow_copy: b["shadow_copy"].as_bool().unwrap_or(false),
    })
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
            lock: s["lock"]["relation"]
                .as_str()
                .zip(s["lock"]["mode"].as_str())
                .and_then(|(relation, mode)| {
                    Some(crate::plan::StepLock {
                        mode: mode.parse().ok()?,
                        relation: Name::parse_display(relation)?,
                    })
                }),
        })
        .collect()
}
