//! What a statement does to a live database: the lock it takes on which relation, whether it
//! rewrites or scans the table, whether it breaks the running (older) application, and the
//! PostgreSQL versions that change those answers. Lint and plan both read these facts, so they
//! never disagree. `tests/locks.rs` checks these answers against real servers (`pg_locks`,
//! `pg_class.relfilenode`); sources: <https://www.postgresql.org/docs/current/sql-altertable.html>
//! and <https://www.postgresql.org/docs/current/explicit-locking.html>.

mod types;
mod volatility;

pub use crate::lock::LockMode;
pub use types::{TypeChange, type_change};
pub use volatility::{Volatility, default_volatility};

use crate::catalog::Catalog;
use crate::parse::{
    AlterAction, Change, ColumnSpec, ConstraintKind, Generated, Name, OtherAction, ReindexTarget,
};

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
    let mut push = |e: Effect| {
        out.effects.push(Effect {
            new_relation: (env.is_new)(&e.relation),
            ..e
        })
    };
    match change {
        Change::CreateTable {
            partition_of: Some(parent),
            ..
        } => push(Effect::lock(parent, LockMode::AccessExclusive)),
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
            push(Effect::lock(table, lock).scanning(true));
        }
        Change::AlterTable { table, actions } => {
            for action in actions {
                for effect in action_effects(table, action, env) {
                    push(effect);
                }
            }
        }
        Change::DropIndex {
            names,
            concurrently,
        } => {
            for n in names.iter().filter(|n| !env.catalog.dropped_with_table(n)) {
                let table = env
                    .catalog
                    .index(n)
                    .map_or_else(|| n.clone(), |i| i.table.clone());
                let lock = if *concurrently {
                    LockMode::ShareUpdateExclusive
                } else {
                    LockMode::AccessExclusive
                };
                push(Effect::lock(&table, lock));
            }
        }
        Change::Drop { kind, names, .. } => {
            for n in names {
                push(
                    Effect::lock(n, LockMode::AccessExclusive)
                        .breaking(format!("the running application still uses {kind} {n}")),
                );
            }
        }
        Change::Truncate { tables, .. } => {
            for t in tables {
                push(
                    Effect::lock(t, LockMode::AccessExclusive)
                        .breaking(format!("every row of {t} is deleted")),
                );
            }
        }
        Change::Reindex {
            target,
            name: Some(name),
            concurrently,
        } => {
            let lock = if *concurrently {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::Share
            };
            // REINDEX rebuilds the indexes; the table keeps its file. REINDEX INDEX locks the
            // index's table SHARE (writes wait) and the index itself ACCESS EXCLUSIVE (queries
            // that would use it wait); CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on both.
            if *target == ReindexTarget::Index {
                if let Some(index) = env.catalog.index(name) {
                    push(Effect::lock(&index.table, lock).scanning(true));
                }
                let on_index = if *concurrently {
                    LockMode::ShareUpdateExclusive
                } else {
                    LockMode::AccessExclusive
                };
                push(Effect::lock(name, on_index).scanning(true));
            } else {
                push(Effect::lock(name, lock).scanning(true));
            }
        }
        Change::Vacuum { full, tables } => {
            for t in tables {
                push(if *full {
                    Effect::lock(t, LockMode::AccessExclusive).rewriting()
                } else {
                    Effect::lock(t, LockMode::ShareUpdateExclusive).scanning(true)
                });
            }
        }
        Change::Cluster { table: Some(t) } => {
            push(Effect::lock(t, LockMode::AccessExclusive).rewriting())
        }
        Change::LockTable { tables, mode } => {
            for t in tables {
                push(Effect::lock(t, *mode));
            }
        }
        Change::RefreshMaterializedView { name, concurrently } => {
            let lock = if *concurrently {
                LockMode::Exclusive
            } else {
                LockMode::AccessExclusive
            };
            push(Effect::lock(name, lock).scanning(true));
        }
        Change::Dml {
            table, filtered, ..
        } => push(Effect::lock(table, LockMode::RowExclusive).scanning(!filtered)),
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

