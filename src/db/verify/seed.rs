//! Sample rows for `zdm verify`: every table gets a few rows covering its column types, with
//! NULLs where a column allows them and values that keep unique keys apart.
//!
//! Values are built in SQL from the row number `i` and the column's type (an enum's labels in
//! turn, `2024-01-01 + i` for dates, `md5(i)` for uuids…). Foreign keys and user triggers are
//! left out of the way while seeding (`session_replication_role = replica`, where the role may
//! set it), since sample rows cannot match across tables. A table whose constraints reject the
//! whole batch is filled row by row, first with every column, then with only the required
//! ones; rows that still fail are skipped.

use tokio_postgres::Client;

/// Rows per table.
pub const ROWS: i64 = 24;

/// Whether sample rows leave nullable columns NULL (every fourth row) or fill every column: a
/// migration that makes a column NOT NULL without filling it fails on the first kind, and is
/// tried on the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    EveryFourthRow,
    None,
}

struct SeedColumn {
    name: String,
    ty: String,
    /// `typcategory` of the column's type (of the domain's base type for a domain).
    category: String,
    not_null: bool,
    has_default: bool,
    enum_labels: Vec<String>,
}

/// Fills every ordinary table of the connected database. Returns how many rows went in.
pub async fn seed(client: &Client, nulls: Nulls) -> Result<u64, tokio_postgres::Error> {
    // Superusers may switch foreign keys and triggers off; others seed with them on.
    let _ = client
        .batch_execute("SET session_replication_role = replica")
        .await;
    let tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), c.oid
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'zdm')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1",
            &[],
        )
        .await?;
    let mut total = 0;
    for t in tables {
        let table: String = t.get(0);
        let oid: u32 = t.get(1);
        let columns = columns(client, oid).await?;
        total += seed_table(client, &table, &columns, nulls).await?;
    }
    let _ = client.batch_execute("RESET session_replication_role").await;
    Ok(total)
}

async fn columns(client: &Client, table: u32) -> Result<Vec<SeedColumn>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                    coalesce(b.typcategory, ty.typcategory)::text, a.attnotnull,
                    a.atthasdef OR a.attidentity <> '',
                    coalesce(ARRAY(SELECT e.enumlabel::text FROM pg_enum e
                                   WHERE e.enumtypid = coalesce(b.oid, ty.oid)
                                   ORDER BY e.enumsortorder), '{}')
             FROM pg_attribute a
             JOIN pg_type ty ON ty.oid = a.atttypid
             LEFT JOIN pg_type b ON b.oid = ty.typbasetype AND ty.typtype = 'd'
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated = '' AND a.attidentity <> 'a'
             ORDER BY a.attnum",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SeedColumn {
            name: r.get(0),
            ty: r.get(1),
            category: r.get(2),
            not_null: r.get(3),
            has_default: r.get(4),
            enum_labels: r.get(5),
        })
        .collect())
}

/// The SQL of a column's value in row `i` (an `int` in the query).
fn value(c: &SeedColumn) -> String {
    let ty = c.ty.as_str();
    let value = if !c.enum_labels.is_empty() {
        let labels = c
            .enum_labels
            .iter()
            .map(|l| crate::sql::literal(l))
            .collect::<Vec<_>>()
            .join(", ");
        format!("(ARRAY[{labels}])[1 + i % {}]", c.enum_labels.len())
    } else if ty == "boolean" {
        "(i % 2 = 0)".into()
    } else if ty == "uuid" {
        "md5(i::text)::uuid".into()
    } else if ty == "json" || ty == "jsonb" {
        "json_build_object('k', i)::text".into()
    } else if ty == "bytea" {
        "int4send(i)".into()
    } else if ty == "date" {
        "(date '2024-01-01' + i)".into()
    } else if ty.starts_with("timestamp") {
        "(timestamp '2024-01-01 00:00' + i * interval '1 hour')".into()
    } else if ty.starts_with("time") {
        "(time '10:00' + i * interval '1 minute')".into()
    } else if ty.starts_with("interval") {
        "(i * interval '1 minute')".into()
    } else if ty == "inet" || ty == "cidr" {
        "('10.0.0.' || i)".into()
    } else if c.category == "A" {
        "'{}'".into()
    } else if c.category == "N" {
        "i".into()
    } else if c.category == "S" {
        // Short enough for varchar(2); unique per row for anything longer.
        format!(
            "left('v' || i, coalesce(nullif(regexp_replace({}, '\\D', '', 'g'), '')::int, 64))",
            crate::sql::literal(ty)
        )
    } else {
        "i::text".into()
    };
    format!("CAST({value} AS {ty})")
}

/// Why an application's INSERT failed.
#[derive(Debug, Clone)]
pub struct InsertError {
    /// The SQLSTATE, when the server gave one.
    pub code: Option<String>,
    pub message: String,
}

