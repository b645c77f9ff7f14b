//! The plan of one migration: the steps of each phase with their final SQL, the lock each takes
//! and whether it runs in a transaction, the backfills, and how to undo each phase.

use crate::classify::{LockMode, Volatility, default_volatility};
use crate::parse::Name;
use crate::sql::Sql;
use crate::sql::backfill::{BatchParts, BatchedUpdate};

/// The lock a step takes, on which relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLock {
    pub mode: LockMode,
    pub relation: Name,
}

/// One statement zdm runs, exactly as `zdm plan` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `expand-1`, `contract-2`, `down-expand-1`…, assigned when the plan is assembled.
    pub id: String,
    pub description: String,
    pub sql: Sql,
    /// Runs inside a transaction (with `SET LOCAL lock_timeout`); CONCURRENTLY steps do not.
    pub transaction: bool,
    pub lock: Option<StepLock>,
}

impl Step {
    /// A step that runs in its own short transaction.
    pub fn tx(
        description: impl Into<String>,
        sql: impl Into<Sql>,
        lock: LockMode,
        relation: &Name,
    ) -> Step {
        Step {
            id: String::new(),
            description: description.into(),
            sql: sql.into(),
            transaction: true,
            lock: Some(StepLock {
                mode: lock,
                relation: relation.clone(),
            }),
        }
    }

    /// A step that must run outside a transaction block (CONCURRENTLY).
    pub fn no_tx(
        description: impl Into<String>,
        sql: impl Into<Sql>,
        lock: LockMode,
        relation: &Name,
    ) -> Step {
        Step {
            transaction: false,
            ..Step::tx(description, sql, lock, relation)
        }
    }
}

/// `column = expression` in a backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub column: String,
    pub expr: String,
}

/// A batched UPDATE over a table's key: rows up to the key's maximum at start, in short
/// transactions, touching only rows still out of sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub table: Name,
    pub key: Vec<String>,
    pub set: Vec<Assignment>,
    /// Only rows matching this condition (an UPDATE's WHERE).
    pub filter: Option<String>,
    /// The UPDATE's alias for the table and its FROM list, which the condition and the
    /// expressions may use.
    pub alias: Option<String>,
    pub from: Option<String>,
    /// How many of the migration's expand steps run before this backfill. Statements keep the
    /// meaning of their order: a step planned from a later statement (a VALIDATE, a SET NOT
    /// NULL, an index) runs after the backfills of the statements before it.
    pub after_step: usize,
    /// The backfill copies into a column zdm created for the rollout (the shadow of a type
    /// change, the new name of a rename): its set expressions are idempotent and the
    /// application never wrote the target through anything but zdm's trigger. Such a copy runs
    /// without firing user triggers where the role may, and contract walks the table again
    /// first, re-copying every row still out of sync (the completeness check) before anything
    /// drops the source. Never set for a user's UPDATE, which must not run twice.
    pub shadow_copy: bool,
}

impl Backfill {
    /// The parts its batch statements are built from (`sql::backfill`).
    pub fn batch_parts(&self) -> BatchParts {
        let set: Vec<(String, String)> = self
            .set
            .iter()
            .map(|a| (a.column.clone(), a.expr.clone()))
            .collect();
        BatchParts::new(&BatchedUpdate {
            table: &self.table,
            key: &self.key,
            set: &set,
            filter: self.filter.as_deref(),
            alias: self.alias.as_deref(),
            from: self.from.as_deref(),
        })
    }

    /// Whether running it again over rows it already changed changes nothing more, so that a
    /// run started, aborted and expanded again ends as if it had run once: a shadow copy, or
    /// an UPDATE whose new values read none of the columns it assigns and call nothing
    /// volatile or unknown (a FROM list is only read) (`SET b = a WHERE b IS NULL`, not `SET bal = bal * 2`, not
    /// `SET t = random()`).
    pub fn repeatable(&self) -> bool {
        if self.shadow_copy {
            return true;
        }
        let assigned: Vec<&str> = self.set.iter().map(|a| a.column.as_str()).collect();
        self.set.iter().all(|a| {
            let read = super::text::identifiers(&a.expr);
            !assigned.iter().any(|c| read.contains(*c))
                && !matches!(
                    default_volatility(&a.expr),
                    Volatility::Volatile(_) | Volatility::Unknown(_)
                )
        })
    }
}

