//! What keeps a plan meaning what its statements mean when run in order.
//!
//! An online plan moves some work away from where its statement stands: a backfill runs after
//! expand steps, and contract runs after the whole expand. That is only equal to the SQL as
//! written when nothing later in the migration depends on what moved. This module holds the
//! rules that decide it, so the planner can keep statements in order, or refuse with a reason:
//!
//! - **Names held until contract.** An operation whose contract changes a column, index or
//!   table (a rename swaps columns, a type change swaps in a shadow, a drop drops) holds those
//!   names until contract. A later statement that names one of them would act on the wrong
//!   object (an index built on a shadow that the swap drops, a default the swap overwrites, an
//!   index created under a name that contract then drops), so the plan is refused with both
//!   lines named. `DROP INDEX` of a name used again later runs in order instead, in expand.
//! - **ALTER TABLE passes.** PostgreSQL runs the actions of one ALTER TABLE in passes (all
//!   drops, then type changes, then added columns, then constraints…; `AlterTablePass` in
//!   tablecmds.c), not in the order written; split into steps they keep that order.
//! - **Backfill merging.** Several UPDATEs of a table share one pass only when the pass gives
//!   the same rows as running them one after the other; otherwise each runs in its own pass, in
//!   statement order.

use std::collections::HashSet;

use sqlparser::tokenizer::Token;

use crate::catalog::Catalog;
use crate::parse::{AlterAction, Change, ConstraintKind, Name};
use crate::source::Statement;

use super::model::Backfill;
use super::text::{self, identifiers};

/// A name an operation changes again at contract, so that nothing later in the migration may
/// use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// A column of a table (renamed, retyped, dropped, or made NOT NULL at contract).
    Column { table: Name, column: String },
    /// An index, table or view name (dropped, or taken by a compatibility view, at contract).
    Relation(Name),
    /// A table's primary key, which goes with a column dropped at contract: until then no
    /// other can be added.
    PrimaryKey(Name),
    /// A unique index of a table, dropped at contract: a foreign key added before then that
    /// references the table may come to depend on it instead of on the key the SQL as
    /// written leaves.
    ReferencedKey(Name),
    /// A type a migration made, which a type change's trigger and backfill name until
    /// contract: a statement on the type itself (`ALTER TYPE … RENAME`, `DROP TYPE`) would
    /// leave them naming nothing. Statements on tables may still use it.
    Type(Name),
}

impl Held {
    /// Whether a statement whose identifiers are `words` (see [`identifiers`]), acting on
    /// `table` when known, uses this name.
    pub fn used_by(&self, words: &HashSet<String>, table: Option<&Name>) -> bool {
        match self {
            Held::Column { table: t, column } => {
                let same_table =
                    table.is_some_and(|x| x.key() == t.key()) || words.contains(&t.name);
                same_table && words.contains(column)
            }
            Held::Relation(name) => words.contains(&name.name),
            Held::PrimaryKey(t) => {
                let same_table =
                    table.is_some_and(|x| x.key() == t.key()) || words.contains(&t.name);
                same_table && words.contains("primary")
            }
            Held::ReferencedKey(t) => words.contains("references") && words.contains(&t.name),
            Held::Type(name) => {
                table.is_none()
                    && words.contains(&name.name)
                    && words.contains("type")
                    && (words.contains("alter") || words.contains("drop"))
            }
        }
    }

    /// The table the held name belongs to (for a relation, the relation itself).
    pub fn table(&self) -> &Name {
        match self {
            Held::Column { table, .. } | Held::PrimaryKey(table) | Held::ReferencedKey(table) => {
                table
            }
            Held::Relation(name) | Held::Type(name) => name,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Held::Column { table, column } => format!("{table}.{column}"),
            Held::Relation(name) => name.to_string(),
            Held::Type(name) => format!("the type {name}"),
            Held::PrimaryKey(table) => format!("the primary key of {table}"),
            Held::ReferencedKey(table) => format!("the unique keys of {table}"),
        }
    }
}

