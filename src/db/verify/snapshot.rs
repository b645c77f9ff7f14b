//! What `zdm verify` compares: a database's schema (columns, constraints, indexes, views,
//! sequences, triggers) and every table's rows, leaving out zdm's own `zdm` schema and its
//! `_zdm_` objects.
//!
//! Rows are compared as `to_jsonb(row)`: keyed by column name, so a column that moved to the
//! end of its table compares equal, and sorted, so physical order does not matter. Values that
//! differ between two runs by nature (a column whose default is volatile or reads the clock, a
//! date of today) are masked: only whether they are NULL is compared.

use std::collections::BTreeMap;

use tokio_postgres::Client;

/// Schemas that are not the application's.
const SKIP_SCHEMAS: &str =
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdm') AND n.nspname NOT LIKE 'pg\\_%'";

/// One database's state, as lines of text grouped by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// kind ("column", "constraint", …) → sorted lines.
    pub schema: BTreeMap<&'static str, Vec<String>>,
    /// table → sorted rows.
    pub rows: BTreeMap<String, Vec<String>>,
    /// table → its columns, for the application reads and writes tried between phases.
    pub columns: BTreeMap<String, Vec<String>>,
}

/// The first difference between two snapshots, said in words, or `None` when they are equal.
pub fn first_difference(written: &Snapshot, zdm: &Snapshot) -> Option<String> {
    for (kind, lines) in &written.schema {
        let theirs = zdm.schema.get(kind).cloned().unwrap_or_default();
        if let Some(line) = lines.iter().find(|l| !theirs.contains(l)) {
            return Some(format!(
                "{kind} {line}: present as written, missing or different after expand and contract"
            ));
        }
        if let Some(line) = theirs.iter().find(|l| !lines.contains(l)) {
            return Some(format!(
                "{kind} {line}: present after expand and contract, not as written"
            ));
        }
    }
    for (table, rows) in &written.rows {
        let theirs = zdm.rows.get(table).cloned().unwrap_or_default();
        if rows != &theirs {
            let missing = rows.iter().find(|r| !theirs.contains(r));
            let extra = theirs.iter().find(|r| !rows.contains(r));
            return Some(format!(
                "rows of {table} differ ({} as written, {} after expand and contract){}{}",
                rows.len(),
                theirs.len(),
                missing.map_or(String::new(), |r| format!("; as written: {r}")),
                extra.map_or(String::new(), |r| format!("; zdm: {r}")),
            ));
        }
    }
    None
}

/// Masks, in `written` and `zdm`, the columns whose values differ between two runs of the
/// migration as written (`written` and `again`): what the migration computes with random() or
/// a sequence shared with other tables is compared only for being NULL or not.
pub fn mask_disagreements(written: &mut Snapshot, zdm: &mut Snapshot, again: &Snapshot) {
    for (table, rows) in written.rows.iter_mut() {
        let Some(other) = again.rows.get(table) else {
            continue;
        };
        if rows == other {
            continue;
        }
        let values = |rows: &[String]| {
            let mut by_column: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for row in rows {
                if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(row) {
                    for (k, v) in fields {
                        by_column.entry(k).or_default().push(v.to_string());
                    }
                }
            }
            for v in by_column.values_mut() {
                v.sort();
            }
            by_column
        };
        let (mine, theirs) = (values(rows), values(other));
        let varying: Vec<String> = mine
            .iter()
            .filter(|(k, v)| theirs.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        let remask = |rows: &mut Vec<String>| {
            for row in rows.iter_mut() {
                *row = mask(row, &varying, &[]);
            }
            rows.sort();
        };
        remask(rows);
        if let Some(z) = zdm.rows.get_mut(table) {
            remask(z);
        }
    }
}

/// Reads the snapshot of the database `client` is connected to. `today` are the dates (as
/// `YYYY-MM-DD`) of the run, whose values are masked.
pub async fn take(client: &Client, today: &[String]) -> Result<Snapshot, tokio_postgres::Error> {
    let mut schema = BTreeMap::new();
    let lines = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        let mut out: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        out.sort();
        out
    };
    schema.insert(
        "column",
        lines(
            client
                .query(
                    &format!(
                        "SELECT format('%I.%I.%I %s%s%s%s', n.nspname, c.relname, a.attname,
                                format_type(a.atttypid, a.atttypmod),
                                CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                                coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''),
                                CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                                     WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END)
                         FROM pg_class c
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {SKIP_SCHEMAS}
                           AND c.relname NOT LIKE '\\_zdm\\_%' AND a.attname NOT LIKE '\\_zdm\\_%'"
                    ),
                    &[],
                )
                .await?,
        ),
    );
    schema.insert(
        "constraint",
        lines(
            client
                .query(
                    &format!(
                        "SELECT format('%I.%I %I %s', n.nspname, c.relname, k.conname,
                                pg_get_constraintdef(k.oid))
                         FROM pg_constraint k
                         JOIN pg_class c ON c.oid = k.conrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE {SKIP_SCHEMAS} AND k.conname NOT LIKE '\\_zdm\\_%'"
                    ),
                    &[],
                )
                .await?,
        ),
    );
    schema.insert(
        "index",
        lines(
            client
                .query(
                    &format!(
                        "SELECT pg_get_indexdef(i.indexrelid)
                                || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END
                         FROM pg_index i
                         JOIN pg_class x ON x.oid = i.indexrelid
                         JOIN pg_namespace n ON n.oid = x.relnamespace
                         WHERE {SKIP_SCHEMAS} AND x.relname NOT LIKE '\\_zdm\\_%'"
                    ),
                    &[],
                )
                .await?,
        ),
    );
    schema.insert(
        "view",
        lines(
            client
                .query(
                    &format!(
                        "SELECT format('%I.%I %s', n.nspname, c.relname, pg_get_viewdef(c.oid))
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE c.relkind IN ('v', 'm') AND {SKIP_SCHEMAS}
                           AND c.relname NOT LIKE '\\_zdm\\_%'"
                    ),
                    &[],
                )
                .await?,
        ),
    );
    schema.insert(
        "sequence",
        lines(
            client
                .query(
                    &format!(
                        "SELECT format('%I.%I %s increment %s owned by %s', n.nspname, c.relname,
                                format_type(s.seqtypid, NULL), s.seqincrement,
                                coalesce((SELECT format('%I.%I', t.relname, a.attname)
                                          FROM pg_depend dep
                                          JOIN pg_class t ON t.oid = dep.refobjid
                                          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = dep.refobjsubid
                                          WHERE dep.objid = c.oid AND dep.classid = 'pg_class'::regclass
                                            AND dep.deptype IN ('a', 'i') LIMIT 1), 'nothing'))
                         FROM pg_sequence s
                         JOIN pg_class c ON c.oid = s.seqrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE {SKIP_SCHEMAS} AND c.relname NOT LIKE '\\_zdm\\_%'"
                    ),
                    &[],
                )
                .await?,
        ),
    );
    schema.insert(
        "trigger",
        lines(
            client
                .query(
                    &format!(
                        "SELECT pg_get_triggerdef(t.oid)
                         FROM pg_trigger t
                         JOIN pg_class c ON c.oid = t.tgrelid
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE NOT t.tgisinternal AND {SKIP_SCHEMAS}
                           AND t.tgname NOT LIKE '\\_zdm\\_%'"
                    ),
                    &[],
                )
                .await?,
        ),
    );
    let rows = table_rows(client, today).await?;
    let mut columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in client
        .query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname), a.attname::text
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 WHERE c.relkind IN ('r', 'p') AND {SKIP_SCHEMAS}
                   AND c.relname NOT LIKE '\\_zdm\\_%' AND a.attname NOT LIKE '\\_zdm\\_%'
                 ORDER BY 1, a.attnum"
            ),
            &[],
        )
        .await?
    {
        columns.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(Snapshot {
        schema,
        rows,
        columns,
    })
}

