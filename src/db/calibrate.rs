//! Measures what the cost model (`cost`) needs, without changing anything: each table's size
//! and statistics from the catalog (`pg_class`, `pg_stat_user_tables`, `pg_stats`), the
//! server's settings, and how fast this server reads the table, from a timed scan of a sample
//! of its pages. Everything runs in one READ ONLY transaction, so PostgreSQL itself refuses any
//! write, with a statement timeout so a calibration never runs long on a huge table.

use std::collections::HashMap;
use std::time::Instant;

use tokio_postgres::Client;

use super::{DbError, message};
use crate::catalog::Catalog;
use crate::cost::{Facts, ServerFacts, Settings, TableFacts};
use crate::parse::Name;
use crate::plan::{MigrationPlan, TableSize};

/// Pages read by the timed sample of a table (32 MB): enough for a stable rate, little enough
/// that a plan stays quick (about 20 ms on the reference machine).
const SAMPLE_PAGES: u64 = 4096;

/// The smallest timed sample: a few milliseconds of reading, long against the round trip
/// subtracted from it.
const MIN_SAMPLE_PAGES: u64 = 256;

/// Pages of `heap_pages` that the timed scans read: a quarter of the table, within
/// [`MIN_SAMPLE_PAGES`] and [`SAMPLE_PAGES`]. The sample is read twice, so timing a small table
/// costs half a scan of it, not two: on a table of 100k rows the whole of `zdm expand` is a few
/// hundred milliseconds, and two full scans were a tenth of it.
fn sample_pages(heap_pages: u64) -> u64 {
    (heap_pages / 4)
        .clamp(MIN_SAMPLE_PAGES, SAMPLE_PAGES)
        .min(heap_pages)
}

