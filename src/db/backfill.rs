//! The backfill engine: one planned [`Backfill`] run as keyset batches over the table's key.
//!
//! Each batch is one short transaction: read up to `n + 1` keys from the key's index starting
//! at the cursor, update those of the first `n` rows that are still out of sync, and save the
//! cursor (the extra key) in the same transaction, so a killed backfill resumes exactly where
//! its last committed batch ended. The walk is bounded by the key's maximum when the backfill
//! started; rows inserted later are filled by the triggers the expand installed.
//!
//! Batch size adapts to a target batch duration: a batch holds the row locks of its rows until
//! it commits, so its duration is the longest an application write to one of those rows waits.
//! Rate limits, a pause between batches and a replication-lag bound slow it down on request.
//!
//! A table without a usable key is walked by `ctid` page ranges (PostgreSQL 14+ reads such a
//! range with a TID Range Scan instead of a sequential scan), bounded by the table's size in
//! pages at start.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio_postgres::{Client, Statement};

use super::retry::{backoff, is_retryable};
use super::run::{BackfillOptions, RunError, Stop};
use super::state;
use crate::plan::Backfill;
use crate::sql::backfill::BatchParts;

impl BackfillOptions {
    /// The next batch size: scaled towards the target duration, at most quadrupling (so the
    /// first small batches ramp up quickly) or halving per batch (so one slow batch, a
    /// checkpoint or a lock wait, does not swing it).
    fn next_size(&self, size: u64, took: Duration) -> u64 {
        if self.target_batch_time.is_zero() {
            return size;
        }
        let ratio = self.target_batch_time.as_secs_f64() / took.as_secs_f64().max(0.000_1);
        let scaled = (size as f64 * ratio.clamp(0.5, 4.0)) as u64;
        scaled.clamp(10, self.max_batch_size.max(10))
    }
}

/// Where a backfill is: the next key (or page) to visit and the bound fixed at start.
enum Walk {
    /// Key values as text, in key order; `None` when the table had no rows.
    Keys {
        next: Option<Vec<String>>,
        max: Option<Vec<String>>,
    },
    /// Heap pages `next..end`.
    Pages { next: i64, end: i64 },
}

impl Walk {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Walk::Keys { next, max } => json!({"next": next, "max": max}),
            Walk::Pages { next, end } => json!({"page": next, "end": end}),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<Walk> {
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

    fn finished(&self) -> bool {
        match self {
            Walk::Keys { next, max } => next.is_none() || max.is_none(),
            Walk::Pages { next, end } => next >= end,
        }
    }
}

/// The prepared statements of a walk.
enum Statements {
    Keys {
        /// The first key of the next batch: `$3` keys past `$1`, not beyond `$2`.
        next: Statement,
        /// Updates keys `$1 <= k < $2`.
        up_to_next: Statement,
        /// Updates keys `$1 <= k <= $2`: the last batch.
        up_to_max: Statement,
    },
    /// Updates pages `$1 <= page < $2`, returning the count.
    Pages(Statement),
}

/// One backfill run on the runner's connection.
pub(crate) struct BackfillRun<'a> {
    pub client: &'a mut Client,
    pub options: &'a BackfillOptions,
    pub timeouts: String,
    pub stop: &'a Stop,
    pub max_attempts: u32,
    pub migration: &'a str,
    pub step_id: &'a str,
}

