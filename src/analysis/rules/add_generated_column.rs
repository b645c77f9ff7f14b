//! Stored generated and identity columns added to existing tables.

use super::prelude::*;
use crate::parse::Generated;

pub static RULE: Rule = Rule {
    name: "add-generated-column",
    severity: Severity::Error,
    summary: "a stored generated or identity column added to an existing table",
    why: "A GENERATED … STORED column is computed, and an identity column filled from its \
          sequence, for every existing row: PostgreSQL rewrites the table and its indexes under \
          an ACCESS EXCLUSIVE lock, blocking all reads and writes.",
    help: "add a plain nullable column, fill new rows with a trigger (or a default) and existing \
           rows with a batched backfill; on PostgreSQL 18 a virtual generated column (no \
           STORED) needs no rewrite. For identity, add the column, backfill, then ALTER COLUMN \
           … ADD GENERATED … AS IDENTITY",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, first text, last text);",
    bad: "ALTER TABLE users ADD COLUMN full_name text GENERATED ALWAYS AS (first || ' ' || last) STORED;",
    good: "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN full_name text;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| match a {
            AlterAction::AddColumn(col) => match col.generated {
                Some(Generated::Stored) => Violation::new(format!(
                    "ADD COLUMN {} GENERATED … STORED computes the value for every row, rewriting {table} under an ACCESS EXCLUSIVE lock that blocks all reads and writes",
                    col.name
                )),
                Some(Generated::Identity) => Violation::new(format!(
                    "ADD COLUMN {} … AS IDENTITY fills every row from a sequence, rewriting {table} under an ACCESS EXCLUSIVE lock that blocks all reads and writes",
                    col.name
                )),
                _ => vec![],
            },
            _ => vec![],
        })
        .collect()
}
