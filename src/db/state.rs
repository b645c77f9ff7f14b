//! zdm's own bookkeeping in the `zdm` schema: one row per migration (checksum, the plan it was
//! expanded with, status) and one per step (done or started, attempts, backfill cursor).
//! Invariants are constraints, so a bug in zdm cannot record an impossible state.

use tokio_postgres::{Client, GenericClient};

/// The schema, created idempotently before any runner work.
pub const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS zdm;
CREATE TABLE IF NOT EXISTS zdm.migrations (
    id text PRIMARY KEY,
    checksum text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    plan jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('expanding', 'expanded', 'contracting', 'done', 'aborting', 'aborted', 'failed')),
    phase text NOT NULL CHECK (phase IN ('expand', 'contract', 'abort')),
    last_error text,
    zdm_version text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'failed' OR last_error IS NOT NULL)
);
CREATE TABLE IF NOT EXISTS zdm.steps (
    migration_id text NOT NULL REFERENCES zdm.migrations (id) ON DELETE CASCADE,
    step_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('started', 'done')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    cursor jsonb,
    rows_done bigint NOT NULL DEFAULT 0 CHECK (rows_done >= 0),
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_id, step_id)
);
-- What an aborted run changed that abort could not undo (a started UPDATE backfill), so that
-- expanding again does not apply it twice unless told to.
ALTER TABLE zdm.migrations ADD COLUMN IF NOT EXISTS not_undone text;
-- The sessions a step is waiting out before it asks for its lock (a lock window), while it
-- waits; `zdm status` shows them.
ALTER TABLE zdm.steps ADD COLUMN IF NOT EXISTS waiting_for text;
-- A backfill's estimate when it started (the cost model's seconds and the rows it walks) and
-- when it first started, so `zdm status` shows the estimate beside the measured rate.
ALTER TABLE zdm.steps ADD COLUMN IF NOT EXISTS estimated_seconds float8;
ALTER TABLE zdm.steps ADD COLUMN IF NOT EXISTS total_rows bigint;
ALTER TABLE zdm.steps ADD COLUMN IF NOT EXISTS started_at timestamptz;
";

/// Where a migration is. zdm moves it only along these lines, and `set_status` refuses any
/// other move, so a state edited by hand or left by a crash cannot send a run the wrong way:
///
/// ```text
/// (new) ─▶ expanding ─▶ expanded ─▶ contracting ─▶ done
///              │            │             │
///              ▼            ▼             ▼
///           aborting ◀── failed ──────────┘   (failed keeps the phase it failed in)
///              │
///              ▼
///           aborted ─▶ expanding                (expanded again)
/// ```
///
/// A repeatable migration (`R__`) goes from done or expanded to expanding when its text changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStatus {
    Expanding,
    Expanded,
    Contracting,
    Done,
    Aborting,
    Aborted,
    Failed,
}

impl MigrationStatus {
    const ALL: [MigrationStatus; 7] = [
        MigrationStatus::Expanding,
        MigrationStatus::Expanded,
        MigrationStatus::Contracting,
        MigrationStatus::Done,
        MigrationStatus::Aborting,
        MigrationStatus::Aborted,
        MigrationStatus::Failed,
    ];

    /// The word in `zdm.migrations.status` and in `zdm status`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Expanding => "expanding",
            MigrationStatus::Expanded => "expanded",
            MigrationStatus::Contracting => "contracting",
            MigrationStatus::Done => "done",
            MigrationStatus::Aborting => "aborting",
            MigrationStatus::Aborted => "aborted",
            MigrationStatus::Failed => "failed",
        }
    }

    pub fn parse(word: &str) -> Option<MigrationStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }

    /// The statuses a migration may be in when it is recorded as `self`.
    pub fn reached_from(self) -> &'static [MigrationStatus] {
        use MigrationStatus::*;
        match self {
            Expanding => &[Expanding, Aborted, Failed, Expanded, Done],
            Expanded => &[Expanding],
            Contracting => &[Expanded, Contracting, Failed],
            Done => &[Contracting],
            Aborting => &[Expanding, Expanded, Aborting, Failed],
            Aborted => &[Aborting],
            Failed => &[Expanding, Contracting, Aborting, Failed],
        }
    }
}

