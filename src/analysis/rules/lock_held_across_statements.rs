//! Work done in a transaction after it took ACCESS EXCLUSIVE on an existing table.

use super::prelude::*;
use crate::parse::DmlKind;

pub static RULE: Rule = Rule {
    name: "lock-held-across-statements",
    severity: Severity::Error,
    summary: "Slow work, or a lock on another table, after an ACCESS EXCLUSIVE lock in the same transaction",
    why: "PostgreSQL releases table locks only when the transaction ends. A quick ALTER TABLE \
          that took ACCESS EXCLUSIVE keeps the table unreadable while every later statement of \
          the transaction runs: an UPDATE of all its rows, a scan, a rewrite. Locking a second \
          table after it is a chain: while the second lock waits, reads and writes of the first \
          wait too, and two such migrations can deadlock. Most runners (sqlx, diesel, Flyway, \
          golang-migrate with multi-statement files) run a file in one transaction.",
    help: "COMMIT right after the statement that takes the lock, so the slow work or the next \
           table runs in its own transaction, or move it to its own migration; zdm expand runs \
           every step in its own short transaction",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, name text);",
    bad: "ALTER TABLE users ADD COLUMN nickname text;\nUPDATE users SET nickname = name;",
    good: "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN nickname text;\nCOMMIT;\nUPDATE users SET nickname = name WHERE id = 1;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let held: Vec<_> = cx.file.held_now().collect();
    let Some(first) = held.first() else {
        return vec![];
    };
    let since = || {
        let mut named: Vec<String> = held
            .iter()
            .take(3)
            .map(|h| format!("{} (since line {})", h.table, h.line))
            .collect();
        if held.len() > 3 {
            named.push(format!("{} more tables", held.len() - 3));
        }
        named.join(", ")
    };
    if let Some(work) = slow_work(cx) {
        return Violation::new(format!(
            "this statement {work} while the transaction still holds ACCESS EXCLUSIVE on {}: reads and writes of it wait until the transaction commits",
            since()
        ));
    }
    let other = cx.class.effects.iter().find(|e| {
        !e.new_relation
            && e.lock > LockMode::RowExclusive
            && held.iter().all(|h| h.table != e.relation.key())
    });
    match other {
        Some(e) => Violation::uncertain(format!(
            "this statement takes {} on {} while the transaction still holds ACCESS EXCLUSIVE on {}: while it waits for {}, reads and writes of {} wait too",
            e.lock,
            e.relation,
            since(),
            e.relation,
            first.table
        )),
        None => vec![],
    }
}

/// What makes the statement slow on a table that exists, in words: a rewrite, a scan, or an
/// UPDATE or DELETE not pinned to a few rows. A statement that itself takes ACCESS EXCLUSIVE
/// on the only table held blocks no more than its own rule says; a VALIDATE of a constraint
/// added NOT VALID in the same transaction is `validate-in-same-transaction`'s to report.
fn slow_work(cx: &Cx) -> Option<String> {
    if let Change::Dml {
        kind: kind @ (DmlKind::Update | DmlKind::Delete),
        table,
        pinned,
        ..
    } = cx.change
        && cx.existing(table)
        && pinned.is_empty()
    {
        let verb = if *kind == DmlKind::Update {
            "updates"
        } else {
            "deletes"
        };
        return Some(format!("{verb} rows of {table}"));
    }
    let validates_own = |relation: &crate::parse::Name| {
        matches!(cx.change, Change::AlterTable { actions, .. } if actions.iter().any(|a| matches!(a,
            AlterAction::ValidateConstraint { name } if cx.file.not_valid_added.iter().any(|(t, n, s)|
                *t == relation.key() && n == name && *s == cx.file.segment))))
    };
    cx.class
        .effects
        .iter()
        .filter(|e| !e.new_relation && (e.rewrite || e.scan) && !validates_own(&e.relation))
        .filter(|e| {
            let key = e.relation.key();
            e.lock < LockMode::AccessExclusive || cx.file.held_now().any(|h| h.table != key)
        })
        .map(|e| {
            if e.rewrite {
                format!("rewrites {}", e.relation)
            } else {
                format!("scans {}", e.relation)
            }
        })
        .next()
}

#[cfg(test)]
mod tests {
    use crate::lint::{LintOptions, Severity, lint_sql};

    const SETUP: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text);\nCREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);";

    fn found(sql: &str) -> Vec<(Severity, usize)> {
        lint_sql(SETUP, sql, &LintOptions::default())
            .findings
            .iter()
            .filter(|f| f.rule == "lock-held-across-statements")
            .map(|f| (f.severity, f.start.line))
            .collect()
    }

    #[test]
    fn slow_work_after_the_lock_is_an_error_on_the_slow_statement() {
        assert_eq!(
            found("ALTER TABLE users ADD COLUMN nick text;\nUPDATE users SET nick = name;"),
            [(Severity::Error, 2)]
        );
        assert_eq!(
            found(
                "ALTER TABLE users ADD COLUMN nick text;\nCREATE INDEX orders_user_idx ON orders (user_id);"
            ),
            [(Severity::Error, 2)]
        );
    }

    #[test]
    fn a_second_table_locked_after_the_first_is_a_warning() {
        assert_eq!(
            found(
                "ALTER TABLE users ADD COLUMN nick text;\nALTER TABLE orders ADD COLUMN note text;"
            ),
            [(Severity::Warning, 2)]
        );
    }

    #[test]
    fn a_commit_between_or_quick_work_on_the_same_table_is_fine() {
        assert!(
            found(
                "ALTER TABLE users ADD COLUMN nick text;\nCOMMIT;\nUPDATE users SET nick = name;"
            )
            .is_empty()
        );
        assert!(found("ALTER TABLE users ADD COLUMN nick text;\nALTER TABLE users ADD COLUMN note text;\nUPDATE users SET nick = 'x' WHERE id = 1;").is_empty());
        // Its own rewrite is reported by its own rule.
        assert!(found("ALTER TABLE users ADD COLUMN nick text;\nALTER TABLE users ALTER COLUMN id TYPE int;").is_empty());
    }
}
