//! What a statement does to a live database: the lock it takes on which relation, whether it
//! rewrites or scans the table, whether it breaks the running (older) application, and the
//! PostgreSQL versions that change those answers. Lint and plan both read these facts, so they
//! never disagree. `tests/locks.rs` checks these answers against real servers (`pg_locks`,
//! `pg_class.relfilenode`); sources: <https://www.postgresql.org/docs/current/sql-altertable.html>
//! and <https://www.postgresql.org/docs/current/explicit-locking.html>.

mod lock;
mod types;
mod volatility;

pub use lock::LockMode;
pub use types::{TypeChange, type_change};
pub use volatility::{Volatility, default_volatility};

use crate::catalog::Catalog;
use crate::parse::{AlterAction, Change, ColumnSpec, ConstraintKind, Generated, Name};

/// What the classifier needs to know besides the statement.
pub struct Env<'a> {
    pub pg_version: u32,
    pub catalog: &'a Catalog,
    /// Whether the relation was created earlier in the same file (so no traffic uses it yet).
    pub is_new: &'a dyn Fn(&Name) -> bool,
}

/// One lock a statement takes and what it does under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub relation: Name,
    pub lock: LockMode,
    /// Every row is rewritten (new relfilenode), and all indexes rebuilt.
    pub rewrite: bool,
    /// The whole table is read while the lock is held (validation, index build).
    pub scan: bool,
    /// Why the running application breaks, if it does.
    pub breaking: Option<String>,
    /// The relation was created earlier in the file: no traffic waits on it.
    pub new_relation: bool,
}

/// The facts about one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classification {
    pub effects: Vec<Effect>,
    /// The statement cannot run inside a transaction block (CONCURRENTLY forms).
    pub no_transaction: bool,
}

impl Classification {
    /// The strongest lock taken on a relation that already exists, if any (the first named
    /// relation on a tie: the statement's own table before the one it references).
    pub fn strongest_on_existing(&self) -> Option<&Effect> {
        self.effects
            .iter()
            .rev()
            .filter(|e| !e.new_relation)
            .max_by_key(|e| e.lock)
    }
}

/// Classifies a statement.
pub fn classify(change: &Change, env: &Env) -> Classification {
    let mut out = Classification::default();
    let mut push =
        |relation: &Name, lock: LockMode, rewrite: bool, scan: bool, breaking: Option<String>| {
            out.effects.push(Effect {
                relation: relation.clone(),
                lock,
                rewrite,
                scan,
                breaking,
                new_relation: (env.is_new)(relation),
            })
        };
    match change {
        Change::CreateTable {
            partition_of: Some(parent),
            ..
        } => push(parent, LockMode::AccessExclusive, false, false, None),
        Change::CreateIndex {
            table,
            concurrently,
            ..
        } => {
            let lock = if *concurrently {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::Share
            };
            push(table, lock, false, true, None);
        }
        Change::AlterTable { table, actions } => {
            for action in actions {
                for (relation, lock, rewrite, scan, breaking) in action_effects(table, action, env)
                {
                    push(&relation, lock, rewrite, scan, breaking);
                }
            }
        }
        Change::DropIndex {
            names,
            concurrently,
        } => {
            for n in names {
                let table = env
                    .catalog
                    .index(n)
                    .map_or_else(|| n.clone(), |i| i.table.clone());
                let lock = if *concurrently {
                    LockMode::ShareUpdateExclusive
                } else {
                    LockMode::AccessExclusive
                };
                push(&table, lock, false, false, None);
            }
        }
        Change::Drop { kind, names, .. } => {
            for n in names {
                let breaking = Some(format!("the running application still uses {kind} {n}"));
                push(n, LockMode::AccessExclusive, false, false, breaking);
            }
        }
        Change::Truncate { tables, .. } => {
            for t in tables {
                push(
                    t,
                    LockMode::AccessExclusive,
                    false,
                    false,
                    Some(format!("every row of {t} is deleted")),
                );
            }
        }
        Change::Reindex {
            name: Some(name),
            concurrently,
            ..
        } => {
            let lock = if *concurrently {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::Share
            };
            // REINDEX rebuilds the indexes; the table keeps its file.
            push(name, lock, false, true, None);
        }
        Change::Vacuum { full, tables } => {
            for t in tables {
                if *full {
                    push(t, LockMode::AccessExclusive, true, true, None);
                } else {
                    push(t, LockMode::ShareUpdateExclusive, false, true, None);
                }
            }
        }
        Change::Cluster { table: Some(t) } => push(t, LockMode::AccessExclusive, true, true, None),
        Change::LockTable { tables, mode } => {
            for t in tables {
                push(t, *mode, false, false, None);
            }
        }
        Change::RefreshMaterializedView { name, concurrently } => {
            let lock = if *concurrently {
                LockMode::Exclusive
            } else {
                LockMode::AccessExclusive
            };
            push(name, lock, false, true, None);
        }
        Change::Dml {
            table, filtered, ..
        } => push(table, LockMode::RowExclusive, false, !filtered, None),
        _ => {}
    }
    out.no_transaction = match change {
        Change::CreateIndex { concurrently, .. }
        | Change::DropIndex { concurrently, .. }
        | Change::Reindex { concurrently, .. } => *concurrently,
        Change::AlterTable { actions, .. } => actions.iter().any(|a| {
            matches!(
                a,
                AlterAction::DetachPartition {
                    concurrently: true,
                    ..
                }
            )
        }),
        _ => false,
    };
    out
}