/// The phase a migration is in, or failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Expand,
    Contract,
    Abort,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Contract => "contract",
            Phase::Abort => "abort",
        }
    }

    pub fn parse(word: &str) -> Option<Phase> {
        [Phase::Expand, Phase::Contract, Phase::Abort]
            .into_iter()
            .find(|p| p.as_str() == word)
    }
}

/// A migration's recorded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub id: String,
    pub checksum: String,
    pub status: MigrationStatus,
    pub phase: Phase,
    pub last_error: Option<String>,
    pub plan: serde_json::Value,
    /// Set by an abort that left rows changed (see `set_not_undone`).
    pub not_undone: Option<String>,
}

pub async fn ensure_schema(client: &Client) -> Result<(), tokio_postgres::Error> {
    // `IF NOT EXISTS` sends a NOTICE for each object that is already there; on every run but
    // the first that is only noise in the output.
    client
        .batch_execute(&format!(
            "SET client_min_messages = warning; {SCHEMA}; RESET client_min_messages"
        ))
        .await
}

pub async fn load(client: &Client) -> Result<Vec<MigrationState>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, checksum, status, phase, last_error, plan, not_undone FROM zdm.migrations ORDER BY id",
            &[],
        )
        .await?;
    // The table's CHECK constraints allow only the words `parse` knows.
    Ok(rows
        .iter()
        .map(|r| MigrationState {
            id: r.get(0),
            checksum: r.get(1),
            status: MigrationStatus::parse(r.get(2)).unwrap_or(MigrationStatus::Failed),
            phase: Phase::parse(r.get(3)).unwrap_or(Phase::Expand),
            last_error: r.get(4),
            plan: r.get(5),
            not_undone: r.get(6),
        })
        .collect())
}

/// A status zdm refused to record: the migration was not in a status it may come from.
#[derive(Debug)]
pub struct IllegalMove {
    pub from: String,
    pub to: MigrationStatus,
}

/// Records a migration's status (inserting it the first time), only along the moves
/// [`MigrationStatus::reached_from`] allows; `Ok(Err(_))` names the status it was in instead.
pub async fn set_status(
    client: &impl GenericClient,
    id: &str,
    checksum: &str,
    plan: &serde_json::Value,
    status: MigrationStatus,
    phase: Phase,
    error: Option<&str>,
) -> Result<Result<(), IllegalMove>, tokio_postgres::Error> {
    let from: Vec<&str> = status.reached_from().iter().map(|s| s.as_str()).collect();
    let written = client
        .execute(
            "INSERT INTO zdm.migrations (id, checksum, plan, status, phase, last_error, zdm_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET checksum = $2, plan = $3, status = $4, phase = $5,
                 last_error = $6, zdm_version = $7, updated_at = now()
             WHERE zdm.migrations.status = ANY($8)",
            &[
                &id,
                &checksum,
                plan,
                &status.as_str(),
                &phase.as_str(),
                &error,
                &env!("CARGO_PKG_VERSION"),
                &from,
            ],
        )
        .await?;
    if written == 1 {
        return Ok(Ok(()));
    }
    let now: String = client
        .query_one("SELECT status FROM zdm.migrations WHERE id = $1", &[&id])
        .await?
        .get(0);
    Ok(Err(IllegalMove {
        from: now,
        to: status,
    }))
}

/// Records what an abort could not undo, or clears it (`None`) when the migration is expanded
/// again on purpose.
pub async fn set_not_undone(
    client: &impl GenericClient,
    id: &str,
    text: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE zdm.migrations SET not_undone = $2 WHERE id = $1",
            &[&id, &text],
        )
        .await?;
    Ok(())
}

