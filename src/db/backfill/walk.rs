//! One slice of a backfill: where it is (a range of the key, or of heap pages), the statements
//! that walk it, how a table's range is cut into slices, and one batch.

use serde_json::json;
use tokio_postgres::{Client, Statement};

use super::super::run::RunError;
use crate::sql::backfill::BatchParts;

/// Where a slice is: the next key (or page) to visit and its bound, fixed when it was cut.
#[derive(Debug, Clone)]
pub(super) enum Walk {
    /// Key values as text, in key order, both ends included; `None` when the slice is empty.
    Keys {
        next: Option<Vec<String>>,
        max: Option<Vec<String>>,
    },
    /// Heap pages `next..end`.
    Pages { next: i64, end: i64 },
}

impl Walk {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Walk::Keys { next, max } => json!({"next": next, "max": max}),
            Walk::Pages { next, end } => json!({"page": next, "end": end}),
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Option<Walk> {
        if let (Some(next), Some(end)) = (v["page"].as_i64(), v["end"].as_i64()) {
            return Some(Walk::Pages { next, end });
        }
        let keys = |v: &serde_json::Value| {
            v.as_array().map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
        };
        v.get("max").map(|max| Walk::Keys {
            next: keys(&v["next"]),
            max: keys(max),
        })
    }

    pub fn finished(&self) -> bool {
        match self {
            Walk::Keys { next, max } => next.is_none() || max.is_none(),
            Walk::Pages { next, end } => next >= end,
        }
    }
}

/// The statements of a walk, prepared once on each connection that runs batches.
pub(super) enum Statements {
    Keys {
        /// The first key of the next batch: `$3` keys past `$1`, not beyond `$2`.
        next: Statement,
        /// Updates keys `$1 <= k < $2`.
        up_to_next: Statement,
        /// Updates keys `$1 <= k <= $2`: the last batch of a slice.
        up_to_max: Statement,
    },
    /// Updates pages `$1 <= page < $2`, returning the count.
    Pages(Statement),
}

/// The key columns' types, to cast keys that travel as text back to them: one statement then
/// serves every key type.
pub(super) async fn key_types(
    client: &Client,
    parts: &BatchParts,
) -> Result<Vec<String>, RunError> {
    let mut types = Vec::new();
    for key in &parts.key_names {
        let row = client
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2::text",
                &[&parts.table, key],
            )
            .await?;
        types.push(row.get::<_, String>(0));
    }
    Ok(types)
}

