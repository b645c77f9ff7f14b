//! The recorded side of a run: the plans `zdm expand` stored (read back, checked before use,
//! turned into plans again), and each migration's state as `zdm status` shows it.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tokio_postgres::Client;

use super::run::RunError;
use super::state::{self, MigrationStatus};
use crate::parse::Name;
use crate::plan::{Assignment, Backfill, Down, MigrationPlan, Step};
use crate::source::SourceFile;

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
        if m.status != MigrationStatus::Aborted {
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

/// Checks a recorded plan before any of its steps runs: its checksum (a plan edited in the
/// state table is not run), and that every step and backfill is whole (a step without SQL
/// would run as an empty statement and be marked done). Plans recorded before zdm kept a
/// format version carry no checksum; their steps are still checked.
pub(super) fn check_record(m: &state::MigrationState) -> Result<(), RunError> {
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

pub(super) fn backfill_from_json(b: &Value) -> Option<Backfill> {
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
        // Plans recorded before the flag: a copy into zdm's own `_zdm_…` columns (a type
        // change's shadow) is one; a rename's cannot be told from a user's UPDATE.
        shadow_copy: b["shadow_copy"].as_bool().unwrap_or_else(|| {
            b["set"].as_array().is_some_and(|set| {
                !set.is_empty()
                    && set
                        .iter()
                        .all(|a| a["column"].as_str().is_some_and(|c| c.starts_with("_zdm_")))
            })
        }),
    })
}

/// The steps of a phase, from the plan recorded at expand.
pub(super) fn steps_from_json(steps: &Value) -> Vec<Step> {
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
pub(super) fn reapplies(plan: &MigrationPlan, recorded: &state::MigrationState) -> bool {
    let applied = match recorded.status {
        MigrationStatus::Done => true,
        MigrationStatus::Expanded => recorded.plan["contract"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
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

pub(super) fn tables_in_json(plan: &Value) -> HashSet<String> {
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
