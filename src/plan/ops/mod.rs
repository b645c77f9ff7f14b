//! The operations: how zdm runs one kind of statement, or one kind of ALTER TABLE action, on a
//! table the application is using. Each is a file here, documented at its top (the steps of
//! every phase and the lock each takes; `docs/operations.md` is made of these comments), and
//! one line in [`OPERATIONS`]. `plan/mod.rs` offers each statement (and each action of an
//! ALTER TABLE) to the operations in that order and assembles their plans in statement order;
//! what none takes runs as written (`passthrough`) or is refused.

pub mod add_check;
pub mod add_column;
pub mod add_foreign_key;
pub mod add_unique;
mod carried;
pub mod change_type;
pub mod create_index;
pub mod drop_column;
pub mod drop_index;
pub mod drop_table;
pub mod passthrough;
pub mod rename_column;
pub mod rename_table;
pub mod set_not_null;
mod shadow;
pub mod update_backfill;

use crate::catalog::Catalog;
use crate::parse::{AlterAction, Change, ConstraintSpec, Name};
use crate::source::Statement;

pub use super::model::{Assignment, Backfill, OpPlan, Shadow, Step};
use super::order::Held;

/// The operations, in the order they are offered a statement (the first that takes it plans
/// it) and the order `docs/operations.md` shows them. Adding an operation: its file, its
/// `mod` line above, and one line here.
pub(crate) static OPERATIONS: &[Registered] = registry![
    create_index::CreateIndex,
    drop_index::DropIndex,
    // Before add-column: `ADD COLUMN … REFERENCES` is a foreign key to add NOT VALID.
    add_foreign_key::AddForeignKey,
    add_check::AddCheck,
    add_unique::AddUnique,
    add_unique::AddPrimaryKey,
    set_not_null::SetNotNull,
    add_column::AddColumn,
    update_backfill::UpdateBackfill,
    rename_table::RenameTable,
    rename_column::RenameColumn,
    change_type::ChangeType,
    drop_column::DropColumn,
    drop_table::DropTable,
];

/// The kind of an ALTER TABLE whose actions went to operations of several kinds.
pub const SEVERAL_KINDS: &str = "alter-table";

/// The kinds of operation a plan may name (`"change-type"`), besides those of
/// [`passthrough`] and [`SEVERAL_KINDS`].
pub fn kinds() -> impl Iterator<Item = &'static str> {
    OPERATIONS.iter().map(|r| r.operation.kind())
}

/// One kind of statement or action zdm runs in phases.
pub(crate) trait Operation: Sync {
    /// Its name in plans and their JSON (`"change-type"`); stable.
    fn kind(&self) -> &'static str;

    /// Plans a statement (other than ALTER TABLE) on an object that existed before the
    /// migration; None when the statement is not this operation's.
    fn plan_statement(&self, _cx: &StatementCx) -> Option<Result<StatementPlan, String>> {
        None
    }

    /// Plans one action of an ALTER TABLE on a table that existed before the migration; None
    /// when the action is not this operation's, or is safe to run as written.
    fn plan_action(&self, _cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        None
    }
}

/// An operation and the file it lives in (for its documentation).
pub(crate) struct Registered {
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the docs tests"))]
    pub file: &'static str,
    pub operation: &'static dyn Operation,
}

/// `registry![module::Type, …]`: each operation with the name of its file.
macro_rules! registry {
    ($($module:ident :: $operation:ident),* $(,)?) => {
        &[$(Registered { file: stringify!($module), operation: &$module::$operation }),*]
    };
}
use registry;

/// What an operation sees: the statement, the table it acts on and the schema before it.
pub struct OpCx<'a> {
    pub stmt: &'a Statement,
    pub table: &'a Name,
    pub catalog: &'a Catalog,
    pub pg_version: u32,
    /// Columns earlier statements of the migration replace by a shadow at contract.
    pub shadows: &'a [Shadow],
}

impl OpCx<'_> {
    /// The shadow an earlier statement of the migration gives `table.column`, if any.
    pub fn shadow_of(&self, table: &Name, column: &str) -> Option<&str> {
        self.shadows
            .iter()
            .find(|s| s.table.key() == table.key() && s.column == column)
            .map(|s| s.shadow.as_str())
    }
}

/// A whole statement, as an operation's `plan_statement` sees it.
pub(crate) struct StatementCx<'a> {
    pub stmt: &'a Statement,
    pub change: &'a Change,
    pub catalog: &'a Catalog,
    pub pg_version: u32,
    /// Whether a relation was created earlier in the same file (so no traffic uses it yet).
    pub is_new: &'a dyn Fn(&Name) -> bool,
    pub shadows: &'a [Shadow],
}

impl StatementCx<'_> {
    /// The context of an operation acting on `table`.
    pub fn on<'b>(&'b self, table: &'b Name) -> OpCx<'b> {
        OpCx {
            stmt: self.stmt,
            table,
            catalog: self.catalog,
            pg_version: self.pg_version,
            shadows: self.shadows,
        }
    }
}

