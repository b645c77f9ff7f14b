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

use super::{ActionCx, OpPlan, Operation, Step, alter};
use crate::classify::LockMode;
use crate::parse::{AlterAction, ConstraintKind, Name};
use crate::sql::{Ident, generated_name};

pub struct SetNotNull;

impl Operation for SetNotNull {
    fn kind(&self) -> &'static str {
        "set-not-null"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        let column = match (cx.action, cx.validated_constraint()) {
            (_, Some(spec)) => match &spec.kind {
                ConstraintKind::NotNull { column } => column,
                _ => return None,
            },
            (AlterAction::SetNotNull { column }, None) if cx.risky => column,
            _ => return None,
        };
        Some(steps(cx.cx.table, column, cx.cx.pg_version))
    }
}

/// The steps that make `column` NOT NULL; also used by add-column and primary-key plans.
pub fn steps(table: &Name, column: &str, pg_version: u32) -> Result<OpPlan, String> {
    if pg_version < 12 {
        return Err(format!(
            "before PostgreSQL 12 SET NOT NULL always scans {table} under ACCESS EXCLUSIVE (targeting {pg_version}); keep a validated CHECK (…) NOT VALID constraint instead, or mark the statement `-- zdm:allow-locking -- reason`"
        ));
    }
    let check = generated_name(&[&table.name, column, "not_null"]);
    let col = Ident(column);
    let mut plan = OpPlan::nothing_to_undo_at_contract();
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

#[cfg(test)]
mod tests {
    use crate::plan::testing::{human, plan};

    #[test]
    fn validated_check_before_set_not_null() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, \"E-mail\" text);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE users ALTER COLUMN \"E-mail\" SET NOT NULL;"
        ));
    }

    #[test]
    fn version_gates() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, email text);";
        let sql = "ALTER TABLE users ALTER COLUMN email SET NOT NULL;";
        let pg18 = plan(setup, sql, 18).unwrap();
        assert!(
            pg18.expand[0].sql.contains("NOT NULL \"email\" NOT VALID"),
            "{}",
            pg18.expand[0].sql
        );
        assert_eq!(pg18.expand.len(), 2);
        assert!(plan(setup, sql, 11).is_err());
        // A long table and column name still yields a valid 63-byte constraint name.
        let long = format!(
            "CREATE TABLE {0} (id int PRIMARY KEY, {0} text);",
            "x".repeat(60)
        );
        let p = plan(
            &long,
            &format!(
                "ALTER TABLE {0} ALTER COLUMN {0} SET NOT NULL;",
                "x".repeat(60)
            ),
            14,
        )
        .unwrap();
        assert!(
            p.expand[0].sql.contains("\"_zdm_xxxx"),
            "{}",
            p.expand[0].sql
        );
    }
}