impl InsertError {
    /// A constraint rejected the sample values (SQLSTATE class 23): a fact about the sample
    /// rows, not about whether the application's columns are there.
    pub fn is_constraint_violation(&self) -> bool {
        self.code.as_deref().is_some_and(|c| c.starts_with("23"))
    }
}

/// Tries, for each table, one INSERT of the given columns (an application version's view of
/// the table) in a transaction that is rolled back, and returns the error of each that fails.
/// Sequences are set back afterwards, so the tries leave no trace.
pub async fn try_inserts(
    client: &Client,
    tables: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<std::collections::BTreeMap<String, InsertError>, tokio_postgres::Error> {
    let sequences = client
        .query(
            "SELECT format('%I.%I', schemaname, sequencename), last_value
             FROM pg_sequences WHERE schemaname <> 'zdm'",
            &[],
        )
        .await?;
    let mut failed = std::collections::BTreeMap::new();
    for (table, known) in tables {
        let Some(row) = client
            .query_opt("SELECT to_regclass($1)::oid", &[table])
            .await?
        else {
            continue;
        };
        let Some(oid) = row.get::<_, Option<u32>>(0) else {
            failed.insert(
                table.clone(),
                InsertError {
                    code: None,
                    message: format!("relation {table} does not exist"),
                },
            );
            continue;
        };
        let columns: Vec<SeedColumn> = columns(client, oid)
            .await?
            .into_iter()
            .filter(|c| known.contains(&c.name))
            .collect();
        let all: Vec<&SeedColumn> = columns.iter().collect();
        let sql = insert_sql(table, &all, "(VALUES (1000001))", Nulls::None);
        client.batch_execute("BEGIN").await?;
        if let Err(e) = client.batch_execute(&sql).await {
            failed.insert(
                table.clone(),
                InsertError {
                    code: e.code().map(|c| c.code().to_owned()),
                    message: super::message(&e),
                },
            );
        }
        client.batch_execute("ROLLBACK").await?;
    }
    for s in sequences {
        let name: String = s.get(0);
        let last: Option<i64> = s.get(1);
        let sql = match last {
            Some(v) => format!("SELECT setval({}, {v}, true)", crate::sql::literal(&name)),
            None => format!(
                "SELECT setval({n}, (SELECT start_value FROM pg_sequences WHERE format('%I.%I', schemaname, sequencename) = {n}), false)",
                n = crate::sql::literal(&name)
            ),
        };
        client.batch_execute(&sql).await?;
    }
    Ok(failed)
}

/// `INSERT INTO table (cols) SELECT <sample values> FROM <rows> AS g(i)`.
fn insert_sql(table: &str, cols: &[&SeedColumn], rows: &str, nulls: Nulls) -> String {
    let names = cols
        .iter()
        .map(|c| crate::sql::Ident(&c.name).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // Every fourth row leaves the nullable columns NULL.
    let values = cols
        .iter()
        .map(|c| {
            if c.not_null || nulls == Nulls::None {
                value(c)
            } else {
                format!("CASE WHEN i % 4 = 0 THEN NULL ELSE {} END", value(c))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if cols.is_empty() {
        format!("INSERT INTO {table} SELECT FROM {rows} AS g(i)")
    } else {
        format!("INSERT INTO {table} ({names}) SELECT {values} FROM {rows} AS g(i)")
    }
}

async fn seed_table(
    client: &Client,
    table: &str,
    columns: &[SeedColumn],
    nulls: Nulls,
) -> Result<u64, tokio_postgres::Error> {
    let insert = |cols: &[&SeedColumn], rows: &str| insert_sql(table, cols, rows, nulls);
    let all: Vec<&SeedColumn> = columns.iter().collect();
    let required: Vec<&SeedColumn> = columns
        .iter()
        .filter(|c| c.not_null && !c.has_default)
        .collect();
    let attempt = |sql: String| async move {
        client.batch_execute("SAVEPOINT seed").await?;
        match client.execute(&sql, &[]).await {
            Ok(n) => {
                client.batch_execute("RELEASE SAVEPOINT seed").await?;
                Ok(Some(n))
            }
            Err(_) => {
                client.batch_execute("ROLLBACK TO SAVEPOINT seed").await?;
                Ok::<_, tokio_postgres::Error>(None)
            }
        }
    };
    client.batch_execute("BEGIN").await?;
    let mut inserted = 0;
    if let Some(n) = attempt(insert(&all, &format!("generate_series(1, {ROWS})"))).await? {
        inserted = n;
    } else {
        for i in 1..=ROWS {
            let one = format!("(VALUES ({i}))");
            if let Some(n) = attempt(insert(&all, &one)).await? {
                inserted += n;
            } else if let Some(n) = attempt(insert(&required, &one)).await? {
                inserted += n;
            }
        }
    }
    client.batch_execute("COMMIT").await?;
    Ok(inserted)
}