/// The status of a step, if it was recorded.
pub async fn step_status(
    client: &Client,
    migration: &str,
    step: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT status FROM zdm.steps WHERE migration_id = $1 AND step_id = $2",
            &[&migration, &step],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Records a step's status; inside a step's own transaction for transactional steps.
pub async fn set_step(
    client: &impl GenericClient,
    migration: &str,
    step: &str,
    status: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO zdm.steps (migration_id, step_id, status) VALUES ($1, $2, $3)
             ON CONFLICT (migration_id, step_id) DO UPDATE SET status = $3, waiting_for = NULL, updated_at = now()",
            &[&migration, &step, &status],
        )
        .await?;
    Ok(())
}

/// Counts a failed attempt and keeps its error.
pub async fn record_attempt(
    client: &Client,
    migration: &str,
    step: &str,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO zdm.steps (migration_id, step_id, status, attempts, last_error) VALUES ($1, $2, 'started', 1, $3)
             ON CONFLICT (migration_id, step_id) DO UPDATE SET attempts = zdm.steps.attempts + 1, last_error = $3, updated_at = now()",
            &[&migration, &step, &error],
        )
        .await?;
    Ok(())
}

/// Records that a step waits for a lock window, and for whom (`zdm status` shows it).
pub async fn record_waiting(
    client: &Client,
    migration: &str,
    step: &str,
    blockers: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO zdm.steps (migration_id, step_id, status, waiting_for) VALUES ($1, $2, 'started', $3)
             ON CONFLICT (migration_id, step_id) DO UPDATE SET waiting_for = $3, updated_at = now()",
            &[&migration, &step, &blockers],
        )
        .await?;
    Ok(())
}

/// Records that a backfill starts (or resumes): its estimate and the rows it walks; the first
/// start's time and estimate are kept.
pub async fn record_backfill_start(
    client: &Client,
    migration: &str,
    step: &str,
    estimated_seconds: Option<f64>,
    total_rows: Option<i64>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO zdm.steps (migration_id, step_id, status, estimated_seconds, total_rows, started_at)
             VALUES ($1, $2, 'started', $3, $4, now())
             ON CONFLICT (migration_id, step_id) DO UPDATE SET
                 estimated_seconds = coalesce(zdm.steps.estimated_seconds, $3),
                 total_rows = coalesce($4, zdm.steps.total_rows),
                 started_at = coalesce(zdm.steps.started_at, now()),
                 updated_at = now()",
            &[&migration, &step, &estimated_seconds, &total_rows],
        )
        .await?;
    Ok(())
}

/// A backfill's progress as `zdm status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillProgress {
    pub rows_done: i64,
    pub total_rows: Option<i64>,
    pub estimated_seconds: Option<f64>,
    /// Seconds since the backfill first started.
    pub elapsed_seconds: f64,
}

impl BackfillProgress {
    /// Rows per second since the backfill first started.
    pub fn measured_rate(&self) -> Option<f64> {
        (self.elapsed_seconds > 0.0 && self.rows_done > 0)
            .then(|| self.rows_done as f64 / self.elapsed_seconds)
    }

    /// Seconds left at the measured rate.
    pub fn measured_eta(&self) -> Option<f64> {
        let left = (self.total_rows? - self.rows_done).max(0) as f64;
        Some(left / self.measured_rate()?)
    }

    /// Seconds left by the estimate made when it started.
    pub fn estimated_eta(&self) -> Option<f64> {
        Some((self.estimated_seconds? - self.elapsed_seconds).max(0.0))
    }
}

