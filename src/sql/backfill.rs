//! The statements of a backfill: batched UPDATEs over a key range (or a `ctid` range when the
//! table has no key), each touching only rows still out of sync. One family, built here, runs
//! in both places a backfill runs: `zdm expand` prepares these statements and walks the key
//! from its own session (`db::backfill`), and the SQL files of `zdm plan --format sql` run the
//! same statements from a DO block that commits after each batch ([`psql_block`]).

use std::fmt::Write as _;

use super::{Ident, Name, Qualified, literal};

/// A backfill's UPDATE, as the planner knows it.
pub struct BatchedUpdate<'a> {
    pub table: &'a Name,
    /// The key it walks; empty: `ctid` page ranges.
    pub key: &'a [String],
    /// `(column, expression)` pairs.
    pub set: &'a [(String, String)],
    /// The UPDATE's WHERE.
    pub filter: Option<&'a str>,
    pub alias: Option<&'a str>,
    pub from: Option<&'a str>,
}

/// The parts of one backfill batch, from which both `zdm expand` and the SQL files build
/// their statements.
pub struct BatchParts {
    pub table: String,
    /// The key columns, quoted; empty when the table has no usable key and batches walk `ctid`.
    pub keys: Vec<String>,
    pub key_names: Vec<String>,
    pub key_list: String,
    /// How the UPDATE's own columns are qualified: its alias, or the table's name.
    qualifier: String,
    target: String,
    assignments: String,
    from: String,
    qualified_keys: String,
    filter: String,
    /// The condition that limits a batch to rows still out of sync, `AND …` or empty
    /// ([`BatchParts::every_row`]). A row is out of sync when the assigned columns and their
    /// new values differ as text (`ROW(…)::text`): an UPDATE may assign a value of another type
    /// than the column's (a json expression to a jsonb column), for which no `=` operator
    /// exists. Text that differs for equal values (`1.5` and `1.50`) only costs an update the
    /// SQL as written makes too.
    out_of_sync: String,
}

impl BatchParts {
    pub fn new(b: &BatchedUpdate) -> BatchParts {
        let table = Qualified(b.table).to_string();
        let keys: Vec<String> = b.key.iter().map(|k| Ident(k).to_string()).collect();
        // Columns of the updated table, qualified: a FROM list may have columns of the same name.
        let qualifier = match b.alias {
            Some(alias) => alias.to_owned(),
            None => Ident(&b.table.name).to_string(),
        };
        let list = |items: Vec<String>| items.join(", ");
        BatchParts {
            key_list: keys.join(", "),
            target: match b.alias {
                Some(alias) => format!("{table} AS {alias}"),
                None => table.clone(),
            },
            assignments: list(
                b.set
                    .iter()
                    .map(|(column, expr)| format!("{} = {expr}", Ident(column)))
                    .collect(),
            ),
            from: b
                .from
                .map(|f| format!("\n      FROM {f}"))
                .unwrap_or_default(),
            qualified_keys: list(keys.iter().map(|k| format!("{qualifier}.{k}")).collect()),
            filter: b
                .filter
                .map(|f| format!("\n        AND ({f})"))
                .unwrap_or_default(),
            out_of_sync: format!(
                "\n        AND ROW({})::text IS DISTINCT FROM ROW({})::text",
                list(
                    b.set
                        .iter()
                        .map(|(column, _)| format!("{qualifier}.{}", Ident(column)))
                        .collect()
                ),
                list(b.set.iter().map(|(_, expr)| format!("({expr})")).collect()),
            ),
            table,
            keys,
            key_names: b.key.to_vec(),
            qualifier,
        }
    }

    /// The same batches without the out-of-sync condition: every row in range is updated. For
    /// the first copy into a column zdm just created, where nearly every row differs and the
    /// comparison (two rows turned into text per row) costs a tenth of the batch.
    pub fn every_row(self) -> BatchParts {
        BatchParts {
            out_of_sync: String::new(),
            ..self
        }
    }

    /// The UPDATE of the rows whose key is from `lower` up to `upper` (`op` is `<` or `<=`),
    /// that still differ: one index range scan, as fast per row as a bulk UPDATE, where
    /// joining the batch's keys would look each row up on its own.
    pub fn range_update(&self, lower: &str, op: &str, upper: &str) -> String {
        let BatchParts {
            target,
            assignments,
            from,
            qualified_keys,
            filter,
            out_of_sync,
            ..
        } = self;
        format!(
            "UPDATE {target} SET {assignments}{from}\n      WHERE ({qualified_keys}) >= ({lower}) AND ({qualified_keys}) {op} ({upper}){filter}{out_of_sync}"
        )
    }

