//! PRIMARY KEY USING INDEX over nullable columns.

use super::prelude::*;

pub static RULE: Rule = Rule {
    name: "primary-key-nullable",
    severity: Severity::Error,
    summary: "ADD PRIMARY KEY USING INDEX over columns that are not yet NOT NULL",
    why: "A primary key implies NOT NULL. When an index column is nullable, ADD PRIMARY KEY \
          USING INDEX runs an implicit SET NOT NULL, which scans the whole table under the \
          ACCESS EXCLUSIVE lock: all reads and writes stop for the scan.",
    help: "make every key column NOT NULL first, through CHECK (col IS NOT NULL) NOT VALID, \
           VALIDATE, SET NOT NULL (see set-not-null-scan), then ADD PRIMARY KEY USING INDEX",
    setup: "CREATE TABLE users (id bigint, email text);\nCREATE UNIQUE INDEX CONCURRENTLY users_pkey_idx ON users (id);",
    bad: "ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_pkey_idx;",
    good: "SET lock_timeout = '2s';\n\
           ALTER TABLE users ADD CONSTRAINT users_id_not_null CHECK (id IS NOT NULL) NOT VALID;\n\
           COMMIT;\n\
           ALTER TABLE users VALIDATE CONSTRAINT users_id_not_null;\n\
           COMMIT;\n\
           ALTER TABLE users ALTER COLUMN id SET NOT NULL;\n\
           ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_pkey_idx;",
    check,
};

fn check(cx: &Cx) -> Vec<Violation> {
    let Some((table, actions)) = cx.existing_table_actions() else {
        return vec![];
    };
    actions
        .iter()
        .flat_map(|a| {
            let AlterAction::AddConstraint(spec) = a else {
                return vec![];
            };
            let ConstraintKind::PrimaryKey {
                using_index: Some(index),
                ..
            } = &spec.kind
            else {
                return vec![];
            };
            let known_table = cx.catalog.table(table);
            let Some(idx) = cx.catalog.index_in_schema_of(table, index).filter(|i| !i.columns.is_empty()) else {
                return Violation::uncertain(format!(
                    "zdm does not know the columns of index {index}; if any is nullable, ADD PRIMARY KEY USING INDEX scans {table} for NULLs under an ACCESS EXCLUSIVE lock"
                ));
            };
            let column = |c: &str| known_table.and_then(|t| t.column(c));
            let nullable: Vec<&str> = idx
                .columns
                .iter()
                .filter(|c| {
                    column(c).is_some_and(|col| !col.not_null && !t_proves(known_table, c, cx.pg_version))
                })
                .map(String::as_str)
                .collect();
            let unknown: Vec<&str> = idx.columns.iter().filter(|c| column(c).is_none()).map(String::as_str).collect();
            if nullable.is_empty() && unknown.is_empty() {
                vec![]
            } else if nullable.is_empty() {
                Violation::uncertain(format!(
                    "zdm does not know whether {} of index {index} {} NOT NULL; if not, ADD PRIMARY KEY USING INDEX scans {table} for NULLs under an ACCESS EXCLUSIVE lock",
                    unknown.join(", "),
                    if unknown.len() == 1 { "is" } else { "are" }
                ))
            } else {
                Violation::new(format!(
                    "{} of index {index} {} not NOT NULL, so ADD PRIMARY KEY USING INDEX scans {table} for NULLs under an ACCESS EXCLUSIVE lock that blocks all reads and writes",
                    nullable.join(", "),
                    if nullable.len() == 1 { "is" } else { "are" }
                ))
            }
        })
        .collect()
}

fn t_proves(table: Option<&crate::catalog::Table>, column: &str, pg_version: u32) -> bool {
    pg_version >= 12 && table.is_some_and(|t| t.has_valid_not_null_proof(column))
}
