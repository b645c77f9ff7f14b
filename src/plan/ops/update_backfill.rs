//! `UPDATE t SET … [WHERE …]` data migrations run as a batched backfill.
//!
//! | phase | step | lock |
//! |---|---|---|
//! | backfill | keyset batches over the primary key, up to its maximum at start, each its own short transaction updating only the rows of the batch that still differ | ROW EXCLUSIVE; row locks on one batch at a time |
//!
//! Several UPDATEs of one table with the same condition share one pass.

use super::{Assignment, Backfill, OpCx, OpPlan, Operation, StatementCx, StatementPlan};
use crate::catalog::Catalog;
use crate::parse::{Change, ConstraintKind, DmlKind, Name};
use crate::plan::text::{UpdateParts, update_parts};

pub struct UpdateBackfill;

impl Operation for UpdateBackfill {
    fn kind(&self) -> &'static str {
        "backfill"
    }

    fn plan_statement(&self, cx: &StatementCx) -> Option<Result<StatementPlan, String>> {
        let Change::Dml {
            kind: DmlKind::Update,
            table,
            ..
        } = cx.change
        else {
            return None;
        };
        if (cx.is_new)(table) {
            return None;
        }
        Some(plan(&cx.on(table)).map(StatementPlan::holding_nothing))
    }
}

pub fn plan(cx: &OpCx) -> Result<OpPlan, String> {
    let UpdateParts {
        set,
        filter,
        alias,
        from,
    } = update_parts(cx.stmt).ok_or(
        "zdm batches `UPDATE t [AS a] SET … [FROM …] [WHERE …]`; WITH, RETURNING, WHERE CURRENT OF and `(a, b) = …` are not batched: rewrite it, or mark it `-- zdm:allow-locking -- reason`",
    )?;
    let key = batch_key(cx.catalog, cx.table)?;
    let mut plan = OpPlan::nothing_to_undo_at_contract();
    if key.is_empty() {
        // Unlike a shadow copy, an UPDATE has no trigger to reach the rows it misses, and it
        // may not be run twice to find them.
        plan.notes.push(format!(
            "{} has no primary or unique NOT NULL key, so the backfill walks it by ctid: a row the old application updates while the backfill runs may move behind it and be missed; add a primary key first, or run the UPDATE while nothing else writes the table",
            cx.table
        ));
    }
    // `SET n = n * 100` is not idempotent: batches already done would be done again if the
    // whole backfill were rerun from the start.
    for (column, expr) in &set {
        let reads_itself = crate::source::split_statements(expr)
            .statements
            .iter()
            .flat_map(|s| &s.tokens)
            .any(|t| matches!(&t.token, sqlparser::tokenizer::Token::Word(w) if w.value.to_lowercase() == *column || w.value == *column));
        if reads_itself {
            plan.notes.push(format!(
                "the backfill of {}.{column} reads the value it replaces, so it must not be rerun from the start after a partial run: resume it where it stopped",
                cx.table
            ));
        }
    }
    plan.push_backfill(Backfill {
        table: cx.table.clone(),
        key,
        set: set
            .into_iter()
            .map(|(column, expr)| Assignment { column, expr })
            .collect(),
        filter,
        alias,
        from,
        after_step: 0,
        shadow_copy: false,
    });
    plan.notes.push(format!(
        "the backfill of {} is not undone by down; rows the old application writes during the rollout are not updated by it",
        cx.table
    ));
    Ok(plan)
}

/// The key a backfill's batches walk, or the message saying none is known.
/// A table zdm knows to have no such key is walked by `ctid` (an empty key); one it does not
/// know at all is refused, since its key may exist.
pub fn batch_key(catalog: &Catalog, table: &Name) -> Result<Vec<String>, String> {
    if let Some(key) = primary_key(catalog, table) {
        return Ok(key);
    }
    if catalog.table(table).is_some_and(|t| t.complete) {
        return Ok(Vec::new());
    }
    None.ok_or_else(|| {
        format!(
            "zdm does not know a primary key (or a unique key over NOT NULL columns) of {table}, which the backfill batches walk: declare one in an earlier migration, or plan with --database-url"
        )
    })
}

