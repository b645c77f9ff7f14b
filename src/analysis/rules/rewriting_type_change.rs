//! ALTER COLUMN … TYPE that rewrites the table.

use super::prelude::*;
use crate::classify::{TypeChange, type_change};

pub static RULE: Rule = Rule {
    name: "rewriting-type-change",
    severity: Severity::Error,
    summary: "ALTER COLUMN … TYPE that is not binary coercible (rewrites the table)",
    why: "Changing a column's type rewrites every row and rebuilds every index under an ACCESS \
          EXCLUSIVE lock: all reads and writes stop for the rewrite, and the running \
          application may not accept the new type. Only binary-coercible changes (varchar \
          widening or to text, numeric precision up, cidr to inet, …) are catalog-only.",
    help: "add a shadow column of the new type, keep it in sync with a trigger, backfill in \
           batches, build its indexes CONCURRENTLY, then swap the columns in one short \
           transaction once the new application is deployed; zdm plan runs this as expand, \
           backfill and contract",
    setup: "CREATE TABLE events (id int PRIMARY KEY, name varchar(50));",
    bad: "ALTER TABLE events ALTER COLUMN id TYPE bigint;",
    good: "SET lock_timeout = '2s';\nALTER TABLE events ALTER COLUMN name TYPE varchar(100);",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| {
            let AlterAction::AlterColumnType { column, ty, using } = a else {
                return vec![];
            };
            let old = cx.catalog.table(table).and_then(|t| t.column(column));
            match type_change(old.map(|c| &c.ty), ty, using.as_deref(), column) {
                TypeChange::InPlace => vec![],
                TypeChange::Rewrite { reason } => Violation::new(format!(
                    "changing {table}.{column} to {ty} rewrites the table and its indexes under an ACCESS EXCLUSIVE lock, blocking all reads and writes: {reason}"
                )),
                TypeChange::UnknownOldType => {
                    let message = format!(
                        "zdm does not know the current type of {table}.{column} (no earlier migration in this directory declares it), so it cannot tell whether changing it to {ty} is binary coercible; unless it is, the table and its indexes are rewritten under an ACCESS EXCLUSIVE lock"
                    );
                    // Unbounded targets (text, varchar, numeric) are the usual widenings; a
                    // bounded one may narrow, and int → bigint never is in place.
                    let unbounded = ty.modifiers.is_empty()
                        && matches!(ty.name.as_str(), "varchar" | "text" | "citext" | "numeric" | "varbit");
                    if unbounded && !ty.array {
                        Violation::uncertain(message)
                    } else {
                        Violation::new(message)
                    }
                }
            }
        })
        .collect()
}