/// The progress of a backfill step that recorded its start.
pub async fn backfill_progress(
    client: &Client,
    migration: &str,
    step: &str,
) -> Result<Option<BackfillProgress>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT p.total_rows, p.estimated_seconds,
                    extract(epoch FROM now() - p.started_at)::float8,
                    (SELECT coalesce(sum(rows_done), 0)::bigint FROM zdm.steps s
                     WHERE s.migration_id = $1 AND (s.step_id = $2 OR s.step_id LIKE $2 || '#%'))
             FROM zdm.steps p
             WHERE p.migration_id = $1 AND p.step_id = $2 AND p.started_at IS NOT NULL",
            &[&migration, &step],
        )
        .await?;
    Ok(row.map(|r| BackfillProgress {
        total_rows: r.get(0),
        estimated_seconds: r.get(1),
        elapsed_seconds: r.get(2),
        rows_done: r.get(3),
    }))
}

/// The saved cursor of a backfill step.
pub async fn cursor(
    client: &Client,
    migration: &str,
    step: &str,
) -> Result<Option<serde_json::Value>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT cursor FROM zdm.steps WHERE migration_id = $1 AND step_id = $2",
            &[&migration, &step],
        )
        .await?
        .and_then(|r| r.get(0)))
}

/// Records a step's cursor and adds `$4` to its rows: (migration, step, cursor, rows).
const SAVE_CURSOR: &str = "INSERT INTO zdm.steps (migration_id, step_id, status, cursor, rows_done) VALUES ($1, $2, 'started', $3, $4)
     ON CONFLICT (migration_id, step_id) DO UPDATE SET cursor = $3, rows_done = zdm.steps.rows_done + $4, updated_at = now()";

/// Saves a backfill's cursor, prepared once: a worker saves one in the same transaction as
/// each batch, and the runner saves the slices it cut (parameters: migration, step, cursor,
/// rows).
pub async fn prepare_save_cursor(
    client: &impl GenericClient,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    client.prepare(SAVE_CURSOR).await
}

/// Forgets the steps of a phase (after abort, so a new expand starts afresh).
pub async fn clear_steps(
    client: &impl GenericClient,
    migration: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM zdm.steps WHERE migration_id = $1",
            &[&migration],
        )
        .await?;
    Ok(())
}

/// Rows a backfill step has updated so far, over all its runs.
pub async fn rows_done(
    client: &Client,
    migration: &str,
    step: &str,
) -> Result<u64, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT coalesce(sum(rows_done), 0)::bigint FROM zdm.steps
             WHERE migration_id = $1 AND (step_id = $2 OR step_id LIKE $2 || '#%')",
            &[&migration, &step],
        )
        .await?
        .map_or(0, |r| r.get::<_, i64>(0) as u64))
}

/// A recorded step.
#[derive(Debug, Clone)]
pub struct StepRow {
    pub id: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The sessions it waits out before asking for its lock, while it waits.
    pub waiting_for: Option<String>,
}

/// The most recently updated step of a migration.
pub async fn latest_step(
    client: &Client,
    migration: &str,
) -> Result<Option<StepRow>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT step_id, status, attempts, last_error, waiting_for FROM zdm.steps WHERE migration_id = $1
             ORDER BY updated_at DESC, step_id DESC LIMIT 1",
            &[&migration],
        )
        .await?
        .map(|r| StepRow {
            // A slice of a backfill (`backfill-1#3`) is shown as its step.
            id: r
                .get::<_, String>(0)
                .split('#')
                .next()
                .unwrap_or_default()
                .to_owned(),
            status: r.get(1),
            attempts: r.get(2),
            last_error: r.get(3),
            waiting_for: r.get(4),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_reached_only_along_the_documented_moves() {
        use MigrationStatus::*;
        for status in MigrationStatus::ALL {
            assert_eq!(MigrationStatus::parse(status.as_str()), Some(status));
        }
        assert!(
            !Done.reached_from().contains(&Expanded),
            "contract is skipped"
        );
        assert!(
            !Expanding.reached_from().contains(&Aborting),
            "an interrupted abort"
        );
        assert!(!Expanded.reached_from().contains(&Aborted));
        assert!(Aborting.reached_from().contains(&Failed));
    }
}
