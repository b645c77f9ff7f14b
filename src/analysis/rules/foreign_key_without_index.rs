//! A foreign key whose referencing columns no index leads with.

use super::prelude::*;
use crate::parse::{ColumnSpec, ConstraintSpec, Name};

pub static RULE: Rule = Rule {
    name: "foreign-key-without-index",
    severity: Severity::Warning,
    summary: "FOREIGN KEY whose referencing columns have no index",
    why: "PostgreSQL indexes the referenced key, not the referencing columns. Each DELETE of a \
          referenced row, or UPDATE of its key, looks for referencing rows: without an index \
          that is a scan of the whole referencing table, under the row lock of the parent, and \
          ON DELETE CASCADE makes it one scan per deleted row.",
    help: "create an index that starts with the referencing columns (CREATE INDEX CONCURRENTLY \
           on an existing table), in this migration or before it",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY);",
    bad: "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));",
    good: "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));\nCREATE INDEX orders_user_id_idx ON orders (user_id);",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let (table, foreign_keys, own_keys) = match cx.change {
        Change::CreateTable {
            name,
            columns,
            constraints,
            ..
        } => (
            name,
            created_foreign_keys(columns, constraints),
            created_keys(columns, constraints),
        ),
        Change::AlterTable { table, actions } => {
            let mut found = Vec::new();
            for action in actions {
                match action {
                    AlterAction::AddConstraint(ConstraintSpec {
                        kind:
                            ConstraintKind::ForeignKey {
                                columns,
                                references,
                            },
                        ..
                    }) => found.push((columns.clone(), references.clone())),
                    AlterAction::AddColumn(c) => {
                        found.extend(c.references.clone().map(|r| (vec![c.name.clone()], r)));
                    }
                    _ => {}
                }
            }
            (table, found, Vec::new())
        }
        _ => return vec![],
    };
    let known = cx.catalog.table(table).is_some_and(|t| t.complete) || cx.file.is_new(table);
    foreign_keys
        .into_iter()
        .filter(|(columns, _)| !indexed(cx, table, columns, &own_keys))
        .flat_map(|(columns, references)| {
            let message = format!(
                "no index on {table} starts with ({}), the columns of its foreign key to {references}: each DELETE on {references}, or UPDATE of its key, scans {table} for referencing rows",
                columns.join(", ")
            );
            if known {
                Violation::new(message)
            } else {
                Violation::uncertain(message)
            }
        })
        .collect()
}

/// The foreign keys a CREATE TABLE declares, inline or as table constraints.
fn created_foreign_keys(
    columns: &[ColumnSpec],
    constraints: &[ConstraintSpec],
) -> Vec<(Vec<String>, Name)> {
    let mut found: Vec<(Vec<String>, Name)> = Vec::new();
    let specs = constraints
        .iter()
        .chain(columns.iter().flat_map(|c| &c.inline));
    for spec in specs {
        if let ConstraintKind::ForeignKey {
            columns,
            references,
        } = &spec.kind
        {
            found.push((columns.clone(), references.clone()));
        }
    }
    for c in columns {
        if let Some(r) = &c.references
            && !found
                .iter()
                .any(|(cols, _)| cols == std::slice::from_ref(&c.name))
        {
            found.push((vec![c.name.clone()], r.clone()));
        }
    }
    found
}

/// The primary key and UNIQUE columns a CREATE TABLE declares: each has an index.
fn created_keys(columns: &[ColumnSpec], constraints: &[ConstraintSpec]) -> Vec<Vec<String>> {
    let mut keys: Vec<Vec<String>> = columns
        .iter()
        .filter(|c| c.primary_key || c.unique)
        .map(|c| vec![c.name.clone()])
        .collect();
    for spec in constraints {
        if let ConstraintKind::PrimaryKey { columns, .. } | ConstraintKind::Unique { columns, .. } =
            &spec.kind
        {
            keys.push(columns.clone());
        }
    }
    keys
}

/// Whether an index on the table starts with the columns (in any order): one the table has,
/// one its CREATE TABLE declares, or one a later statement of the file creates.
fn indexed(cx: &Cx, table: &Name, columns: &[String], own_keys: &[Vec<String>]) -> bool {
    let leads = |index: &[String]| {
        index.len() >= columns.len() && columns.iter().all(|c| index[..columns.len()].contains(c))
    };
    own_keys.iter().any(|k| leads(k))
        || cx.catalog.indexes_on(table).any(|i| leads(&i.columns))
        || cx
            .catalog
            .keys(table)
            .is_some_and(|keys| keys.iter().any(|k| leads(k)))
        || cx.later.iter().any(|c| {
            matches!(c, Change::CreateIndex { table: t, columns: index, .. }
                if t.key() == table.key() && leads(index))
        })
}

#[cfg(test)]
mod tests {
    use crate::lint::{LintOptions, lint_sql};

    const SETUP: &str = "CREATE TABLE users (id bigint PRIMARY KEY);\nCREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, org bigint);\nCREATE INDEX orders_org_user ON orders (org, user_id);";

    fn warned(sql: &str) -> usize {
        lint_sql(SETUP, sql, &LintOptions::default())
            .findings
            .iter()
            .filter(|f| f.rule == "foreign-key-without-index")
            .count()
    }

    #[test]
    fn an_index_leading_with_the_columns_anywhere_is_enough() {
        // Created later in the file.
        assert_eq!(
            warned(
                "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders);\nCREATE INDEX items_order ON items (order_id, id);"
            ),
            0
        );
        // The key itself.
        assert_eq!(
            warned("CREATE TABLE profiles (user_id bigint PRIMARY KEY REFERENCES users);"),
            0
        );
        // An existing index, columns in another order.
        assert_eq!(
            warned(
                "ALTER TABLE orders ADD CONSTRAINT orders_fk FOREIGN KEY (user_id, org) REFERENCES users (id, id) NOT VALID;"
            ),
            0
        );
    }

    #[test]
    fn an_index_that_does_not_lead_with_them_is_not() {
        assert_eq!(
            warned(
                "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;"
            ),
            1
        );
        assert_eq!(
            warned(
                "CREATE TABLE items (id bigint PRIMARY KEY, order_id bigint REFERENCES orders, CONSTRAINT items_o FOREIGN KEY (id) REFERENCES users);"
            ),
            1
        );
    }
}