    /// The UPDATE of one `ctid` range `lower <= ctid < upper` (SQL tid expressions), for
    /// tables without a key: PostgreSQL 14+ reads the range with a TID Range Scan.
    pub fn ctid_cte(&self, lower: &str, upper: &str) -> String {
        let BatchParts {
            target,
            assignments,
            from,
            filter,
            out_of_sync,
            qualifier,
            ..
        } = self;
        format!(
            "updated AS (\n      UPDATE {target} SET {assignments}{from}\n      WHERE {qualifier}.ctid >= {lower} AND {qualifier}.ctid < {upper}{filter}{out_of_sync}\n      RETURNING 1\n    )"
        )
    }
}

/// A backfill as a DO block that commits after each batch (PostgreSQL 11+ allows COMMIT in a
/// DO block run outside a transaction), for the psql files: the key walk of `zdm expand`
/// (find where the next batch starts, `OFFSET batch`, then one range UPDATE up to it, or up
/// to the maximum for the last batch). Rows past the maximum key at start are the trigger's
/// job. `summary` heads it as a comment.
pub fn psql_block(parts: &BatchParts, summary: &str, batch: usize, ctid_pages: usize) -> String {
    if parts.keys.is_empty() {
        return ctid_psql_block(parts, summary, ctid_pages);
    }
    let (t, key_list) = (&parts.table, &parts.key_list);
    let desc = parts
        .keys
        .iter()
        .map(|k| format!("{k} DESC"))
        .collect::<Vec<_>>()
        .join(", ");
    let var = |prefix: &str| {
        (1..=parts.keys.len())
            .map(|i| format!("{prefix}{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (next, upto, max) = (var("next_"), var("upto_"), var("max_"));
    let mut declare = String::new();
    for (i, k) in parts.keys.iter().enumerate() {
        let _ = writeln!(
            declare,
            "  next_{n} {t}.{k}%TYPE;\n  upto_{n} {t}.{k}%TYPE;\n  max_{n} {t}.{k}%TYPE;",
            n = i + 1
        );
    }
    // Key columns are NOT NULL (a primary key, or a unique key of NOT NULL columns): `upto_1`
    // is NULL only when no row is left past this batch.
    format!(
        "-- backfill {summary}\nDO $zdm$\nDECLARE\n{declare}BEGIN\n  SELECT {key_list} INTO {max} FROM {t} ORDER BY {desc} LIMIT 1;\n  SELECT {key_list} INTO {next} FROM {t} ORDER BY {key_list} LIMIT 1;\n  WHILE next_1 IS NOT NULL LOOP\n    -- The sync triggers see this setting and do not copy the values back.\n    PERFORM set_config('zdm.backfill', 'on', true);\n    SELECT {key_list} INTO {upto} FROM {t}\n      WHERE ({key_list}) >= ({next}) AND ({key_list}) <= ({max})\n      ORDER BY {key_list} OFFSET {batch} LIMIT 1;\n    IF upto_1 IS NULL THEN\n      {last};\n    ELSE\n      {middle};\n    END IF;\n    SELECT {upto} INTO {next};\n    COMMIT;\n  END LOOP;\nEND\n$zdm$;\n",
        last = parts.range_update(&next, "<=", &max),
        middle = parts.range_update(&next, "<", &upto),
    )
}

/// The DO block of a table without a key: page ranges of `ctid`, bounded by the table's size
/// at start.
fn ctid_psql_block(parts: &BatchParts, summary: &str, pages: usize) -> String {
    format!(
        "-- backfill {summary} (no key: walks ctid page ranges)\nDO $zdm$\nDECLARE\n  next_page bigint := 0;\n  end_page bigint := pg_relation_size({table}::regclass) / current_setting('block_size')::int;\n  updated_rows bigint;\nBEGIN\n  WHILE next_page < end_page LOOP\n    -- The sync triggers see this setting and do not copy the values back.\n    PERFORM set_config('zdm.backfill', 'on', true);\n    WITH {cte}\n    SELECT count(*) INTO updated_rows FROM updated;\n    next_page := next_page + {pages};\n    COMMIT;\n  END LOOP;\nEND\n$zdm$;\n",
        table = literal(&parts.table),
        cte = parts.ctid_cte(
            "format('(%s,0)', next_page)::tid",
            &format!("format('(%s,0)', next_page + {pages})::tid")
        ),
    )
}
