//! CHECK constraints added to existing tables without NOT VALID.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "require-not-valid-check",
    severity: Severity::Error,
    summary: "CHECK constraint added to an existing table without NOT VALID",
    why: "ADD CONSTRAINT … CHECK takes an ACCESS EXCLUSIVE lock and holds it while every row is \
          checked: all reads and writes on the table stop for a full scan.",
    help: "add it with NOT VALID (brief lock; new and updated rows are checked), then VALIDATE \
           CONSTRAINT in a later transaction (SHARE UPDATE EXCLUSIVE: reads and writes \
           continue); zdm plan splits it this way",
    setup: "CREATE TABLE orders (id bigint PRIMARY KEY, amount int);",
    bad: "ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0);",
    good: "SET lock_timeout = '2s';\nALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0) NOT VALID;\nCOMMIT;\nALTER TABLE orders VALIDATE CONSTRAINT orders_amount_positive;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::AddConstraint(spec)
                if !spec.not_valid && matches!(spec.kind, ConstraintKind::Check { .. }) =>
            {
                Violation::new(format!(
                    "CHECK without NOT VALID {} while every row is checked",
                    lock_phrase(LockMode::AccessExclusive, table)
                ))
            }
            AlterAction::AddColumn(col) if col.check => Violation::new(format!(
                "ADD COLUMN {} with a CHECK constraint {} while every row is checked",
                col.name,
                lock_phrase(LockMode::AccessExclusive, table)
            )),
            _ => vec![],
        })
        .collect()
}
