//! ALTER COLUMN … SET NOT NULL without a full-table scan under ACCESS EXCLUSIVE.
//!
//! PostgreSQL 12–17:
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ADD CONSTRAINT _zdm_…_not_null CHECK (col IS NOT NULL) NOT VALID` | ACCESS EXCLUSIVE, brief |
//! | expand | `VALIDATE CONSTRAINT …` in its own transaction | SHARE UPDATE EXCLUSIVE: reads and writes continue |
//! | expand | `ALTER COLUMN col SET NOT NULL`: the valid check proves it, no scan | ACCESS EXCLUSIVE, brief |
//! | expand | `DROP CONSTRAINT …` | ACCESS EXCLUSIVE, brief |
//! | down expand | `ALTER COLUMN col DROP NOT NULL`, drop the check if left | ACCESS EXCLUSIVE, brief |
//!
//! PostgreSQL 18: `ADD CONSTRAINT … NOT NULL col NOT VALID`, then `VALIDATE CONSTRAINT`.
//! Before 12 there is no way to skip the scan: the plan fails unless `-- zdm:allow-locking`.

use super::{OpPlan, Step, alter};
use crate::classify::LockMode;
use crate::parse::Name;
use crate::sql::{Ident, generated_name};

/// The steps that make `column` NOT NULL; also used by add-column and primary-key plans.
pub fn steps(table: &Name, column: &str, pg_version: u32) -> Result<OpPlan, String> {
    if pg_version < 12 {
        return Err(format!(
            "before PostgreSQL 12 SET NOT NULL always scans {table} under ACCESS EXCLUSIVE (targeting {pg_version}); keep a validated CHECK (…) NOT VALID constraint instead, or mark the statement `-- zdm:allow-locking -- reason`"
        ));
    }
    let check = generated_name(&[&table.name, column, "not_null"]);
    let col = Ident(column);
    let mut plan = OpPlan::undoable();
    let validate = Step::tx(
        format!("check that {table}.{column} holds no NULL while reads and writes continue"),
        alter(table, &format!("VALIDATE CONSTRAINT {}", Ident(&check))),
        LockMode::ShareUpdateExclusive,
        table,
    );
    if pg_version >= 18 {
        plan.expand.push(Step::tx(
            format!("add a NOT NULL constraint on {table}.{column} without checking existing rows"),
            alter(
                table,
                &format!("ADD CONSTRAINT {} NOT NULL {col} NOT VALID", Ident(&check)),
            ),
            LockMode::AccessExclusive,
            table,
        ));
        plan.expand.push(validate);
    } else {
        plan.expand.push(Step::tx(
            format!("add CHECK ({column} IS NOT NULL) to {table} without checking existing rows"),
            alter(
                table,
                &format!(
                    "ADD CONSTRAINT {} CHECK ({col} IS NOT NULL) NOT VALID",
                    Ident(&check)
                ),
            ),
            LockMode::AccessExclusive,
            table,
        ));
        plan.expand.push(validate);
        plan.expand.push(Step::tx(
            format!("set {table}.{column} NOT NULL (the valid check proves it: no scan)"),
            alter(table, &format!("ALTER COLUMN {col} SET NOT NULL")),
            LockMode::AccessExclusive,
            table,
        ));
        plan.expand.push(Step::tx(
            format!("drop the helper check on {table}.{column}"),
            alter(table, &format!("DROP CONSTRAINT {}", Ident(&check))),
            LockMode::AccessExclusive,
            table,
        ));
    }
    plan.down_expand.push(Step::tx(
        format!("allow NULL in {table}.{column} again"),
        format!(
            "{};\n{}",
            alter(table, &format!("ALTER COLUMN {col} DROP NOT NULL")),
            alter(
                table,
                &format!("DROP CONSTRAINT IF EXISTS {}", Ident(&check))
            )
        ),
        LockMode::AccessExclusive,
        table,
    ));
    plan.notes.push(format!(
        "from expand on, neither application version may write NULL into {table}.{column}"
    ));
    Ok(plan)
}
