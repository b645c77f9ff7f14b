//! Statements that are already safe on a live table run as written: what no operation takes
//! (or what `-- zdm:allow-locking` accepts). Within an ALTER TABLE, each safe action runs as
//! written on its own.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | the statement (or the ALTER TABLE action), as written, in its own transaction (outside one for CONCURRENTLY) | whatever it takes; brief |
//! | down expand | the inverse for objects it creates (`DROP … IF EXISTS`, a column added as written is dropped); none otherwise | brief |

use super::{OpPlan, Step, alter};
use crate::classify::{Classification, Effect, LockMode};
use crate::parse::{AlterAction, Change, Name, ObjectKind};
use crate::plan::model::StepLock;
use crate::source::Statement;
use crate::sql::{Ident, Qualified};

/// The kind of a statement run as written because it is safe.
pub const AS_WRITTEN: &str = "as-written";
/// The kind of a statement run as written because `-- zdm:allow-locking` accepts its lock.
pub const ACCEPTED_LOCK: &str = "accepted-lock";

pub fn plan(stmt: &Statement, change: &Change, class: &Classification) -> OpPlan {
    let lock = class.effects.iter().max_by_key(|e| e.lock);
    let step = Step {
        id: String::new(),
        description: describe(change),
        sql: stmt.text.as_str().into(),
        transaction: !class.no_transaction,
        lock: lock.map(|e| StepLock {
            mode: e.lock,
            relation: e.relation.clone(),
        }),
    };
    let mut plan = OpPlan::nothing_to_undo_at_contract();
    plan.expand.push(step);
    if let Some(undo) = inverse(change) {
        plan.down_expand.push(undo);
    }
    plan
}

/// One action of an ALTER TABLE as written, under the strongest lock its effects take (of
/// equal ones the first: the altered table's).
pub fn action(table: &Name, action: &AlterAction, text: &str, effects: &[Effect]) -> OpPlan {
    let lock = effects.iter().rev().max_by_key(|e| e.lock);
    let mut plan = OpPlan::nothing_to_undo_at_contract();
    plan.expand.push(Step {
        id: String::new(),
        description: format!(
            "{} on {table}",
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        ),
        sql: alter(table, text).into(),
        // PostgreSQL refuses DETACH … CONCURRENTLY inside a transaction block: it commits
        // between its two phases, as CREATE INDEX CONCURRENTLY does.
        transaction: !matches!(
            action,
            AlterAction::DetachPartition {
                concurrently: true,
                ..
            }
        ),
        lock: lock.map(|e| StepLock {
            mode: e.lock,
            relation: e.relation.clone(),
        }),
    });
    if let AlterAction::AddColumn(col) = action {
        plan.down_expand.push(Step::tx(
            format!("drop {table}.{}", col.name),
            alter(
                table,
                &format!("DROP COLUMN IF EXISTS {}", Ident(&col.name)),
            ),
            LockMode::AccessExclusive,
            table,
        ));
    }
    plan
}

fn describe(change: &Change) -> String {
    match change {
        Change::CreateTable { name, .. } => format!("create table {name}"),
        Change::CreateIndex { name, table, .. } => match name {
            Some(n) => format!("create index {n} on {table}"),
            None => format!("create an index on {table}"),
        },
        Change::CreateView { name, .. } => format!("create view {name}"),
        Change::Other { what, .. } => what.to_lowercase(),
        Change::Dml { table, .. } => format!("write rows of {table}"),
        Change::Set { name, .. } => format!("set {name}"),
        _ => "run as written".into(),
    }
}

/// The statement that undoes a creation.
fn inverse(change: &Change) -> Option<Step> {
    let drop = |what: &str, name: &Name, lock: LockMode| {
        Some(Step::tx(
            format!("drop {what} {name}"),
            format!("DROP {} IF EXISTS {}", what.to_uppercase(), Qualified(name)),
            lock,
            name,
        ))
    };
    match change {
        Change::CreateTable { name, .. } => drop("table", name, LockMode::AccessExclusive),
        Change::CreateView {
            name,
            materialized: false,
            ..
        } => drop("view", name, LockMode::AccessExclusive),
        Change::CreateView {
            name,
            materialized: true,
            ..
        } => drop("materialized view", name, LockMode::AccessExclusive),
        Change::CreateIndex {
            name: Some(name),
            table,
            ..
        } => Some(Step::no_tx(
            format!("drop index {name}"),
            format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                Qualified(&index_in(name, table))
            ),
            LockMode::ShareUpdateExclusive,
            table,
        )),
        Change::Other {
            creates: Some((kind, name)),
            ..
        } => match kind {
            ObjectKind::Sequence => drop("sequence", name, LockMode::AccessExclusive),
            ObjectKind::Type => drop("type", name, LockMode::AccessExclusive),
            ObjectKind::Schema => drop("schema", name, LockMode::AccessExclusive),
            _ => None,
        },
        _ => None,
    }
}

/// An index lives in its table's schema.
pub fn index_in(index: &Name, table: &Name) -> Name {
    Name {
        schema: index.schema.clone().or_else(|| table.schema.clone()),
        name: index.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn safe_statements_run_as_written_and_are_undone() {
        let sql = "SET lock_timeout = '1s';\nCREATE TABLE t (id int PRIMARY KEY, a text);\nCREATE INDEX t_a ON t (a);\nALTER TABLE users ADD COLUMN bio text;\nCOMMENT ON TABLE t IS 'it''s new';";
        insta::assert_snapshot!(human("CREATE TABLE users (id int PRIMARY KEY);", sql));
    }

    #[test]
    fn locking_statements_are_refused_unless_accepted() {
        let setup = "CREATE TABLE t (id int PRIMARY KEY);";
        let refused = human(setup, "VACUUM FULL t;");
        assert!(
            refused.starts_with("error: 0002_change.sql:1: VACUUM FULL"),
            "{refused}"
        );
        assert!(refused.contains("pg_repack"), "{refused}");
        let accepted = human(
            setup,
            "-- zdm:allow-locking -- maintenance window\nVACUUM FULL t;",
        );
        assert!(accepted.contains("| VACUUM FULL t"), "{accepted}");
        assert!(human(setup, "FROBNICATE t;").contains("cannot understand"));
    }
}