/// One action of an ALTER TABLE, as an operation's `plan_action` sees it.
pub(crate) struct ActionCx<'a> {
    /// The statement and its table.
    pub cx: OpCx<'a>,
    pub action: &'a AlterAction,
    /// The action's own text (`ALTER COLUMN n TYPE bigint`).
    pub text: &'a str,
    /// Run as written, the action would hold a lock that blocks writes while it rewrites or
    /// scans the table, or break the running application.
    pub risky: bool,
    /// The statement's `-- zdm:backfill <expression>`, if any.
    pub backfill: Option<&'a str>,
}

impl<'a> ActionCx<'a> {
    /// The constraint an `ADD CONSTRAINT` adds, unless it is NOT VALID (which runs as
    /// written: it takes its lock briefly and scans nothing).
    pub fn validated_constraint(&self) -> Option<&'a ConstraintSpec> {
        match self.action {
            AlterAction::AddConstraint(spec) if !spec.not_valid => Some(spec),
            _ => None,
        }
    }
}

/// An operation's plan of a whole statement, with the names it changes again at contract
/// (which later statements of the migration may not use).
pub(crate) struct StatementPlan {
    pub op: OpPlan,
    pub holds: Vec<Held>,
}

impl StatementPlan {
    /// A plan that holds no name until contract.
    pub fn holding_nothing(op: OpPlan) -> StatementPlan {
        StatementPlan {
            op,
            holds: Vec::new(),
        }
    }
}

/// `ALTER TABLE "t" <action>` for one action of the user's statement.
pub fn alter(table: &Name, action: &str) -> String {
    format!("ALTER TABLE {} {action}", crate::sql::Qualified(table))
}

/// `docs/operations.md` is the top comment of every file in this directory: the steps of each
/// phase and the lock each takes, written once beside the code, in the order of
/// [`OPERATIONS`]. A test fails when the page is stale (regenerate with
/// `ZDM_UPDATE_DOCS=1 cargo test --lib operations_page`), when an operation's file has no
/// phase table, or when a file here is not registered.
#[cfg(test)]
mod docs {
    use std::path::Path;

    use super::OPERATIONS;

    /// The files in page order, each with the kinds registered from it: the fallback first.
    fn files() -> Vec<(&'static str, Vec<&'static str>)> {
        let mut files = vec![(
            "passthrough",
            vec![
                super::passthrough::AS_WRITTEN,
                super::passthrough::ACCEPTED_LOCK,
            ],
        )];
        for r in OPERATIONS {
            match files.iter_mut().find(|(f, _)| *f == r.file) {
                Some((_, kinds)) => kinds.push(r.operation.kind()),
                None => files.push((r.file, vec![r.operation.kind()])),
            }
        }
        files
    }

    /// The top comment of an operation file, without the `//!`.
    fn top_comment(file: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/plan/ops/{file}.rs"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| {
                let l = l.trim_start_matches("//!");
                l.strip_prefix(' ').unwrap_or(l).to_owned()
            })
            .collect()
    }

    fn page() -> String {
        let mut out = String::from(
            "# Operations\n\n<!-- generated from the top comment of each file in src/plan/ops/; do not edit -->\n\nWhat `zdm plan` and `zdm expand` do with each kind of statement: the steps of every phase and the lock each step takes. `zdm plan <file>` shows the exact SQL for a migration; [the README](../README.md#zdm-plan) lists what is refused and why.\n",
        );
        for (file, kinds) in files() {
            let doc = top_comment(file);
            // The first paragraph is the heading; the rest (the phase table, notes) follows.
            let split = doc.iter().position(|l| l.is_empty()).unwrap_or(doc.len());
            let title = doc[..split].join(" ");
            let title = title.trim_end_matches('.');
            let kinds = kinds
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "\n## {title}\n\n<sub>src/plan/ops/{file}.rs · in plans: {kinds}</sub>\n\n"
            ));
            out.push_str(doc[split..].join("\n").trim());
            out.push('\n');
        }
        out
    }

    #[test]
    fn operations_page_is_up_to_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md");
        let content = page();
        if std::fs::read_to_string(&path).ok().as_deref() == Some(content.as_str()) {
            return;
        }
        if std::env::var_os("ZDM_UPDATE_DOCS").is_some() {
            std::fs::write(&path, content).unwrap();
        } else {
            panic!(
                "docs/operations.md is stale: run ZDM_UPDATE_DOCS=1 cargo test --lib operations_page"
            );
        }
    }

    #[test]
    fn every_operation_documents_its_phases() {
        for (file, kinds) in files() {
            assert!(
                top_comment(file)
                    .iter()
                    .any(|l| l.starts_with("| phase | step | lock |")),
                "src/plan/ops/{file}.rs ({}) has no phase table (`| phase | step | lock |`) in its top comment",
                kinds.join(", ")
            );
        }
    }

    #[test]
    fn every_operation_file_is_registered() {
        let registered = files();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan/ops");
        for entry in std::fs::read_dir(root).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".rs")
                && stem != "mod"
                && stem != "shadow"
                && stem != "carried"
            {
                assert!(
                    registered.iter().any(|(f, _)| *f == stem),
                    "register the operation of {stem}.rs in OPERATIONS (src/plan/ops/mod.rs)"
                );
            }
        }
    }

    #[test]
    fn kinds_are_unique() {
        let mut kinds: Vec<&str> = super::kinds().collect();
        let all = kinds.len();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all, "two operations share a kind");
    }
}
