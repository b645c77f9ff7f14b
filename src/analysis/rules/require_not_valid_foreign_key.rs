//! Foreign keys added to existing tables without NOT VALID.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "require-not-valid-foreign-key",
    severity: Severity::Error,
    summary: "FOREIGN KEY added to an existing table without NOT VALID, or ADD COLUMN … REFERENCES",
    why: "Adding a foreign key takes SHARE ROW EXCLUSIVE locks on both tables, which block \
          writes to both, and holds them while every existing row is checked against the \
          referenced table. ADD COLUMN … REFERENCES holds ACCESS EXCLUSIVE on the table \
          instead, which blocks its reads too.",
    help: "add the constraint with NOT VALID (brief lock, new rows are checked), then in a \
           later transaction run ALTER TABLE … VALIDATE CONSTRAINT, which takes only SHARE \
           UPDATE EXCLUSIVE; for ADD COLUMN … REFERENCES add the column first, then the \
           constraint NOT VALID. zdm plan splits it this way",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY);\nCREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);",
    bad: "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
    good: "SET lock_timeout = '2s';\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\nCOMMIT;\nALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::AddConstraint(spec) if !spec.not_valid => match &spec.kind {
                ConstraintKind::ForeignKey { references, .. } => Violation::new(format!(
                    "FOREIGN KEY without NOT VALID takes SHARE ROW EXCLUSIVE locks on {table} and {references}, blocking writes to both while every row of {table} is checked"
                )),
                _ => vec![],
            },
            AlterAction::AddColumn(col) => match &col.references {
                Some(references) => Violation::new(format!(
                    "ADD COLUMN {} … REFERENCES {references} adds a foreign key that cannot be NOT VALID: an ACCESS EXCLUSIVE lock on {table} blocks its reads and writes, and a SHARE ROW EXCLUSIVE lock on {references} blocks writes to it, while every row of {table} is checked",
                    col.name
                )),
                None => vec![],
            },
            _ => vec![],
        })
        .collect()
}
