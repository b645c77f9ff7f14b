//! CONCURRENTLY inside a transaction block.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "concurrently-in-transaction",
    severity: Severity::Error,
    summary: "a CONCURRENTLY statement inside a BEGIN … COMMIT block",
    why: "CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and DETACH PARTITION CONCURRENTLY \
          cannot run inside a transaction block: PostgreSQL rejects them, the migration fails \
          half-applied.",
    help: "move the statement out of the BEGIN … COMMIT block, into its own migration that the \
           runner does not wrap in a transaction (sqlx: `-- no-transaction`; diesel: \
           `run_in_transaction = false`; Flyway: `executeInTransaction=false`); zdm plan runs \
           CONCURRENTLY steps outside transactions by itself",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text);",
    bad: "BEGIN;\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\nCOMMIT;",
    good: "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    if cx.class.no_transaction && cx.file.in_block {
        Violation::new(
            "this CONCURRENTLY statement is inside a BEGIN … COMMIT block, where PostgreSQL rejects it (\"cannot run inside a transaction block\")",
        )
    } else {
        vec![]
    }
}