/// Every ordinary table's rows, sorted, with run-dependent values masked.
async fn table_rows(
    client: &Client,
    today: &[String],
) -> Result<BTreeMap<String, Vec<String>>, tokio_postgres::Error> {
    let tables = client
        .query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname),
                        coalesce(array_agg(a.attname::text) FILTER (WHERE a.attname LIKE '\\_zdm\\_%'
                            OR pg_get_expr(d.adbin, d.adrelid) ~* '(random|uuid|clock_timestamp|now|current_timestamp|current_date|localtimestamp|statement_timestamp|transaction_timestamp|nextval|txid|pg_current)'),
                            '{{}}')
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE c.relkind = 'r' AND {SKIP_SCHEMAS} AND c.relname NOT LIKE '\\_zdm\\_%'
                 GROUP BY n.nspname, c.relname"
            ),
            &[],
        )
        .await?;
    let mut out = BTreeMap::new();
    for t in tables {
        let table: String = t.get(0);
        let masked: Vec<String> = t.get(1);
        let rows = client
            .query(&format!("SELECT to_jsonb(r)::text FROM {table} r"), &[])
            .await?;
        let mut lines: Vec<String> = rows
            .iter()
            .map(|r| mask(&r.get::<_, String>(0), &masked, today))
            .collect();
        lines.sort();
        out.insert(table, lines);
    }
    Ok(out)
}

/// A row with its run-dependent values replaced by `"<varies>"` (NULLs kept), and zdm's own
/// columns left out.
fn mask(row: &str, masked: &[String], today: &[String]) -> String {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(row) else {
        return row.to_owned();
    };
    fields.retain(|k, _| !k.starts_with("_zdm_"));
    for (k, v) in fields.iter_mut() {
        let dated = v
            .as_str()
            .is_some_and(|s| today.iter().any(|d| s.starts_with(d.as_str())));
        if !v.is_null() && (masked.contains(k) || dated) {
            *v = serde_json::Value::String("<varies>".into());
        }
    }
    serde_json::Value::Object(fields).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_nulls_and_drops_zdm_columns() {
        let today = vec!["2026-12-02".to_owned()];
        let row = r#"{"a": 1, "b": "2026-12-02T10:00:00", "c": null, "u": "x", "_zdm_x": 3}"#;
        assert_eq!(
            mask(row, &["u".into(), "c".into()], &today),
            r#"{"a":1,"b":"<varies>","c":null,"u":"<varies>"}"#
        );
    }

    #[test]
    fn differences_name_the_object() {
        let mut a = Snapshot {
            schema: BTreeMap::from([("column", vec!["public.t.a integer".to_owned()])]),
            rows: BTreeMap::from([("public.t".to_owned(), vec!["{\"a\":1}".to_owned()])]),
            columns: BTreeMap::new(),
        };
        let b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        a.rows.insert("public.t".into(), vec!["{\"a\":2}".into()]);
        let diff = first_difference(&a, &b).unwrap();
        assert!(diff.contains("rows of public.t differ"), "{diff}");
    }
}
