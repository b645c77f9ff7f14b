//! ALTER TABLE … DROP COLUMN: the column goes in contract, after the deploy.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ALTER COLUMN col DROP NOT NULL` when the column is NOT NULL without a default, so the new application's INSERTs, which omit it, succeed | ACCESS EXCLUSIVE, brief |
//! | contract | the DROP COLUMN as written | ACCESS EXCLUSIVE, brief (catalog only) |
//! | down expand | NOT NULL again when expand dropped it, the online way (see set_not_null.rs: a validated check, or NOT NULL NOT VALID on 18); a scanning SET NOT NULL before 12 | brief, SHARE UPDATE EXCLUSIVE while validating |
//! | down contract | impossible: the column's data is gone |

use super::{ActionCx, OpCx, OpPlan, Operation, Step, alter};
use crate::classify::LockMode;
use crate::parse::AlterAction;
use crate::sql::Ident;

pub struct DropColumn;

impl Operation for DropColumn {
    fn kind(&self) -> &'static str {
        "drop-column"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        let AlterAction::DropColumn { column } = cx.action else {
            return None;
        };
        Some(Ok(plan(&cx.cx, cx.text, column)))
    }
}

pub fn plan(cx: &OpCx, action: &str, column: &str) -> OpPlan {
    let mut plan = OpPlan::default();
    let known = cx.catalog.table(cx.table).and_then(|t| t.column(column));
    if known.is_some_and(|c| c.not_null && !c.has_default) {
        plan.expand.push(Step::tx(
            format!(
                "allow NULL in {}.{column} so code that no longer writes it can insert",
                cx.table
            ),
            alter(
                cx.table,
                &format!("ALTER COLUMN {} DROP NOT NULL", Ident(column)),
            ),
            LockMode::AccessExclusive,
            cx.table,
        ));
        // Undoing must not lock the table for a scan either. If the new application wrote
        // NULLs meanwhile, the validation fails and names the constraint; nothing is lost.
        let restore = match super::set_not_null::steps(cx.table, column, cx.pg_version) {
            Ok(online) => online.expand,
            Err(_) => vec![Step::tx(
                format!(
                    "make {}.{column} NOT NULL again (scans the table: PostgreSQL {} has no other way)",
                    cx.table, cx.pg_version
                ),
                alter(
                    cx.table,
                    &format!("ALTER COLUMN {} SET NOT NULL", Ident(column)),
                ),
                LockMode::AccessExclusive,
                cx.table,
            )],
        };
        plan.down_expand.extend(restore);
    }
    plan.contract.push(Step::tx(
        format!("drop column {}.{column}", cx.table),
        alter(cx.table, action),
        LockMode::AccessExclusive,
        cx.table,
    ));
    let views = cx.catalog.views_using(cx.table, column);
    if !views.is_empty() {
        plan.notes.push(format!(
            "{} may use {}.{column}: drop or redefine them before contract, or the DROP COLUMN fails",
            views.iter().map(|v| format!("view {v}")).collect::<Vec<_>>().join(", "),
            cx.table
        ));
    }
    plan.notes.push(format!(
        "deploy code that no longer reads or writes {}.{column} before contract; the contract cannot be undone (the data is dropped)",
        cx.table
    ));
    plan
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn required_columns_stop_being_required_in_expand() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, legacy int NOT NULL, other int);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE users DROP COLUMN legacy, DROP COLUMN IF EXISTS other;"
        ));
    }
}
