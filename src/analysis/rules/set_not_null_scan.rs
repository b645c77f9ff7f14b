//! SET NOT NULL on an existing column without a validated CHECK that proves it.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "set-not-null-scan",
    severity: Severity::Error,
    summary: "SET NOT NULL on an existing column without a validated CHECK (col IS NOT NULL)",
    why: "ALTER COLUMN … SET NOT NULL takes an ACCESS EXCLUSIVE lock and scans the whole table \
          to prove there are no NULLs: all reads and writes stop for the scan. From PostgreSQL \
          12 the scan is skipped when a valid CHECK (col IS NOT NULL) constraint already proves \
          it.",
    help: "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT in a later transaction \
           (SHARE UPDATE EXCLUSIVE), then SET NOT NULL (no scan on PostgreSQL 12+) and drop the \
           check; on PostgreSQL 18 ADD CONSTRAINT … NOT NULL col NOT VALID then VALIDATE. zdm \
           plan runs this sequence",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text);",
    bad: "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
    good: "SET lock_timeout = '2s';\n\
           ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;\n\
           COMMIT;\n\
           ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;\n\
           COMMIT;\n\
           ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
           ALTER TABLE users DROP CONSTRAINT users_email_not_null;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    let known = cx.catalog.table(table);
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::SetNotNull { column } => {
                let proven = known.is_some_and(|t| t.has_valid_not_null_proof(column));
                let already = known.and_then(|t| t.column(column)).is_some_and(|c| c.not_null);
                if already || (proven && cx.pg_version >= 12) {
                    return vec![];
                }
                let mut message = format!(
                    "SET NOT NULL on {table}.{column} {} while the whole table is scanned for NULLs",
                    lock_phrase(LockMode::AccessExclusive, table)
                );
                if proven {
                    message.push_str(&format!(
                        "; a validated CHECK proves it, but PostgreSQL {} does not use it (12+ does)",
                        cx.pg_version
                    ));
                }
                Violation::new(message)
            }
            AlterAction::AddConstraint(spec) if !spec.not_valid => match &spec.kind {
                ConstraintKind::NotNull { column } => Violation::new(format!(
                    "ADD CONSTRAINT … NOT NULL {column} without NOT VALID {} while the whole table is scanned",
                    lock_phrase(LockMode::AccessExclusive, table)
                )),
                _ => vec![],
            },
            _ => vec![],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::lint::{LintOptions, lint_sql};

    fn fires(setup: &str, sql: &str, pg: u32) -> bool {
        let options = LintOptions {
            pg_version: pg,
            ..LintOptions::default()
        };
        lint_sql(setup, sql, &options)
            .findings
            .iter()
            .any(|f| f.rule == "set-not-null-scan")
    }

    #[test]
    fn a_check_validated_in_an_earlier_migration_is_enough_on_pg12() {
        let setup = "CREATE TABLE t (c int);\nALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID;\nCOMMIT;\nALTER TABLE t VALIDATE CONSTRAINT c_nn;";
        assert!(!fires(
            setup,
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL;",
            12
        ));
        assert!(fires(
            setup,
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL;",
            11
        ));
        // Not validated: the CHECK proves nothing yet.
        let unvalidated = "CREATE TABLE t (c int);\nALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID;";
        assert!(fires(
            unvalidated,
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL;",
            14
        ));
    }

    #[test]
    fn pg18_not_null_constraints() {
        let setup = "CREATE TABLE t (c int);";
        assert!(fires(
            setup,
            "ALTER TABLE t ADD CONSTRAINT c_nn NOT NULL c;",
            18
        ));
        assert!(!fires(
            setup,
            "ALTER TABLE t ADD CONSTRAINT c_nn NOT NULL c NOT VALID;",
            18
        ));
    }
}
