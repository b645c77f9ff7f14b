//! DETACH PARTITION without CONCURRENTLY.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "require-concurrent-detach",
    severity: Severity::Error,
    summary: "ALTER TABLE … DETACH PARTITION without CONCURRENTLY",
    why: "DETACH PARTITION takes an ACCESS EXCLUSIVE lock on the partitioned table: every query \
          on any partition waits while the request queues and runs.",
    help: "use DETACH PARTITION … CONCURRENTLY (PostgreSQL 14+; SHARE UPDATE EXCLUSIVE) outside a \
           transaction block; if it is interrupted, finish it with DETACH PARTITION … FINALIZE; zdm plan runs CONCURRENTLY statements as their own steps outside transactions",
    setup: "CREATE TABLE measurements (id bigint, at date) PARTITION BY RANGE (at);\nCREATE TABLE measurements_2023 PARTITION OF measurements FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');",
    bad: "ALTER TABLE measurements DETACH PARTITION measurements_2023;",
    good: "ALTER TABLE measurements DETACH PARTITION measurements_2023 CONCURRENTLY;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::DetachPartition {
                partition,
                concurrently: false,
                finalize: false,
            } => {
                let mut message = format!(
                    "DETACH PARTITION {partition} without CONCURRENTLY {}",
                    lock_phrase(LockMode::AccessExclusive, table)
                );
                if cx.pg_version < 14 {
                    message.push_str(&format!(
                        "; CONCURRENTLY needs PostgreSQL 14 (targeting {})",
                        cx.pg_version
                    ));
                }
                Violation::new(message)
            }
            AlterAction::DetachPartition {
                partition,
                concurrently: true,
                ..
            } if cx.pg_version < 14 => Violation::new(format!(
                "DETACH PARTITION {partition} CONCURRENTLY needs PostgreSQL 14 (targeting {}); the server rejects it as a syntax error",
                cx.pg_version
            )),
            _ => vec![],
        })
        .collect()
}