/// The key the batches walk: the primary key, else a unique key whose columns are all NOT
/// NULL (a UNIQUE constraint or a unique index on plain columns), if one is known.
pub fn primary_key(catalog: &Catalog, table: &Name) -> Option<Vec<String>> {
    let t = catalog.table(table)?;
    let not_null = |cols: &[String]| {
        !cols.is_empty()
            && cols
                .iter()
                .all(|c| t.column(c).is_some_and(|col| col.not_null))
    };
    let constraint = |primary: bool| {
        t.constraints.iter().find_map(|c| match &c.kind {
            ConstraintKind::PrimaryKey { columns, .. } if primary && !columns.is_empty() => {
                Some(columns.clone())
            }
            ConstraintKind::Unique { columns, .. } if !primary && not_null(columns) => {
                Some(columns.clone())
            }
            _ => None,
        })
    };
    constraint(true).or_else(|| constraint(false)).or_else(|| {
        catalog
            .indexes_of(table)
            .into_iter()
            .find(|(_, i)| i.unique && not_null(&i.columns))
            .map(|(_, i)| i.columns.clone())
    })
}

#[cfg(test)]
mod tests {
    use crate::plan::testing::{human, plan};

    #[test]
    fn independent_updates_share_one_pass() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, plan text, \"Score\" int, bio text);";
        let sql = "UPDATE users SET plan = 'free' WHERE bio IS NULL;\nUPDATE users SET \"Score\" = 0 WHERE bio IS NULL;";
        let p = plan(setup, sql, 14).unwrap();
        assert_eq!(p.backfill.len(), 1);
        assert_eq!(p.backfill[0].set.len(), 2);
        insta::assert_snapshot!(crate::plan::render::sql_files(&p)[0].1);
    }

    #[test]
    fn notes_appear_once_per_table() {
        let setup = "CREATE TABLE users (id int PRIMARY KEY, plan text, bio text);";
        let sql = "UPDATE users SET plan = 'a' WHERE id < 10;\nUPDATE users SET plan = 'b' WHERE id >= 10;\nUPDATE users SET bio = plan;";
        let p = plan(setup, sql, 14).unwrap();
        assert_eq!(p.backfill.len(), 3);
        let about_users = p
            .notes
            .iter()
            .filter(|n| n.contains("backfill of users is not undone"))
            .count();
        assert_eq!(about_users, 1, "{:?}", p.notes);
    }

    #[test]
    fn updates_that_see_each_other_run_in_order() {
        // As written, the second UPDATE matches no row: the first filled every NULL plan.
        let setup = "CREATE TABLE users (id int PRIMARY KEY, plan text, \"Score\" int);";
        let sql = "UPDATE users SET plan = 'free' WHERE plan IS NULL;\nUPDATE users SET \"Score\" = 0 WHERE plan IS NULL;";
        let p = plan(setup, sql, 14).unwrap();
        assert_eq!(p.backfill.len(), 2);
        // The UPDATE runs before the rename's steps, as written; the rename's copy after them.
        let sql = "UPDATE users SET plan = 'free' WHERE plan IS NULL;\nALTER TABLE users RENAME COLUMN \"Score\" TO score;";
        let p = plan(setup, sql, 14).unwrap();
        assert_eq!(p.backfill.len(), 2, "{:?}", p.backfill);
        assert_eq!(p.backfill[0].after_step, 0);
        assert_eq!(p.backfill[1].after_step, p.expand.len());
    }

    #[test]
    fn a_unique_not_null_key_serves_when_there_is_no_primary_key() {
        let setup =
            "CREATE TABLE t (code text NOT NULL, a int); CREATE UNIQUE INDEX t_code ON t (code);";
        let p = plan(setup, "UPDATE t SET a = 1;", 14).unwrap();
        assert_eq!(p.backfill[0].key, vec!["code"]);
    }

    #[test]
    fn needs_a_known_key_and_a_plain_update() {
        // A table whose columns zdm knows and that has no key: batches walk ctid ranges.
        let p = plan("CREATE TABLE t (a int);", "UPDATE t SET a = 1;", 14).unwrap();
        assert!(p.backfill[0].key.is_empty());
        assert!(
            human("CREATE TABLE t (a int);", "UPDATE t SET a = 1;").contains("ctid page ranges")
        );
        // A table only seen in ALTERs may have a key zdm does not know of.
        assert!(
            human("ALTER TABLE t ADD COLUMN b int;", "UPDATE t SET a = 1;")
                .contains("NOT NULL columns) of t")
        );
        assert!(
            human(
                "CREATE TABLE t (id int PRIMARY KEY, a int);",
                "UPDATE t SET a = 1 RETURNING id;"
            )
            .contains("RETURNING")
        );
    }
}