/// Why a statement only means what it says inside the transaction or session of the
/// statements around it, which zdm's separate steps and backfills do not share (the reason and
/// what to do instead), or `None`.
pub fn needs_the_files_transaction(stmt: &Statement) -> Option<(&'static str, &'static str)> {
    let words: Vec<String> = stmt
        .tokens
        .iter()
        .take(4)
        .filter_map(|t| match &t.token {
            Token::Word(w) => Some(w.value.to_uppercase()),
            _ => None,
        })
        .collect();
    let first = words.first().map(String::as_str);
    let has = |w: &str| words.iter().any(|x| x == w);
    match first {
        Some("CREATE") if has("TEMP") || has("TEMPORARY") => Some((
            "a temporary table lives in one session and, with ON COMMIT, one transaction; zdm runs a migration's statements as separate steps and backfills, so it may not be there for the statements that use it",
            "use a regular table and drop it at the end of the migration",
        )),
        Some("ROLLBACK" | "ABORT") if !has("PREPARED") => Some((
            "the migration rolls back its own transaction (or to a savepoint); zdm runs its statements as separate steps, so what the rollback would undo is already committed",
            "remove the statements the rollback undoes, and the rollback",
        )),
        Some("SAVEPOINT" | "RELEASE") => Some((
            "savepoints belong to the migration's transaction, which zdm's separate steps do not share",
            "write the migration without savepoints",
        )),
        Some("DECLARE") => Some((
            "a cursor lives in the migration's transaction, which zdm's separate steps do not share",
            "write the statements that use the cursor as one statement, or as a DO block",
        )),
        Some("SET")
            if has("LOCAL")
                && !has("LOCK_TIMEOUT")
                && !has("STATEMENT_TIMEOUT")
                && !has("IDLE_IN_TRANSACTION_SESSION_TIMEOUT") =>
        {
            Some((
                "SET LOCAL lasts until the end of the migration's transaction, and zdm runs each statement in a transaction of its own, so the statements after it would not see the setting",
                "qualify names instead of setting search_path, or set what the statements need inside each of them (a DO block)",
            ))
        }
        _ => None,
    }
}

