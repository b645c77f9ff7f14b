//! EXCLUDE constraints on existing tables.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "exclude-constraint",
    severity: Severity::Error,
    summary: "ADD CONSTRAINT … EXCLUDE on an existing table",
    why: "An exclusion constraint builds its index and checks every row under an ACCESS \
          EXCLUSIVE lock, and has neither NOT VALID nor USING INDEX: all reads and writes stop \
          for the build. There is no online form.",
    help: "create a new table with the constraint and copy the data in batches, or accept the \
           lock in a maintenance window (`-- zdm:ignore exclude-constraint -- reason`); zdm plan refuses it unless marked `-- zdm:allow-locking -- reason`",
    setup: "CREATE EXTENSION btree_gist;\nCREATE TABLE bookings (id bigint PRIMARY KEY, room int, during tstzrange);",
    bad: "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
    good: "CREATE TABLE bookings_v2 (id bigint PRIMARY KEY, room int, during tstzrange, CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&));",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::AddConstraint(spec) if spec.kind == ConstraintKind::Exclude => Violation::new(format!(
                "ADD CONSTRAINT … EXCLUDE builds its index and checks every row of {table} under an ACCESS EXCLUSIVE lock that blocks all reads and writes; it cannot be added NOT VALID or USING INDEX"
            )),
            _ => vec![],
        })
        .collect()
}