impl Effect {
    /// `lock` on `relation`, rewriting, scanning and breaking nothing.
    fn lock(relation: &Name, lock: LockMode) -> Effect {
        Effect {
            relation: relation.clone(),
            lock,
            rewrite: false,
            scan: false,
            breaking: None,
            new_relation: false,
        }
    }

    /// The same lock, held while the whole table is read.
    fn scanning(self, scan: bool) -> Effect {
        Effect { scan, ..self }
    }

    /// The same lock, held while every row is written again (which reads them all too).
    fn rewriting(self) -> Effect {
        Effect {
            rewrite: true,
            scan: true,
            ..self
        }
    }

    /// The same lock, and the running application breaks.
    fn breaking(self, why: String) -> Effect {
        Effect {
            breaking: Some(why),
            ..self
        }
    }
}

/// The effects of one ALTER TABLE action (the planner decides per action).
pub fn classify_action(table: &Name, action: &AlterAction, env: &Env) -> Vec<Effect> {
    let mut effects = action_effects(table, action, env);
    for e in &mut effects {
        e.new_relation = (env.is_new)(&e.relation);
    }
    effects
}

fn action_effects(table: &Name, action: &AlterAction, env: &Env) -> Vec<Effect> {
    use LockMode::*;
    let ae = |rewrite: bool, scan: bool, breaking: Option<String>| {
        vec![Effect {
            rewrite,
            scan,
            breaking,
            ..Effect::lock(table, AccessExclusive)
        }]
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
                effects.push(Effect::lock(parent, ShareRowExclusive));
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
                Effect::lock(table, ShareRowExclusive).scanning(!spec.not_valid),
                Effect::lock(references, ShareRowExclusive),
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
            vec![Effect::lock(table, ShareUpdateExclusive).scanning(true)]
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
                Effect::lock(table, parent),
                Effect::lock(partition, AccessExclusive).scanning(true),
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
            vec![Effect::lock(table, parent), Effect::lock(partition, child)]
        }
        AlterAction::Other(other) => vec![Effect::lock(table, other_action_lock(other))],
        AlterAction::DropNotNull { .. }
        | AlterAction::SetDefault { .. }
        | AlterAction::DropDefault { .. }
        | AlterAction::DropConstraint { .. }
        | AlterAction::RenameConstraint { .. } => ae(false, false, None),
    }
}

/// The lock PostgreSQL takes for an ALTER TABLE action zdm knows only by name
/// (`AlterTableGetLockLevel` in tablecmds.c; `reference/pg-locks.md`).
fn other_action_lock(action: &OtherAction) -> LockMode {
    use LockMode::*;
    match action {
        // Planner statistics, attribute options, clustering and most storage parameters
        // (fillfactor, autovacuum_*) leave reads and writes running.
        OtherAction::SetStatistics
        | OtherAction::SetAttributeOptions
        | OtherAction::SetWithoutCluster
        | OtherAction::SetStorageParameters
        | OtherAction::ResetStorageParameters
        | OtherAction::ClusterOn => ShareUpdateExclusive,
        // Enabling or disabling a trigger blocks writes, not reads; a rule or row level
        // security changes what reads return, so those take ACCESS EXCLUSIVE.
        OtherAction::EnableOrDisableTrigger => ShareRowExclusive,
        OtherAction::EnableOrDisableRuleOrRowSecurity => AccessExclusive,
        OtherAction::AlterConstraint
        | OtherAction::SetStorage
        | OtherAction::DropExpressionOrIdentity
        | OtherAction::AddIdentity { .. }
        | OtherAction::SetIdentityOption
        | OtherAction::RestartIdentity
        | OtherAction::SetWithOids
        | OtherAction::Inherit
        | OtherAction::NoInherit
        | OtherAction::OfType
        | OtherAction::NotOf
        | OtherAction::OwnerTo
        | OtherAction::ReplicaIdentity
        | OtherAction::ForceRowLevelSecurity => AccessExclusive,
        // What zdm cannot name gets the strongest lock: a claim too weak would let a blocking
        // statement through the gate.
        OtherAction::Unlisted(_) => AccessExclusive,
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
