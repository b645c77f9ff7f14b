//! CLUSTER.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "cluster",
    severity: Severity::Error,
    summary: "CLUSTER",
    why: "CLUSTER rewrites the table in index order under an ACCESS EXCLUSIVE lock: all reads \
          and writes stop for the rewrite.",
    help: "use pg_repack --order-by, which reorders the table online; `ALTER TABLE … CLUSTER \
           ON` only records the index and takes no blocking lock. zdm plan refuses CLUSTER unless \
           marked `-- zdm:allow-locking -- reason`",
    setup: "CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz);\nCREATE INDEX events_created_idx ON events (created_at);",
    bad: "CLUSTER events USING events_created_idx;",
    good: "ALTER TABLE events CLUSTER ON events_created_idx;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    match cx.change {
        Change::Cluster { table } => Violation::new(format!(
            "CLUSTER rewrites {} under an ACCESS EXCLUSIVE lock that blocks all reads and writes",
            table.as_ref().map_or_else(
                || "every previously clustered table".to_owned(),
                ToString::to_string
            )
        )),
        _ => vec![],
    }
}
