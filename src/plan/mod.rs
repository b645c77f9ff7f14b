//! The planner: turns each migration's plain SQL into expand, backfill and contract phases (and
//! how to undo them) so the old and the new application version both keep working.
//!
//! A statement that is already safe runs as written. One that is not goes to the operation that
//! knows its safe sequence (`ops/`, one file each). A statement no operation can run online makes
//! the plan fail with the reason and the alternatives, unless `-- zdm:allow-locking -- reason`
//! accepts the lock. Each statement comes from the analysis pass (`analysis::walk`) that lint uses
//! too: the same parse, classification and findings.

mod estimate;
mod model;
pub mod ops;
mod order;
pub mod recorded;
pub(crate) mod render;
pub mod text;
mod views;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use estimate::*;
pub use model::*;
pub use render::{
    PlanFormat, estimate_summary, render, sql_files as render_sql_files, write_sql_files,
};

use crate::analysis::{Facts, LintOptions, ParsedFile, Severity, Unit, walk};
use crate::catalog::Catalog;
use crate::classify::{Effect, Env, classify_action};
use crate::parse::{AlterAction, Change, ColumnSpec, DmlKind, parse_statement};
use crate::source::{DirectiveKind, MigrationSet, SourceFile, Statement, split_statements};
use ops::{ActionCx, OpCx, Operation as _, StatementCx};
use order::Held;

/// Why a migration cannot be planned. Nothing of it runs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{path}:{line}: {reason}\n  alternatives: {help}\n  or accept the lock with `-- zdm:allow-locking -- <reason>` on the statement"
    )]
    CannotRunOnline {
        path: PathBuf,
        line: usize,
        reason: String,
        help: String,
    },
    #[error(
        "{path}:{line}: zdm cannot understand this statement ({reason}); fix it, or run it as written with `-- zdm:allow-locking -- <reason>`"
    )]
    Unrecognized {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The plans of a migration set, and the migrations zdm refuses to plan.
#[derive(Debug, Default)]
pub struct SetPlan {
    pub plans: Vec<MigrationPlan>,
    pub refused: Vec<PlanError>,
}

impl PlanError {
    /// The file and line of the statement that cannot be planned.
    pub fn location(&self) -> (&Path, usize) {
        match self {
            PlanError::CannotRunOnline { path, line, .. }
            | PlanError::Unrecognized { path, line, .. } => (path, *line),
        }
    }

    /// Why, without the location.
    pub fn reason(&self) -> &str {
        match self {
            PlanError::CannotRunOnline { reason, .. } | PlanError::Unrecognized { reason, .. } => {
                reason
            }
        }
    }

    /// What to do instead, when zdm knows.
    pub fn help(&self) -> Option<&str> {
        match self {
            PlanError::CannotRunOnline { help, .. } => Some(help),
            PlanError::Unrecognized { .. } => None,
        }
    }
}

impl SetPlan {
    /// The plans, or the first refusal when there is one (for callers that run them all).
    pub fn all_planned(self) -> Result<Vec<MigrationPlan>, PlanError> {
        match self.refused.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.plans),
        }
    }
}

/// Plans every forward migration of a set. The schema comes from `live` (a database's catalog)
/// when given; otherwise earlier siblings of a single file are replayed for it. A migration
/// zdm refuses does not stop the others: they are planned against the schema it leaves when
/// run as written.
pub fn plan_set(set: &MigrationSet, options: &LintOptions, live: Option<Catalog>) -> SetPlan {
    let from_database = live.is_some();
    let mut catalog = live.unwrap_or_default();
    let mut out = SetPlan::default();
    for (i, file) in set.forward.iter().enumerate() {
        if set.is_context(i) {
            if from_database {
                continue; // the database already reflects them
            }
            replay(file, &mut catalog);
            continue;
        }
        let before = catalog.clone();
        match plan_file(file, &mut catalog, options) {
            Ok(plan) => out.plans.push(plan),
            Err(e) => {
                out.refused.push(e);
                catalog = before;
                replay(file, &mut catalog);
            }
        }
    }
    out
}

/// Applies a migration's statements to the catalog, as if run as written.
fn replay(file: &SourceFile, catalog: &mut Catalog) {
    for stmt in split_statements(&file.text).statements {
        catalog.apply(&parse_statement(&stmt));
    }
}

