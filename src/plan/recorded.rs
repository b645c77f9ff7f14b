//! The plan as `zdm expand` records it in `zdm.migrations.plan`, and read back: contract, abort
//! and a resumed expand run the steps recorded when the migration started, never a new plan of
//! a file that may have changed. Written as the JSON output format plus a format version and
//! a checksum of itself; read into the planner's own types through serde, with every field
//! required (no silent defaults: a step without SQL is an error, not an empty statement).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Assignment, Backfill, Down, MigrationPlan, Step, StepLock};
use crate::parse::Name;

/// The version of the recorded plan's shape.
pub const PLAN_FORMAT: u64 = 1;

/// A recorded plan, read back and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPlan {
    pub id: String,
    pub path: String,
    /// The checksum of the file the plan was made from.
    pub checksum: String,
    pub expand: Vec<Step>,
    pub backfill: Vec<Backfill>,
    pub contract: Vec<Step>,
    pub down: Down,
    pub notes: Vec<String>,
}

/// The plan to record: the JSON output, with its format version and its own checksum.
pub fn record(p: &MigrationPlan) -> Value {
    let mut plan = super::render::json_plan(p);
    plan["format"] = json!(PLAN_FORMAT);
    let sum = plan_checksum(&plan);
    plan["plan_checksum"] = json!(sum);
    plan
}

/// The checksum a recorded plan carries of itself: SHA-256 of its JSON with sorted keys,
/// without the `plan_checksum` key (jsonb keeps keys in its own order, so both sides sort).
pub fn plan_checksum(plan: &Value) -> String {
    let mut plan = plan.clone();
    if let Some(object) = plan.as_object_mut() {
        object.remove("plan_checksum");
    }
    let mut text = String::new();
    canonical(&plan, &mut text);
    super::checksum(&text)
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Reads a recorded plan: its checksum first (a plan edited in the state table is not run),
/// then every field into the planner's types. Plans recorded before the format version carry
/// no checksum; their fields are checked all the same. The error says what is wrong.
pub fn read(plan: &Value) -> Result<RecordedPlan, String> {
    match (plan["format"].as_u64(), plan["plan_checksum"].as_str()) {
        (Some(format), _) if format > PLAN_FORMAT => {
            return Err(format!(
                "its plan was recorded by a newer zdm (format {format}; this one reads up to {PLAN_FORMAT}): run that version"
            ));
        }
        (_, Some(sum)) if sum != plan_checksum(plan) => {
            return Err(format!(
                "its plan's checksum {} does not match its content",
                sum.chars().take(12).collect::<String>()
            ));
        }
        (Some(_), None) => return Err("its plan has no checksum".into()),
        _ => {}
    }
    let wire: WirePlan =
        serde_json::from_value(plan.clone()).map_err(|e| format!("its plan is incomplete: {e}"))?;
    let steps = |phase: &str, steps: Vec<WireStep>| -> Result<Vec<Step>, String> {
        steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.into_step()
                    .map_err(|what| format!("step {} of its {phase} {what}", i + 1))
            })
            .collect()
    };
    Ok(RecordedPlan {
        expand: steps("expand", wire.expand)?,
        backfill: wire
            .backfill
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                b.into_backfill()
                    .ok_or_else(|| format!("backfill {} of its plan names no table", i + 1))
            })
            .collect::<Result<_, _>>()?,
        contract: steps("contract", wire.contract)?,
        down: Down {
            expand: steps("down expand", wire.down.expand)?,
            contract: wire
                .down
                .contract
                .map(|c| steps("down contract", c))
                .transpose()?,
        },
        id: wire.id,
        path: wire.path,
        checksum: wire.checksum,
        notes: wire.notes,
    })
}

