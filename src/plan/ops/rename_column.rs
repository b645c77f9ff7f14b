//! ALTER TABLE … RENAME COLUMN old TO new, with both application versions working.
//!
//! During the rollout the new name is a shadow column kept equal to the original by a trigger;
//! in contract the shadow is dropped and the original column, with its indexes, constraints
//! and statistics, takes the new name. So nothing needs copying, and the contract can be
//! undone by the reverse rename.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ADD COLUMN new <type>` (nullable, catalog only) | ACCESS EXCLUSIVE, brief |
//! | expand | a BEFORE INSERT OR UPDATE trigger: an INSERT fills whichever column is missing, an UPDATE copies the column the writer changed to the other (and `old` to `new` when the writer changed neither, so a row moved behind the backfill's cursor is right all the same) | SHARE ROW EXCLUSIVE, brief |
//! | backfill | `new = old` in batches, with `zdm.backfill` set so the trigger stays out of the way | ROW EXCLUSIVE |
//! | contract | the completeness check: the backfill walks the table again and copies every row where `new` differs from `old` | ROW EXCLUSIVE |
//! | contract | one transaction: drop the trigger, check that nothing depends on the shadow `new` (an index created on it during the rollout would be dropped with it), `DROP COLUMN new`, `RENAME COLUMN old TO new` | ACCESS EXCLUSIVE, brief |
//! | down expand | drop the trigger and the shadow column | ACCESS EXCLUSIVE, brief |
//! | down contract | `RENAME COLUMN new TO old` | ACCESS EXCLUSIVE, brief |
//!
//! Queries on the new name are not indexed until contract.

use super::shadow::ShadowColumn;
use super::{ActionCx, OpCx, OpPlan, Operation, Step, alter};
use crate::classify::LockMode;
use crate::parse::AlterAction;
use crate::sql::{Ident, NOT_DURING_BACKFILL, RowTrigger, generated_name, guard_dependents};

pub struct RenameColumn;

impl Operation for RenameColumn {
    fn kind(&self) -> &'static str {
        "rename-column"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        let AlterAction::RenameColumn { from, to } = cx.action else {
            return None;
        };
        Some(plan(&cx.cx, from, to))
    }
}

pub fn plan(cx: &OpCx, from: &str, to: &str) -> Result<OpPlan, String> {
    let table = cx.table;
    let column = cx.catalog.table(table).and_then(|t| t.column(from)).ok_or_else(|| {
        format!(
            "zdm does not know the type of {table}.{from}, which the new column {to} must copy: declare the column in an earlier migration"
        )
    })?;
    let key = super::update_backfill::batch_key(cx.catalog, table)?;
    let (old, new) = (Ident(from), Ident(to));
    let trigger = RowTrigger {
        table,
        name: generated_name(&[&table.name, from, to, "sync"]),
        events: "INSERT OR UPDATE",
        when: Some(NOT_DURING_BACKFILL.to_owned()),
    };
    let drop_trigger = trigger.drop();
    let mut plan = OpPlan::default();
    ShadowColumn {
        table,
        name: to.to_owned(),
        ty: column.ty.written.clone(),
        trigger,
        trigger_body: format!(
            "  IF TG_OP = 'INSERT' THEN\n    IF NEW.{new} IS NULL THEN\n      NEW.{new} := NEW.{old};\n    ELSE\n      NEW.{old} := NEW.{new};\n    END IF;\n  ELSIF NEW.{old} IS DISTINCT FROM OLD.{old} THEN\n    NEW.{new} := NEW.{old};\n  ELSIF NEW.{new} IS DISTINCT FROM OLD.{new} THEN\n    NEW.{old} := NEW.{new};\n  ELSE\n    NEW.{new} := NEW.{old};\n  END IF;\n"
        ),
        copy: old.to_string(),
        key,
        says: [
            format!("add {to} beside {from} on {table} (catalog only)"),
            format!("keep {from} and {to} equal whichever application writes"),
            format!("drop the sync trigger and the shadow {to}"),
        ],
    }
    .add_to(&mut plan);
    plan.contract.push(Step::tx(
        format!(
            "drop the shadow {to} and give {from}, with its indexes and constraints, the name {to}"
        ),
        format!(
            "{drop_trigger};\n{};\n{};\n{}",
            guard_dependents(table, to, &[], &[]),
            alter(table, &format!("DROP COLUMN {new}")),
            alter(table, &format!("RENAME COLUMN {old} TO {new}"))
        ),
        LockMode::AccessExclusive,
        table,
    ));
    plan.down_contract = Some(vec![Step::tx(
        format!("rename {table}.{to} back to {from}"),
        alter(table, &format!("RENAME COLUMN {new} TO {old}")),
        LockMode::AccessExclusive,
        table,
    )]);
    plan.notes.push(format!(
        "deploy code that reads and writes {table}.{to} instead of {from} before contract; until contract, queries filtering on {to} use no index"
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn shadow_column_trigger_and_rename_in_contract() {
        let setup = "CREATE TABLE \"User\" (id int PRIMARY KEY, full_name varchar(100) NOT NULL);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE \"User\" RENAME COLUMN full_name TO \"displayName\";"
        ));
        assert!(
            human(
                "CREATE TABLE t (id int PRIMARY KEY);",
                "ALTER TABLE t RENAME COLUMN x TO y;"
            )
            .contains("type of t.x")
        );
    }
}