/// Fills in each plan's estimate on this database: one calibration of the tables the plans
/// work on (as `catalog`, read from the database, knows them), then the cost model.
pub async fn estimate_plans(
    client: &Client,
    target: &str,
    plans: Vec<&mut MigrationPlan>,
    catalog: &Catalog,
    pg_version: u32,
    settings: &Settings,
) -> Result<(), DbError> {
    let mut tables: Vec<Name> = Vec::new();
    for plan in plans.iter() {
        for t in crate::cost::tables_of(plan, catalog) {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
    }
    let facts = facts(client, &tables, target).await?;
    for plan in plans {
        plan.estimate = Some(crate::cost::estimate(
            plan, catalog, pg_version, &facts, settings,
        ));
    }
    Ok(())
}

/// The facts of `tables` (existing tables, by `Name::key`) and of the server.
pub async fn facts(client: &Client, tables: &[Name], target: &str) -> Result<Facts, DbError> {
    let failed = |e: tokio_postgres::Error| DbError::Query {
        target: target.to_owned(),
        message: format!("estimating costs: {}", message(&e)),
    };
    client
        .batch_execute("BEGIN READ ONLY; SET LOCAL statement_timeout = '10s'")
        .await
        .map_err(failed)?;
    let result = measure(client, tables).await;
    // Read only: nothing to keep, whatever happened.
    let _ = client.batch_execute("ROLLBACK").await;
    result.map_err(failed)
}

async fn measure(client: &Client, tables: &[Name]) -> Result<Facts, tokio_postgres::Error> {
    let server = client
        .query_one(
            "SELECT pg_size_bytes(current_setting('max_wal_size')),
                    pg_size_bytes(current_setting('maintenance_work_mem'))",
            &[],
        )
        .await?;
    let server = ServerFacts {
        max_wal_size_bytes: server.get::<_, i64>(0).max(0) as u64,
        maintenance_work_mem_bytes: server.get::<_, i64>(1).max(0) as u64,
    };
    let round_trip = round_trip(client).await?;
    let pg_version = super::server_major_version(client).await?;
    let mut out = HashMap::new();
    for name in tables {
        if let Some(facts) = table(client, name, round_trip, pg_version).await? {
            out.insert(name.key(), facts);
        }
    }
    Ok(Facts {
        tables: out,
        server,
    })
}

/// The fastest of a few empty queries: what a timed query pays besides its work.
async fn round_trip(client: &Client) -> Result<f64, tokio_postgres::Error> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        client.query_one("SELECT 1", &[]).await?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

async fn table(
    client: &Client,
    name: &Name,
    round_trip: f64,
    pg_version: u32,
) -> Result<Option<TableFacts>, tokio_postgres::Error> {
    let text = name.to_string();
    // reltuples is -1 (PostgreSQL 14+) or 0 before the first ANALYZE or VACUUM; the live
    // tuple count from the statistics collector, then the heap's size, stand in.
    let row = client
        .query_opt(
            "SELECT c.reltuples::float8, pg_relation_size(c.oid), pg_indexes_size(c.oid),
                    coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
                    (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid),
                    coalesce(s.n_live_tup, 0)::float8, n.nspname, c.relname
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
             WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p', 'm')",
            &[&text],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let heap_bytes = row.get::<_, i64>(1).max(0) as u64;
    let heap_pages = heap_bytes / 8192;
    let reltuples: f64 = row.get(0);
    let live: f64 = row.get(5);
    let rows = if reltuples > 0.0 {
        reltuples
    } else if live > 0.0 {
        live
    } else {
        // About 60 rows per page, for a table nothing has counted yet.
        heap_pages as f64 * 60.0
    };
    let schema: String = row.get(6);
    let relname: String = row.get(7);
    let column_widths = client
        .query(
            "SELECT attname::text, avg_width::float8 FROM pg_stats
             WHERE schemaname = $1 AND tablename = $2",
            &[&schema, &relname],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1)))
        .collect();
    let page_seconds = scan_rate(client, &text, rows, heap_pages, round_trip, pg_version).await?;
    tracing::debug!(
        table = %name,
        rows,
        heap_pages,
        page_us = page_seconds * 1e6,
        "calibrated"
    );
    Ok(Some(TableFacts {
        size: TableSize {
            name: name.clone(),
            rows: rows.round() as u64,
            heap_bytes,
            index_bytes: row.get::<_, i64>(2).max(0) as u64,
            toast_bytes: row.get::<_, i64>(3).max(0) as u64,
        },
        heap_pages,
        indexes: row.get::<_, i64>(4).max(0) as usize,
        column_widths,
        page_seconds,
    }))
}

/// Seconds per heap page of a sequential scan of the table, timed on a sample of its first
/// pages (the better of two runs: the first may read pages into the cache). PostgreSQL 14+
/// reads a `ctid` range with a TID Range Scan, exactly those pages; older servers read the
/// first rows through a LIMIT, which costs a little more per page. A table too small to time
/// gets the reference machine's rate.
async fn scan_rate(
    client: &Client,
    table: &str,
    rows: f64,
    heap_pages: u64,
    round_trip: f64,
    pg_version: u32,
) -> Result<f64, tokio_postgres::Error> {
    let fallback = crate::cost::REFERENCE_PAGE_SECONDS;
    if heap_pages < 100 || rows < 1.0 {
        return Ok(fallback);
    }
    let sample_pages = sample_pages(heap_pages);
    let query = if pg_version >= 14 {
        format!("SELECT count(*) FROM ONLY {table} WHERE ctid < '({sample_pages},0)'::tid")
    } else {
        let sample_rows = (rows * sample_pages as f64 / heap_pages as f64).ceil() as i64;
        format!("SELECT count(*) FROM (SELECT FROM ONLY {table} LIMIT {sample_rows}) s")
    };
    let mut best = f64::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        client.query_one(&query, &[]).await?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(((best - round_trip).max(0.0) / sample_pages as f64).max(fallback / 20.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timed_sample_is_a_quarter_of_the_table_within_bounds() {
        assert_eq!(sample_pages(150), 150);
        assert_eq!(sample_pages(637), MIN_SAMPLE_PAGES);
        assert_eq!(sample_pages(6_400), 1_600);
        assert_eq!(sample_pages(100_000), SAMPLE_PAGES);
    }
}
