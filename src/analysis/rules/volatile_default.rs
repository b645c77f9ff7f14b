//! ADD COLUMN with a volatile default (or any default before PostgreSQL 11).

use super::prelude::*;
use crate::classify::{Volatility, add_column_rewrites, default_volatility};
use crate::parse::Generated;

pub static RULE: Rule = Rule {
    name: "volatile-default",
    severity: Severity::Error,
    summary: "ADD COLUMN with a volatile DEFAULT (serial, nextval, gen_random_uuid, random, clock_timestamp…)",
    why: "A volatile default has to be computed for every existing row, so PostgreSQL rewrites \
          the whole table and its indexes under an ACCESS EXCLUSIVE lock: all reads and writes \
          stop for the rewrite. Non-volatile defaults (constants, now()) are stored in the \
          catalog instead, from PostgreSQL 11; before 11 every default rewrites.",
    help: "add the column without the default (or with a constant one), then SET DEFAULT for new \
           rows and backfill existing rows in batches; zdm plan does this, with a trigger that \
           fills rows the old application inserts during the rollout",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY);",
    bad: "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
    good: "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN token uuid;\nALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid();",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| {
            let AlterAction::AddColumn(col) = a else {
                return vec![];
            };
            if matches!(col.generated, Some(Generated::Stored | Generated::Identity)) {
                return vec![]; // add-generated-column
            }
            if let Some(reason) = add_column_rewrites(col, cx.pg_version) {
                return Violation::new(format!(
                    "ADD COLUMN {} rewrites {table} and its indexes under an ACCESS EXCLUSIVE lock, blocking all reads and writes: {reason}",
                    col.name
                ));
            }
            match col.default.as_deref().map(default_volatility) {
                Some(Volatility::Unknown(f)) => Violation::uncertain(format!(
                    "ADD COLUMN {} has a default that calls {f}(), whose volatility zdm does not know; if it is VOLATILE (the default for user functions) {table} is rewritten under an ACCESS EXCLUSIVE lock",
                    col.name
                )),
                _ => vec![],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::lint::{LintOptions, Severity, lint_sql};

    fn findings(sql: &str, pg: u32) -> Vec<Severity> {
        let options = LintOptions {
            pg_version: pg,
            ..LintOptions::default()
        };
        lint_sql("CREATE TABLE t (id int);", sql, &options)
            .findings
            .iter()
            .filter(|f| f.rule == "volatile-default")
            .map(|f| f.severity)
            .collect()
    }

    #[test]
    fn serial_and_old_versions_rewrite_constant_defaults_do_not() {
        assert_eq!(
            findings("ALTER TABLE t ADD COLUMN n bigserial;", 14),
            vec![Severity::Error]
        );
        assert_eq!(
            findings("ALTER TABLE t ADD COLUMN n int DEFAULT 0;", 14),
            vec![]
        );
        assert_eq!(
            findings("ALTER TABLE t ADD COLUMN n int DEFAULT 0;", 10),
            vec![Severity::Error]
        );
        assert_eq!(
            findings("ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now();", 14),
            vec![]
        );
        assert_eq!(
            findings(
                "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT clock_timestamp();",
                14
            ),
            vec![Severity::Error]
        );
        assert_eq!(
            findings("ALTER TABLE t ADD COLUMN n int DEFAULT my_fn();", 14),
            vec![Severity::Warning]
        );
    }
}
