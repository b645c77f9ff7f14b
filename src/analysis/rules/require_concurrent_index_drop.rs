//! DROP INDEX without CONCURRENTLY.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "require-concurrent-index-drop",
    severity: Severity::Error,
    summary: "DROP INDEX without CONCURRENTLY",
    why: "DROP INDEX takes an ACCESS EXCLUSIVE lock on the index's table. The drop itself is \
          fast, but the request queues behind any running query on the table and every later \
          query queues behind it: reads and writes stop until the lock is granted and released.",
    help: "use DROP INDEX CONCURRENTLY (SHARE UPDATE EXCLUSIVE) outside a transaction block, one \
           index per statement; zdm plan runs it as a non-transactional step",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text);\nCREATE INDEX users_email_idx ON users (email);",
    bad: "DROP INDEX users_email_idx;",
    good: "DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::DropIndex {
        names,
        concurrently: false,
    } = cx.change
    else {
        return vec![];
    };
    names
        .iter()
        // An index dropped with its table earlier has nothing left to lock.
        .filter(|n| cx.existing(n) && !cx.catalog.dropped_with_table(n))
        .flat_map(|n| {
            let table = cx.catalog.index(n).map(|i| i.table.to_string());
            Violation::new(format!(
                "DROP INDEX {n} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on {}, which blocks all reads and writes while it waits and runs",
                table.unwrap_or_else(|| "its table".into())
            ))
        })
        .collect()
}