impl RecordedPlan {
    /// A step's description (`expand-2`, `backfill-1`, `check-1`, `down-expand-1`…).
    pub fn describe(&self, id: &str) -> String {
        let backfill = id
            .strip_prefix("backfill-")
            .or_else(|| id.strip_prefix("check-"))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| self.backfill.get(n.wrapping_sub(1)));
        if let Some(b) = backfill {
            return format!("backfill {}", b.table);
        }
        self.expand
            .iter()
            .chain(&self.contract)
            .chain(&self.down.expand)
            .find(|s| s.id == id)
            .map(|s| s.description.clone())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct WirePlan {
    id: String,
    path: String,
    checksum: String,
    expand: Vec<WireStep>,
    backfill: Vec<WireBackfill>,
    contract: Vec<WireStep>,
    down: WireDown,
    notes: Vec<String>,
}

#[derive(Deserialize)]
struct WireDown {
    expand: Vec<WireStep>,
    contract: Option<Vec<WireStep>>,
}

#[derive(Deserialize)]
struct WireStep {
    id: String,
    description: String,
    sql: String,
    transaction: bool,
    lock: Option<WireLock>,
}

#[derive(Deserialize)]
struct WireLock {
    mode: String,
    relation: String,
}

impl WireStep {
    fn into_step(self) -> Result<Step, String> {
        if self.id.is_empty() || self.sql.trim().is_empty() {
            return Err("has no id or no SQL".into());
        }
        let lock = match self.lock {
            None => None,
            Some(l) => Some(StepLock {
                mode: l
                    .mode
                    .parse()
                    .map_err(|()| format!("names an unknown lock mode {:?}", l.mode))?,
                relation: Name::parse_display(&l.relation)
                    .ok_or_else(|| format!("names no relation it locks ({:?})", l.relation))?,
            }),
        };
        Ok(Step {
            id: self.id,
            description: self.description,
            sql: self.sql.into(),
            transaction: self.transaction,
            lock,
        })
    }
}

#[derive(Deserialize)]
struct WireBackfill {
    table: String,
    key: Vec<String>,
    set: Vec<WireAssignment>,
    #[serde(rename = "where")]
    filter: Option<String>,
    alias: Option<String>,
    from: Option<String>,
    /// Plans recorded before backfills had a place among the steps ran them after expand.
    #[serde(default)]
    after_step: Option<usize>,
    #[serde(default)]
    shadow_copy: Option<bool>,
}

#[derive(Deserialize)]
struct WireAssignment {
    column: String,
    expr: String,
}

impl WireBackfill {
    fn into_backfill(self) -> Option<Backfill> {
        // Plans recorded before the flag: a copy into zdm's own `_zdm_…` columns (a type
        // change's shadow) is one; a rename's cannot be told from a user's UPDATE.
        let legacy_shadow =
            !self.set.is_empty() && self.set.iter().all(|a| a.column.starts_with("_zdm_"));
        Some(Backfill {
            table: Name::parse_display(&self.table)?,
            key: self.key,
            set: self
                .set
                .into_iter()
                .map(|a| Assignment {
                    column: a.column,
                    expr: a.expr,
                })
                .collect(),
            filter: self.filter,
            alias: self.alias,
            from: self.from,
            after_step: self.after_step.unwrap_or(usize::MAX),
            shadow_copy: self.shadow_copy.unwrap_or(legacy_shadow),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Value {
        let plan = crate::plan::testing::plan(
            "CREATE TABLE t (id int PRIMARY KEY, n int);",
            "ALTER TABLE t ALTER COLUMN n TYPE bigint;",
            16,
        )
        .unwrap();
        record(&plan)
    }

    #[test]
    fn a_recorded_plan_reads_back_as_planned() {
        let plan = crate::plan::testing::plan(
            "CREATE TABLE t (id int PRIMARY KEY, n int);",
            "ALTER TABLE t ALTER COLUMN n TYPE bigint;",
            16,
        )
        .unwrap();
        let back = read(&record(&plan)).unwrap();
        assert_eq!(back.expand, plan.expand);
        assert_eq!(back.backfill, plan.backfill);
        assert_eq!(back.contract, plan.contract);
        assert_eq!(back.down, plan.down);
    }

    #[test]
    fn edited_incomplete_and_newer_plans_are_errors() {
        let mut edited = recorded();
        edited["contract"][0]["sql"] = json!("DELETE FROM t");
        assert!(read(&edited).unwrap_err().contains("checksum"));

        let mut no_sql = recorded();
        no_sql["contract"][0]["sql"] = json!("");
        no_sql["plan_checksum"] = json!(plan_checksum(&no_sql));
        assert!(read(&no_sql).unwrap_err().contains("no SQL"));

        let mut missing = recorded();
        missing["contract"][0]
            .as_object_mut()
            .unwrap()
            .remove("transaction");
        missing["plan_checksum"] = json!(plan_checksum(&missing));
        assert!(read(&missing).unwrap_err().contains("transaction"));

        let mut newer = recorded();
        newer["format"] = json!(PLAN_FORMAT + 1);
        assert!(read(&newer).unwrap_err().contains("newer zdm"));
    }
}
