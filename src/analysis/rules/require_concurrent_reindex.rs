//! REINDEX without CONCURRENTLY.

use super::prelude::*;
use crate::parse::ReindexTarget;

pub static RULE: Rule = Rule {
    name: "require-concurrent-reindex",
    severity: Severity::Error,
    summary: "REINDEX without CONCURRENTLY",
    why: "REINDEX takes a SHARE lock on the table (writes wait) and an ACCESS EXCLUSIVE lock on \
          each index it rebuilds; queries that would use the index wait too, so in practice \
          almost every query on the table stops for the rebuild.",
    help: "use REINDEX … CONCURRENTLY (PostgreSQL 12+) outside a transaction block; if it fails, \
           drop the leftover `_ccnew` index and retry; zdm plan runs CONCURRENTLY statements as their own steps outside transactions",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text);\nCREATE INDEX users_email_idx ON users (email);",
    bad: "REINDEX INDEX users_email_idx;",
    good: "REINDEX INDEX CONCURRENTLY users_email_idx;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::Reindex {
        target,
        name,
        concurrently: false,
    } = cx.change
    else {
        return vec![];
    };
    if *target == ReindexTarget::System || name.as_ref().is_some_and(|n| !cx.existing(n)) {
        return vec![];
    }
    let what = name.as_ref().map_or_else(String::new, |n| format!(" {n}"));
    let mut message = format!(
        "REINDEX{what} without CONCURRENTLY blocks writes to the table and queries that use its indexes while they are rebuilt"
    );
    if cx.pg_version < 12 {
        message.push_str(&format!(
            "; REINDEX CONCURRENTLY needs PostgreSQL 12 (targeting {}): build a new index CONCURRENTLY and drop the old one",
            cx.pg_version
        ));
    }
    Violation::new(message)
}
