//! VALIDATE CONSTRAINT in the same transaction as the NOT VALID add.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "validate-in-same-transaction",
    severity: Severity::Error,
    summary: "VALIDATE CONSTRAINT in the same transaction as its NOT VALID add",
    why: "The NOT VALID add took an ACCESS EXCLUSIVE (CHECK) or SHARE ROW EXCLUSIVE (FOREIGN KEY) \
          lock that is held until the transaction ends, so validating in the same transaction \
          scans the whole table under that lock: exactly what NOT VALID was meant to avoid. \
          Most runners (sqlx, diesel, Flyway, golang-migrate with multi-statement files) run a \
          file in one transaction.",
    help: "COMMIT between the add and the validate, or validate in the next migration; zdm plan \
           runs VALIDATE as its own step",
    setup: "CREATE TABLE orders (id bigint PRIMARY KEY, amount int);",
    bad: "ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT orders_amount_positive;",
    good: "SET lock_timeout = '2s';\nALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0) NOT VALID;\nCOMMIT;\nALTER TABLE orders VALIDATE CONSTRAINT orders_amount_positive;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::AlterTable { table, actions } = cx.change else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::ValidateConstraint { name } => {
                let same = cx.file.not_valid_added.iter().any(|(t, n, segment)| {
                    t == &table.key() && n == name && *segment == cx.file.segment
                });
                if same {
                    Violation::new(format!(
                        "VALIDATE CONSTRAINT {name} runs in the same transaction that added it NOT VALID, so the whole of {table} is scanned while the add's lock is still held"
                    ))
                } else {
                    vec![]
                }
            }
            _ => vec![],
        })
        .collect()
}
