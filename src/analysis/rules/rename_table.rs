//! RENAME TO / SET SCHEMA on an existing table, unless a compatibility view follows.

use super::prelude::*;
use crate::parse::Name;

pub static RULE: Rule = Rule {
    name: "rename-table",
    severity: Severity::Error,
    summary: "renaming an existing table (RENAME TO, SET SCHEMA) without a view under the old name",
    why: "The rename is catalog-only, but the running application still queries the old name: \
          every one of its queries on the table fails until the new version is deployed \
          everywhere.",
    help: "create a view under the old name in the same migration (`CREATE VIEW old AS SELECT * \
           FROM new`: simple views are updatable, so the old application keeps reading and \
           writing) and drop it once the new version is deployed; zdm plan does this and drops \
           the view in contract",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text);",
    bad: "ALTER TABLE users RENAME TO accounts;",
    good: "SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE users RENAME TO accounts;\nCREATE VIEW users AS SELECT * FROM accounts;\nCOMMIT;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    let view_follows = cx.later.iter().any(|c| {
        matches!(c, Change::CreateView { name, materialized: false, .. } if name.key() == table.key())
    });
    if view_follows {
        return vec![];
    }
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::RenameTable { to } => {
                let to = Name { schema: to.schema.clone().or_else(|| table.schema.clone()), name: to.name.clone() };
                Violation::new(format!(
                    "renaming {table} to {to} breaks the running application, which still queries {table}, until the new version is deployed everywhere"
                ))
            }
            AlterAction::SetSchema => Violation::new(format!(
                "moving {table} to another schema breaks the running application, which still queries it under its current name"
            )),
            _ => vec![],
        })
        .collect()
}
