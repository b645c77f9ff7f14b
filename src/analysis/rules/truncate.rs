//! TRUNCATE of existing tables.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "truncate",
    severity: Severity::Error,
    summary: "TRUNCATE of an existing table",
    why: "TRUNCATE takes an ACCESS EXCLUSIVE lock (all reads and writes stop), deletes every \
          row without MVCC (concurrent transactions see an empty table), and with CASCADE also \
          empties every table that references it.",
    help: "delete the rows in batches (`DELETE … WHERE id BETWEEN …`), or if the table really \
           must be emptied, say so: `-- zdm:ignore truncate -- reason`",
    setup: "CREATE TABLE sessions (id bigint PRIMARY KEY, expires_at timestamptz);",
    bad: "TRUNCATE sessions;",
    good: "SET lock_timeout = '2s';\n-- zdm:ignore truncate -- sessions are no longer stored since v4.1\nTRUNCATE sessions;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::Truncate { tables, cascade } = cx.change else {
        return vec![];
    };
    tables
        .iter()
        .filter(|t| cx.existing(t))
        .flat_map(|t| {
            Violation::new(format!(
                "TRUNCATE {t} {} and deletes every row{}",
                lock_phrase(LockMode::AccessExclusive, t),
                if *cascade {
                    ", and CASCADE empties every table that references it"
                } else {
                    ""
                }
            ))
        })
        .collect()
}
