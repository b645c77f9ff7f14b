//! DROP VIEW / DROP MATERIALIZED VIEW of an existing view that the file does not create again.

use super::prelude::*;
use crate::parse::{Name, ObjectKind};

pub static RULE: Rule = Rule {
    name: "drop-view",
    severity: Severity::Error,
    summary: "DROP VIEW or DROP MATERIALIZED VIEW of an existing view the migration does not create again",
    why: "The running application may still read the view: its queries fail from the moment \
          the drop commits. A materialized view's data is gone too, and building it again \
          scans everything it reads.",
    help: "deploy code that no longer reads the view first, then drop it; to change a view, \
           drop and create it again in the same transaction (or use CREATE OR REPLACE VIEW when \
           only columns are added). When the code already ignores it, say so: \
           `-- zdm:ignore drop-view -- unused since <release>`",
    setup: "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric);\nCREATE VIEW order_totals AS SELECT id, total FROM orders;",
    bad: "DROP VIEW order_totals;",
    good: "BEGIN;\nDROP VIEW order_totals;\nCREATE VIEW order_totals AS SELECT id, total, total * 1.2 AS gross FROM orders;\nCOMMIT;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Change::Drop {
        kind: kind @ (ObjectKind::View | ObjectKind::MaterializedView),
        names,
        cascade,
    } = cx.change
    else {
        return vec![];
    };
    names
        .iter()
        .filter(|n| cx.existing(n) && !created_later(cx, n))
        .flat_map(|n| {
            Violation::new(format!(
                "dropping {kind} {n}{} breaks the running application if it still reads it",
                if *cascade {
                    " with CASCADE (and every view built on it)"
                } else {
                    ""
                }
            ))
        })
        .collect()
}

/// Whether a later statement of the file creates a view of that name: the drop is then a
/// replacement, not a removal.
fn created_later(cx: &Cx, name: &Name) -> bool {
    cx.later.iter().any(
        |c| matches!(c, Change::CreateView { name: created, .. } if created.key() == name.key()),
    )
}

#[cfg(test)]
mod tests {
    use crate::lint::{LintOptions, lint_sql};

    const SETUP: &str = "CREATE TABLE t (id int);\nCREATE VIEW v AS SELECT id FROM t;\nCREATE MATERIALIZED VIEW mv AS SELECT id FROM t;";

    fn flagged(sql: &str) -> usize {
        lint_sql(SETUP, sql, &LintOptions::default())
            .findings
            .iter()
            .filter(|f| f.rule == "drop-view")
            .count()
    }

    #[test]
    fn a_view_dropped_for_good_is_flagged_and_a_replaced_one_is_not() {
        assert_eq!(flagged("DROP VIEW v;"), 1);
        assert_eq!(flagged("DROP MATERIALIZED VIEW IF EXISTS mv;"), 1);
        assert_eq!(
            flagged("DROP VIEW v;\nCREATE VIEW v AS SELECT id, id + 1 AS n FROM t;"),
            0
        );
        assert_eq!(
            flagged("CREATE VIEW w AS SELECT 1;\nDROP VIEW w;"),
            0,
            "made in this file"
        );
    }
}
