//! VACUUM FULL.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "vacuum-full",
    severity: Severity::Error,
    summary: "VACUUM FULL",
    why: "VACUUM FULL rewrites the whole table into a new file under an ACCESS EXCLUSIVE lock: \
          all reads and writes stop for the rewrite, which also needs up to twice the table's \
          disk space.",
    help: "use pg_repack or pg_squeeze, which rebuild the table online; plain VACUUM (SHARE \
           UPDATE EXCLUSIVE) reclaims space for reuse without blocking. zdm plan refuses it unless \
           marked `-- zdm:allow-locking -- reason`",
    setup: "CREATE TABLE events (id bigint PRIMARY KEY);",
    bad: "VACUUM FULL events;",
    good: "VACUUM (ANALYZE) events;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    match cx.change {
        Change::Vacuum { full: true, tables } => {
            let target = if tables.is_empty() {
                "every table in the database".to_owned()
            } else {
                tables
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Violation::new(format!(
                "VACUUM FULL rewrites {target} under an ACCESS EXCLUSIVE lock that blocks all reads and writes"
            ))
        }
        _ => vec![],
    }
}
