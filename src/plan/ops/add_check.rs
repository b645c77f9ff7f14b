//! ADD CONSTRAINT … CHECK on an existing table: added NOT VALID, validated separately.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ADD CONSTRAINT name CHECK (…) NOT VALID` | ACCESS EXCLUSIVE, brief (no scan) |
//! | expand | `VALIDATE CONSTRAINT name` in its own transaction | SHARE UPDATE EXCLUSIVE: reads and writes continue during the scan |
//! | down expand | `DROP CONSTRAINT IF EXISTS name` | ACCESS EXCLUSIVE, brief |

use super::add_foreign_key::{named, not_valid_then_validate};
use super::{ActionCx, OpCx, OpPlan, Operation};
use crate::classify::LockMode;
use crate::parse::ConstraintKind;

pub struct AddCheck;

impl Operation for AddCheck {
    fn kind(&self) -> &'static str {
        "add-check"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        let spec = cx.validated_constraint()?;
        matches!(spec.kind, ConstraintKind::Check { .. })
            .then(|| plan(&cx.cx, cx.text, spec.name.as_deref()))
    }
}

pub fn plan(cx: &OpCx, action: &str, name: Option<&str>) -> Result<OpPlan, String> {
    let (name, action) = named(
        action,
        name,
        &crate::sql::fit_name(&format!("{}_check", cx.table.name)),
    );
    let mut plan = not_valid_then_validate(cx, &action, &name, LockMode::AccessExclusive);
    plan.notes.push(format!(
        "from expand on, rows that both application versions write to {} must satisfy {name}",
        cx.table
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn not_valid_then_validate() {
        let setup = "CREATE TABLE public.orders (id int PRIMARY KEY, amount int);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE public.orders ADD CONSTRAINT \"Amount is positive\" CHECK (amount > 0);"
        ));
    }
}
