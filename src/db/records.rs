//! The recorded side of a run: the plans `zdm expand` stored (read back, checked before use,
//! turned into plans again), and each migration's state as `zdm status` shows it.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use super::run::RunError;
use super::state::{self, MigrationStatus};
use crate::plan::recorded::RecordedPlan;
use crate::plan::{Backfill, MigrationPlan, Step};
use crate::source::SourceFile;

/// A migration's state as `zdm status` shows it.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    pub id: String,
    pub description: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The sessions holding a lock the step waits to ask for (a lock window), while it waits.
    pub waiting_for: Option<String>,
    /// A backfill's rows, estimate and elapsed time, while it runs.
    pub backfill: Option<state::BackfillProgress>,
}

/// The plans recorded for migrations zdm has started (any status but aborted), by id, read
/// and checked: these, not a new plan of the file, are what resuming, contracting or aborting
/// them runs.
pub async fn recorded_plans(client: &Client) -> Result<HashMap<String, RecordedPlan>, RunError> {
    let schema: Option<String> = client
        .query_one("SELECT to_regclass('zdm.migrations')::text", &[])
        .await?
        .get(0);
    if schema.is_none() {
        return Ok(HashMap::new());
    }
    let mut plans = HashMap::new();
    for m in state::load(client).await? {
        if m.status != MigrationStatus::Aborted {
            let plan = read_record(&m)?;
            plans.insert(m.id, plan);
        }
    }
    Ok(plans)
}

/// A started migration's plan as recorded, with the checksum of its file as it is now (so an
/// edited file is still caught).
pub fn plan_from_record(file: &SourceFile, recorded: &RecordedPlan) -> MigrationPlan {
    MigrationPlan {
        id: recorded.id.clone(),
        path: file.path.display().to_string(),
        checksum: crate::plan::checksum(file.identity_text()),
        operations: Vec::new(),
        expand: recorded.expand.clone(),
        backfill: recorded.backfill.clone(),
        contract: recorded.contract.clone(),
        down: recorded.down.clone(),
        repeatable: file.repeatable,
        // A recorded plan was checked before its first step ran.
        checks: Vec::new(),
        notes: recorded.notes.clone(),
        estimate: None,
    }
}

/// A migration's recorded plan, read back and checked before any of its steps runs (see
/// [`crate::plan::recorded::read`]).
pub(super) fn read_record(m: &state::MigrationState) -> Result<RecordedPlan, RunError> {
    crate::plan::recorded::read(&m.plan).map_err(|what| RunError::WrongState {
        migration: m.id.clone(),
        status: "recorded with a plan that cannot be trusted".into(),
        what: format!(
            "{what}; the state in zdm.migrations was changed outside zdm: restore it from a backup, or drop the migration's objects by hand and delete its row"
        ),
    })
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
        .map(|m| (m.id, m.status.as_str().to_owned()))
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
            Some(m) if !matches!(m.status, MigrationStatus::Done | MigrationStatus::Aborted) => {
                let latest = state::latest_step(client, &plan.id).await?;
                let backfill = match &latest {
                    Some(step) if step.status != "done" => {
                        state::backfill_progress(client, &plan.id, &step.id).await?
                    }
                    _ => None,
                };
                latest.map(|step| StepState {
                    description: crate::plan::recorded::read(&m.plan)
                        .map(|p| p.describe(&step.id))
                        .unwrap_or_default(),
                    id: step.id,
                    status: step.status,
                    attempts: step.attempts,
                    last_error: step.last_error,
                    waiting_for: step.waiting_for,
                    backfill,
                })
            }
            _ => None,
        };
        let reapply = row.is_some_and(|m| reapplies(plan, m));
        out.push(Status {
            id: plan.id.clone(),
            status: match row {
                Some(m) if !reapply => m.status.as_str().to_owned(),
                _ => "pending".to_owned(),
            },
            phase: row.map(|m| m.phase.as_str().to_owned()),
            last_error: row.and_then(|m| m.last_error.clone()),
            backfilled_rows,
            current_step,
            edited: row.is_some_and(|m| {
                m.checksum != plan.checksum && m.status != MigrationStatus::Aborted && !reapply
            }),
        });
    }
    Ok(out)
}

/// A repeatable migration whose file changed since it was applied runs again: once done, or
/// once expanded when its contract has nothing to do (the usual `CREATE OR REPLACE`).
pub(super) fn reapplies(plan: &MigrationPlan, recorded: &state::MigrationState) -> bool {
    let applied = match recorded.status {
        MigrationStatus::Done => true,
        MigrationStatus::Expanded => {
            crate::plan::recorded::read(&recorded.plan).is_ok_and(|p| p.contract.is_empty())
        }
        _ => false,
    };
    plan.repeatable && applied && recorded.checksum != plan.checksum
}

pub(super) fn check_checksums(
    plans: &[MigrationPlan],
    recorded: &[state::MigrationState],
) -> Result<(), RunError> {
    for plan in plans {
        if let Some(m) = recorded.iter().find(|m| m.id == plan.id)
            && m.checksum != plan.checksum
            && m.status != MigrationStatus::Aborted
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

/// The relations a plan's steps lock or backfill, as `schema.name` keys.
pub(super) fn tables_of<'a>(
    steps: impl IntoIterator<Item = &'a Step>,
    backfills: &[Backfill],
) -> HashSet<String> {
    let mut out: HashSet<String> = steps
        .into_iter()
        .filter_map(|s| s.lock.as_ref().map(|l| l.relation.key().to_string()))
        .collect();
    out.extend(backfills.iter().map(|b| b.table.key().to_string()));
    out
}
