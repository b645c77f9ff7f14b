//! SET LOGGED / UNLOGGED / TABLESPACE / ACCESS METHOD: storage changes that copy the table.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "rewrite-storage",
    severity: Severity::Error,
    summary: "ALTER TABLE … SET LOGGED, SET UNLOGGED, SET TABLESPACE or SET ACCESS METHOD",
    why: "These rewrite or copy the whole table (and SET LOGGED writes all of it to the WAL) \
          under an ACCESS EXCLUSIVE lock: all reads and writes stop until the copy is done.",
    help: "create the new table with the wanted storage, copy the data in batches and swap \
           names, or use pg_repack (`--tablespace`); or accept the lock in a maintenance window \
           with `-- zdm:ignore rewrite-storage -- reason`; zdm plan refuses it without `-- zdm:allow-locking -- reason`",
    setup: "CREATE TABLE events (id bigint PRIMARY KEY);",
    bad: "ALTER TABLE events SET LOGGED;",
    good: "ALTER TABLE events SET (fillfactor = 90);",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .filter_map(|a| match a {
            AlterAction::SetLogged => Some("SET LOGGED"),
            AlterAction::SetUnlogged => Some("SET UNLOGGED"),
            AlterAction::SetTablespace => Some("SET TABLESPACE"),
            AlterAction::SetAccessMethod => Some("SET ACCESS METHOD"),
            _ => None,
        })
        .flat_map(|what| {
            Violation::new(format!(
                "{what} copies the whole of {table} under an ACCESS EXCLUSIVE lock that blocks all reads and writes"
            ))
        })
        .collect()
}
