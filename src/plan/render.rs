//! Plan output: human (terminal), markdown (a PR comment), json, and sql files that run as is
//! with `psql -v ON_ERROR_STOP=1 -f FILE` in autocommit mode, for teams on other runners (their
//! backfills are the statements `zdm expand` runs, from `sql::backfill`). The recorded plan is
//! `recorded.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{
    Backfill, MigrationPlan, PHASES, PlanError, PlanEstimate, Step, StepEstimate, human_bytes,
    human_duration,
};
use crate::sql::backfill::psql_block;
use crate::sql::literal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Human,
    Markdown,
    Json,
    Sql,
}

/// `lock_timeout` in the SQL files: a queued ACCESS EXCLUSIVE request blocks every later query
/// on its table, so no step may wait long.
const LOCK_TIMEOUT: &str = "1s";
/// Rows per backfill batch in the SQL files.
const BATCH_SIZE: usize = 1000;
/// Heap pages per batch when a table has no key (8 kB pages: a few hundred rows each).
const CTID_PAGES: usize = 10;

/// Renders plans as text (every format but `sql`, which writes files), with the migrations
/// zdm refuses to plan after them.
pub fn render(plans: &[MigrationPlan], refused: &[PlanError], format: PlanFormat) -> String {
    match format {
        PlanFormat::Human => {
            let mut out = plans.iter().map(human).collect::<Vec<_>>().join("\n");
            for e in refused {
                let (path, line) = e.location();
                let _ = write!(
                    out,
                    "\nrefused {}:{line}\n  {}\n",
                    path.display(),
                    e.reason()
                );
                if let Some(help) = e.help() {
                    let _ = writeln!(out, "  alternatives: {help}");
                    let _ = writeln!(
                        out,
                        "  or accept the lock with `-- zdm:allow-locking -- <reason>` on the statement"
                    );
                }
            }
            out
        }
        PlanFormat::Markdown => {
            let mut out = plans.iter().map(markdown).collect::<Vec<_>>().join("\n");
            if !refused.is_empty() {
                out.push_str("\n### Refused\n\n");
                for e in refused {
                    let (path, line) = e.location();
                    let _ = writeln!(out, "- `{}:{line}`: {}", path.display(), e.reason());
                    if let Some(help) = e.help() {
                        let _ = writeln!(out, "  - alternatives: {help}");
                    }
                }
            }
            out
        }
        PlanFormat::Json => {
            let v = json!({
                "version": 1,
                "migrations": plans.iter().map(json_plan_estimated).collect::<Vec<_>>(),
                "refused": refused.iter().map(|e| {
                    let (path, line) = e.location();
                    json!({"path": path.display().to_string(), "line": line,
                           "reason": e.reason(), "help": e.help()})
                }).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&v).expect("json") + "\n"
        }
        PlanFormat::Sql => plans
            .iter()
            .flat_map(sql_files)
            .map(|(name, text)| format!("-- {name}\n{text}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn lock_text(step: &Step) -> String {
    let tx = if step.transaction {
        "in a transaction"
    } else {
        "outside a transaction"
    };
    match &step.lock {
        Some(l) => format!("{} on {}, {tx}", l.mode, l.relation),
        None => tx.to_owned(),
    }
}

/// The estimate's headline: each phase's total, the WAL, and the step that blocks longest.
pub fn estimate_summary(e: &PlanEstimate, plan: &MigrationPlan) -> String {
    let phases = PHASES
        .iter()
        .filter(|p| !e.phase(p).is_empty())
        .map(|p| {
            let wal = e.phase_wal_bytes(p);
            let wal = if wal > 0 {
                format!(" ({} WAL)", human_bytes(wal))
            } else {
                String::new()
            };
            format!("{p} {}{wal}", human_duration(e.phase_millis(p)))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let blocking = match e.longest_blocking() {
        Some((phase, i, step)) => {
            let steps = if phase == "expand" {
                &plan.expand
            } else {
                &plan.contract
            };
            let lock = steps
                .get(i)
                .and_then(|s| s.lock.as_ref())
                .map(|l| format!(" ({} on {})", l.mode, l.relation))
                .unwrap_or_default();
            format!(
                "longest blocking step {phase}-{}: {}{lock}",
                i + 1,
                human_duration(step.blocking_millis)
            )
        }
        None => "blocking locks only for catalog changes (milliseconds each)".to_owned(),
    };
    if phases.is_empty() {
        blocking
    } else {
        format!("{phases}; {blocking}")
    }
}

/// One step's estimate, for the line under it.
fn step_estimate_text(e: &StepEstimate) -> String {
    if e.work == super::Work::Catalog && e.millis == 0 {
        return "instant once its lock is granted (catalog only)".to_owned();
    }
    let mut text = format!("~{}, {}", human_duration(e.millis), e.work.as_str());
    if let Some(table) = &e.table
        && e.work != super::Work::Catalog
    {
        let _ = write!(text, " ({table})");
    }
    if e.wal_bytes > 0 {
        let _ = write!(text, ", {} WAL", human_bytes(e.wal_bytes));
    }
    if e.blocking_millis > 0 {
        let _ = write!(
            text,
            ", blocks the application for {}",
            human_duration(e.blocking_millis)
        );
    }
    text
}

/// The estimates of a phase's steps, when the plan has them.
fn phase_estimates<'a>(plan: &'a MigrationPlan, phase: &str) -> &'a [StepEstimate] {
    plan.estimate.as_ref().map_or(&[], |e| e.phase(phase))
}

const NO_ESTIMATE: &str = "no estimate without a database (zdm plan --database-url URL)";

fn human(plan: &MigrationPlan) -> String {
    let mut out = format!("migration {} ({})\n", plan.id, plan.path);
    match &plan.estimate {
        Some(e) => {
            let _ = writeln!(out, "  estimate: {}", estimate_summary(e, plan));
            for t in &e.tables {
                let _ = writeln!(
                    out,
                    "  table {}: ~{} rows, heap {}, indexes {}, TOAST {}",
                    t.name,
                    t.rows,
                    human_bytes(t.heap_bytes),
                    human_bytes(t.index_bytes),
                    human_bytes(t.toast_bytes)
                );
            }
            for w in &e.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
        }
        None => {
            let _ = writeln!(out, "  estimate: {NO_ESTIMATE}");
        }
    }
    for op in &plan.operations {
        let _ = writeln!(out, "  line {:<4} {:<16} {}", op.line, op.kind, op.summary);
    }
    let phase = |out: &mut String, title: &str, steps: &[Step], estimates: &[StepEstimate]| {
        if steps.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n  {title}");
        for (i, s) in steps.iter().enumerate() {
            let _ = writeln!(out, "    {}. {}  [{}]", i + 1, s.description, lock_text(s));
            if let Some(e) = estimates.get(i) {
                let _ = writeln!(out, "       estimate: {}", step_estimate_text(e));
            }
            for line in s.sql.lines() {
                let _ = writeln!(out, "       | {line}");
            }
        }
    };
    phase(
        &mut out,
        "expand",
        &plan.expand,
        phase_estimates(plan, "expand"),
    );
    if !plan.backfill.is_empty() {
        let _ = writeln!(out, "\n  backfill");
        let estimates = phase_estimates(plan, "backfill");
        for (i, b) in plan.backfill.iter().enumerate() {
            let _ = writeln!(
                out,
                "    {}{}",
                backfill_place(plan, b),
                backfill_summary(b)
            );
            if let Some(e) = estimates.get(i) {
                let _ = writeln!(out, "       estimate: {}", step_estimate_text(e));
            }
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\n  between expand and contract");
        for n in &plan.notes {
            let _ = writeln!(out, "    - {n}");
        }
    }
    phase(
        &mut out,
        "contract",
        &plan.contract,
        phase_estimates(plan, "contract"),
    );
    phase(
        &mut out,
        "down: undo expand",
        &plan.down.expand,
        phase_estimates(plan, "down-expand"),
    );
    match &plan.down.contract {
        Some(steps) => phase(
            &mut out,
            "down: undo contract",
            steps,
            phase_estimates(plan, "down-contract"),
        ),
        None => {
            let _ = writeln!(
                out,
                "\n  down: undo contract\n    impossible: the contract drops data"
            );
        }
    }
    out
}

/// Where a backfill runs when that is not after the whole expand: before the steps planned
/// from the statements after its own.
fn backfill_place(plan: &MigrationPlan, b: &Backfill) -> String {
    match plan.expand.get(b.after_step) {
        Some(next) => format!("(before {}) ", next.id),
        None => String::new(),
    }
}

fn backfill_summary(b: &Backfill) -> String {
    let set = b
        .set
        .iter()
        .map(|a| format!("{} = {}", a.column, a.expr))
        .collect::<Vec<_>>()
        .join(", ");
    let from = b
        .from
        .as_deref()
        .map(|f| format!(" from {f}"))
        .unwrap_or_default();
    let filter = b
        .filter
        .as_deref()
        .map(|f| format!(" where {f}"))
        .unwrap_or_default();
    let walk = if b.key.is_empty() {
        "ctid page ranges (the table has no key)".to_owned()
    } else {
        format!("({})", b.key.join(", "))
    };
    let summary = format!(
        "{}: set {set}{from}{filter}; in batches over {walk}",
        b.table
    );
    // One line: it also heads the backfill in the SQL files as a `--` comment.
    summary.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn markdown(plan: &MigrationPlan) -> String {
    let mut out = format!("### `{}`\n\n", plan.id);
    match &plan.estimate {
        Some(e) => {
            let _ = writeln!(
                out,
                "**Estimate on this database:** {}\n",
                estimate_summary(e, plan)
            );
            if !e.tables.is_empty() {
                out.push_str(
                    "| table | rows | heap | indexes | TOAST |\n|---|---:|---:|---:|---:|\n",
                );
                for t in &e.tables {
                    let _ = writeln!(
                        out,
                        "| `{}` | ~{} | {} | {} | {} |",
                        t.name,
                        t.rows,
                        human_bytes(t.heap_bytes),
                        human_bytes(t.index_bytes),
                        human_bytes(t.toast_bytes)
                    );
                }
                out.push('\n');
            }
            for w in &e.warnings {
                let _ = writeln!(out, "> **Warning:** {w}\n");
            }
        }
        None => {
            let _ = writeln!(out, "*Estimate: {NO_ESTIMATE}.*\n");
        }
    }
    out.push_str("| line | operation | statement |\n|---|---|---|\n");
    for op in &plan.operations {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` |",
            op.line,
            op.kind,
            op.summary.replace('|', "\\|").replace('`', "'")
        );
    }
    let phase = |out: &mut String, title: &str, steps: &[Step], estimates: &[StepEstimate]| {
        if steps.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n#### {title}\n");
        for (i, s) in steps.iter().enumerate() {
            let estimate = estimates
                .get(i)
                .map(|e| format!(" — {}", step_estimate_text(e)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{}. {} — *{}*{estimate}\n\n   ```sql\n{}\n   ```\n",
                i + 1,
                s.description,
                lock_text(s),
                indent(&s.sql, "   ")
            );
        }
    };
    phase(
        &mut out,
        "Expand",
        &plan.expand,
        phase_estimates(plan, "expand"),
    );
    if !plan.backfill.is_empty() {
        out.push_str("\n#### Backfill\n\n");
        let estimates = phase_estimates(plan, "backfill");
        for (i, b) in plan.backfill.iter().enumerate() {
            let estimate = estimates
                .get(i)
                .map(|e| format!(" — {}", step_estimate_text(e)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- {}{}{estimate}",
                backfill_place(plan, b),
                backfill_summary(b)
            );
        }
    }
    if !plan.notes.is_empty() {
        out.push_str("\n#### Between expand and contract\n\n");
        for n in &plan.notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    phase(
        &mut out,
        "Contract",
        &plan.contract,
        phase_estimates(plan, "contract"),
    );
    phase(
        &mut out,
        "Down: undo expand",
        &plan.down.expand,
        phase_estimates(plan, "down-expand"),
    );
    match &plan.down.contract {
        Some(steps) => phase(
            &mut out,
            "Down: undo contract",
            steps,
            phase_estimates(plan, "down-contract"),
        ),
        None => {
            out.push_str("\n#### Down: undo contract\n\nImpossible: the contract drops data.\n")
        }
    }
    out
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn json_step(s: &Step) -> Value {
    json!({
        "id": s.id,
        "description": s.description,
        "sql": s.sql.as_str(),
        "transaction": s.transaction,
        "lock": s.lock.as_ref().map(|l| json!({"mode": l.mode.to_string(), "relation": l.relation.to_string()})),
    })
}

pub(crate) fn json_plan(p: &MigrationPlan) -> Value {
    json!({
        "id": p.id,
        "path": p.path,
        "checksum": p.checksum,
        "operations": p.operations.iter().map(|o| json!({"kind": o.kind, "line": o.line, "summary": o.summary})).collect::<Vec<_>>(),
        "expand": p.expand.iter().map(json_step).collect::<Vec<_>>(),
        "backfill": p.backfill.iter().map(|b| json!({
            "table": b.table.to_string(),
            "key": b.key,
            "set": b.set.iter().map(|a| json!({"column": a.column, "expr": a.expr})).collect::<Vec<_>>(),
            "where": b.filter,
            "alias": b.alias,
            "from": b.from,
            "after_step": b.after_step,
            "shadow_copy": b.shadow_copy,
        })).collect::<Vec<_>>(),
        "contract": p.contract.iter().map(json_step).collect::<Vec<_>>(),
        "down": {
            "expand": p.down.expand.iter().map(json_step).collect::<Vec<_>>(),
            "contract": p.down.contract.as_ref().map(|c| c.iter().map(json_step).collect::<Vec<_>>()),
        },
        "notes": p.notes,
    })
}

fn seconds(millis: u64) -> Value {
    json!(millis as f64 / 1000.0)
}

/// A step's or backfill's estimate fields (null offline).
fn json_estimate(target: &mut Value, e: Option<&StepEstimate>) {
    target["estimated_seconds"] = e.map_or(Value::Null, |e| seconds(e.millis));
    target["estimated_wal_bytes"] = e.map_or(Value::Null, |e| json!(e.wal_bytes));
    target["estimated_blocking_seconds"] = e.map_or(Value::Null, |e| seconds(e.blocking_millis));
    target["work"] = e.map_or(Value::Null, |e| json!(e.work.as_str()));
}

/// The JSON output of a plan: the recorded shape (`json_plan`) with the estimates on every
/// step, backfill and phase, null when the plan was made offline.
fn json_plan_estimated(p: &MigrationPlan) -> Value {
    let mut v = json_plan(p);
    let e = p.estimate.as_ref();
    for (key, phase) in [
        ("expand", "expand"),
        ("backfill", "backfill"),
        ("contract", "contract"),
    ] {
        let estimates = e.map(|e| e.phase(phase));
        if let Some(items) = v[key].as_array_mut() {
            for (i, item) in items.iter_mut().enumerate() {
                json_estimate(item, estimates.and_then(|list| list.get(i)));
            }
        }
    }
    for (key, phase) in [("expand", "down-expand"), ("contract", "down-contract")] {
        let estimates = e.map(|e| e.phase(phase));
        if let Some(items) = v["down"][key].as_array_mut() {
            for (i, item) in items.iter_mut().enumerate() {
                json_estimate(item, estimates.and_then(|list| list.get(i)));
            }
        }
    }
    let per_phase = |f: &dyn Fn(&PlanEstimate, &str) -> Value| match e {
        Some(e) => Value::Object(PHASES.iter().map(|p| ((*p).to_owned(), f(e, p))).collect()),
        None => Value::Null,
    };
    v["estimated_seconds"] = per_phase(&|e, p| seconds(e.phase_millis(p)));
    v["estimated_wal_bytes"] = per_phase(&|e, p| json!(e.phase_wal_bytes(p)));
    v["estimate"] = match e {
        Some(e) => json!({
            "tables": e.tables.iter().map(|t| json!({
                "table": t.name.to_string(), "rows": t.rows, "heap_bytes": t.heap_bytes,
                "index_bytes": t.index_bytes, "toast_bytes": t.toast_bytes,
            })).collect::<Vec<_>>(),
            "longest_blocking": e.longest_blocking().map(|(phase, i, s)| json!({
                "step": format!("{phase}-{}", i + 1), "seconds": seconds(s.blocking_millis),
            })),
            "warnings": e.warnings,
        }),
        None => json!({"none": NO_ESTIMATE}),
    };
    v
}

/// The SQL of a phase's steps for psql in autocommit mode: each transactional step in its own
/// BEGIN … COMMIT with a short lock_timeout; CONCURRENTLY steps outside transactions.
fn steps_sql(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        let one_line = s
            .description
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(out, "-- {}: {one_line}", s.id);
        if s.transaction {
            let _ = writeln!(
                out,
                "BEGIN;\nSET LOCAL lock_timeout = {};\n{};\nCOMMIT;\n",
                literal(LOCK_TIMEOUT),
                s.sql
            );
        } else {
            // No lock_timeout here: CONCURRENTLY waits for older transactions under it, and a
            // timeout would leave an INVALID index behind; its lock blocks no query.
            let _ = writeln!(out, "{};\n", s.sql);
        }
    }
    out
}

/// A backfill as the psql files run it: the statements `zdm expand` runs, from a DO block.
fn backfill_sql(b: &Backfill) -> String {
    psql_block(
        &b.batch_parts(),
        &backfill_summary(b),
        BATCH_SIZE,
        CTID_PAGES,
    )
}

/// The files of `--format sql`: (file name, content), omitting phases with nothing to do.
pub fn sql_files(plan: &MigrationPlan) -> Vec<(String, String)> {
    let header = |phase: &str| {
        format!(
            "-- zdm plan: {phase} of {} ({})\n-- run with: psql -v ON_ERROR_STOP=1 -f <this file> (autocommit; transactions are in the file)\n\n",
            plan.id, plan.path
        )
    };
    let mut files = Vec::new();
    let mut push = |phase: &str, body: String| {
        if !body.is_empty() {
            files.push((format!("{}.{phase}.sql", plan.id), header(phase) + &body));
        }
    };
    // A backfill that must run before later expand steps is in the expand file, in its place;
    // the backfill file holds those that run after the whole expand.
    let mut expand = String::new();
    for (i, step) in plan.expand.iter().enumerate() {
        for b in plan.backfill.iter().filter(|b| b.after_step == i) {
            expand.push_str(&backfill_sql(b));
            expand.push('\n');
        }
        expand.push_str(&steps_sql(std::slice::from_ref(step)));
    }
    push("expand", expand);
    push(
        "backfill",
        plan.backfill
            .iter()
            .filter(|b| b.after_step >= plan.expand.len())
            .map(backfill_sql)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    // The completeness check first, as `zdm contract` runs it: the shadow copies again, each
    // updating only rows still out of sync.
    let mut contract: Vec<String> = plan
        .backfill
        .iter()
        .filter(|b| b.shadow_copy)
        .map(|b| format!("-- the completeness check: {}", backfill_sql(b)))
        .collect();
    contract.push(steps_sql(&plan.contract));
    push("contract", contract.join("\n"));
    push("down-expand", steps_sql(&plan.down.expand));
    if let Some(steps) = &plan.down.contract {
        push("down-contract", steps_sql(steps));
    }
    files
}

/// Writes the `--format sql` files into `dir`, returning their paths.
pub fn write_sql_files(plans: &[MigrationPlan], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for plan in plans {
        for (name, text) in sql_files(plan) {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            written.push(path);
        }
    }
    Ok(written)
}