/// The checksum zdm records for a migration: SHA-256 of its text with CRLF normalized to LF
/// (the byte-order mark is already gone), so a checkout on Windows does not look edited.
pub fn checksum(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let normalized = text.replace("\r\n", "\n");
    Sha256::digest(normalized.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A migration's id: its Liquibase changeset's `author:id`, else its file name without
/// `.sql`/`.up.sql`, or its directory for `dir/up.sql`.
pub fn migration_id(file: &SourceFile) -> String {
    match &file.changeset {
        Some(changeset) => changeset.clone(),
        None => file_migration_id(&file.path),
    }
}

fn file_migration_id(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("migration");
    if matches!(name, "up.sql" | "migration.sql")
        && let Some(dir) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
    {
        return dir.to_owned();
    }
    name.trim_end_matches(".sql")
        .trim_end_matches(".up")
        .to_owned()
}

/// Plans one file, updating the catalog with what it does.
pub fn plan_file(
    file: &SourceFile,
    catalog: &mut Catalog,
    options: &LintOptions,
) -> Result<MigrationPlan, PlanError> {
    let parsed = ParsedFile::read(file);
    let statements: Vec<&Unit> = parsed.statements().collect();
    let words: Vec<HashSet<String>> = statements
        .iter()
        .map(|u| text::identifiers(&u.stmt.text))
        .collect();
    let mut combined = combine_add_update_not_null(&statements, &words);
    let mut views_waiting = std::collections::HashMap::new();
    for r in views::replacements(&statements, &words, catalog) {
        if r.statements().iter().any(|s| combined.contains_key(s)) {
            continue;
        }
        for &j in &r.changes {
            views_waiting
                .entry(j)
                .or_insert_with(Vec::new)
                .push(r.clone());
        }
        for s in r.statements() {
            combined.insert(s, Combined::Absorbed);
        }
        combined.insert(r.planned_at(), Combined::ReplaceView(Box::new(r)));
    }
    let mut planner = FilePlanner {
        file,
        pg_version: options.pg_version,
        words,
        combined,
        views_waiting,
        shadows: Vec::new(),
        body: OpPlan::nothing_to_undo_at_contract(),
        operations: Vec::new(),
        held: Vec::new(),
        checks: Vec::new(),
        block: None,
    };
    let mut failure = None;
    walk(&parsed, catalog, options, |facts| {
        if failure.is_none()
            && let Err(e) = planner.statement(facts)
        {
            failure = Some(e);
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    planner.end_block();
    let FilePlanner {
        body,
        operations,
        checks,
        ..
    } = planner;
    let mut plan = MigrationPlan {
        id: migration_id(file),
        path: file.path.display().to_string(),
        checksum: checksum(file.identity_text()),
        operations,
        expand: body.expand,
        backfill: order::merge_backfills(body.backfill),
        contract: body.contract,
        down: Down {
            expand: body.down_expand,
            contract: body.down_contract,
        },
        notes: body.notes,
        repeatable: file.repeatable,
        checks,
        estimate: None,
    };
    if plan.repeatable {
        // Undoing a repeatable migration means its previous text, which zdm does not keep:
        // dropping what `CREATE OR REPLACE` made would lose what the earlier text made too.
        plan.down = Down {
            expand: Vec::new(),
            contract: None,
        };
        plan.notes.push(format!(
            "{} is repeatable: it runs again whenever its text changes, and abort does not undo it (restore its previous text and run expand)",
            plan.path
        ));
    }
    number(&mut plan.expand, "expand");
    number(&mut plan.contract, "contract");
    number(&mut plan.down.expand, "down-expand");
    if let Some(steps) = &mut plan.down.contract {
        number(steps, "down-contract");
    }
    Ok(plan)
}

/// What planning a file keeps from one statement to the next.
struct FilePlanner<'a> {
    file: &'a SourceFile,
    pg_version: u32,
    /// The identifiers of each statement, to see which later statements use a held name.
    words: Vec<HashSet<String>>,
    combined: std::collections::HashMap<usize, Combined>,
    /// Type changes of tables read by a view that the migration drops before them, with the
    /// view and the line of its DROP VIEW (see [`views`]).
    views_waiting: std::collections::HashMap<usize, Vec<views::ViewReplacement>>,
    /// Columns the statements so far replace by a shadow at contract.
    shadows: Vec<Shadow>,
    /// The operations so far, assembled in statement order.
    body: OpPlan,
    operations: Vec<Operation>,
    /// Names an earlier statement's operation changes again at contract, with its line.
    held: Vec<(Held, usize)>,
    checks: Vec<ExpressionCheck>,
    /// The migration's explicit `BEGIN … COMMIT` block being planned, if any.
    block: Option<Block>,
}

/// An explicit `BEGIN … COMMIT` in a migration. Its statements that plan to plain
/// transactional steps are collected and run as one step, so the block keeps its meaning (all
/// or nothing). A statement zdm runs in phases cannot join a transaction; the block's other
/// steps then run before and after it, which abort undoes, unless the block also writes rows
/// as written: those would stay committed when a later part fails, so that is refused.
struct Block {
    line: usize,
    /// Steps waiting to run together.
    steps: Vec<Step>,
    /// The line of a statement in the block that runs in phases.
    phased: Option<usize>,
    /// The line of an INSERT, UPDATE, DELETE or MERGE run as written.
    writes: Option<usize>,
    /// The line of the last statement collected.
    last: usize,
}

impl Block {
    /// The collected steps as one transactional step (or as they are, when there is one).
    fn flush(&mut self) -> Option<Step> {
        let steps = std::mem::take(&mut self.steps);
        if steps.len() <= 1 {
            return steps.into_iter().next();
        }
        let lock = steps
            .iter()
            .filter_map(|s| s.lock.clone())
            .max_by_key(|l| l.mode);
        Some(Step {
            id: String::new(),
            description: format!(
                "lines {}–{} as one transaction, as their BEGIN … COMMIT says: {}",
                self.line,
                self.last,
                steps
                    .iter()
                    .map(|s| s.description.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            sql: steps
                .iter()
                .map(|s| s.sql.as_str())
                .collect::<Vec<_>>()
                .join(";\n")
                .into(),
            transaction: true,
            lock,
        })
    }
}

impl FilePlanner<'_> {
    /// Plans one statement of the file and adds it to the plan.
    fn statement(&mut self, facts: &Facts) -> Result<(), PlanError> {
        let (i, stmt, change, class) = (facts.index, facts.stmt, facts.change, facts.class);
        let file = self.file;
        let is_new = |n: &crate::parse::Name| facts.state.is_new(n);
        let env = Env {
            pg_version: self.pg_version,
            catalog: facts.catalog,
            is_new: &is_new,
        };
        let errors: Vec<_> = facts
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        let allow_locking = stmt
            .directives
            .iter()
            .any(|d| d.kind == DirectiveKind::AllowLocking);
        let cannot = |reason: String, help: Option<&str>| PlanError::CannotRunOnline {
            path: file.path.clone(),
            line: stmt.start.line,
            reason,
            help: help
                .map(str::to_owned)
                .or_else(|| errors.first().and_then(|f| f.help.clone()))
                .and_then(|h| without_self_reference(&h))
                .unwrap_or_else(|| "none beyond what the reason says".into()),
        };
        // A directive's expression is pasted into a trigger body and an UPDATE: it must be
        // one SQL expression, or `0); DELETE FROM t; (SELECT 0` would run as statements.
        for d in &stmt.directives {
            if let DirectiveKind::Backfill(expr) | DirectiveKind::Down(expr) = &d.kind
                && let Err(why) = crate::sql::one_expression(expr)
            {
                return Err(PlanError::CannotRunOnline {
                    path: file.path.clone(),
                    line: d.position.line,
                    reason: format!("the directive's `{expr}` is not one SQL expression: {why}"),
                    help: "write a single expression after the directive, e.g. `-- zdm:backfill lower(email)`".into(),
                });
            }
        }
        let absorbed = matches!(
            self.combined.get(&i),
            Some(Combined::Absorbed | Combined::ReplaceView(_))
        );
        // A statement that only sets what a column changed at contract carries (its default,
        // NOT NULL, statistics, storage, comment) runs at contract too, after that change, as
        // the SQL orders them; other uses are refused below.
        let sets_held_column = self.held.iter().any(|(h, _)| {
            !absorbed
                && h.used_by(&self.words[i], target_table(change))
                && matches!(h, Held::Column { .. })
                && order::only_sets_column_properties(stmt, change)
        });
        if let Some((h, line)) = self.held.iter().find(|(h, _)| {
            !absorbed && !sets_held_column && h.used_by(&self.words[i], target_table(change))
        }) {
            return Err(cannot(
                format!(
                    "this statement uses {}, which the statement at line {line} changes only at contract (after the whole expand), so run in zdm's phases it would act on another object than as written",
                    h.describe()
                ),
                Some(SPLIT_MIGRATION),
            ));
        }
        // A table renamed (or moved) while an earlier statement's contract still acts on it
        // under its old name would leave that contract acting on the compatibility view.
        if let Change::AlterTable { table, actions } = change
            && actions
                .iter()
                .any(|a| matches!(a, AlterAction::RenameTable { .. } | AlterAction::SetSchema))
            && let Some((h, line)) = self
                .held
                .iter()
                .find(|(h, _)| h.table().key() == table.key())
        {
            return Err(cannot(
                format!(
                    "this statement renames {table}, on which the statement at line {line} changes {} only at contract, under the name {table}",
                    h.describe()
                ),
                Some(SPLIT_MIGRATION),
            ));
        }
        if let Some((reason, help)) = order::needs_the_files_transaction(stmt) {
            return Err(cannot(reason.into(), Some(help)));
        }
        match change {
            Change::Begin => {
                self.end_block();
                self.block = Some(Block {
                    line: stmt.start.line,
                    steps: Vec::new(),
                    phased: None,
                    writes: None,
                    last: stmt.start.line,
                });
                return Ok(());
            }
            Change::Commit => {
                self.end_block();
                return Ok(());
            }
            _ => {}
        }
        let planned = match self.combined.get(&i) {
            Some(Combined::Absorbed) => None,
            Some(Combined::ReplaceView(r)) if r.selects_star => {
                return Err(cannot(
                    format!(
                        "the view {} is created again after the type changes, at contract, and selects `*`: after the swap the changed column is its table's last, so `*` would list the columns in another order than the SQL as written gives",
                        r.view
                    ),
                    Some(
                        "name the columns the view selects instead of `*`, or move the type change into a migration of its own",
                    ),
                ));
            }
            Some(Combined::ReplaceView(r)) => {
                Some(("replace-view", Self::replace_view(r), Vec::new()))
            }
            Some(Combined::AddColumn { column, expr }) => {
                let Change::AlterTable { table, .. } = change else {
                    unreachable!("combined only from ALTER TABLE … ADD COLUMN")
                };
                let action = &text::alter_actions(stmt)[0];
                let cx = op_cx(stmt, table, &env, &self.shadows);
                match ops::add_column::plan(&cx, action, column, Some(expr)) {
                    Ok(op) => {
                        let holds = vec![Held::Column {
                            table: table.clone(),
                            column: column.name.clone(),
                        }];
                        Some((ops::add_column::AddColumn.kind(), op, holds))
                    }
                    Err(reason) => return Err(cannot(reason, None)),
                }
            }
            None => match plan_statement(stmt, change, &env, &self.shadows) {
                _ if allow_locking => Some((
                    ops::passthrough::ACCEPTED_LOCK,
                    ops::passthrough::plan(stmt, change, class),
                    Vec::new(),
                )),
                Planned::Skip => None,
                Planned::Op(kind, op, holds) => Some((kind, op, holds)),
                Planned::Unrecognized(reason) => {
                    return Err(PlanError::Unrecognized {
                        path: file.path.clone(),
                        line: stmt.start.line,
                        reason,
                    });
                }
                Planned::Refused(reason) => return Err(cannot(reason, None)),
                Planned::OutOfOrder(reason) => {
                    return Err(cannot(reason, Some(SPLIT_MIGRATION)));
                }
                Planned::NoOp => match errors.first() {
                    Some(f) => return Err(cannot(f.message.clone(), f.help.as_deref())),
                    None => Some((
                        ops::passthrough::AS_WRITTEN,
                        ops::passthrough::plan(stmt, change, class),
                        Vec::new(),
                    )),
                },
            },
        };
        // A type change that runs as written (binary-coercible, say) needs the views gone
        // first, as the SQL has them: their replacement is given up, the DROP VIEW runs here
        // and the CREATE VIEW where it stands, as written.
        if planned
            .as_ref()
            .is_some_and(|(kind, _, _)| *kind != ops::change_type::ChangeType.kind())
        {
            for r in self.views_waiting.remove(&i).unwrap_or_default() {
                if !matches!(
                    self.combined.get(&r.planned_at()),
                    Some(Combined::ReplaceView(_))
                ) {
                    continue;
                }
                for s in r.statements() {
                    self.combined.remove(&s);
                }
                let (line, text) = &r.texts[0];
                self.body.expand.push(Step::tx(
                    format!("drop view {} (line {line}), as written", r.view),
                    text.as_str(),
                    crate::classify::LockMode::AccessExclusive,
                    &r.view,
                ));
                self.operations.push(Operation {
                    kind: ops::passthrough::AS_WRITTEN,
                    line: *line,
                    summary: text.split_whitespace().collect::<Vec<_>>().join(" "),
                });
            }
        }
        if let Some((kind, mut op, holds)) = planned {
            let mut holds = holds;
            if sets_held_column {
                op.run_at_contract();
            }
            if kind == ops::passthrough::AS_WRITTEN
                && !self.held.is_empty()
                && text::is_word_at(stmt, 0, "DROP")
            {
                // A drop after a statement whose own drop waits for contract may depend on it
                // (`DROP COLUMN c; DROP FUNCTION f` where c's default calls f): it waits for
                // contract too, after that drop, and its names are held like the others.
                op.contract.append(&mut op.expand);
                op.down_expand.clear();
                op.down_contract = None;
                holds = match change {
                    Change::Drop { names, .. } => {
                        names.iter().cloned().map(Held::Relation).collect()
                    }
                    _ => Vec::new(),
                };
            }
            if kind == ops::drop_index::DropIndex.kind()
                && holds.iter().any(|h| used_later(h, &self.words[i + 1..]))
            {
                // The name is used again later in the migration (`DROP INDEX x; CREATE INDEX
                // x …`), or a later foreign key references the table of a unique index: the
                // drop runs where it stands, CONCURRENTLY, instead of at contract.
                op.expand.append(&mut op.contract);
            } else if !op.contract.is_empty() {
                self.held
                    .extend(holds.into_iter().map(|h| (h, stmt.start.line)));
            }
            if let Some(block) = &mut self.block {
                let simple = op.backfill.is_empty()
                    && op.contract.is_empty()
                    && op.expand.iter().all(|s| s.transaction);
                if simple {
                    if kind == ops::passthrough::AS_WRITTEN && matches!(change, Change::Dml { .. })
                    {
                        block.writes.get_or_insert(stmt.start.line);
                    }
                    block.steps.append(&mut op.expand);
                    block.last = stmt.start.line;
                } else {
                    block.phased.get_or_insert(stmt.start.line);
                    if let Some(step) = block.flush() {
                        self.body.expand.push(step);
                    }
                }
                if let (Some(phased), Some(writes)) = (block.phased, block.writes) {
                    return Err(cannot(
                        format!(
                            "the BEGIN at line {} makes the row write at line {writes} and the statement at line {phased}, which zdm runs in phases, one transaction; phases cannot share a transaction, so a failure after the write would leave it committed",
                            block.line
                        ),
                        Some(
                            "move the row writes into a migration of their own (one BEGIN … COMMIT there runs as one transaction), or drop BEGIN/COMMIT if each statement may commit on its own",
                        ),
                    ));
                }
            }
            for b in &op.backfill {
                if let Some((column_types, sql)) = expression_check(b, facts) {
                    self.checks.push(ExpressionCheck {
                        line: stmt.start.line,
                        sql,
                        column_types,
                    });
                }
            }
            self.operations.push(Operation {
                kind,
                line: stmt.start.line,
                summary: summary(stmt),
            });
            self.shadows.extend(op.shadows.iter().cloned());
            self.body.append(op);
        }
        Ok(())
    }
}

impl FilePlanner<'_> {
    /// A view's DROP VIEW, CREATE VIEW and the statements after it that name it, as one step
    /// at contract, after the swaps of the type changes between them.
    fn replace_view(r: &views::ViewReplacement) -> OpPlan {
        let lines: Vec<String> = r.texts.iter().map(|(line, _)| line.to_string()).collect();
        let sql: Vec<&str> = r.texts.iter().map(|(_, text)| text.as_str()).collect();
        let mut plan = OpPlan::nothing_to_undo_at_contract();
        plan.contract.push(Step::tx(
            format!(
                "{} view {} in one transaction after the type changes (lines {}): the old application reads the view as it was until then",
                if r.create.is_some() { "replace" } else { "drop" },
                r.view,
                lines.join(", ")
            ),
            sql.join(";\n"),
            crate::classify::LockMode::AccessExclusive,
            &r.view,
        ));
        plan.down_contract = None;
        plan
    }

    /// Closes the open `BEGIN … COMMIT` block, if any: its collected steps become one step.
    fn end_block(&mut self) {
        if let Some(mut block) = self.block.take()
            && let Some(step) = block.flush()
        {
            self.body.expand.push(step);
        }
    }
}

/// The check of a backfill's expressions and condition (see [`ExpressionCheck`]): over a
/// stand-in `(SELECT NULL::type AS column, …)` with the table's columns before the statement,
/// so it needs neither the table nor a lock. None when the planner does not know the table
/// completely, the table is created by this migration (its types may be too), or the backfill
/// reads other tables (they may be too).
fn expression_check(b: &Backfill, facts: &Facts) -> Option<(Vec<String>, String)> {
    let table = facts.catalog.table(&b.table)?;
    if !table.complete || facts.state.is_new(&b.table) || b.from.is_some() {
        return None;
    }
    let mut types = Vec::new();
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let ty = match c.ty.written.to_lowercase().as_str() {
                "serial" | "serial4" => "integer".to_owned(),
                "bigserial" | "serial8" => "bigint".to_owned(),
                "smallserial" | "serial2" => "smallint".to_owned(),
                _ => c.ty.written.clone(),
            };
            let column = format!("NULL::{ty} AS {}", crate::sql::Ident(&c.name));
            types.push(ty);
            column
        })
        .collect();
    if columns.is_empty() {
        return None;
    }
    // A column the statement itself adds (the backfill of ADD COLUMN fills it where NULL) is
    // not in the catalog before the statement; untyped, it stands in as text.
    for a in &b.set {
        if table.column(&a.column).is_none() {
            columns.push(format!("NULL AS {}", crate::sql::Ident(&a.column)));
        }
    }
    let values: Vec<&str> = b.set.iter().map(|a| a.expr.as_str()).collect();
    let alias = b.alias.clone().unwrap_or_else(|| b.table.name.clone());
    Some((
        types,
        format!(
            "SELECT {} FROM (SELECT {}) AS {} WHERE false{}",
            values.join(", "),
            columns.join(", "),
            crate::sql::Ident(&alias),
            b.filter
                .as_ref()
                .map(|f| format!(" AND ({f})"))
                .unwrap_or_default()
        ),
    ))
}

/// The way out when a statement depends on what an earlier one changes only at contract.
const SPLIT_MIGRATION: &str = "move the later statement (or action) into a later migration, which zdm runs after this one's contract";

/// Whether any of the later statements (their identifiers) uses a held name.
fn used_later(held: &Held, later: &[HashSet<String>]) -> bool {
    later.iter().any(|words| held.used_by(words, None))
}

/// The table a statement acts on, when it has one.
fn target_table(change: &Change) -> Option<&crate::parse::Name> {
    match change {
        Change::AlterTable { table, .. }
        | Change::CreateIndex { table, .. }
        | Change::Dml { table, .. } => Some(table),
        _ => None,
    }
}

/// A lint rule's help with the clause that recommends zdm's own plan removed: when the plan is
/// what refuses the statement, that clause would offer the refusal as its own alternative.
fn without_self_reference(help: &str) -> Option<String> {
    if help.starts_with("zdm plan") {
        return None;
    }
    let cut = ["; zdm plan", ". zdm plan", ", zdm plan"]
        .iter()
        .filter_map(|clause| help.find(clause))
        .min();
    Some(match cut {
        Some(i) => help[..i].to_owned(),
        None => help.to_owned(),
    })
}

fn number(steps: &mut [Step], phase: &str) {
    for (i, s) in steps.iter_mut().enumerate() {
        s.id = format!("{phase}-{}", i + 1);
    }
}

/// How a statement takes part in a multi-statement operation.
enum Combined {
    /// `ADD COLUMN c` that, with a later `UPDATE … SET c = expr` and `SET NOT NULL`, is planned
    /// as one add-column operation filled from `expr`.
    AddColumn {
        column: Box<ColumnSpec>,
        expr: String,
    },
    /// The UPDATE and SET NOT NULL that the ADD COLUMN above took over, and the statements
    /// of a view replacement before its last.
    Absorbed,
    /// The last statement of a view replaced around type changes: the replacement runs here.
    ReplaceView(Box<views::ViewReplacement>),
}

/// Finds `ADD COLUMN c` (nullable, no default) + `UPDATE t SET c = expr [WHERE c IS NULL]` +
/// `ALTER COLUMN c SET NOT NULL` on one table in one migration, with no statement between
/// them naming the column. Planned separately, the NOT NULL would be validated in expand,
/// before the backfill fills the column; planned together, the column is filled for
/// old-application inserts by a trigger, backfilled, and made NOT NULL in contract.
fn combine_add_update_not_null(
    statements: &[&Unit],
    words: &[HashSet<String>],
) -> std::collections::HashMap<usize, Combined> {
    let changes: Vec<&Change> = statements.iter().map(|u| &u.change).collect();
    let mut out = std::collections::HashMap::new();
    for (i, change) in changes.iter().enumerate() {
        let Change::AlterTable { table, actions } = change else {
            continue;
        };
        let [AlterAction::AddColumn(col)] = actions.as_slice() else {
            continue;
        };
        if col.not_null || col.default.is_some() || col.generated.is_some() {
            continue;
        }
        let names_column = |j: usize| words[j].contains(&col.name);
        // The next statement naming the column must be the UPDATE.
        let Some(j) = (i + 1..changes.len()).find(|&j| names_column(j)) else {
            continue;
        };
        let update = match changes[j] {
            Change::Dml {
                kind: DmlKind::Update,
                table: t,
                ..
            } if t.key() == table.key() => {
                text::update_parts(&statements[j].stmt).and_then(|parts| {
                    let is_null = format!("{} is null", col.name);
                    let whole = parts.filter.as_deref().is_none_or(|f| {
                        f.split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .to_lowercase()
                            .replace('"', "")
                            == is_null
                    });
                    match parts.set.as_slice() {
                        [(c, expr)] if *c == col.name && whole && parts.from.is_none() => {
                            Some(expr.clone())
                        }
                        _ => None,
                    }
                })
            }
            _ => None,
        };
        let Some(expr) = update else { continue };
        // And the next one after it, the SET NOT NULL.
        let Some(k) = (j + 1..changes.len()).find(|&k| names_column(k)) else {
            continue;
        };
        let sets_not_null = matches!(changes[k], Change::AlterTable { table: t, actions }
            if t.key() == table.key()
                && matches!(actions.as_slice(), [AlterAction::SetNotNull { column }] if *column == col.name));
        if !sets_not_null {
            continue;
        }
        let column = Box::new(ColumnSpec {
            not_null: true,
            ..col.clone()
        });
        out.insert(i, Combined::AddColumn { column, expr });
        out.insert(j, Combined::Absorbed);
        out.insert(k, Combined::Absorbed);
    }
    out
}

/// The statement's first line, shortened, for the operations list.
fn summary(stmt: &Statement) -> String {
    let one_line = stmt.text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// What the planner decided for a statement.
enum Planned {
    /// Transaction control and timeouts: zdm runs its own.
    Skip,
    /// An operation's plan, with the names it changes again at contract.
    Op(&'static str, OpPlan, Vec<Held>),
    /// No operation applies: safe statements run as written, others are refused.
    NoOp,
    /// An operation applies but cannot plan this form.
    Refused(String),
    /// The actions of one ALTER TABLE cannot be split into phases without changing what they
    /// mean.
    OutOfOrder(String),
    Unrecognized(String),
}

fn plan_statement(stmt: &Statement, change: &Change, env: &Env, shadows: &[Shadow]) -> Planned {
    match change {
        Change::Begin | Change::Commit | Change::Rollback => Planned::Skip,
        Change::Set { name, .. }
            if matches!(name.as_str(), "lock_timeout" | "statement_timeout") =>
        {
            Planned::Skip
        }
        Change::Unrecognized { reason } => Planned::Unrecognized(reason.clone()),
        Change::AlterTable { table, actions } if !(env.is_new)(table) => {
            plan_alter(stmt, table, actions, env, shadows)
        }
        _ => {
            let cx = StatementCx {
                stmt,
                change,
                catalog: env.catalog,
                pg_version: env.pg_version,
                is_new: env.is_new,
                shadows,
            };
            let taken = ops::OPERATIONS.iter().find_map(|r| {
                let planned = r.operation.plan_statement(&cx)?;
                Some((r.operation.kind(), planned))
            });
            match taken {
                Some((kind, Ok(p))) => Planned::Op(kind, p.op, p.holds),
                Some((_, Err(reason))) => Planned::Refused(reason),
                None => Planned::NoOp,
            }
        }
    }
}

/// An effect the running application would notice: a blocking lock held for a rewrite or scan,
/// or a breaking change.
fn needs_op(e: &Effect) -> bool {
    !e.new_relation && (e.breaking.is_some() || ((e.rewrite || e.scan) && e.lock.blocks_writes()))
}

fn op_cx<'a>(
    stmt: &'a Statement,
    table: &'a crate::parse::Name,
    env: &'a Env,
    shadows: &'a [Shadow],
) -> OpCx<'a> {
    OpCx {
        stmt,
        table,
        catalog: env.catalog,
        pg_version: env.pg_version,
        shadows,
    }
}

/// ALTER TABLE on an existing table: each action on its own.
fn plan_alter(
    stmt: &Statement,
    table: &crate::parse::Name,
    actions: &[AlterAction],
    env: &Env,
    shadows: &[Shadow],
) -> Planned {
    let texts = text::alter_actions(stmt);
    if texts.len() != actions.len() {
        return Planned::Refused("zdm could not separate the actions of this ALTER TABLE; write one action per statement".into());
    }
    // PostgreSQL runs the actions in passes, not in the written order (see `order`).
    let mut ordered: Vec<(&AlterAction, &String)> = actions.iter().zip(&texts).collect();
    ordered.sort_by_key(|(action, _)| order::alter_pass(action));
    let backfill = stmt.directives.iter().find_map(|d| match &d.kind {
        DirectiveKind::Backfill(expr) => Some(expr.as_str()),
        _ => None,
    });
    let mut all = OpPlan::nothing_to_undo_at_contract();
    let mut kinds = Vec::new();
    let mut holds: Vec<Held> = Vec::new();
    for (action, action_text) in ordered {
        let words = text::identifiers(action_text);
        // `ALTER COLUMN c TYPE …, ALTER COLUMN c SET DEFAULT …`: the default (or another
        // property) is set at contract, after the swap, as PostgreSQL's passes order them.
        let after_contract = order::sets_column_property(action)
            && holds.iter().any(|h| h.used_by(&words, Some(table)));
        if let Some(h) = holds
            .iter()
            .find(|h| !after_contract && h.used_by(&words, Some(table)))
        {
            return Planned::OutOfOrder(format!(
                "`{}` uses {}, which an earlier action of this ALTER TABLE changes only at contract",
                action_text.split_whitespace().collect::<Vec<_>>().join(" "),
                h.describe()
            ));
        }
        let detach_concurrently = matches!(
            action,
            AlterAction::DetachPartition {
                concurrently: true,
                ..
            }
        );
        if detach_concurrently && env.pg_version < 14 {
            return Planned::Refused(format!(
                "DETACH PARTITION … CONCURRENTLY needs PostgreSQL 14 (targeting {v}); on {v}, write it without CONCURRENTLY (it then locks {table} ACCESS EXCLUSIVE), run it in a quiet period and mark it `-- zdm:allow-locking -- reason`",
                v = env.pg_version
            ));
        }
        let effects = classify_action(table, action, env);
        let risky = effects.iter().any(needs_op);
        let acx = ActionCx {
            cx: op_cx(stmt, table, env, shadows),
            action,
            text: action_text,
            risky,
            backfill,
        };
        let taken = ops::OPERATIONS.iter().find_map(|r| {
            let planned = r.operation.plan_action(&acx)?;
            Some((r.operation.kind(), planned))
        });
        let mut op = match taken {
            Some((kind, Ok(op))) => {
                kinds.push(kind);
                op
            }
            Some((_, Err(reason))) => return Planned::Refused(reason),
            None if risky => return Planned::NoOp,
            None => {
                kinds.push(ops::passthrough::AS_WRITTEN);
                ops::passthrough::action(table, action, action_text, &effects)
            }
        };
        if after_contract {
            op.run_at_contract();
        }
        if !op.contract.is_empty() {
            if let AlterAction::DropColumn { column }
            | AlterAction::AlterColumnType { column, .. } = action
            {
                holds.extend(order::dependents(env.catalog, table, column));
            }
            // The conversion trigger and the backfill name a type the migration made: renamed
            // or dropped later in expand (Prisma's enum swap), they would stop converting.
            if let AlterAction::AlterColumnType { ty, .. } = action
                && !ty.is_builtin()
                && let Some(name) = crate::parse::Name::parse_display(
                    ty.written
                        .split(['(', '['])
                        .next()
                        .unwrap_or_default()
                        .trim(),
                )
            {
                holds.push(Held::Type(name));
            }
            match action {
                AlterAction::RenameTable { .. } => holds.push(Held::Relation(table.clone())),
                _ => holds.extend(order::action_columns(action).into_iter().map(|column| {
                    Held::Column {
                        table: table.clone(),
                        column,
                    }
                })),
            }
        }
        all.append(op);
    }
    kinds.dedup();
    let kind = if kinds.len() == 1 {
        kinds[0]
    } else {
        ops::SEVERAL_KINDS
    };
    Planned::Op(kind, all, holds)
}

/// Helpers for the operation tests: plan SQL after an earlier migration, and check that every
/// generated statement parses.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn plan(setup: &str, sql: &str, pg_version: u32) -> Result<MigrationPlan, PlanError> {
        let mut catalog = Catalog::from_sql(setup);
        let options = LintOptions {
            pg_version,
            ..LintOptions::default()
        };
        let file = SourceFile::from_text(Path::new("0002_change.sql"), sql.to_owned());
        let plan = plan_file(&file, &mut catalog, &options)?;
        assert_statements_parse(&plan);
        Ok(plan)
    }

    /// The human rendering, for snapshots.
    pub fn human(setup: &str, sql: &str) -> String {
        match plan(setup, sql, 14) {
            Ok(p) => render(&[p], &[], PlanFormat::Human),
            Err(e) => format!("error: {e}\n"),
        }
    }

    fn assert_statements_parse(plan: &MigrationPlan) {
        let steps = plan
            .expand
            .iter()
            .chain(&plan.contract)
            .chain(&plan.down.expand)
            .chain(plan.down.contract.iter().flatten());
        for step in steps {
            for stmt in split_statements(&step.sql).statements {
                let change = parse_statement(&stmt);
                assert!(
                    !matches!(change, Change::Unrecognized { .. }),
                    "generated SQL does not parse: {}\n{change:?}",
                    stmt.text
                );
            }
        }
        for (_, text) in render::sql_files(plan) {
            for stmt in split_statements(&text).statements {
                assert!(
                    !matches!(parse_statement(&stmt), Change::Unrecognized { .. }),
                    "generated SQL file statement does not parse: {}",
                    stmt.text
                );
            }
        }
    }
}