type RawEffect = (Name, LockMode, bool, bool, Option<String>);

/// The effects of one ALTER TABLE action (the planner decides per action).
pub fn classify_action(table: &Name, action: &AlterAction, env: &Env) -> Vec<Effect> {
    action_effects(table, action, env)
        .into_iter()
        .map(|(relation, lock, rewrite, scan, breaking)| Effect {
            new_relation: (env.is_new)(&relation),
            relation,
            lock,
            rewrite,
            scan,
            breaking,
        })
        .collect()
}

fn action_effects(table: &Name, action: &AlterAction, env: &Env) -> Vec<RawEffect> {
    use LockMode::*;
    let ae = |rewrite: bool, scan: bool, breaking: Option<String>| {
        vec![(table.clone(), AccessExclusive, rewrite, scan, breaking)]
    };
    match action {
        AlterAction::AddColumn(col) => {
            let mut effects = ae(
                add_column_rewrites(col, env.pg_version).is_some(),
                // An inline REFERENCES validates every row, like any foreign key added valid.
                col.check
                    || col.unique
                    || col.primary_key
                    || col.references.is_some()
                    || (col.not_null && col.default.is_none()),
                (col.not_null && col.default.is_none() && col.generated.is_none()).then(|| {
                    format!(
                        "the running application's INSERTs into {table} do not set {}",
                        col.name
                    )
                }),
            );
            if let Some(parent) = &col.references {
                effects.push((parent.clone(), ShareRowExclusive, false, false, None));
            }
            effects
        }
        AlterAction::DropColumn { column } => ae(
            false,
            false,
            Some(format!(
                "the running application still reads or writes {table}.{column}"
            )),
        ),
        AlterAction::RenameColumn { from, to } => ae(
            false,
            false,
            Some(format!(
                "the running application still uses {table}.{from}, not {to}"
            )),
        ),
        AlterAction::RenameTable { to } => ae(
            false,
            false,
            Some(format!(
                "the running application still uses {table}, not {to}"
            )),
        ),
        AlterAction::SetSchema => ae(
            false,
            false,
            Some(format!(
                "the running application still finds {table} in its old schema"
            )),
        ),
        AlterAction::AlterColumnType { column, ty, using } => {
            let old = env
                .catalog
                .table(table)
                .and_then(|t| t.column(column))
                .map(|c| &c.ty);
            let rewrite = !matches!(
                type_change(old, ty, using.as_deref(), column),
                TypeChange::InPlace
            );
            ae(rewrite, rewrite, None)
        }
        AlterAction::SetNotNull { column } => {
            let proven = env.pg_version >= 12
                && env
                    .catalog
                    .table(table)
                    .is_some_and(|t| t.has_valid_not_null_proof(column));
            ae(false, !proven, None)
        }
        AlterAction::AddConstraint(spec) => match &spec.kind {
            ConstraintKind::ForeignKey { references, .. } => vec![
                (
                    table.clone(),
                    ShareRowExclusive,
                    false,
                    !spec.not_valid,
                    None,
                ),
                (references.clone(), ShareRowExclusive, false, false, None),
            ],
            ConstraintKind::Check { .. } | ConstraintKind::NotNull { .. } => {
                ae(false, !spec.not_valid, None)
            }
            ConstraintKind::PrimaryKey {
                using_index: None, ..
            }
            | ConstraintKind::Unique {
                using_index: None, ..
            }
            | ConstraintKind::Exclude => ae(false, true, None),
            ConstraintKind::PrimaryKey { .. } | ConstraintKind::Unique { .. } => {
                ae(false, false, None)
            }
        },
        AlterAction::ValidateConstraint { .. } => {
            vec![(table.clone(), ShareUpdateExclusive, false, true, None)]
        }
        AlterAction::SetLogged
        | AlterAction::SetUnlogged
        | AlterAction::SetTablespace
        | AlterAction::SetAccessMethod => ae(true, true, None),
        AlterAction::AttachPartition { partition } => {
            // PostgreSQL 12+ attaches under SHARE UPDATE EXCLUSIVE on the parent.
            let parent = if env.pg_version >= 12 {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            };
            vec![
                (table.clone(), parent, false, false, None),
                (partition.clone(), AccessExclusive, false, true, None),
            ]
        }
        AlterAction::DetachPartition {
            partition,
            concurrently,
            ..
        } => {
            // Measured: PostgreSQL 12 and 13 lock the detached partition in SHARE UPDATE
            // EXCLUSIVE, 14+ in ACCESS EXCLUSIVE (CONCURRENTLY: SHARE UPDATE EXCLUSIVE on both).
            let (parent, child) = match (*concurrently, env.pg_version >= 14) {
                (true, _) => (ShareUpdateExclusive, ShareUpdateExclusive),
                (false, true) => (AccessExclusive, AccessExclusive),
                (false, false) => (AccessExclusive, ShareUpdateExclusive),
            };
            vec![
                (table.clone(), parent, false, false, None),
                (partition.clone(), child, false, false, None),
            ]
        }
        AlterAction::Other { lock, .. } => vec![(table.clone(), *lock, false, false, None)],
        AlterAction::DropNotNull { .. }
        | AlterAction::SetDefault { .. }
        | AlterAction::DropDefault { .. }
        | AlterAction::DropConstraint { .. }
        | AlterAction::RenameConstraint { .. } => ae(false, false, None),
    }
}

/// Why adding this column rewrites the table, if it does.
pub fn add_column_rewrites(col: &ColumnSpec, pg_version: u32) -> Option<String> {
    match col.generated {
        Some(Generated::Stored) => {
            return Some("a stored generated column is computed for every row".into());
        }
        Some(Generated::Identity) => {
            return Some("an identity column is filled from its sequence for every row".into());
        }
        _ => {}
    }
    if col.ty.is_serial() {
        return Some(format!("{} fills every row from nextval()", col.ty.written));
    }
    let default = col.default.as_deref()?;
    if default.eq_ignore_ascii_case("null") {
        return None;
    }
    if pg_version < 11 {
        return Some("before PostgreSQL 11 any DEFAULT is written into every row".into());
    }
    match default_volatility(default) {
        Volatility::Volatile(f) => Some(format!(
            "the default calls {f}(), which is volatile, so it is computed for every row"
        )),
        Volatility::Unknown(_) | Volatility::NonVolatile => None,
    }
}
