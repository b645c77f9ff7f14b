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

use super::{ActionCx, OpCx, OpPlan, Operation, Step, alter};
use crate::classify::LockMode;
use crate::parse::{AlterAction, ConstraintKind, Name};
use crate::sql::Ident;

pub struct AddForeignKey;

impl Operation for AddForeignKey {
    fn kind(&self) -> &'static str {
        "add-foreign-key"
    }

    fn plan_action(&self, cx: &ActionCx) -> Option<Result<OpPlan, String>> {
        if let AlterAction::AddColumn(col) = cx.action {
            let references = col.references.as_ref()?;
            return Some(plan_inline(&cx.cx, cx.text, &col.name, references));
        }
        let spec = cx.validated_constraint()?;
        let ConstraintKind::ForeignKey {
            columns,
            references,
        } = &spec.kind
        else {
            return None;
        };
        Some(plan(
            &cx.cx,
            cx.text,
            spec.name.as_deref(),
            columns,
            references,
        ))
    }
}

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

/// `ADD COLUMN c … REFERENCES t` cannot be added NOT VALID: the column is added on its own,
/// then the foreign key NOT VALID and validated like any other.
pub fn plan_inline(
    cx: &OpCx,
    action: &str,
    column: &str,
    references: &Name,
) -> Result<OpPlan, String> {
    let definition = action
        .trim_start()
        .get(3..)
        .map(str::trim_start)
        .map(|rest| {
            if rest.to_uppercase().starts_with("COLUMN") {
                rest[6..].trim_start()
            } else {
                rest
            }
        })
        .unwrap_or_default();
    let parts = crate::plan::text::split_inline_references(definition)
        .ok_or("no REFERENCES clause found")?;
    let upper = parts.definition.to_uppercase();
    if [
        "DEFAULT",
        "NOT NULL",
        "UNIQUE",
        "PRIMARY",
        "CHECK",
        "GENERATED",
    ]
    .iter()
    .any(|w| upper.contains(w))
    {
        return Err(format!(
            "zdm splits ADD COLUMN {column} … REFERENCES only for a plain nullable column: write ADD COLUMN, then ADD CONSTRAINT … FOREIGN KEY … NOT VALID, as separate statements"
        ));
    }
    let mut plan = OpPlan::nothing_to_undo_at_contract();
    plan.expand.push(Step::tx(
        format!(
            "add {}.{column} without its foreign key (catalog only)",
            cx.table
        ),
        alter(cx.table, &format!("ADD COLUMN {}", parts.definition)),
        LockMode::AccessExclusive,
        cx.table,
    ));
    let name = parts
        .name
        .unwrap_or_else(|| crate::sql::fit_name(&format!("{}_{column}_fkey", cx.table.name)));
    let fk = format!(
        "ADD CONSTRAINT {} FOREIGN KEY ({}) {}",
        Ident(&name),
        Ident(column),
        parts.references
    );
    let rest = not_valid_then_validate(cx, &fk, &name, LockMode::ShareRowExclusive);
    plan.expand.extend(rest.expand);
    plan.down_expand.extend(rest.down_expand);
    plan.down_expand.push(Step::tx(
        format!("drop {}.{column}", cx.table),
        alter(
            cx.table,
            &format!("DROP COLUMN IF EXISTS {}", Ident(column)),
        ),
        LockMode::AccessExclusive,
        cx.table,
    ));
    plan.notes.push(format!(
        "from expand on, every {column} written to {} must exist in {references}",
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
    let mut plan = OpPlan::nothing_to_undo_at_contract();
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
    fn inline_references_are_split() {
        let setup =
            "CREATE TABLE users (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE orders ADD COLUMN user_id int REFERENCES users (id) ON DELETE CASCADE;"
        ));
    }

    #[test]
    fn not_valid_then_validate() {
        let setup = "CREATE TABLE \"user\" (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY, user_id int);";
        insta::assert_snapshot!(human(
            setup,
            "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES \"user\" (id) ON DELETE CASCADE;"
        ));
    }
}
