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