/// `($n::text[])[1]::int, …`: parameter `n`, a key as text, cast back to the key's types.
fn bound(types: &[String], param: usize) -> String {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("(${param}::text[])[{}]::{t}", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

fn keys_as_text(parts: &BatchParts) -> String {
    parts
        .keys
        .iter()
        .map(|k| format!("{k}::text"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The whole table as one walk: the key's minimum and maximum now, or its size in pages.
/// Rows inserted later are kept right by the triggers the expand installed.
pub(super) async fn start(client: &Client, parts: &BatchParts) -> Result<Walk, RunError> {
    if parts.keys.is_empty() {
        let end: i64 = client
            .query_one(
                "SELECT (pg_relation_size($1::text::regclass) / current_setting('block_size')::int)::bigint",
                &[&parts.table],
            )
            .await?
            .get(0);
        return Ok(Walk::Pages { next: 0, end });
    }
    let edge = |order: &str| {
        format!(
            "SELECT ARRAY[{}] FROM {} ORDER BY {} LIMIT 1",
            keys_as_text(parts),
            parts.table,
            parts
                .keys
                .iter()
                .map(|k| format!("{k} {order}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let max = client
        .query_opt(&edge("DESC"), &[])
        .await?
        .map(|r| r.get(0));
    let next = client.query_opt(&edge("ASC"), &[]).await?.map(|r| r.get(0));
    Ok(Walk::Keys { next, max })
}

/// Pages sampled per slice to cut. `TABLESAMPLE SYSTEM` picks whole pages, and the rows of one
/// page are neighbours in the key when the key grows with insertion (a serial id), so a sample
/// tells as many places in the key's range as it has pages, not rows: cutting 32 slices from
/// the 13 pages of a 2,000-row sample of a 1M-row table made slices of 60 and of 77k rows, and
/// the last large one left a single worker on it for the last 0.6 s of a 5 s backfill.
const SAMPLED_PAGES_PER_SLICE: f64 = 8.0;

/// Cuts a walk into at most `count` slices that cover it exactly, each walked on its own. Key
/// ranges are cut at keys sampled from the table, one per sampled page (`TABLESAMPLE SYSTEM`
/// reads a few pages, not the table), page ranges evenly.
pub(super) async fn split(
    client: &Client,
    parts: &BatchParts,
    types: &[String],
    walk: Walk,
    count: usize,
) -> Result<Vec<Walk>, RunError> {
    if count <= 1 {
        return Ok(vec![walk]);
    }
    let (lower, upper) = match walk {
        Walk::Pages { next, end } => {
            let step = ((end - next) / count as i64).max(1);
            let mut slices = Vec::new();
            let mut from = next;
            while from < end {
                let to = if slices.len() + 1 == count {
                    end
                } else {
                    (from + step).min(end)
                };
                slices.push(Walk::Pages {
                    next: from,
                    end: to,
                });
                from = to;
            }
            return Ok(slices);
        }
        Walk::Keys {
            next: Some(lower),
            max: Some(upper),
        } => (lower, upper),
        finished => return Ok(vec![finished]),
    };
    let pages: i64 = client
        .query_one(
            "SELECT (pg_relation_size($1::text::regclass) / current_setting('block_size')::int)::bigint",
            &[&parts.table],
        )
        .await?
        .get(0);
    let percent =
        (SAMPLED_PAGES_PER_SLICE * count as f64 * 100.0 / pages.max(1) as f64).clamp(0.01, 100.0);
    // The lowest key of each sampled page (`ctid` as a point: its x is the page).
    let sample = format!(
        "SELECT ARRAY[{}] FROM (SELECT DISTINCT ON ((ctid::text::point)[0]) {keys} FROM {} TABLESAMPLE SYSTEM ($3::float4) \
         WHERE ({keys}) > ({}) AND ({keys}) < ({}) ORDER BY (ctid::text::point)[0], {keys}) sampled ORDER BY {keys}",
        keys_as_text(parts),
        parts.table,
        bound(types, 1),
        bound(types, 2),
        keys = parts.key_list,
    );
    let sampled: Vec<Vec<String>> = client
        .query(&sample, &[&lower, &upper, &(percent as f32)])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Cut points: every (len / count)-th sampled key.
    let cuts: Vec<&Vec<String>> = (1..count)
        .map(|i| i * sampled.len() / count)
        .filter(|&i| i > 0 && i < sampled.len())
        .map(|i| &sampled[i])
        .collect();
    let first_after = format!(
        "SELECT ARRAY[{}] FROM {} WHERE ({keys}) > ({}) AND ({keys}) <= ({}) ORDER BY {keys} LIMIT 1",
        keys_as_text(parts),
        parts.table,
        bound(types, 1),
        bound(types, 2),
        keys = parts.key_list,
    );
    // The key after each cut, asked for all at once: the queries go out pipelined on the
    // one connection instead of one round trip each.
    let first_after = client.prepare(&first_after).await?;
    let (first_after, upper) = (&first_after, &upper);
    let afters = futures_util::future::try_join_all(cuts.iter().map(|&cut| async move {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [cut, upper];
        client.query_opt(first_after, &params).await
    }))
    .await?;
    // Slice i runs from the first key after cut i-1 up to cut i, both included.
    let mut slices = Vec::new();
    let mut next = Some(lower);
    for (cut, after) in cuts.into_iter().zip(afters) {
        if next.as_ref() == Some(cut) {
            continue; // the same key sampled twice
        }
        slices.push(Walk::Keys {
            next: next.take(),
            max: Some(cut.clone()),
        });
        next = after.map(|r| r.get(0));
    }
    slices.push(Walk::Keys {
        next,
        max: Some(upper.clone()),
    });
    Ok(slices)
}

/// Prepares the statements of a walk on one connection.
pub(super) async fn prepare(
    client: &Client,
    parts: &BatchParts,
    types: &[String],
) -> Result<Statements, tokio_postgres::Error> {
    if parts.keys.is_empty() {
        let sql = format!(
            "WITH {}\nSELECT count(*) FROM updated",
            parts.ctid_cte(
                "format('(%s,0)', $1::bigint)::tid",
                "format('(%s,0)', $2::bigint)::tid"
            )
        );
        return Ok(Statements::Pages(client.prepare(&sql).await?));
    }
    let next = format!(
        "SELECT ARRAY[{}] FROM {} WHERE ({keys}) >= ({}) AND ({keys}) <= ({}) ORDER BY {keys} OFFSET $3 LIMIT 1",
        keys_as_text(parts),
        parts.table,
        bound(types, 1),
        bound(types, 2),
        keys = parts.key_list,
    );
    Ok(Statements::Keys {
        next: client.prepare(&next).await?,
        up_to_next: client
            .prepare(&parts.range_update(&bound(types, 1), "<", &bound(types, 2)))
            .await?,
        up_to_max: client
            .prepare(&parts.range_update(&bound(types, 1), "<=", &bound(types, 2)))
            .await?,
    })
}

/// Where one batch goes and what it is recorded under.
pub(super) struct BatchOf<'a> {
    pub statements: &'a Statements,
    /// The timeouts and settings each batch's transaction starts with.
    pub settings: &'a str,
    pub migration: &'a str,
    /// The `zdm.steps` row that holds this slice's cursor.
    pub cursor_id: &'a str,
    /// The cursor save (`state::prepare_save_cursor`), prepared once per worker.
    pub save_cursor: &'a Statement,
}

/// One batch of a slice and its cursor, committed together, so a killed backfill resumes
/// exactly where the last committed batch of each slice ended. Returns the slice's new
/// position and the rows updated.
///
/// Four round trips: BEGIN with the batch's settings, the next key, the UPDATE, then the
/// cursor and COMMIT sent together. Each round trip is a share of a short batch, so they are
/// few: a batch that holds its rows' locks for 10 ms would otherwise spend a third of it
/// waiting on the network.
pub(super) async fn batch(
    client: &Client,
    of: &BatchOf<'_>,
    walk: &Walk,
    size: i64,
    durable: bool,
) -> Result<(Walk, i64), tokio_postgres::Error> {
    let result = batch_in_transaction(client, of, walk, size, durable).await;
    if result.is_err() && !client.is_closed() {
        // The batch and its cursor roll back together; the next attempt starts clean.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

async fn batch_in_transaction(
    client: &Client,
    of: &BatchOf<'_>,
    walk: &Walk,
    size: i64,
    durable: bool,
) -> Result<(Walk, i64), tokio_postgres::Error> {
    // The timeouts, and the setting the sync triggers see so that they leave the rows the
    // backfill writes alone. Unless `durable`, the commit does not wait for the WAL flush:
    // safe because the cursor commits with the batch, so a crash that loses a batch loses its
    // cursor too and the resumed backfill does that batch again. While the application
    // writes, batches wait for their flush (`durable`): otherwise the application's next
    // commit has to flush the batch's WAL before its own (see pace.rs).
    let commit = if durable {
        ""
    } else {
        " SET LOCAL synchronous_commit = off;"
    };
    client
        .batch_execute(&format!(
            "BEGIN; {};{commit} SELECT set_config('zdm.backfill', 'on', true)",
            of.settings
        ))
        .await?;
    let (next, updated) = match (walk, of.statements) {
        (
            Walk::Keys {
                next: Some(lower),
                max: Some(upper),
            },
            Statements::Keys {
                next,
                up_to_next,
                up_to_max,
            },
        ) => {
            let following: Option<Vec<String>> = client
                .query_opt(next, &[lower, upper, &size])
                .await?
                .map(|r| r.get(0));
            let updated = match &following {
                Some(f) => client.execute(up_to_next, &[lower, f]).await?,
                None => client.execute(up_to_max, &[lower, upper]).await?,
            };
            let next = Walk::Keys {
                next: following,
                max: Some(upper.clone()),
            };
            (next, updated as i64)
        }
        (Walk::Pages { next, end }, Statements::Pages(update)) => {
            // About a hundred rows fit on a page of a narrow table.
            let to = (*next + (size / 100).max(1)).min(*end);
            let updated: i64 = client.query_one(update, &[next, &to]).await?.get(0);
            (
                Walk::Pages {
                    next: to,
                    end: *end,
                },
                updated,
            )
        }
        _ => (
            Walk::Keys {
                next: None,
                max: None,
            },
            0,
        ),
    };
    // Pipelined: both go out before either answer comes back. If saving the cursor fails,
    // PostgreSQL answers the COMMIT of the failed transaction with a ROLLBACK, so the batch
    // and its cursor are never apart.
    let cursor = next.to_json();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&of.migration, &of.cursor_id, &cursor, &updated];
    let (saved, committed) = tokio::join!(
        client.execute(of.save_cursor, &params),
        client.batch_execute("COMMIT")
    );
    saved?;
    committed?;
    Ok((next, updated))
}

/// The planner's estimate of the table's rows (`reltuples`), or for a table never analyzed
/// (-1; a table loaded a moment ago) a guess from its size at a hundred bytes a row.
pub(super) async fn estimated_rows(client: &Client, table: &str) -> Result<Option<u64>, RunError> {
    let estimate: f64 = client
        .query_one(
            "SELECT CASE WHEN reltuples > 0 THEN reltuples::float8 ELSE pg_relation_size(oid) / 100.0 END \
             FROM pg_class WHERE oid = $1::text::regclass",
            &[&table],
        )
        .await?
        .get(0);
    Ok((estimate > 0.0).then_some(estimate as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let w = Walk::Keys {
            next: Some(vec!["5".into()]),
            max: Some(vec!["9".into()]),
        };
        assert!(
            matches!(Walk::from_json(&w.to_json()), Some(Walk::Keys { next: Some(n), .. }) if n == ["5"])
        );
        let done = Walk::Keys {
            next: None,
            max: Some(vec!["9".into()]),
        };
        assert!(Walk::from_json(&done.to_json()).unwrap().finished());
        let p = Walk::Pages { next: 3, end: 10 };
        assert!(matches!(
            Walk::from_json(&p.to_json()),
            Some(Walk::Pages { next: 3, end: 10 })
        ));
    }
}