impl BackfillRun<'_> {
    pub async fn run(mut self, b: &Backfill) -> Result<(), RunError> {
        let parts = b.batch_parts();
        // The queries that start the walk wait for locks no longer than a step would.
        let session_timeouts = self.timeouts.replace("SET LOCAL", "SET");
        self.client.batch_execute(&session_timeouts).await?;
        let prepared = self.prepare_walk(b, &parts).await;
        self.client
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await?;
        let (mut walk, statements, total) = prepared?;
        let done_before = state::rows_done(self.client, self.migration, self.step_id).await?;
        let mut progress = Progress::new(
            format!("{}: backfill {}", self.migration, b.table),
            total,
            done_before,
        );
        let mut size = self.options.batch_size.max(1);
        let started = Instant::now();
        let mut rows_this_run = 0u64;
        let mut failures = 0;
        while !walk.finished() {
            if self.stop.requested() {
                progress.abandon();
                return Err(RunError::Interrupted {
                    migration: self.migration.to_owned(),
                });
            }
            self.wait_for_replicas().await?;
            let began = Instant::now();
            let (next, updated) = match self.batch(&statements, &walk, size as i64).await {
                Ok(done) => {
                    failures = 0;
                    done
                }
                // A batch that lost a lock wait or deadlocked with the application rolled
                // back alone; the cursor is where it was, so the same batch is tried again.
                Err(e) if is_retryable(&e) && failures + 1 < self.max_attempts => {
                    failures += 1;
                    let wait = backoff(failures);
                    tracing::warn!(
                        migration = self.migration,
                        step = self.step_id,
                        "backfill batch: {}; retrying in {} ms",
                        super::message(&e),
                        wait.as_millis()
                    );
                    self.stop.sleep(wait).await;
                    continue;
                }
                Err(e) => {
                    progress.abandon();
                    return Err(RunError::Batch(e));
                }
            };
            walk = next;
            let took = began.elapsed();
            rows_this_run += updated as u64;
            progress.advance(updated as u64, size);
            tracing::debug!(
                migration = self.migration,
                rows = updated,
                batch = size,
                ms = took.as_millis() as u64,
                "batch"
            );
            size = self.options.next_size(size, took);
            self.throttle(started, rows_this_run).await;
        }
        progress.finish();
        state::set_step(&*self.client, self.migration, self.step_id, "done").await?;
        let rows = done_before + rows_this_run;
        if self.step_id.starts_with("check-") {
            tracing::info!(
                migration = self.migration,
                step = self.step_id,
                rows,
                "checked the copy on {} before contract: {rows} rows differed and were copied again",
                b.table
            );
        } else {
            tracing::info!(
                migration = self.migration,
                step = self.step_id,
                rows,
                "backfilled {}",
                b.table
            );
        }
        Ok(())
    }

    /// The walk (the saved cursor, or a new one from the table's key range or size), its
    /// prepared statements and the table's estimated rows.
    async fn prepare_walk(
        &mut self,
        b: &Backfill,
        parts: &BatchParts,
    ) -> Result<(Walk, Statements, Option<u64>), RunError> {
        let saved = state::cursor(self.client, self.migration, self.step_id).await?;
        let walk = match saved.as_ref().and_then(Walk::from_json) {
            Some(w) => w,
            None => start(self.client, parts).await?,
        };
        if b.shadow_copy {
            self.without_user_triggers(&parts.table).await?;
        }
        let statements = prepare(self.client, parts, &walk).await?;
        let total = estimated_rows(self.client, &parts.table).await?;
        Ok((walk, statements, total))
    }

    /// Has the batches of a shadow copy run with `session_replication_role = replica`, so
    /// that the user's row triggers (an `updated_at`, a version counter, an audit insert) do
    /// not fire for a write the application never made: the copy changes only a column zdm
    /// created. ENABLE ALWAYS triggers still fire, as they would on a replica. Foreign-key
    /// triggers are skipped too, which is safe because the copy writes no key column. The
    /// setting needs superuser (or, on PostgreSQL 15+, `GRANT SET ON PARAMETER`); without it
    /// the user's triggers fire, and zdm says so when the table has any.
    async fn without_user_triggers(&mut self, table: &str) -> Result<(), RunError> {
        let probe = async {
            let tx = self.client.transaction().await?;
            tx.batch_execute("SET LOCAL session_replication_role = replica")
                .await?;
            tx.rollback().await
        }
        .await;
        match probe {
            Ok(()) => {
                self.timeouts
                    .push_str("; SET LOCAL session_replication_role = replica");
            }
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                let user_triggers: i64 = self
                    .client
                    .query_one(
                        "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::text::regclass \
                         AND NOT tgisinternal AND tgname NOT LIKE '~%'",
                        &[&table],
                    )
                    .await?
                    .get(0);
                if user_triggers > 0 {
                    tracing::warn!(
                        migration = self.migration,
                        "{table} has {user_triggers} trigger(s) of its own, and this role may not set session_replication_role: they fire for each row the backfill copies (grant SET ON PARAMETER session_replication_role, or run zdm as a superuser, to avoid it)"
                    );
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// One batch and its cursor, committed together.
    async fn batch(
        &mut self,
        statements: &Statements,
        walk: &Walk,
        size: i64,
    ) -> Result<(Walk, i64), tokio_postgres::Error> {
        let tx = self.client.transaction().await?;
        // One round trip: the timeouts; the setting the sync triggers see so that they leave
        // the rows the backfill writes alone; and no wait for the WAL flush at commit. The
        // last is safe because the cursor commits with the batch: a crash that loses a
        // batch loses its cursor too, and the resumed backfill does that batch again.
        tx.batch_execute(&format!(
            "{}; SET LOCAL synchronous_commit = off; SELECT set_config('zdm.backfill', 'on', true)",
            self.timeouts
        ))
        .await?;
        let (next, updated) = match (walk, statements) {
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
                let following: Option<Vec<String>> = tx
                    .query_opt(next, &[lower, upper, &size])
                    .await?
                    .map(|r| r.get(0));
                let updated = match &following {
                    Some(f) => tx.execute(up_to_next, &[lower, f]).await?,
                    None => tx.execute(up_to_max, &[lower, upper]).await?,
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
                let updated: i64 = tx.query_one(update, &[next, &to]).await?.get(0);
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
        state::save_cursor(&tx, self.migration, self.step_id, &next.to_json(), updated).await?;
        tx.commit().await?;
        Ok((next, updated))
    }

    /// Sleeps for the pause and for as long as the rate limit asks.
    async fn throttle(&self, started: Instant, rows: u64) {
        let mut wait = self.options.pause;
        if let Some(limit) = self.options.max_rows_per_second.filter(|l| *l > 0) {
            let due = Duration::from_secs_f64(rows as f64 / limit as f64);
            wait = wait.max(due.saturating_sub(started.elapsed()));
        }
        if !wait.is_zero() {
            self.stop.sleep(wait).await;
        }
    }

    /// Waits while any standby replays more than the bound behind, logging each wait.
    async fn wait_for_replicas(&self) -> Result<(), RunError> {
        let Some(bound) = self.options.max_replication_lag else {
            return Ok(());
        };
        loop {
            let lag: f64 = self
                .client
                .query_one(
                    "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication",
                    &[],
                )
                .await?
                .get(0);
            if lag <= bound.as_secs_f64() || self.stop.requested() {
                return Ok(());
            }
            tracing::info!(
                migration = self.migration,
                "replication lag {lag:.1} s exceeds {} ms; waiting",
                bound.as_millis()
            );
            self.stop.sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The first cursor: the key's minimum and maximum now, or the table's size in pages.
async fn start(client: &Client, parts: &BatchParts) -> Result<Walk, RunError> {
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

fn keys_as_text(parts: &BatchParts) -> String {
    parts
        .keys
        .iter()
        .map(|k| format!("{k}::text"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements of the walk, prepared once. Keys travel as text and are cast back to the
/// key columns' types, so one statement serves every key type.
async fn prepare(client: &Client, parts: &BatchParts, walk: &Walk) -> Result<Statements, RunError> {
    if let Walk::Pages { .. } = walk {
        let sql = format!(
            "WITH {}\nSELECT count(*) FROM updated",
            parts.ctid_cte(
                "format('(%s,0)', $1::bigint)::tid",
                "format('(%s,0)', $2::bigint)::tid"
            )
        );
        return Ok(Statements::Pages(client.prepare(&sql).await?));
    }
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
    let bound = |param: usize| {
        types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("(${param}::text[])[{}]::{t}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let next = format!(
        "SELECT ARRAY[{}] FROM {} WHERE ({keys}) >= ({}) AND ({keys}) <= ({}) ORDER BY {keys} OFFSET $3 LIMIT 1",
        keys_as_text(parts),
        parts.table,
        bound(1),
        bound(2),
        keys = parts.key_list,
    );
    Ok(Statements::Keys {
        next: client.prepare(&next).await?,
        up_to_next: client
            .prepare(&parts.range_update(&bound(1), "<", &bound(2)))
            .await?,
        up_to_max: client
            .prepare(&parts.range_update(&bound(1), "<=", &bound(2)))
            .await?,
    })
}

/// The planner's estimate of the table's rows (`reltuples`; -1 or 0 when never analyzed).
async fn estimated_rows(client: &Client, table: &str) -> Result<Option<u64>, RunError> {
    let estimate: f64 = client
        .query_one(
            "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::text::regclass",
            &[&table],
        )
        .await?
        .get(0);
    Ok((estimate > 0.0).then_some(estimate as u64))
}

/// Rows done, rate and ETA: a bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    done_at_start: u64,
    last_line: Instant,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn new(label: String, total: Option<u64>, done: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t.max(done)),
                None => ProgressBar::no_length(),
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label.clone());
            bar.set_position(done);
            bar
        });
        Progress {
            label,
            bar,
            total,
            done,
            started: Instant::now(),
            done_at_start: done,
            last_line: Instant::now(),
        }
    }

    fn advance(&mut self, rows: u64, batch: u64) {
        self.done += rows;
        if let Some(bar) = &self.bar {
            if self.total.is_some_and(|t| self.done > t) {
                bar.set_length(self.done);
            }
            bar.set_position(self.done);
            return;
        }
        if self.last_line.elapsed() >= LOG_EVERY {
            self.last_line = Instant::now();
            let rate = (self.done - self.done_at_start) as f64
                / self.started.elapsed().as_secs_f64().max(0.001);
            let of = match self.total {
                Some(t) if t >= self.done && rate > 0.0 => format!(
                    " of about {t} ({:.0}%), ETA {:.0} s",
                    100.0 * self.done as f64 / t as f64,
                    (t - self.done) as f64 / rate
                ),
                _ => String::new(),
            };
            tracing::info!(
                "{}: {} rows{of}, {rate:.0} rows/s, batch {batch}",
                self.label,
                self.done
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_follows_the_target_duration_within_bounds() {
        let o = BackfillOptions::default();
        // Too fast: grows in proportion, at most fourfold.
        assert_eq!(o.next_size(1000, Duration::from_millis(25)), 2000);
        assert_eq!(o.next_size(1000, Duration::from_millis(1)), 4000);
        // Slightly slow: shrinks in proportion.
        assert_eq!(o.next_size(1000, Duration::from_millis(400)), 500);
        assert_eq!(o.next_size(40_000, Duration::from_millis(10)), 50_000);
        let fixed = BackfillOptions {
            target_batch_time: Duration::ZERO,
            ..o
        };
        assert_eq!(fixed.next_size(1000, Duration::from_secs(3)), 1000);
    }

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
