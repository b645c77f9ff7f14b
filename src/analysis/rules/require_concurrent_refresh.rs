//! REFRESH MATERIALIZED VIEW without CONCURRENTLY.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "require-concurrent-refresh",
    severity: Severity::Error,
    summary: "REFRESH MATERIALIZED VIEW without CONCURRENTLY",
    why: "A plain refresh recomputes the view under an ACCESS EXCLUSIVE lock: every query on the \
          view waits until the query behind it has run in full.",
    help: "use REFRESH MATERIALIZED VIEW CONCURRENTLY (EXCLUSIVE: reads continue), which needs \
           a unique index on the view; zdm plan runs CONCURRENTLY statements as their own steps outside transactions",
    setup: "CREATE TABLE orders (id bigint PRIMARY KEY, amount int);\nCREATE MATERIALIZED VIEW order_totals AS SELECT count(*) AS n, sum(amount) AS total FROM orders;\nCREATE UNIQUE INDEX order_totals_n ON order_totals (n);",
    bad: "REFRESH MATERIALIZED VIEW order_totals;",
    good: "REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    match cx.change {
        Change::RefreshMaterializedView {
            name,
            concurrently: false,
        } if cx.existing(name) => Violation::new(format!(
            "REFRESH MATERIALIZED VIEW without CONCURRENTLY {} until the view is recomputed",
            lock_phrase(LockMode::AccessExclusive, name)
        )),
        _ => vec![],
    }
}
