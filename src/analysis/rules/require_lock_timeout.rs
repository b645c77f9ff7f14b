//! A blocking lock requested without lock_timeout.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "require-lock-timeout",
    severity: Severity::Warning,
    summary: "a statement that takes a blocking lock on an existing table without a lock_timeout set",
    why: "A lock request waits behind every running query on the table, and while it waits, \
          every later query on the table queues behind it, even plain SELECTs. Without \
          lock_timeout, an \"instant\" ALTER TABLE behind one slow query stops the application.",
    help: "start the migration with `SET lock_timeout = '2s';` and retry on timeout; `zdm \
           expand`/`zdm contract` set a short lock_timeout on every step and retry with backoff \
           by themselves",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY);",
    bad: "ALTER TABLE users ADD COLUMN bio text;",
    good: "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN bio text;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    if cx.file.lock_timeout || cx.file.locked_existing {
        return vec![];
    }
    let Some(effect) = cx.class.strongest_on_existing() else {
        return vec![];
    };
    if !effect.lock.blocks_writes() || effect.lock == LockMode::RowExclusive {
        return vec![];
    }
    Violation::new(format!(
        "no lock_timeout is set before this statement {}; while it waits for the lock every later query on the table waits behind it",
        lock_phrase(effect.lock, &effect.relation)
    ))
}