/// A statement of the migration, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: &'static str,
    pub line: usize,
    pub summary: String,
}

/// What one operation contributes to each phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpPlan {
    pub expand: Vec<Step>,
    pub backfill: Vec<Backfill>,
    pub contract: Vec<Step>,
    /// Undoes this operation's expand; assembled in reverse operation order.
    pub down_expand: Vec<Step>,
    /// Undoes this operation's contract, or `None` when data would be lost.
    pub down_contract: Option<Vec<Step>>,
    /// What the application must do between phases.
    pub notes: Vec<String>,
    /// Columns this operation replaces by a shadow column at contract, with the shadow's
    /// name: later statements of the migration that build on the column (a foreign key that
    /// references it) build on the shadow.
    pub shadows: Vec<Shadow>,
}

/// A column replaced by a shadow at contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    pub table: Name,
    pub column: String,
    pub shadow: String,
}

impl OpPlan {
    /// An operation with nothing to undo after contract.
    pub fn nothing_to_undo_at_contract() -> OpPlan {
        OpPlan {
            down_contract: Some(Vec::new()),
            ..OpPlan::default()
        }
    }

    /// Runs what was planned for expand at contract instead (before this operation's own
    /// contract steps), for a statement that must follow another's contract; what undid it
    /// after expand undoes it after contract.
    pub fn run_at_contract(&mut self) {
        self.contract.splice(0..0, std::mem::take(&mut self.expand));
        let undo = std::mem::take(&mut self.down_expand);
        if let Some(down) = &mut self.down_contract {
            down.extend(undo);
        }
    }

    /// Adds a backfill that runs after the expand steps planned so far.
    pub fn push_backfill(&mut self, mut backfill: Backfill) {
        backfill.after_step = self.expand.len();
        self.backfill.push(backfill);
    }

    /// Appends a later operation: its steps run after these, its backfills keep their place
    /// among its steps, and each of its phases is undone before this one's (undo runs in
    /// reverse operation order; an operation's own undo steps keep their order).
    pub fn append(&mut self, later: OpPlan) {
        let offset = self.expand.len();
        self.expand.extend(later.expand);
        self.backfill
            .extend(later.backfill.into_iter().map(|mut b| {
                b.after_step += offset;
                b
            }));
        self.contract.extend(later.contract);
        self.down_expand.splice(0..0, later.down_expand);
        self.down_contract = match (self.down_contract.take(), later.down_contract) {
            (Some(mut a), Some(b)) => {
                a.splice(0..0, b);
                Some(a)
            }
            _ => None,
        };
        self.shadows.extend(later.shadows);
        for note in later.notes {
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
        }
    }
}

/// The plan of one migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    pub id: String,
    pub path: String,
    pub checksum: String,
    pub operations: Vec<Operation>,
    pub expand: Vec<Step>,
    pub backfill: Vec<Backfill>,
    pub contract: Vec<Step>,
    pub down: Down,
    /// What the application must do between phases.
    pub notes: Vec<String>,
    /// Applied again whenever the file changes (Flyway's `R__`), instead of refused as edited.
    pub repeatable: bool,
    /// The expressions zdm builds into triggers and backfills, to try against the live schema
    /// before the migration's first step. Not recorded: they run before anything else does.
    pub checks: Vec<ExpressionCheck>,
    /// What each step costs on the database the plan was made against; `None` offline.
    pub estimate: Option<super::PlanEstimate>,
}

/// A query that PostgreSQL parses and plans but never runs (`… WHERE false`), over a stand-in
/// for the table with the columns and types the planner knows at the statement: it fails when
/// an expression names a column that is not there, calls a function that does not exist, or
/// has the wrong type, before any trigger that would evaluate it on every write is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionCheck {
    /// The statement's line in its file.
    pub line: usize,
    pub sql: String,
    /// The types of the stand-in's columns, as the planner knows them: a type the migration
    /// creates or renames earlier does not exist yet, which is no fault of the expression.
    pub column_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub expand: Vec<Step>,
    /// `None` when undoing the contract would need data it removed.
    pub contract: Option<Vec<Step>>,
}
