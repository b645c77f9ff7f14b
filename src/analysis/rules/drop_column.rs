//! DROP COLUMN on an existing table.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "drop-column",
    severity: Severity::Error,
    summary: "DROP COLUMN on an existing table",
    why: "The running application may still read or write the column (ORMs often select every \
          column they know): its queries fail from the moment the drop commits. The data is \
          gone, so the migration cannot be rolled back.",
    help: "deploy code that no longer uses the column first, then drop it; zdm plan drops it in \
           contract, after the deploy, and in expand only relaxes what blocks the new \
           application's writes (a NOT NULL without default). When the code already ignores the \
           column, say so: `-- zdm:ignore drop-column -- unused since <release>`",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, legacy_flag boolean);",
    bad: "ALTER TABLE users DROP COLUMN legacy_flag;",
    good: "SET lock_timeout = '2s';\n-- zdm:ignore drop-column -- no code reads legacy_flag since v4.2\nALTER TABLE users DROP COLUMN legacy_flag;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::DropColumn { column } => Violation::new(format!(
                "dropping {table}.{column} breaks the running application if it still reads or writes the column, and loses its data"
            )),
            _ => vec![],
        })
        .collect()
}
