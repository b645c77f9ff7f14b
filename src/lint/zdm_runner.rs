//! The gate of a team whose migrations `zdm expand` / `zdm contract` run (`runner = "zdm"`):
//! a hazard of the SQL as written that zdm plans online becomes a note on how zdm runs it.
//! What stays an error: what zdm refuses, what it runs with its blocking lock
//! (`zdm:allow-locking`), and a drop the old application may still read, as a reminder that
//! its code must be gone before `zdm contract`.

use crate::analysis::{Finding, LintOptions, Severity};
use crate::catalog::Catalog;
use crate::plan::{MigrationPlan, ops, plan_file};
use crate::source::SourceFile;

/// Rules about the statement itself, not about how it runs: they stay as they are.
const ABOUT_THE_STATEMENT: &[&str] = &[
    "foreign-key-without-index",
    "identifier-too-long",
    "invalid-directive",
    "unrecognized-statement",
    "primary-key-nullable",
];

/// Rules whose hazard is the application losing what it reads: zdm runs the drop at contract.
const DROPS: &[&str] = &["drop-column", "drop-table", "drop-view"];

/// Rewrites a file's findings as zdm would run the file, planned against `catalog` (the
/// schema before the file).
pub fn as_run_by_zdm(
    findings: &mut Vec<Finding>,
    file: &SourceFile,
    mut catalog: Catalog,
    options: &LintOptions,
) {
    let plan = match plan_file(file, &mut catalog, options) {
        Ok(plan) => plan,
        Err(refusal) => {
            let (_, line) = refusal.location();
            for f in findings.iter_mut().filter(|f| f.start.line == line) {
                f.message = format!(
                    "{}; zdm refuses to run this migration: {}",
                    f.message,
                    refusal.reason()
                );
            }
            return;
        }
    };
    let mut noted_lines = Vec::new();
    findings.retain_mut(|f| {
        if f.path != file.path || ABOUT_THE_STATEMENT.contains(&f.rule) {
            return true;
        }
        let line = f.start.line;
        let kind = plan
            .operations
            .iter()
            .find(|o| o.line == line)
            .map(|o| o.kind);
        match kind {
            Some(ops::passthrough::ACCEPTED_LOCK) => {
                f.message = format!(
                    "{}; zdm runs it as written under that lock, as its `zdm:allow-locking` asks",
                    f.message
                );
                true
            }
            Some(ops::passthrough::AS_WRITTEN) | None if !runner_handles(f.rule) => true,
            Some(kind) if DROPS.contains(&f.rule) && kind != ops::passthrough::AS_WRITTEN => {
                f.message = format!(
                    "{}; zdm runs the drop at contract: deploy code that no longer uses it before `zdm contract`, then mark it `-- zdm:ignore {} -- <reason>`",
                    f.message, f.rule
                );
                true
            }
            kind => {
                // One note per statement, however many hazards it had as written.
                if noted_lines.contains(&line) {
                    return false;
                }
                noted_lines.push(line);
                f.severity = Severity::Note;
                f.message = match kind {
                    Some(kind) if kind != ops::passthrough::AS_WRITTEN => {
                        format!("zdm runs this online ({kind}): {}", how(kind))
                    }
                    _ => format!(
                        "zdm runs this in a short transaction of its own with a lock_timeout, retrying on timeout (as written: {})",
                        f.message
                    ),
                };
                // What the application must do between the phases, once per migration.
                f.help = if noted_lines.len() == 1 {
                    between_phases(&plan)
                } else {
                    None
                };
                true
            }
        }
    });
}

/// Hazards zdm's way of running any statement removes: it sets lock_timeout and retries, and
/// runs each step in its own transaction.
fn runner_handles(rule: &str) -> bool {
    matches!(
        rule,
        "require-lock-timeout" | "lock-held-across-statements" | "concurrently-in-transaction"
    )
}

/// How zdm runs an operation, in the phases `zdm plan` shows.
fn how(kind: &str) -> &'static str {
    match kind {
        "rename-column" => {
            "expand adds a column under the new name, kept equal to the old one by a trigger whichever application writes, and backfills it in batches; contract drops that copy and renames the original column, which keeps its indexes and constraints"
        }
        "change-type" => {
            "expand adds a shadow column of the new type, kept converted by a trigger, backfilled in batches, with copies of its indexes built CONCURRENTLY; contract swaps it in, in one short transaction"
        }
        "rename-table" => {
            "expand renames the table and leaves a view under the old name for the old application; contract drops the view"
        }
        "add-column" => {
            "expand adds the column (catalog only) with a trigger that fills it in rows either application writes, then backfills it in batches; contract sets NOT NULL through a validated check"
        }
        "set-not-null" => {
            "a CHECK … NOT VALID is added and validated without blocking writes, then SET NOT NULL needs no scan"
        }
        "add-check" | "add-foreign-key" => {
            "expand adds it NOT VALID (brief lock, no scan) and validates it in its own transaction, which does not block writes"
        }
        "add-unique" | "add-primary-key" => {
            "expand builds the unique index CONCURRENTLY, then attaches it as the constraint in a brief transaction"
        }
        "create-index" => "expand builds it CONCURRENTLY, outside a transaction",
        "drop-index" => "it is dropped CONCURRENTLY, outside a transaction",
        "backfill" => {
            "a batched, resumable backfill between expand and contract, each batch its own short transaction"
        }
        "drop-column" | "drop-table" => "contract drops it, after the deploy",
        _ => "see `zdm plan` for its phases",
    }
}

/// What the application must do between `zdm expand` and `zdm contract`.
fn between_phases(plan: &MigrationPlan) -> Option<String> {
    if plan.notes.is_empty() {
        None
    } else {
        Some(format!(
            "between `zdm expand` and `zdm contract`: {}",
            plan.notes.join("; ")
        ))
    }
}
