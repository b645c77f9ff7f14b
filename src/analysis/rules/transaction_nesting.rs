//! BEGIN inside a transaction block, or a block left open at the end of the file.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "transaction-nesting",
    severity: Severity::Warning,
    summary: "BEGIN inside a transaction block, or BEGIN without COMMIT at the end of the file",
    why: "PostgreSQL has no nested transactions: a second BEGIN only warns, and the first COMMIT \
          ends everything. A block left open keeps its locks until the runner's connection \
          ends, or is rolled back by it.",
    help: "close each BEGIN with COMMIT before the next; use SAVEPOINT for nesting",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY);",
    bad: "BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE users ADD COLUMN bio text;",
    good: "BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE users ADD COLUMN bio text;\nCOMMIT;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    if matches!(cx.change, Change::Begin) && cx.file.in_block {
        return Violation::new(
            "BEGIN inside a transaction block: PostgreSQL ignores it with a warning, and the next COMMIT ends the outer transaction",
        );
    }
    let open_after = match cx.change {
        Change::Begin => true,
        Change::Commit | Change::Rollback => false,
        _ => cx.file.in_block,
    };
    if cx.is_last && open_after {
        return Violation::new("the file ends inside a BEGIN block without COMMIT");
    }
    vec![]
}
