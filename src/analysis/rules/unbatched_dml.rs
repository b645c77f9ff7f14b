//! UPDATE or DELETE of a whole existing table in one statement.

use super::prelude::*;
use crate::parse::DmlKind;

pub static RULE: Rule = Rule {
    name: "unbatched-dml",
    severity: Severity::Error,
    summary: "UPDATE or DELETE without WHERE on an existing table",
    why: "One statement over the whole table locks every row it touches until the transaction \
          ends: the application's writes to those rows wait, possibly for minutes. It also \
          bloats the table and lags replicas, and in a migration's transaction it holds any \
          lock taken before it.",
    help: "update or delete in batches over the primary key, each its own short transaction; zdm \
           plan runs an `UPDATE … SET … [WHERE …]` migration as a batched, resumable backfill",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, plan text);",
    bad: "UPDATE users SET plan = 'free';",
    good: "UPDATE users SET plan = 'free' WHERE id BETWEEN 1 AND 10000 AND plan IS NULL;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    match cx.change {
        Change::Dml {
            kind: kind @ (DmlKind::Update | DmlKind::Delete),
            table,
            filtered: false,
        } if cx.existing(table) => Violation::new(format!(
            "{} without WHERE touches every row of {table} in one transaction, blocking the application's writes to those rows until it commits",
            if *kind == DmlKind::Update {
                "UPDATE"
            } else {
                "DELETE"
            }
        )),
        _ => vec![],
    }
}
