//! The shape of a lint rule: self-describing metadata (which also generates `docs/rules/`) and
//! a check over one statement in its file context.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::classify::{Classification, LockMode};
use crate::parse::{AlterAction, Change, Name};
use crate::source::Statement;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// How zdm runs a statement that would be a hazard run as written (`runner = "zdm"`).
    Note,
    Warning,
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A lint rule. Each lives in its own file under `rules/` and is registered in `rules::ALL`.
pub struct Rule {
    /// kebab-case, used in `-- zdm:ignore` and `zdm.toml`.
    pub name: &'static str,
    pub severity: Severity,
    /// One line: what is flagged.
    pub summary: &'static str,
    /// Why it is dangerous on a live database: the lock, what it blocks, rewrite or scan.
    pub why: &'static str,
    /// The safe form, and how `zdm plan` runs the statement.
    pub help: &'static str,
    /// SQL an earlier migration ran, so the examples have a schema to act on.
    pub setup: &'static str,
    /// An example the rule flags.
    pub bad: &'static str,
    /// The safe form of the same change, which the rule accepts.
    pub good: &'static str,
    pub check: fn(&Cx) -> Vec<Violation>,
}

/// One problem a rule found in a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub message: String,
    /// False when zdm cannot be sure (an unknown old type, a function of unknown volatility):
    /// the finding is then a warning even if the rule is an error.
    pub certain: bool,
}

impl Violation {
    pub fn new(message: impl Into<String>) -> Vec<Violation> {
        vec![Violation {
            message: message.into(),
            certain: true,
        }]
    }

    pub fn uncertain(message: impl Into<String>) -> Vec<Violation> {
        vec![Violation {
            message: message.into(),
            certain: false,
        }]
    }
}

/// What the file has done before the statement being checked.
#[derive(Debug, Clone, Default)]
pub struct FileState {
    /// Relations and indexes created earlier in this file (keys without `public.`).
    pub created: HashSet<Name>,
    /// Inside an explicit BEGIN … COMMIT block.
    pub in_block: bool,
    /// Counts transaction boundaries. Statements with the same segment run in one transaction
    /// when the runner wraps the file in one, as sqlx, diesel, Flyway and most others do.
    pub segment: usize,
    /// A non-zero `lock_timeout` is in effect.
    pub lock_timeout: bool,
    /// It was set with SET LOCAL, so it ends with the transaction.
    pub lock_timeout_local: bool,
    /// Constraints added NOT VALID in this file: (table, constraint, segment).
    pub not_valid_added: Vec<(Name, String, usize)>,
    /// Enum values added in this file: (value, segment).
    pub enum_values_added: Vec<(String, usize)>,
    /// A lock-taking statement on an existing table has already been seen.
    pub locked_existing: bool,
    /// The runner runs this file without a transaction (its tool's marker says so): every
    /// statement outside an explicit block commits on its own.
    pub autocommit: bool,
    /// ACCESS EXCLUSIVE locks taken on existing tables in this file, held until the
    /// transaction of their segment ends.
    pub access_exclusive: Vec<HeldLock>,
}

/// An ACCESS EXCLUSIVE lock a statement of the file took on an existing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub table: Name,
    /// The line of the statement that took it.
    pub line: usize,
    pub segment: usize,
}

impl FileState {
    /// The state at the start of a file, which its tool may run without a transaction.
    pub fn for_file(file: &crate::source::SourceFile) -> FileState {
        FileState {
            autocommit: file.no_transaction,
            ..FileState::default()
        }
    }

    pub fn is_new(&self, name: &Name) -> bool {
        self.created.contains(&name.key())
    }

    /// The ACCESS EXCLUSIVE locks still held in the current transaction.
    pub fn held_now(&self) -> impl Iterator<Item = &HeldLock> {
        self.access_exclusive
            .iter()
            .filter(move |h| h.segment == self.segment)
    }

