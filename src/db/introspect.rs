//! Filling the planner's [`Catalog`] from a live database: tables and their columns (type,
//! nullability, default, identity), constraints (primary key, unique, check, foreign key, with
//! whether they are validated) and indexes. When `zdm plan --database-url` is given, this
//! catalog replaces the one replayed from earlier migrations.

use tokio_postgres::Client;

use super::{DbError, message};
use crate::catalog::{Catalog, Column, Constraint, Index};
use crate::parse::{ConstraintDefinition, ConstraintKind, IndexDefinition, Name, SqlType};

/// Schemas that are PostgreSQL's own, never the application's.
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

fn name(schema: String, relation: String) -> Name {
    Name::new(Some(&schema), &relation).key()
}

/// Reads the schema of the database `client` is connected to.
pub async fn introspect(client: &Client, target: &str) -> Result<Catalog, DbError> {
    let query = |e: tokio_postgres::Error| DbError::Query {
        target: target.to_owned(),
        message: message(&e),
    };
    let mut catalog = Catalog::default();

    let columns = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, c.relkind = 'p', a.attname::text,
                        format_type(a.atttypid, a.atttypmod), a.attnotnull,
                        pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '',
                        pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname)
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE c.relkind IN ('r', 'p') AND {SYSTEM_SCHEMAS}
                 ORDER BY n.nspname, c.relname, a.attnum"
            ),
            &[],
        )
        .await
        .map_err(query)?;
    for row in columns {
        let table = name(row.get(0), row.get(1));
        let default: Option<String> = row.get(6);
        let identity: bool = row.get(7);
        let t = catalog.table_entry(&table);
        t.partitioned = row.get(2);
        t.complete = true;
        t.columns.push(Column {
            name: row.get(3),
            ty: SqlType::parse(&row.get::<_, String>(4)),
            not_null: row.get(5),
            has_default: default.is_some() || identity,
            default,
            identity,
            owned_sequence: row
                .get::<_, Option<String>>(8)
                .and_then(|s| Name::parse_display(&s))
                .map(|s| s.key()),
        });
    }

    let constraints = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, con.conname::text, con.contype::text,
                        con.convalidated,
                        ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
                              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
                              ORDER BY k.i),
                        fn.nspname::text, fc.relname::text, pg_get_constraintdef(con.oid)
                 FROM pg_constraint con
                 JOIN pg_class c ON c.oid = con.conrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_class fc ON fc.oid = con.confrelid
                 LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
                 WHERE {SYSTEM_SCHEMAS}
                 ORDER BY n.nspname, c.relname, con.conname"
            ),
            &[],
        )
        .await
        .map_err(query)?;
    for row in constraints {
        let table = name(row.get(0), row.get(1));
        let columns: Vec<String> = row.get(5);
        let definition: String = row.get(8);
        let kind = match row.get::<_, String>(3).as_str() {
            "p" => ConstraintKind::PrimaryKey {
                columns,
                using_index: None,
            },
            "u" => ConstraintKind::Unique {
                columns,
                using_index: None,
            },
            "f" => ConstraintKind::ForeignKey {
                columns,
                references: name(row.get(6), row.get(7)),
            },
            "c" => ConstraintKind::Check {
                proves_not_null: proves_not_null(&definition),
            },
            "n" => ConstraintKind::NotNull {
                column: columns.into_iter().next().unwrap_or_default(),
            },
            "x" => ConstraintKind::Exclude,
            _ => continue,
        };
        catalog.table_entry(&table).constraints.push(Constraint {
            name: Some(row.get(2)),
            kind,
            valid: row.get(4),
            definition: ConstraintDefinition::new(&definition),
        });
    }

    let indexes = client
        .query(
            &format!(
                "SELECT n.nspname::text, i.relname::text, t.relname::text, ix.indisunique,
                        ARRAY(SELECT a.attname::text FROM unnest(ix.indkey) WITH ORDINALITY k(num, o)
                              JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.num
                              ORDER BY k.o),
                        ix.indexprs IS NOT NULL OR ix.indpred IS NOT NULL,
                        pg_get_indexdef(ix.indexrelid)
                 FROM pg_index ix
                 JOIN pg_class i ON i.oid = ix.indexrelid
                 JOIN pg_class t ON t.oid = ix.indrelid
                 JOIN pg_namespace n ON n.oid = i.relnamespace
                 WHERE {SYSTEM_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(query)?;
    for row in indexes {
        let schema: String = row.get(0);
        let index = name(schema.clone(), row.get(1));
        // Expression and partial indexes cannot be rebuilt from a column list.
        let partial_or_expression: bool = row.get(5);
        catalog.add_index(
            index,
            Index {
                table: name(schema, row.get(2)),
                columns: if partial_or_expression {
                    Vec::new()
                } else {
                    row.get(4)
                },
                unique: row.get(3),
                definition: IndexDefinition::new(row.get(6)),
            },
        );
    }
    // Which columns each view reads, from the dependencies of its rewrite rule.
    let views = client
        .query(
            &format!(
                "SELECT DISTINCT vn.nspname::text, v.relname::text, n.nspname::text, t.relname::text, a.attname::text
                 FROM pg_depend d
                 JOIN pg_rewrite r ON r.oid = d.objid
                 JOIN pg_class v ON v.oid = r.ev_class
                 JOIN pg_namespace vn ON vn.oid = v.relnamespace
                 JOIN pg_class t ON t.oid = d.refobjid
                 JOIN pg_namespace n ON n.oid = t.relnamespace
                 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid AND d.refobjsubid > 0
                 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND v.oid <> t.oid AND {SYSTEM_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(query)?;
    for row in views {
        catalog.add_view_source(
            name(row.get(0), row.get(1)),
            crate::catalog::ViewSource {
                table: name(row.get(2), row.get(3)),
                column: row.get(4),
            },
        );
    }
    Ok(catalog)
}

/// `CHECK ((email IS NOT NULL))` → `email`.
fn proves_not_null(definition: &str) -> Option<String> {
    let inner = definition
        .strip_prefix("CHECK (")?
        .strip_suffix(')')?
        .trim_matches(|c| c == '(' || c == ')');
    let column = inner.strip_suffix(" IS NOT NULL")?;
    Some(
        match column.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => column.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::proves_not_null;

    #[test]
    fn reads_not_null_checks() {
        assert_eq!(
            proves_not_null("CHECK ((email IS NOT NULL))").as_deref(),
            Some("email")
        );
        assert_eq!(
            proves_not_null("CHECK ((\"E-mail\" IS NOT NULL)) NOT VALID"),
            None
        );
        assert_eq!(
            proves_not_null("CHECK ((\"E-mail\" IS NOT NULL))").as_deref(),
            Some("E-mail")
        );
        assert_eq!(proves_not_null("CHECK ((amount > 0))"), None);
    }
}
