//! One file per operation. Each documents at its top the steps of every phase and the lock
//! each step takes, and returns an [`OpPlan`]; `plan/mod.rs` assembles them in statement order.

pub mod add_check;
pub mod add_column;
pub mod add_foreign_key;
pub mod add_unique;
pub mod change_type;
pub mod create_index;
pub mod drop_column;
pub mod drop_index;
pub mod drop_table;
pub mod passthrough;
pub mod rename_column;
pub mod rename_table;
pub mod set_not_null;
pub mod update_backfill;

use crate::catalog::Catalog;
use crate::parse::Name;
use crate::source::Statement;

pub use super::model::{Assignment, Backfill, OpPlan, Step};

/// What an operation sees: the statement, the table it acts on and the schema before it.
pub struct OpCx<'a> {
    pub stmt: &'a Statement,
    pub table: &'a Name,
    pub catalog: &'a Catalog,
    pub pg_version: u32,
}

/// `ALTER TABLE "t" <action>` for one action of the user's statement.
pub fn alter(table: &Name, action: &str) -> String {
    format!("ALTER TABLE {} {action}", crate::sql::Qualified(table))
}

/// `docs/operations.md` is the top comment of every file in this directory: the steps of each
/// phase and the lock each takes, written once beside the code. A test fails when the page is
/// stale; regenerate with `ZDM_UPDATE_DOCS=1 cargo test --lib operations_page`.
#[cfg(test)]
mod docs {
    use std::path::Path;

    /// The operation files, in the order a reader meets them.
    const FILES: &[&str] = &[
        "passthrough",
        "create_index",
        "drop_index",
        "add_foreign_key",
        "add_check",
        "add_unique",
        "set_not_null",
        "add_column",
        "update_backfill",
        "rename_table",
        "rename_column",
        "change_type",
        "drop_column",
        "drop_table",
    ];

    fn page() -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan/ops");
        let mut out = String::from(
            "# Operations\n\n<!-- generated from the top comment of each file in src/plan/ops/; do not edit -->\n\nWhat `zdm plan` and `zdm expand` do with each kind of statement: the steps of every phase and the lock each step takes. `zdm plan <file>` shows the exact SQL for a migration; [the README](../README.md#zdm-plan) lists what is refused and why.\n",
        );
        for file in FILES {
            let text = std::fs::read_to_string(root.join(format!("{file}.rs"))).unwrap();
            let doc: Vec<&str> = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| {
                    l.trim_start_matches("//!")
                        .strip_prefix(' ')
                        .unwrap_or(l.trim_start_matches("//!"))
                })
                .collect();
            // The first paragraph is the heading; the rest (the phase table, notes) follows.
            let split = doc.iter().position(|l| l.is_empty()).unwrap_or(doc.len());
            let title = doc[..split].join(" ");
            let title = title.trim_end_matches('.');
            out.push_str(&format!(
                "\n## {title}\n\n<sub>src/plan/ops/{file}.rs</sub>\n\n"
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
    fn every_operation_file_is_on_the_page() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan/ops");
        for entry in std::fs::read_dir(root).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".rs")
                && stem != "mod"
            {
                assert!(
                    FILES.contains(&stem),
                    "add {stem} to FILES in src/plan/ops/mod.rs"
                );
            }
        }
    }
}
