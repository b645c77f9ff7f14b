//! CREATE INDEX without CONCURRENTLY on an existing table.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "require-concurrent-index",
    severity: Severity::Error,
    summary: "CREATE INDEX without CONCURRENTLY on an existing table",
    why: "CREATE INDEX takes a SHARE lock on the table for the whole build: reads continue but \
          every INSERT, UPDATE and DELETE waits until the index is built, which on a large table \
          takes minutes.",
    help: "use CREATE INDEX CONCURRENTLY (SHARE UPDATE EXCLUSIVE: reads and writes continue) \
           outside a transaction block; if it fails it leaves an INVALID index to drop and \
           rebuild. zdm plan runs it as a non-transactional step and repairs invalid indexes \
           on resume",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text);",
    bad: "CREATE INDEX users_email_idx ON users (email);",
    good: "SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::CreateIndex {
        table,
        concurrently: false,
        unique,
        ..
    } = cx.change
    else {
        return vec![];
    };
    if !cx.existing(table) {
        return vec![];
    }
    let partitioned = cx.catalog.table(table).is_some_and(|t| t.partitioned);
    let mut message = format!(
        "CREATE {}INDEX without CONCURRENTLY {} while the whole index is built",
        if *unique { "UNIQUE " } else { "" },
        lock_phrase(LockMode::Share, table)
    );
    if partitioned {
        message.push_str(
            "; on a partitioned table build it with CREATE INDEX ON ONLY, then CONCURRENTLY per \
             partition and ALTER INDEX … ATTACH PARTITION",
        );
    }
    Violation::new(message)
}
