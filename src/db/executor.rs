//! The runner: `zdm expand`, `zdm contract` and `zdm abort` on a live database, one runner at
//! a time (an advisory lock).
//!
//! Every step is recorded in the `zdm` schema. A transactional step runs in its own transaction
//! with `SET LOCAL lock_timeout`, and its state row is written in that same transaction, so a
//! killed process leaves it either done or not started. A CONCURRENTLY step is recorded as
//! started, run, then recorded done; on resume an INVALID index it left is dropped and rebuilt.
//! A backfill saves its cursor in the transaction of each batch. Lock timeouts, deadlocks and
//! serialization failures are retried with jittered exponential backoff.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::backfill::BackfillRun;
use super::lock_window;
use super::message;
use super::records::{check_checksums, read_record, reapplies, tables_of};
use super::retry::{backoff, is_retryable, lock_holders};
use super::run::{Phase, RunError, RunOptions};
use super::state::MigrationStatus::{
    Aborted, Aborting, Contracting, Done, Expanded, Expanding, Failed,
};
use super::state::{self, MigrationStatus};
use crate::parse::{Change, parse_statement};
use crate::plan::{Backfill, MigrationPlan, Step};
use crate::source::split_statements;

/// How often a step waiting for a lock window looks at `pg_locks` again.
const WINDOW_POLL: Duration = Duration::from_millis(100);
/// How often a waiting step names its blockers in the log and in `zdm status`.
const NAME_BLOCKERS_EVERY: Duration = Duration::from_secs(5);

/// The key of zdm's advisory lock: one runner per database.
const RUNNER_LOCK: i64 = 0x7a64_6d5f_6c6f_636b; // "zdm_lock"

/// The `application_name` of a runner's session. A session of that name still running after
/// a new runner took the lock was left by a killed runner, and is ended.
pub const RUNNER_APPLICATION: &str = "zdm runner";

