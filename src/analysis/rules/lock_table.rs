//! Explicit LOCK TABLE in a mode that blocks the application.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "lock-table",
    severity: Severity::Error,
    summary: "LOCK TABLE in a mode that blocks reads or writes",
    why: "An explicit LOCK TABLE holds its lock until the transaction ends, so everything the \
          migration does after it runs with the application blocked; a queued request also \
          blocks every later query on the table.",
    help: "remove the explicit lock and let each statement take the lock it needs, with a short \
           lock_timeout; if the ordering matters (to avoid deadlocks), keep the transaction to \
           that one statement and set lock_timeout first; zdm plan refuses an explicit LOCK TABLE unless marked `-- zdm:allow-locking -- \
           reason`",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY);",
    bad: "LOCK TABLE users IN ACCESS EXCLUSIVE MODE;",
    good: "LOCK TABLE users IN ACCESS SHARE MODE;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::LockTable { tables, mode } = cx.change else {
        return vec![];
    };
    if !mode.blocks_writes() {
        return vec![];
    }
    tables
        .iter()
        .filter(|t| cx.existing(t))
        .flat_map(|t| {
            Violation::new(format!(
                "LOCK TABLE {} until the transaction ends",
                lock_phrase(*mode, t)
            ))
        })
        .collect()
}
