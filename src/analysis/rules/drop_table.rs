//! DROP TABLE / DROP SCHEMA of existing objects.

use super::prelude::*;
use crate::parse::ObjectKind;

pub static RULE: Rule = Rule {
    name: "drop-table",
    severity: Severity::Error,
    summary: "DROP TABLE or DROP SCHEMA of an existing object",
    why: "The running application may still query the table: its queries fail from the moment \
          the drop commits, and the data is gone. DROP TABLE also takes ACCESS EXCLUSIVE locks \
          on the tables its foreign keys reference.",
    help: "deploy code that no longer uses the table first, then drop it (after dropping its \
           foreign keys); zdm plan drops it in contract. When the code already ignores it, say \
           so: `-- zdm:ignore drop-table -- unused since <release>`",
    setup: "CREATE TABLE audit_log (id bigint PRIMARY KEY);",
    bad: "DROP TABLE audit_log;",
    good: "SET lock_timeout = '2s';\n-- zdm:ignore drop-table -- replaced by the events table in v3.0\nDROP TABLE audit_log;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::Drop {
        kind,
        names,
        cascade,
    } = cx.change
    else {
        return vec![];
    };
    if !matches!(kind, ObjectKind::Table | ObjectKind::Schema) {
        return vec![];
    }
    names
        .iter()
        .filter(|n| cx.existing(n))
        .flat_map(|n| {
            Violation::new(format!(
                "dropping {kind} {n}{} breaks the running application if it still uses it, and loses its data",
                if *cascade { " with CASCADE (and everything that depends on it)" } else { "" }
            ))
        })
        .collect()
}