/// Runs plans against one database, holding zdm's advisory lock for the runner's lifetime.
pub struct Runner<'a> {
    client: &'a mut Client,
    options: RunOptions,
    phase: Phase,
    /// The server's major version, for what `classify` says of a step's locks.
    pg_version: u32,
    /// The runner session's backend pid.
    pid: i32,
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
        let pg_version = super::server_major_version(client).await?;
        if pg_version >= 14 {
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
            return Err(RunError::Session(
                "unqualified names resolve to the zdm state schema (the role is probably named zdm and search_path starts with \"$user\"): connect as another role, or set search_path (e.g. options=-csearch_path=public in the URL)".into(),
            ));
        }
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        Ok(Runner {
            client,
            options,
            phase: Phase::Expand,
            pg_version,
            pid,
        })
    }

    /// Expands every migration not yet expanded, in order: expand steps, then backfills.
    pub async fn expand(&mut self, plans: &[MigrationPlan]) -> Result<Vec<String>, RunError> {
        self.phase = Phase::Expand;
        let recorded = state::load(self.client).await?;
        check_checksums(plans, &recorded)?;
        // Expanded migrations whose contract is still to run, with the tables they change.
        let mut expanded_before: Vec<(String, HashSet<String>)> = Vec::new();
        for m in recorded
            .iter()
            .filter(|m| matches!(m.status, Expanded | Contracting))
        {
            let theirs = read_record(m)?;
            if !theirs.contract.is_empty() {
                let tables = tables_of(
                    theirs.expand.iter().chain(&theirs.contract),
                    &theirs.backfill,
                );
                expanded_before.push((m.id.clone(), tables));
            }
        }
        let mut done = Vec::new();
        for plan in plans {
            let row = recorded.iter().find(|m| m.id == plan.id);
            let status = row.map(|m| m.status);
            let reapply = row.is_some_and(|m| reapplies(plan, m));
            if matches!(status, Some(Expanded | Contracting | Done)) && !reapply {
                continue;
            }
            if row.is_some_and(|m| m.status == Failed && m.phase != Phase::Expand) {
                return Err(RunError::WrongState {
                    migration: plan.id.clone(),
                    status: "failed".into(),
                    what: "its contract or abort failed; run `zdm contract` or `zdm abort` again"
                        .into(),
                });
            }
            // An interrupted abort has undone part of the expand: its steps are still marked
            // done, so expanding now would skip them and record an expand that is not there.
            if status == Some(Aborting) {
                return Err(RunError::WrongState {
                    migration: plan.id.clone(),
                    status: "being aborted (an abort was interrupted)".into(),
                    what: "run `zdm abort` to finish undoing it, then `zdm expand`".into(),
                });
            }
            if let Some(kept) = row.and_then(|m| m.not_undone.as_deref())
                && status == Some(Aborted)
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
            let tables = tables_of(plan.expand.iter().chain(&plan.contract), &plan.backfill);
            for (earlier, theirs) in &expanded_before {
                if let Some(table) = tables.intersection(theirs).next() {
                    return Err(RunError::NeedsContract {
                        migration: plan.id.clone(),
                        earlier: earlier.clone(),
                        table: table.clone(),
                    });
                }
            }
            if status == Some(Aborted) || reapply {
                state::clear_steps(self.client, &plan.id).await?;
                state::set_not_undone(&*self.client, &plan.id, None).await?;
            }
            self.check_expressions(plan).await?;
            let plan_json = crate::plan::recorded::record(plan);
            record_status(
                self.client,
                &plan.id,
                &plan.checksum,
                &plan_json,
                Expanding,
                Phase::Expand,
                None,
            )
            .await?;
            let result = async {
                // Each backfill runs where its statement stands among the expand steps.
                for position in 0..=plan.expand.len() {
                    for (i, b) in plan.backfill.iter().enumerate() {
                        let here = b.after_step.min(plan.expand.len()) == position;
                        if here {
                            let estimated = plan
                                .estimate
                                .as_ref()
                                .and_then(|e| e.backfill.get(i))
                                .map(|e| Duration::from_millis(e.millis));
                            self.backfill(
                                &plan.id,
                                &format!("backfill-{}", i + 1),
                                b,
                                Pass::Expand(estimated),
                            )
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
                    .record_failure(&plan.id, &plan.checksum, &plan_json, Phase::Expand, e)
                    .await);
            }
            record_status(
                self.client,
                &plan.id,
                &plan.checksum,
                &plan_json,
                Expanded,
                Phase::Expand,
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
            let resumable = matches!(row.status, Expanded | Contracting)
                || (row.status == Failed && row.phase == Phase::Contract);
            if row.status == Done {
                continue;
            }
            if !resumable {
                break;
            }
            let recorded_plan = read_record(row)?;
            record_status(
                self.client,
                &row.id,
                &row.checksum,
                &row.plan,
                Contracting,
                Phase::Contract,
                None,
            )
            .await?;
            let result = async {
                // The completeness check: before anything drops or replaces a source column,
                // the shadow copies are walked again and every row still out of sync (one the
                // backfill missed, a step marked done by hand) is copied. Outside the swap's
                // lock; rows written after the check are kept right by zdm's triggers.
                for (i, b) in recorded_plan.backfill.iter().enumerate() {
                    if b.shadow_copy {
                        self.backfill(&row.id, &format!("check-{}", i + 1), b, Pass::Check)
                            .await?;
                    }
                }
                for step in &recorded_plan.contract {
                    self.run_step(&row.id, step).await?;
                }
                Ok::<(), RunError>(())
            }
            .await;
            if let Err(e) = result {
                return Err(self
                    .record_failure(&row.id, &row.checksum, &row.plan, Phase::Contract, e)
                    .await);
            }
            record_status(
                self.client,
                &row.id,
                &row.checksum,
                &row.plan,
                Done,
                Phase::Contract,
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
            let abortable = matches!(row.status, Expanding | Expanded | Aborting)
                || (row.status == Failed && row.phase != Phase::Contract);
            if !abortable {
                continue;
            }
            let recorded_plan = read_record(row)?;
            record_status(
                self.client,
                &row.id,
                &row.checksum,
                &row.plan,
                Aborting,
                Phase::Abort,
                None,
            )
            .await?;
            let result = async {
                for step in &recorded_plan.down.expand {
                    self.run_step(&row.id, step).await?;
                }
                Ok::<(), RunError>(())
            }
            .await;
            if let Err(e) = result {
                return Err(self
                    .record_failure(&row.id, &row.checksum, &row.plan, Phase::Abort, e)
                    .await);
            }
            let not_undone =
                changed_by_backfills(self.client, &row.id, &recorded_plan.backfill).await?;
            if let Some(text) = &not_undone {
                tracing::warn!("{}: {text}; abort cannot undo that", row.id);
            }
            // Forgetting the steps and recording `aborted` commit together: a crash between
            // them would otherwise leave an aborting migration with no record of its steps.
            let tx = self.client.transaction().await?;
            state::set_not_undone(&tx, &row.id, not_undone.as_deref()).await?;
            state::clear_steps(&tx, &row.id).await?;
            record_status(
                &tx,
                &row.id,
                &row.checksum,
                &row.plan,
                Aborted,
                Phase::Abort,
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
        phase: Phase,
        e: RunError,
    ) -> RunError {
        if matches!(e, RunError::Interrupted { .. }) {
            return e;
        }
        let text = e.to_string();
        if let Err(db) =
            record_status(self.client, id, checksum, plan, Failed, phase, Some(&text)).await
        {
            tracing::warn!("cannot record that {id} failed: {db}");
        }
        e
    }

    /// Runs one step unless it is recorded done. A transactional step whose locks the
    /// application's queries could queue behind waits for a lock window first and takes its
    /// locks up front (see `lock_window`). Lock timeouts, deadlocks and serialization failures
    /// are retried with jittered, escalating backoff until `lock_deadline` (or
    /// `max_attempts`).
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
        let wanted = lock_window::wanted_locks(step, self.pg_version);
        let could_queue = lock_window::could_queue_the_application(&wanted);
        let windowed = step.transaction && could_queue;
        // A step whose every lock leaves the application's queries running (VALIDATE, SHARE
        // UPDATE EXCLUSIVE) may wait as long as a CONCURRENTLY build may; one whose locks zdm
        // does not know gets the short timeout.
        let patient = step.transaction && !wanted.is_empty() && !could_queue;
        let deadline = Instant::now() + self.options.lock_deadline;
        let mut attempt = 0;
        loop {
            if windowed {
                self.wait_for_window(migration, step, &wanted, deadline, attempt)
                    .await?;
            }
            attempt += 1;
            let started = Instant::now();
            let result = if step.transaction {
                let locks = if windowed { wanted.as_slice() } else { &[] };
                self.run_transactional(migration, step, locks, patient)
                    .await
            } else {
                self.run_concurrently(migration, step, previous.is_some() || attempt > 1)
                    .await
            };
            let Err(e) = result else {
                tracing::info!(
                    migration,
                    step = %step.id,
                    seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
                    "{}",
                    step.description
                );
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
            let wait = backoff(attempt);
            let out_of_attempts = self.options.max_attempts.is_some_and(|n| attempt >= n)
                || Instant::now() + wait >= deadline;
            if !retryable || out_of_attempts {
                if lock_wait {
                    text.push_str(
                        ": end or wait out the blocking session (or pass --cancel-blockers-after), then run the command again, which resumes here; a longer --lock-deadline waits longer without holding up the application",
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
            tracing::warn!(
                migration,
                step = %step.id,
                "attempt {attempt}: {text}; retrying in {} ms",
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

    /// Waits until no session has held a lock that conflicts with `wanted` for longer than
    /// `lock_timeout` (asking for nothing meanwhile, so the application queues behind no
    /// request of zdm's), naming the sessions every few seconds in the log and in `zdm
    /// status`. With `cancel_blockers_after`, ends the transactions that held on that long.
    /// Past `deadline` it stops with them named; nothing of the step has run.
    async fn wait_for_window(
        &mut self,
        migration: &str,
        step: &Step,
        wanted: &[lock_window::Wanted],
        deadline: Instant,
        attempts: u32,
    ) -> Result<(), RunError> {
        let mut named_at: Option<Instant> = None;
        let started = Instant::now();
        let mut before: Option<Vec<lock_window::Blocker>> = None;
        loop {
            let now = lock_window::blockers(self.client, wanted).await?;
            let blockers =
                lock_window::long_holders(&now, before.as_deref(), self.options.lock_timeout);
            if blockers.is_empty() && !now.is_empty() && before.is_none() {
                // Young holders at the first look: look again, to see whether they last.
                before = Some(now);
                self.options.stop.sleep(lock_window::PROBE).await;
                continue;
            }
            before = Some(now);
            if blockers.is_empty() {
                if named_at.is_some() {
                    tracing::info!(
                        migration,
                        step = %step.id,
                        "lock window after {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            let named = blockers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            if let Some(after) = self.options.cancel_blockers_after {
                for ended in lock_window::end_blockers(
                    self.client,
                    &blockers,
                    after,
                    self.options.terminate_blockers,
                )
                .await?
                {
                    tracing::warn!(migration, step = %step.id, "{ended}");
                }
            }
            if Instant::now() >= deadline {
                let text = format!(
                    "no lock window within --lock-deadline ({} s): {named} held a conflicting lock; zdm asked for nothing meanwhile, so the application was not held up",
                    self.options.lock_deadline.as_secs()
                );
                state::record_attempt(self.client, migration, &step.id, &text).await?;
                return Err(RunError::Step {
                    migration: migration.to_owned(),
                    step: format!("{} ({})", step.id, step.description),
                    attempts,
                    message: format!(
                        "{text}. End those sessions (or pass --cancel-blockers-after), then run the command again, which resumes here"
                    ),
                    phase: self.phase,
                });
            }
            if named_at.is_none_or(|t| t.elapsed() >= NAME_BLOCKERS_EVERY) {
                let relations = wanted
                    .iter()
                    .map(|w| format!("{} ({})", w.relation, w.mode))
                    .collect::<Vec<_>>()
                    .join(", ");
                tracing::warn!(
                    migration,
                    step = %step.id,
                    "waiting to lock {relations} without queueing the application, for {:.0} s so far: held by {named}",
                    started.elapsed().as_secs_f64()
                );
                state::record_waiting(self.client, migration, &step.id, &named).await?;
                named_at = Some(Instant::now());
            }
            self.options.stop.sleep(WINDOW_POLL).await;
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
        lock_first: &[lock_window::Wanted],
        patient: bool,
    ) -> Result<(), tokio_postgres::Error> {
        let timeouts = if patient {
            self.timeouts_with(self.patient_lock_timeout())
        } else {
            self.timeouts()
        };
        let up_front = lock_window::lock_up_front(self.client, lock_first).await?;
        let watcher = self.watch(migration, step, patient);
        let tx = self.client.transaction().await?;
        tx.batch_execute(&timeouts).await?;
        if !up_front.is_empty() {
            tx.batch_execute(&up_front).await?;
        }
        let result = tx.batch_execute(&step.sql).await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        result?;
        state::set_step(&tx, migration, &step.id, "done").await?;
        tx.commit().await
    }

    /// The lock wait of steps whose locks hold up no application query: CONCURRENTLY builds,
    /// VALIDATE.
    fn patient_lock_timeout(&self) -> Duration {
        self.options
            .concurrent_lock_timeout
            .unwrap_or(self.options.lock_deadline)
    }

    /// With `patient` and a way to connect, a task naming every few seconds the sessions the
    /// runner waits for while it runs `step`.
    fn watch(
        &self,
        migration: &str,
        step: &Step,
        patient: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let watch = self.options.sessions.clone().filter(|_| patient)?;
        Some(tokio::spawn(lock_window::name_what_it_waits_for(
            watch,
            self.pid,
            format!("{migration} {}", step.id),
        )))
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
        self.client
            .batch_execute(
                &self
                    .timeouts_with(self.patient_lock_timeout())
                    .replace("SET LOCAL", "SET"),
            )
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
            let watcher = self.watch(migration, step, true);
            let result = self.client.batch_execute(&step.sql).await;
            if let Some(watcher) = watcher {
                watcher.abort();
            }
            result
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
        self.timeouts_with(self.options.lock_timeout)
    }

    fn timeouts_with(&self, lock_timeout: Duration) -> String {
        format!(
            "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
            lock_timeout.as_millis(),
            self.options.statement_timeout.as_millis()
        )
    }

    /// Runs a backfill unless it is recorded done; see `backfill.rs`.
    async fn backfill(
        &mut self,
        migration: &str,
        step_id: &str,
        b: &Backfill,
        pass: Pass,
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
            sessions: self.options.sessions.as_ref(),
            options: &self.options.backfill,
            timeouts,
            stop: &self.options.stop,
            // A batch waits on rows, not on the table: bounded by attempts (about four minutes
            // of escalating backoff by default) rather than by the step's lock deadline.
            max_attempts: self.options.max_attempts.unwrap_or(50),
            migration,
            step_id,
            check: matches!(pass, Pass::Check),
            estimated: match pass {
                Pass::Expand(estimated) => estimated,
                Pass::Check => None,
            },
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

/// Which walk of a backfill runs: expand's, with the cost model's estimate when there is one,
/// or contract's completeness check of a shadow copy.
enum Pass {
    Expand(Option<Duration>),
    Check,
}

/// Records a status along an allowed move (see [`MigrationStatus`]). Any other move means the
/// state changed under zdm, and nothing more runs.
async fn record_status(
    client: &impl tokio_postgres::GenericClient,
    id: &str,
    checksum: &str,
    plan: &Value,
    status: MigrationStatus,
    phase: Phase,
    error: Option<&str>,
) -> Result<(), RunError> {
    match state::set_status(client, id, checksum, plan, status, phase, error).await? {
        Ok(()) => Ok(()),
        Err(illegal) => Err(RunError::WrongState {
            migration: id.to_owned(),
            status: format!("recorded as {}", illegal.from),
            what: format!(
                "zdm does not move a migration from there to {}: zdm.migrations was changed outside zdm (see `zdm status`); nothing more was run",
                illegal.to.as_str()
            ),
        }),
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

/// What the backfills of a migration just aborted changed that running them again would not
/// reproduce: each backfill not safe to repeat (see [`Backfill::repeatable`]) that had
/// updated rows of columns the abort left in place, as `the backfill of acct had updated 5000 rows`. None when there is none.
async fn changed_by_backfills(
    client: &Client,
    id: &str,
    backfills: &[Backfill],
) -> Result<Option<String>, RunError> {
    let mut changed = Vec::new();
    for (i, b) in backfills.iter().enumerate() {
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
        let rows = state::rows_done(client, id, &format!("backfill-{}", i + 1)).await?;
        if rows > 0 {
            changed.push(format!(
                "the backfill of {} had updated {rows} rows",
                b.table
            ));
        }
    }
    Ok((!changed.is_empty()).then(|| changed.join("; ")))
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
