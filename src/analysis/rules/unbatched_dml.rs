//! UPDATE or DELETE of an existing table not limited by a key to a few rows.

use super::prelude::*;
use crate::parse::DmlKind;

pub static RULE: Rule = Rule {
    name: "unbatched-dml",
    severity: Severity::Error,
    summary: "UPDATE or DELETE of an existing table without WHERE, or with a WHERE that does not pin a key to constants",
    why: "One statement over many rows locks every row it touches until the transaction ends: \
          the application's writes to those rows wait, possibly for minutes. It also bloats \
          the table and lags replicas, and in a migration's transaction it holds any lock taken \
          before it. A WHERE clause only helps when it limits the statement to a few known \
          rows: `WHERE b IS NULL` after adding `b` is every row.",
    help: "update or delete in batches over the primary key, each its own short transaction; zdm \
           plan runs an `UPDATE … SET … [WHERE …]` migration as a batched, resumable backfill. \
           A statement whose WHERE pins a key to constants (`WHERE id = 42`, `WHERE id IN (1, \
           2)`) touches only those rows and is accepted",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, plan text);",
    bad: "UPDATE users SET plan = 'free' WHERE plan IS NULL;",
    good: "UPDATE users SET plan = 'free' WHERE id IN (1, 2, 3);",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::Dml {
        kind: kind @ (DmlKind::Update | DmlKind::Delete),
        table,
        filtered,
        pinned,
    } = cx.change
    else {
        return vec![];
    };
    if !cx.existing(table) {
        return vec![];
    }
    let verb = if *kind == DmlKind::Update {
        "UPDATE"
    } else {
        "DELETE"
    };
    if !filtered {
        return Violation::new(format!(
            "{verb} without WHERE touches every row of {table} in one transaction, blocking the application's writes to those rows until it commits"
        ));
    }
    let many = || {
        format!(
            "{verb} … WHERE on {table} does not pin a key to constants, so it may touch many rows in one transaction, blocking the application's writes to them until it commits"
        )
    };
    match cx.catalog.keys(table) {
        Some(keys) if keys.iter().any(|k| k.iter().all(|c| pinned.contains(c))) => vec![],
        Some(_) => Violation::new(many()),
        None if pinned.is_empty() => Violation::new(many()),
        None => Violation::uncertain(format!(
            "{verb} … WHERE on {table} pins {} to constants, but zdm does not know whether that is a key of {table}; if not, it may touch many rows in one transaction, blocking the application's writes to them until it commits",
            pinned.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::{LintOptions, Severity, lint_sql};

    const SETUP: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text UNIQUE, plan text, org bigint, n int);\nCREATE UNIQUE INDEX users_org_n ON users (org, n);";

    fn flagged(sql: &str) -> Vec<String> {
        lint_sql(SETUP, sql, &LintOptions::default())
            .findings
            .into_iter()
            .filter(|f| f.rule == "unbatched-dml")
            .map(|f| format!("{}: {}", f.severity, f.message))
            .collect()
    }

    #[test]
    fn a_where_that_does_not_pin_a_key_is_flagged() {
        for sql in [
            "UPDATE users SET plan = 'free' WHERE true;",
            "UPDATE users SET plan = 'free' WHERE plan IS NULL;",
            "UPDATE users SET plan = 'free' WHERE id > 10;",
            "UPDATE users SET plan = 'free' WHERE id = 1 OR id = 2;",
            "DELETE FROM users WHERE plan = 'gone';",
            "UPDATE users SET plan = 'x' WHERE org = 1;",
            "UPDATE users SET plan = 'x' WHERE id = (SELECT max(id) FROM users);",
        ] {
            let found = flagged(sql);
            assert_eq!(found.len(), 1, "{sql}: {found:?}");
            assert!(
                found[0].starts_with("error: ") && found[0].contains("does not pin a key"),
                "{sql}: {found:?}"
            );
        }
    }

    #[test]
    fn a_where_that_pins_a_key_is_accepted() {
        for sql in [
            "UPDATE users SET plan = 'free' WHERE id = 42;",
            "UPDATE users SET plan = 'free' WHERE 42 = id AND plan IS NULL;",
            "UPDATE users SET plan = 'free' WHERE users.id IN (1, 2, 3);",
            "DELETE FROM users WHERE email = 'a@example.com';",
            "UPDATE users SET plan = 'x' WHERE org = 1 AND n = -2;",
            "UPDATE users SET plan = 'x' WHERE (org, n) = (1, 2);",
            "UPDATE users SET plan = 'x' WHERE id = '7'::bigint;",
        ] {
            assert_eq!(flagged(sql), Vec::<String>::new(), "{sql}");
        }
    }

    #[test]
    fn an_unknown_key_is_a_warning() {
        let report = lint_sql(
            "",
            "UPDATE accounts SET plan = 'x' WHERE id = 1;",
            &LintOptions::default(),
        );
        let found: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.rule == "unbatched-dml")
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Warning);
    }
}