    /// Records what a statement (starting on `line`) changes in the file's state.
    pub fn apply(&mut self, change: &Change, class: &Classification, line: usize) {
        let in_block = self.in_block;
        for effect in &class.effects {
            if !effect.new_relation
                && effect.lock == LockMode::AccessExclusive
                && !self.held_now().any(|h| h.table == effect.relation.key())
            {
                self.access_exclusive.push(HeldLock {
                    table: effect.relation.key(),
                    line,
                    segment: self.segment,
                });
            }
        }
        self.record(change, class);
        // Without a transaction around the file, a statement outside a block has committed
        // by the time the next one runs.
        if self.autocommit && !in_block && !matches!(change, Change::Begin) {
            self.segment += 1;
        }
    }

    fn record(&mut self, change: &Change, class: &Classification) {
        match change {
            Change::CreateTable { name, .. } | Change::CreateView { name, .. } => {
                self.created.insert(name.key());
            }
            Change::CreateIndex {
                name: Some(n),
                table,
                ..
            } => {
                let n = Name {
                    schema: n.schema.clone().or_else(|| table.schema.clone()),
                    name: n.name.clone(),
                };
                self.created.insert(n.key());
            }
            Change::Other {
                creates: Some((_, n)),
                ..
            } => {
                self.created.insert(n.key());
            }
            Change::AlterTable { table, actions } => {
                for a in actions {
                    match a {
                        AlterAction::AddConstraint(spec) if spec.not_valid => {
                            if let Some(name) = &spec.name {
                                self.not_valid_added.push((
                                    table.key(),
                                    name.clone(),
                                    self.segment,
                                ));
                            }
                        }
                        AlterAction::RenameTable { to } if self.is_new(table) => {
                            self.created.insert(to.key());
                        }
                        _ => {}
                    }
                }
            }
            Change::AlterTypeAddValue { value, .. } => {
                self.enum_values_added.push((value.clone(), self.segment));
            }
            Change::Begin => {
                self.in_block = true;
                self.segment += 1;
            }
            Change::Commit | Change::Rollback => {
                self.in_block = false;
                self.segment += 1;
                if self.lock_timeout_local {
                    self.lock_timeout = false;
                    self.lock_timeout_local = false;
                }
            }
            Change::Set { name, value, local } if name.eq_ignore_ascii_case("lock_timeout") => {
                let zero = value.as_deref().is_none_or(|v| {
                    matches!(
                        v.trim_matches(['\'', '"']).trim(),
                        "0" | "default" | "DEFAULT" | "0s" | "0ms"
                    )
                });
                self.lock_timeout = !zero;
                self.lock_timeout_local = *local;
            }
            _ => {}
        }
        if class.effects.iter().any(|e| {
            !e.new_relation
                && e.lock > LockMode::ShareUpdateExclusive
                && e.lock != LockMode::RowExclusive
        }) {
            self.locked_existing = true;
        }
    }
}

/// Everything a rule may look at for one statement.
pub struct Cx<'a> {
    pub stmt: &'a Statement,
    pub change: &'a Change,
    pub class: &'a Classification,
    /// The file's state before this statement.
    pub file: &'a FileState,
    /// The schema before this statement (earlier migrations and earlier statements).
    pub catalog: &'a Catalog,
    pub pg_version: u32,
    /// The statements after this one in the same file.
    pub later: &'a [Change],
    /// Whether this is the file's last statement.
    pub is_last: bool,
    /// The whole file, for positions of statements nested in this one (DO blocks).
    pub file_text: &'a str,
}

impl Cx<'_> {
    /// Whether the relation existed before this file (so live traffic uses it).
    pub fn existing(&self, name: &Name) -> bool {
        !self.file.is_new(name)
    }

    /// The ALTER TABLE actions of this statement, when it alters an existing table.
    pub fn existing_table_actions(&self) -> Option<(&Name, &[AlterAction])> {
        match self.change {
            Change::AlterTable { table, actions } if self.existing(table) => Some((table, actions)),
            _ => None,
        }
    }
}

/// "takes an ACCESS EXCLUSIVE lock on users, which blocks all reads and writes"
pub fn lock_phrase(lock: LockMode, relation: &Name) -> String {
    format!("takes a {lock} lock on {relation}, which {}", lock.effect())
        .replace("a ACCESS", "an ACCESS")
        .replace("a EXCLUSIVE", "an EXCLUSIVE")
}