/// The columns an ALTER TABLE action changes, which its operation holds when it has a contract.
pub fn action_columns(action: &AlterAction) -> Vec<String> {
    match action {
        AlterAction::AddColumn(col) => vec![col.name.clone()],
        AlterAction::RenameColumn { from, to } => vec![from.clone(), to.clone()],
        AlterAction::DropColumn { column }
        | AlterAction::AlterColumnType { column, .. }
        | AlterAction::SetNotNull { column }
        | AlterAction::DropNotNull { column }
        | AlterAction::SetDefault { column, .. }
        | AlterAction::DropDefault { column } => vec![column.clone()],
        AlterAction::AddConstraint(spec) => match &spec.kind {
            ConstraintKind::NotNull { column } => vec![column.clone()],
            ConstraintKind::Unique { columns, .. }
            | ConstraintKind::PrimaryKey { columns, .. }
            | ConstraintKind::ForeignKey { columns, .. } => columns.clone(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// What goes away with a column that is dropped (or replaced by a shadow) at contract: the
/// indexes and constraints over it, and the table's primary key when it is part of it.
pub fn dependents(catalog: &Catalog, table: &Name, column: &str) -> Vec<Held> {
    let mut out = Vec::new();
    for (name, index) in catalog.indexes_of(table) {
        if index.columns.is_empty() || index.columns.iter().any(|c| c == column) {
            out.push(Held::Relation(name.clone()));
        }
    }
    if let Some(t) = catalog.table(table) {
        for c in &t.constraints {
            let columns: &[String] = match &c.kind {
                ConstraintKind::PrimaryKey { columns, .. } => {
                    if columns.iter().any(|c| c == column) {
                        out.push(Held::PrimaryKey(table.clone()));
                    }
                    columns
                }
                ConstraintKind::Unique { columns, .. }
                | ConstraintKind::ForeignKey { columns, .. } => columns,
                _ => &[],
            };
            if let Some(name) = &c.name
                && columns.iter().any(|c| c == column)
            {
                out.push(Held::Relation(Name::in_schema_of(table, name)));
            }
        }
    }
    out
}

/// The pass in which PostgreSQL runs an ALTER TABLE action (lower first). Actions of one pass
/// keep their written order.
pub fn alter_pass(action: &AlterAction) -> u8 {
    match action {
        AlterAction::DropColumn { .. }
        | AlterAction::DropConstraint { .. }
        | AlterAction::DropNotNull { .. }
        | AlterAction::DropDefault { .. } => 0,
        AlterAction::AlterColumnType { .. } => 1,
        AlterAction::AddColumn(_) => 2,
        AlterAction::AddConstraint(spec) => match spec.kind {
            ConstraintKind::NotNull { .. } => 4,
            _ => 3,
        },
        AlterAction::SetNotNull { .. } => 4,
        AlterAction::SetDefault { .. } => 5,
        _ => 6,
    }
}

/// Merges each backfill into the one before it when one pass provably gives the rows that
/// running both in order gives: the same table, rows (condition, alias, FROM) and place among
/// the steps, no column written twice, and nothing the later one reads (its expressions, its
/// condition, its FROM list) written by the earlier one. Otherwise both passes run, in order.
pub fn merge_backfills(backfills: Vec<Backfill>) -> Vec<Backfill> {
    let mut out: Vec<Backfill> = Vec::new();
    for b in backfills {
        if let Some(last) = out.last_mut()
            && mergeable(last, &b)
        {
            last.set.extend(b.set);
            continue;
        }
        out.push(b);
    }
    out
}

fn mergeable(first: &Backfill, then: &Backfill) -> bool {
    if first.table.key() != then.table.key()
        || first.key != then.key
        || first.after_step != then.after_step
        || first.filter != then.filter
        || first.alias != then.alias
        || first.from != then.from
        || first.shadow_copy != then.shadow_copy
    {
        return false;
    }
    let written: HashSet<&str> = first.set.iter().map(|a| a.column.as_str()).collect();
    if then.set.iter().any(|a| written.contains(a.column.as_str())) {
        return false;
    }
    let mut read = HashSet::new();
    for a in &then.set {
        read.extend(identifiers(&a.expr));
    }
    for text in [&then.filter, &then.from].into_iter().flatten() {
        read.extend(identifiers(text));
    }
    !written.iter().any(|c| read.contains(*c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::Assignment;
    use crate::source::split_statements;

    fn backfill(set: &[(&str, &str)], filter: Option<&str>) -> Backfill {
        Backfill {
            table: Name::new(None, "t"),
            key: vec!["id".into()],
            set: set
                .iter()
                .map(|(c, e)| Assignment {
                    column: (*c).into(),
                    expr: (*e).into(),
                })
                .collect(),
            filter: filter.map(str::to_owned),
            alias: None,
            from: None,
            after_step: 0,
            shadow_copy: false,
        }
    }

    #[test]
    fn independent_assignments_share_a_pass() {
        let merged = merge_backfills(vec![
            backfill(&[("b", "a")], None),
            backfill(&[("d", "c")], None),
        ]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].set.len(), 2);
    }

    #[test]
    fn a_pass_that_reads_what_an_earlier_one_wrote_stays_separate() {
        // The later filter sees the earlier write: as written it matches no row.
        let merged = merge_backfills(vec![
            backfill(&[("plan", "'free'")], Some("plan IS NULL")),
            backfill(&[("\"Score\"", "0")], Some("plan IS NULL")),
        ]);
        assert_eq!(merged.len(), 2);
        // The same column written twice under different conditions.
        let merged = merge_backfills(vec![
            backfill(&[("m", "'system'")], Some("status = 'detailed'")),
            backfill(&[("m", "'manual'")], Some("status <> 'detailed'")),
        ]);
        assert_eq!(merged.len(), 2);
        // An expression reading the earlier write.
        let merged = merge_backfills(vec![
            backfill(&[("b", "a")], None),
            backfill(&[("c", "NOT b")], None),
        ]);
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn actions_sort_into_postgres_passes() {
        let sql = "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0), ADD COLUMN x int, DROP COLUMN y";
        let stmt = &split_statements(sql).statements[0];
        let Change::AlterTable { actions, .. } = crate::parse::parse_statement(stmt) else {
            panic!()
        };
        let passes: Vec<u8> = actions.iter().map(alter_pass).collect();
        assert_eq!(passes, vec![3, 2, 0]);
    }

    use crate::parse::Change;
}

#[cfg(test)]
mod plan_tests {
    use crate::plan::testing::plan;

    #[test]
    fn a_drop_after_a_deferred_drop_waits_for_contract() {
        let setup = "CREATE TABLE versions (id int PRIMARY KEY, semver text);";
        let sql = "ALTER TABLE versions DROP COLUMN semver;\ndrop function to_semver(text);";
        let p = plan(setup, sql, 14).unwrap();
        assert!(p.expand.is_empty(), "{:?}", p.expand);
        assert_eq!(p.contract.len(), 2);
        assert!(p.contract[1].sql.contains("drop function"));
    }
}

#[cfg(test)]
mod transaction_tests {
    use crate::plan::testing::plan;

    #[test]
    fn statements_that_need_the_files_transaction_are_refused() {
        let setup = "CREATE TABLE t (id int PRIMARY KEY, a int);";
        for sql in [
            "CREATE TEMP TABLE ids AS SELECT id FROM t;\nUPDATE t SET a = 1 FROM ids WHERE ids.id = t.id;",
            "BEGIN;\nDELETE FROM t WHERE id = 1;\nROLLBACK;",
            "BEGIN;\nSAVEPOINT s;\nUPDATE t SET a = 2 WHERE id = 1;\nROLLBACK TO SAVEPOINT s;\nCOMMIT;",
            "BEGIN;\nSET LOCAL search_path = other;\nCREATE TABLE x (id int);\nCOMMIT;",
        ] {
            let e = plan(setup, sql, 14).unwrap_err().to_string();
            assert!(
                e.contains("transaction") || e.contains("session"),
                "{sql}: {e}"
            );
        }
        // Timeouts are zdm's own business: it runs every step with its own.
        plan(
            setup,
            "SET LOCAL lock_timeout = '1s';\nCREATE TABLE x (id int);",
            14,
        )
        .unwrap();
    }
}

/// Whether an ALTER TABLE action only sets a property of a column that a change at contract
/// keeps: `SET/DROP DEFAULT`, `SET/DROP NOT NULL`, `SET STATISTICS`, `SET STORAGE`, `SET (…)`.
pub fn sets_column_property(action: &AlterAction) -> bool {
    use crate::parse::OtherAction;
    matches!(
        action,
        AlterAction::SetDefault { .. }
            | AlterAction::DropDefault { .. }
            | AlterAction::SetNotNull { .. }
            | AlterAction::DropNotNull { .. }
            | AlterAction::Other(
                OtherAction::SetStatistics
                    | OtherAction::SetAttributeOptions
                    | OtherAction::SetStorage
            )
    )
}

/// Whether a statement only sets properties of one column (see [`sets_column_property`]), or
/// is `COMMENT ON COLUMN`.
pub fn only_sets_column_properties(stmt: &Statement, change: &Change) -> bool {
    match change {
        Change::AlterTable { actions, .. } => {
            let columns: HashSet<&str> = actions
                .iter()
                .filter_map(|a| match a {
                    AlterAction::SetDefault { column, .. }
                    | AlterAction::DropDefault { column }
                    | AlterAction::SetNotNull { column }
                    | AlterAction::DropNotNull { column } => Some(column.as_str()),
                    _ => None,
                })
                .collect();
            columns.len() <= 1 && actions.iter().all(sets_column_property)
        }
        _ => {
            text::is_word_at(stmt, 0, "COMMENT")
                && text::is_word_at(stmt, 1, "ON")
                && text::is_word_at(stmt, 2, "COLUMN")
        }
    }
}
