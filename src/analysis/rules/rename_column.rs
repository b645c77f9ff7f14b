//! RENAME COLUMN on an existing table.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "rename-column",
    severity: Severity::Error,
    summary: "RENAME COLUMN on an existing table",
    why: "The rename is catalog-only, but the running application still reads and writes the \
          old name: from the moment it commits until the new version is deployed everywhere, \
          every query that names the column fails.",
    help: "zdm plan runs it as expand (a new column under the new name, a trigger keeping both \
           equal whichever application writes, a batched backfill), then, once code that uses \
           the new name is deployed, contract (drop the shadow and rename the original column, \
           which keeps its indexes and constraints)",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, full_name text);",
    bad: "ALTER TABLE users RENAME COLUMN full_name TO display_name;",
    good: "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN display_name text;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::RenameColumn { from, to } => Violation::new(format!(
                "renaming {table}.{from} to {to} breaks the running application, which still uses {from}, until the new version is deployed everywhere"
            )),
            _ => vec![],
        })
        .collect()
}
