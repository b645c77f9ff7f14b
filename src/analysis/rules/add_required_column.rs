//! ADD COLUMN … NOT NULL without a default on an existing table.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "add-required-column",
    severity: Severity::Error,
    summary: "ADD COLUMN … NOT NULL without a DEFAULT on an existing table",
    why: "On a table with rows the statement fails (the existing rows would be NULL); on an \
          empty one it succeeds, and then every INSERT of the running application, which does \
          not know the column, fails with a not-null violation.",
    help: "add the column with a non-volatile DEFAULT (catalog-only on PostgreSQL 11+), or add \
           it nullable, backfill, and make it NOT NULL through a validated CHECK; zdm plan does \
           the latter, filling rows from the default or a `-- zdm:backfill <expr>` directive",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY);",
    bad: "ALTER TABLE users ADD COLUMN plan text NOT NULL;",
    good: "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::AddColumn(col)
                if col.not_null
                    && col.default.is_none()
                    && col.generated.is_none()
                    && !col.ty.is_serial() =>
            {
                Violation::new(format!(
                    "ADD COLUMN {} NOT NULL without a DEFAULT fails if {table} has rows, and breaks the running application's INSERTs, which do not set it",
                    col.name
                ))
            }
            _ => vec![],
        })
        .collect()
}
