//! ADD CONSTRAINT … FOREIGN KEY on an existing table: added NOT VALID, validated separately.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | expand | `ADD CONSTRAINT name FOREIGN KEY … NOT VALID` | SHARE ROW EXCLUSIVE on both tables, brief (no scan) |
//! | expand | `VALIDATE CONSTRAINT name` in its own transaction | SHARE UPDATE EXCLUSIVE (+ ROW SHARE on the referenced table): reads and writes continue during the scan |
//! | down expand | `DROP CONSTRAINT IF EXISTS name` | ACCESS EXCLUSIVE, brief |
//!
//! From expand on, new and updated rows must satisfy the constraint, whichever application
//! writes them.

use super::{OpCx, OpPlan, Step, alter};
use crate::classify::LockMode;
use crate::parse::Name;
use crate::sql::Ident;

pub fn plan(
    cx: &OpCx,
    action: &str,
    name: Option<&str>,
    columns: &[String],
    references: &Name,
) -> Result<OpPlan, String> {
    let default_name =
        crate::sql::fit_name(&format!("{}_{}_fkey", cx.table.name, columns.join("_")));
    let (name, action) = named(action, name, &default_name);
    let mut plan = not_valid_then_validate(cx, &action, &name, LockMode::ShareRowExclusive);
    plan.notes.push(format!(
        "from expand on, every {} written to {} must exist in {references}",
        columns.join(", "),
        cx.table
    ));
    Ok(plan)
}

/// Gives an unnamed `ADD FOREIGN KEY/CHECK …` action the name PostgreSQL would, so the
/// VALIDATE step can name it.
pub fn named(action: &str, name: Option<&str>, default: &str) -> (String, String) {
    match name {
        Some(n) => (n.to_owned(), action.to_owned()),
        None => {
            let rest = action.trim_start()[3..].trim_start(); // after ADD
            (
                default.to_owned(),
                format!("ADD CONSTRAINT {} {rest}", Ident(default)),
            )
        }
    }
}

/// The two steps shared by foreign keys and checks.
pub fn not_valid_then_validate(cx: &OpCx, action: &str, name: &str, add_lock: LockMode) -> OpPlan {
    let mut plan = OpPlan::undoable();
    let action = action.trim_end();
    let not_valid = if action.to_uppercase().ends_with("NOT VALID") {
        action.to_owned()
    } else {
        format!("{action} NOT VALID")
    };
    plan.expand.push(Step::tx(
        format!(
            "add constraint {name} to {} without checking existing rows",
            cx.table
        ),
        alter(cx.table, &not_valid),
        add_lock,
        cx.table,
    ));
    plan.expand.push(Step::tx(
        format!(
            "check existing rows of {} against {name} while reads and writes continue",
            cx.table
        ),
        alter(cx.table, &format!("VALIDATE CONSTRAINT {}", Ident(name))),
        LockMode::ShareUpdateExclusive,
        cx.table,
    ));
    plan.down_expand.push(Step::tx(
        format!("drop constraint {name}"),
        alter(
            cx.table,
            &format!("DROP CONSTRAINT IF EXISTS {}", Ident(name)),
        ),
        LockMode::AccessExclusive,
        cx.table,
    ));
    plan
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::human;

    #[test]
    fn not_valid_then_validate() {
        let setup = "CREATE TABLE \"user\" (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY, user_id int);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES \"user\" (id) ON DELETE CASCADE;"
        ));
    }
}
