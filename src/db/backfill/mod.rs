//! The backfill engine: one planned [`Backfill`] run as keyset batches over the table's key.
//!
//! The table's range is cut into slices (`walk.rs`), each walked on its own, and a few
//! connections from a pool work the slices side by side (how many: `pace.rs`). Each batch is
//! one short transaction: read up to `n + 1` keys from the key's index starting at the slice's
//! cursor, update those of the first `n` rows that are still out of sync, and save the cursor
//! (the extra key) in the same transaction, in the slice's own `zdm.steps` row, so a killed
//! backfill resumes every slice exactly where its last committed batch ended, and workers never
//! wait on each other's cursor. The slices cover the key's range when the backfill started;
//! rows inserted later are filled by the triggers the expand installed.
//!
//! Batch size adapts to a target batch duration: a batch holds the row locks of its rows until
//! it commits, so its duration is the longest an application write to one of those rows waits.
//! Rate limits, a pause between batches and a replication-lag bound apply to the whole backfill.
//! The runner's own session keeps the advisory lock and is not used for batches when a pool is
//! available.
//!
//! A table without a usable key is walked by `ctid` page ranges (PostgreSQL 14+ reads such a
//! range with a TID Range Scan instead of a sequential scan), bounded by the table's size in
//! pages at start.

mod pace;
mod walk;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio_postgres::Client;

use super::ConnectOptions;
use super::retry::{backoff, is_retryable};
use super::run::{BackfillOptions, RunError, Stop};
use super::state;
use crate::plan::Backfill;
use crate::sql::backfill::BatchParts;
use pace::{Pace, WINDOW, Window, batch_target};
use walk::{BatchOf, Walk};

impl BackfillOptions {
    /// The next batch size: scaled towards the target duration, at most doubling or
    /// quartering per batch. A batch holds the locks of its rows until it commits, and an
    /// application write to one of them waits that long, so the size grows cautiously and
    /// shrinks fast. Only a full batch may grow it: the last batch of a slice walks what is
    /// left, often a few rows, and its short time says nothing about the next slice's (taken
    /// as a rate it once let a 10 ms target grow a batch to 400 ms).
    fn next_size(&self, size: u64, took: Duration, full: bool, gentle: bool) -> u64 {
        let target = batch_target(self.target_batch_time, gentle);
        if target.is_zero() {
            return size;
        }
        let ratio = target.as_secs_f64() / took.as_secs_f64().max(0.000_1);
        let ratio = if full { ratio.min(2.0) } else { ratio.min(1.0) };
        let scaled = (size as f64 * ratio.max(0.25)) as u64;
        scaled.clamp(10, self.max_batch_size.max(10))
    }

    /// Whether a rate limit or a pause asks for a gentle backfill: then, unless the number of
    /// workers is given, one works.
    fn throttled(&self) -> bool {
        self.max_rows_per_second.is_some() || !self.pause.is_zero()
    }
}

/// The `application_name` of the workers' sessions: how a DBA tells them in
/// `pg_stat_activity`, and how the pace tells them from the application's.
const WORKER_APPLICATION: &str = "zdm backfill";

/// Tables smaller than this are not cut into slices: one worker is done before a second
/// would have connected.
const SPLIT_FROM_ROWS: u64 = 50_000;

/// Slices per worker the pool may have: enough that workers finishing early find more, and
/// that the last slice, which one worker finishes alone, is short.
const SLICES_PER_WORKER: usize = 16;

/// One backfill run.
pub(crate) struct BackfillRun<'a> {
    /// The runner's connection: it holds the advisory lock, and watches the other sessions
    /// while workers run.
    pub client: &'a mut Client,
    /// Where the workers' connections come from; None: batches run on `client`.
    pub sessions: Option<&'a ConnectOptions>,
    pub options: &'a BackfillOptions,
    pub timeouts: String,
    pub stop: &'a Stop,
    pub max_attempts: u32,
    pub migration: &'a str,
    pub step_id: &'a str,
    /// Contract's completeness check, which walks a shadow copy again: only the rows still out
    /// of sync are updated. The expand's first copy updates every row when nothing but zdm's
    /// own trigger would see the difference (`without_user_triggers`).
    pub check: bool,
    /// The cost model's estimate of the whole backfill, when there is one.
    pub estimated: Option<Duration>,
}

/// A part of the walk and the `zdm.steps` row that holds its cursor.
struct Slice {
    cursor_id: String,
    walk: Walk,
}

/// What the workers of one backfill share.
struct Shared<'a> {
    parts: &'a BatchParts,
    types: &'a [String],
    settings: &'a str,
    options: &'a BackfillOptions,
    stop: &'a Stop,
    max_attempts: u32,
    migration: &'a str,
    table: &'a str,
    /// Slices no worker holds, unfinished.
    queue: Mutex<VecDeque<Slice>>,
    /// Workers wanted: a worker whose slot is at or above it leaves after its batch.
    target: AtomicUsize,
    /// Other sessions are working: batches are short and wait for their WAL flush (pace.rs).
    gentle: AtomicBool,
    /// A worker failed: the others stop after their batch.
    halted: AtomicBool,
    /// Rows updated in this run, by all workers.
    rows: AtomicU64,
    /// Batches finished and their summed duration since the last window.
    batches: Mutex<(u32, Duration)>,
    started: Instant,
    progress: Mutex<Progress>,
}

impl Shared<'_> {
    fn take(&self) -> Option<Slice> {
        lock(&self.queue).pop_front()
    }

    fn give_back(&self, slice: Slice) {
        if !slice.walk.finished() {
            lock(&self.queue).push_front(slice);
        }
    }

    fn should_leave(&self, slot: usize) -> bool {
        self.stop.requested()
            || self.halted.load(Ordering::SeqCst)
            || slot >= self.target.load(Ordering::SeqCst)
    }

    fn record(&self, rows: i64, size: u64, took: Duration) {
        self.rows.fetch_add(rows as u64, Ordering::SeqCst);
        let mut b = lock(&self.batches);
        b.0 += 1;
        b.1 += took;
        drop(b);
        lock(&self.progress).advance(rows as u64, size);
    }
}

/// Locks a mutex whose holder cannot leave it half-changed (each critical section is one
/// push, pop or addition), so a poisoned one is used as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BackfillRun<'_> {
    pub async fn run(mut self, b: &Backfill) -> Result<(), RunError> {
        let mut parts = b.batch_parts();
        // The workers' sessions connect while the runner cuts the slices: each costs the server
        // a backend start, milliseconds that would otherwise all come before the first batch.
        let most = self.pace().most();
        let opening = self.sessions.filter(|_| most > 1).map(|sessions| {
            tokio::spawn(open_pool(sessions.clone(), most, self.migration.to_owned()))
        });
        // The queries that start the walk wait for locks no longer than a step would.
        let session_timeouts = self.timeouts.replace("SET LOCAL", "SET");
        self.client.batch_execute(&session_timeouts).await?;
        let prepared = self.prepare_slices(b, &parts).await;
        self.client
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await?;
        let (slices, types, total, no_user_trigger_fires) = prepared?;
        if b.shadow_copy && !self.check && no_user_trigger_fires {
            parts = parts.every_row();
        }
        state::record_backfill_start(
            self.client,
            self.migration,
            self.step_id,
            self.estimated.map(|d| d.as_secs_f64()),
            total.map(|t| t as i64),
        )
        .await?;
        let done_before = state::rows_done(self.client, self.migration, self.step_id).await?;
        if let Some(estimated) = self.estimated {
            tracing::info!(
                migration = self.migration,
                step = self.step_id,
                "backfill of {}: estimated {} for about {} rows",
                b.table,
                crate::plan::human_duration(estimated.as_millis() as u64),
                total.unwrap_or(0)
            );
        }
        let pending: VecDeque<Slice> = slices.into_iter().filter(|s| !s.walk.finished()).collect();
        let parallel = pending.len() > 1;
        let shared = Shared {
            parts: &parts,
            types: &types,
            settings: &self.timeouts,
            options: self.options,
            stop: self.stop,
            max_attempts: self.max_attempts,
            migration: self.migration,
            table: &parts.table,
            queue: Mutex::new(pending),
            target: AtomicUsize::new(1),
            gentle: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            rows: AtomicU64::new(0),
            batches: Mutex::new((0, Duration::ZERO)),
            started: Instant::now(),
            progress: Mutex::new(Progress::new(
                format!("{}: backfill {}", self.migration, b.table),
                total,
                done_before,
                self.estimated,
            )),
        };
        let pool = match opening {
            // A task that failed to run leaves the backfill on the runner's connection.
            Some(opening) if parallel => opening.await.ok().flatten(),
            Some(opening) => {
                opening.abort();
                None
            }
            None => None,
        };
        let (result, most) = match pool {
            Some(pool) => {
                let probe = Probe {
                    client: self.client,
                };
                let pace = self.pace_measured(&probe).await?;
                run_workers(&shared, &pool, pace, &probe).await
            }
            None => (work(&shared, self.client, 0).await, 1),
        };
        let unfinished = !lock(&shared.queue).is_empty();
        {
            let progress = lock(&shared.progress);
            match (&result, unfinished) {
                (Err(_), _) | (Ok(()), true) => progress.abandon(),
                (Ok(()), false) => progress.finish(),
            }
        }
        result?;
        if unfinished {
            return Err(RunError::Interrupted {
                migration: self.migration.to_owned(),
            });
        }
        state::set_step(&*self.client, self.migration, self.step_id, "done").await?;
        let rows = done_before + shared.rows.load(Ordering::SeqCst);
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
                workers = most,
                seconds = format!("{:.2}", shared.started.elapsed().as_secs_f64()),
                "backfilled {}",
                b.table
            );
        }
        Ok(())
    }

    /// The workers' count as configured: fixed, or adaptive up to the most.
    fn pace(&self) -> Pace {
        match self.options.workers {
            Some(n) => Pace::fixed(n),
            None if self.options.throttled() => Pace::fixed(1),
            None => Pace::adaptive(self.adaptive_most(), self.options.target_batch_time),
        }
    }

    /// The most workers the adaptive count may reach. A server on this machine has this
    /// machine's cores, and a worker beyond them takes CPU from the application without adding
    /// rows: on two cores three workers made no more rows/s than two, and doubled the
    /// application's p99 (docs/benchmarks.md).
    fn adaptive_most(&self) -> usize {
        let local_cores = self
            .sessions
            .filter(|s| s.is_local())
            .and_then(|_| std::thread::available_parallelism().ok());
        match local_cores {
            Some(cores) => self.options.max_workers.min(cores.get()),
            None => self.options.max_workers,
        }
    }

    /// The pace, gentle from the first batch when other sessions are working now.
    async fn pace_measured(&self, probe: &Probe<'_>) -> Result<Pace, RunError> {
        let mut pace = self.pace();
        pace.start(probe.others_active().await?);
        Ok(pace)
    }

    /// The slices of the walk: those saved by an earlier run of this step, or new ones cut
    /// from the table's range and saved, all in one transaction, before the first batch. Also
    /// the key's types, the table's estimated rows, and whether no user trigger fires for a
    /// shadow copy's updates.
    async fn prepare_slices(
        &mut self,
        b: &Backfill,
        parts: &BatchParts,
    ) -> Result<(Vec<Slice>, Vec<String>, Option<u64>, bool), RunError> {
        let types = walk::key_types(self.client, parts).await?;
        let total = walk::estimated_rows(self.client, &parts.table).await?;
        let saved = state::cursor(self.client, self.migration, self.step_id).await?;
        let slices = match saved {
            Some(cursor) if cursor.get("slices").is_some() => self.saved_slices(&cursor).await?,
            Some(cursor) if Walk::from_json(&cursor).is_some() => {
                let walk = Walk::from_json(&cursor).unwrap_or(Walk::Pages { next: 0, end: 0 });
                vec![self.whole(walk)]
            }
            _ => {
                let whole = walk::start(self.client, parts).await?;
                let count = self.slice_count(total);
                let walks = walk::split(self.client, parts, &types, whole, count).await?;
                self.save_slices(walks).await?
            }
        };
        let no_user_trigger_fires =
            b.shadow_copy && self.without_user_triggers(&parts.table).await?;
        Ok((slices, types, total, no_user_trigger_fires))
    }

    /// A walk not cut into slices: its cursor is the step's own.
    fn whole(&self, walk: Walk) -> Slice {
        Slice {
            cursor_id: self.step_id.to_owned(),
            walk,
        }
    }

    /// How many slices to cut: none for a small table, one worker, or no pool; else a few
    /// per worker the backfill may have, and no slice under ten thousand rows.
    fn slice_count(&self, rows: Option<u64>) -> usize {
        let most = self.pace().most();
        let rows = rows.unwrap_or(0);
        if self.sessions.is_none() || most <= 1 || rows < SPLIT_FROM_ROWS {
            return 1;
        }
        (most * SLICES_PER_WORKER)
            .min((rows / 10_000) as usize)
            .max(2)
    }

    /// Records the slices: each in a row `<step>#<n>` with its cursor, and their number in the
    /// step's row, in one transaction so that a resumed run finds all or none.
    async fn save_slices(&mut self, walks: Vec<Walk>) -> Result<Vec<Slice>, RunError> {
        if walks.len() == 1 {
            let walk = walks
                .into_iter()
                .next()
                .unwrap_or(Walk::Pages { next: 0, end: 0 });
            return Ok(vec![self.whole(walk)]);
        }
        let slices: Vec<Slice> = walks
            .into_iter()
            .enumerate()
            .map(|(i, walk)| Slice {
                cursor_id: format!("{}#{i}", self.step_id),
                walk,
            })
            .collect();
        let mut cursors: Vec<(&str, serde_json::Value)> = slices
            .iter()
            .map(|s| (s.cursor_id.as_str(), s.walk.to_json()))
            .collect();
        cursors.push((self.step_id, json!({"slices": slices.len()})));
        // One transaction; the inserts go out pipelined, not one round trip each.
        let tx = self.client.transaction().await?;
        let save = state::prepare_save_cursor(&tx).await?;
        let (tx_ref, save, migration) = (&tx, &save, self.migration);
        futures_util::future::try_join_all(cursors.iter().map(|(id, cursor)| async move {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&migration, id, cursor, &0i64];
            tx_ref.execute(save, &params).await
        }))
        .await?;
        tx.commit().await?;
        Ok(slices)
    }

    /// The slices an earlier run cut, each where its last committed batch left it.
    async fn saved_slices(&mut self, cursor: &serde_json::Value) -> Result<Vec<Slice>, RunError> {
        let count = cursor["slices"].as_u64().unwrap_or(0);
        let mut slices = Vec::new();
        for i in 0..count {
            let cursor_id = format!("{}#{i}", self.step_id);
            let saved = state::cursor(self.client, self.migration, &cursor_id).await?;
            let Some(walk) = saved.as_ref().and_then(Walk::from_json) else {
                return Err(RunError::Db(format!(
                    "{}: the backfill of step {} was cut into {count} slices, but the cursor of slice {i} is missing or unreadable in zdm.steps; the state was changed by hand: run `zdm abort` and expand again",
                    self.migration, self.step_id
                )));
            };
            slices.push(Slice { cursor_id, walk });
        }
        Ok(slices)
    }
    /// Has the batches of a shadow copy run with `session_replication_role = replica`, so
    /// that the user's row triggers (an `updated_at`, a version counter, an audit insert) do
    /// not fire for a write the application never made: the copy changes only a column zdm
    /// created. ENABLE ALWAYS triggers still fire, as they would on a replica. Foreign-key
    /// triggers are skipped too, which is safe because the copy writes no key column. The
    /// setting needs superuser (or, on PostgreSQL 15+, `GRANT SET ON PARAMETER`); without it
    /// the user's triggers fire, and zdm says so when the table has any.
    ///
    /// True when no user trigger fires for the copy's updates: then updating a row whose copy
    /// is already right (the application wrote it through zdm's trigger) changes nothing
    /// anyone sees, and the first copy may update every row without comparing.
    async fn without_user_triggers(&mut self, table: &str) -> Result<bool, RunError> {
        let probe = async {
            let tx = self.client.transaction().await?;
            tx.batch_execute("SET LOCAL session_replication_role = replica")
                .await?;
            tx.rollback().await
        }
        .await;
        let replica = match probe {
            Ok(()) => true,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        };
        // tgenabled 'A': ENABLE ALWAYS, fires on a replica too.
        let row = self
            .client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE tgenabled = 'A') FROM pg_trigger \
                 WHERE tgrelid = $1::text::regclass AND NOT tgisinternal AND tgname NOT LIKE '~%'",
                &[&table],
            )
            .await?;
        let (user_triggers, always): (i64, i64) = (row.get(0), row.get(1));
        if replica {
            self.timeouts
                .push_str("; SET LOCAL session_replication_role = replica");
            return Ok(always == 0);
        }
        if user_triggers > 0 {
            tracing::warn!(
                migration = self.migration,
                "{table} has {user_triggers} trigger(s) of its own, and this role may not set session_replication_role: they fire for each row the backfill copies (grant SET ON PARAMETER session_replication_role, or run zdm as a superuser, to avoid it)"
            );
        }
        Ok(user_triggers == 0)
    }
}

/// Opens the workers' pool with its `most` sessions, connecting side by side, and checks
/// that at least one could be made: when none can (a connection limit, a pooler that
/// refuses), the batches run on the runner's own connection.
async fn open_pool(
    sessions: ConnectOptions,
    most: usize,
    migration: String,
) -> Option<deadpool_postgres::Pool> {
    let workers = sessions.with_application_name(WORKER_APPLICATION);
    let opened = match workers.pool(most) {
        Ok(pool) => {
            let sessions = futures_util::future::join_all((0..most).map(|_| pool.get())).await;
            let first_error = sessions.iter().find_map(|s| s.as_ref().err());
            match (sessions.iter().any(Result::is_ok), first_error) {
                (false, Some(e)) => Err(e.to_string()),
                // Back into the pool, open, for the workers.
                _ => Ok(pool),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match opened {
        Ok(pool) => Some(pool),
        Err(e) => {
            tracing::warn!(
                migration = migration.as_str(),
                "cannot open a session for backfill workers ({e}); the backfill runs on one connection"
            );
            None
        }
    }
}

/// Runs workers from the pool until the slices are done, adjusting their number once per
/// window. Returns the result and the most workers that ran at once.
async fn run_workers(
    shared: &Shared<'_>,
    pool: &deadpool_postgres::Pool,
    mut pace: Pace,
    probe: &Probe<'_>,
) -> (Result<(), RunError>, usize) {
    shared.target.store(pace.target, Ordering::SeqCst);
    shared.gentle.store(pace.gentle, Ordering::SeqCst);
    // Full speed is what a backfill does unless said otherwise: only a change is news.
    if pace.gentle {
        report_gentle(shared, true);
    }
    let mut busy = vec![false; pace.most()];
    let mut running = FuturesUnordered::new();
    let mut first_error = None;
    let mut most = 0;
    let mut window_start = (Instant::now(), 0u64);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + WINDOW, WINDOW);
    loop {
        let wanted = shared.target.load(Ordering::SeqCst);
        let can_start = first_error.is_none() && !shared.stop.requested();
        while can_start && running.len() < wanted && !lock(&shared.queue).is_empty() {
            let Some(slot) = busy.iter().position(|b| !b) else {
                break;
            };
            busy[slot] = true;
            running.push(pooled_worker(shared, pool, slot));
        }
        most = most.max(running.len());
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some((slot, result)) = running.next() => {
                busy[slot] = false;
                if let Err(e) = result {
                    shared.halted.store(true, Ordering::SeqCst);
                    first_error.get_or_insert(e);
                }
            }
            _ = ticker.tick() => {
                let rows = shared.rows.load(Ordering::SeqCst);
                let seconds = window_start.0.elapsed().as_secs_f64().max(0.001);
                let (count, summed) = std::mem::take(&mut *lock(&shared.batches));
                let window = Window {
                    rows_per_second: (rows - window_start.1) as f64 / seconds,
                    mean_batch: if count == 0 { Duration::ZERO } else { summed / count },
                    // Unknown counts as active: the application's latency comes first.
                    others_active: probe.others_active().await.unwrap_or(true),
                };
                window_start = (Instant::now(), rows);
                let target = pace.after(window);
                tracing::debug!(rows_per_second = window.rows_per_second as u64, others_active = window.others_active, workers = target, gentle = pace.gentle, "backfill window");
                shared.target.store(target, Ordering::SeqCst);
                if shared.gentle.swap(pace.gentle, Ordering::SeqCst) != pace.gentle {
                    report_gentle(shared, pace.gentle);
                }
            }
        }
    }
    (first_error.map_or(Ok(()), Err), most)
}

/// A worker on a connection of the pool; returns its slot with its result.
async fn pooled_worker(
    shared: &Shared<'_>,
    pool: &deadpool_postgres::Pool,
    slot: usize,
) -> (usize, Result<(), RunError>) {
    let result = match pool.get().await {
        Ok(mut client) => work(shared, &mut client, slot).await,
        Err(e) if slot > 0 => {
            // Fewer workers than wanted: the others carry on.
            tracing::warn!(
                migration = shared.migration,
                "cannot open another session for a backfill worker: {e}"
            );
            Ok(())
        }
        Err(e) => Err(RunError::Db(format!(
            "{}: cannot open a session for the backfill of {}: {e}; its cursor is saved: run the command again to resume",
            shared.migration, shared.table
        ))),
    };
    (slot, result)
}

/// Says when the batches turn gentle or back, so a slower backfill is explained in the log.
fn report_gentle(shared: &Shared<'_>, gentle: bool) {
    if gentle {
        tracing::info!(
            migration = shared.migration,
            "other sessions are working: backfill batches of {} take at most {} ms and wait for their WAL flush, so the application's commits do not flush them",
            shared.table,
            pace::GENTLE_BATCH.as_millis()
        );
    } else {
        tracing::info!(
            migration = shared.migration,
            "no other session is working: the backfill of {} runs at full speed",
            shared.table
        );
    }
}

/// What the runner's connection watches for the pace, between the workers' batches.
struct Probe<'a> {
    client: &'a Client,
}

impl Probe<'_> {
    /// Whether another client session of this database is working now or was within the last
    /// window (another database's application pays for the WAL flushes too, but is not
    /// counted, so that what zdm does depends on this database alone): running
    /// a query, inside a transaction, or idle for less than a window. The runner and the
    /// workers ([`WORKER_APPLICATION`]) do not count. A session whose state this role may
    /// not see counts as working.
    async fn others_active(&self) -> Result<bool, RunError> {
        let window_ms = WINDOW.as_millis() as f64;
        let workers = WORKER_APPLICATION;
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND datname = current_database() \
                   AND pid <> pg_backend_pid() \
                   AND application_name IS DISTINCT FROM $2 \
                   AND (state IS DISTINCT FROM 'idle' \
                        OR state_change > clock_timestamp() - $1 * interval '1 millisecond'))",
                &[&window_ms, &workers],
            )
            .await?;
        Ok(row.get(0))
    }
}

/// One worker: takes slices from the queue and runs their batches until they are done, the
/// pace wants fewer workers than its slot, or the backfill stops.
async fn work(shared: &Shared<'_>, client: &mut Client, slot: usize) -> Result<(), RunError> {
    let statements = walk::prepare(client, shared.parts, shared.types).await?;
    let save_cursor = state::prepare_save_cursor(client).await?;
    let mut size = shared.options.batch_size.max(1);
    let mut failures = 0;
    while let Some(mut slice) = shared.take() {
        let cursor_id = slice.cursor_id.clone();
        let of = BatchOf {
            statements: &statements,
            settings: shared.settings,
            migration: shared.migration,
            cursor_id: &cursor_id,
            save_cursor: &save_cursor,
        };
        while !slice.walk.finished() {
            if shared.should_leave(slot) {
                shared.give_back(slice);
                return Ok(());
            }
            if let Err(e) = wait_for_replicas(client, shared).await {
                shared.give_back(slice);
                return Err(e);
            }
            let gentle = shared.gentle.load(Ordering::SeqCst);
            let began = Instant::now();
            match walk::batch(client, &of, &slice.walk, size as i64, gentle).await {
                Ok((next, updated)) => {
                    failures = 0;
                    slice.walk = next;
                    let took = began.elapsed();
                    shared.record(updated, size, took);
                    tracing::debug!(
                        migration = shared.migration,
                        slice = cursor_id,
                        rows = updated,
                        batch = size,
                        ms = took.as_millis() as u64,
                        "batch"
                    );
                    let full = !slice.walk.finished();
                    size = shared.options.next_size(size, took, full, gentle);
                    throttle(shared).await;
                }
                // A batch that lost a lock wait or deadlocked with the application rolled
                // back alone; the cursor is where it was, so the same batch is tried again.
                Err(e) if is_retryable(&e) && failures + 1 < shared.max_attempts => {
                    failures += 1;
                    let wait = backoff(failures);
                    tracing::warn!(
                        migration = shared.migration,
                        slice = cursor_id,
                        "backfill batch: {}; retrying in {} ms",
                        super::message(&e),
                        wait.as_millis()
                    );
                    shared.stop.sleep(wait).await;
                }
                Err(e) => {
                    shared.give_back(slice);
                    if client.is_closed() {
                        return Err(RunError::Db(format!(
                            "{}: the connection was lost during the backfill of {} ({}); its cursor is saved: run the command again to resume",
                            shared.migration,
                            shared.table,
                            super::message(&e)
                        )));
                    }
                    return Err(RunError::Batch(e));
                }
            }
        }
    }
    Ok(())
}

/// Sleeps for the pause and for as long as the rate limit asks, counting every worker's rows.
async fn throttle(shared: &Shared<'_>) {
    let mut wait = shared.options.pause;
    if let Some(limit) = shared.options.max_rows_per_second.filter(|l| *l > 0) {
        let rows = shared.rows.load(Ordering::SeqCst);
        let due = Duration::from_secs_f64(rows as f64 / limit as f64);
        wait = wait.max(due.saturating_sub(shared.started.elapsed()));
    }
    if !wait.is_zero() {
        shared.stop.sleep(wait).await;
    }
}

/// Waits while any standby replays more than the bound behind, logging each wait.
async fn wait_for_replicas(client: &Client, shared: &Shared<'_>) -> Result<(), RunError> {
    let Some(bound) = shared.options.max_replication_lag else {
        return Ok(());
    };
    loop {
        let lag: f64 = client
            .query_one(
                "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication",
                &[],
            )
            .await?
            .get(0);
        if lag <= bound.as_secs_f64() || shared.stop.requested() {
            return Ok(());
        }
        tracing::info!(
            migration = shared.migration,
            "replication lag {lag:.1} s exceeds {} ms; waiting",
            bound.as_millis()
        );
        shared.stop.sleep(Duration::from_secs(1)).await;
    }
}

/// Rows done, rate and ETA: a bar on a terminal, a log line every few seconds otherwise.
/// The ETA comes from the cost model's estimate until batches have run long enough to measure
/// the rate, then from the measured rate.
struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    done_at_start: u64,
    last_line: Instant,
    estimated: Option<Duration>,
}

/// How long batches run before their rate replaces the model's estimate in the ETA.
const MEASURED_AFTER: Duration = Duration::from_secs(2);

const LOG_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn new(label: String, total: Option<u64>, done: u64, estimated: Option<Duration>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => ProgressBar::new(t.max(done)),
                None => ProgressBar::no_length(),
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, {prefix}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label.clone());
            bar.set_position(done);
            bar
        });
        let progress = Progress {
            label,
            bar,
            total,
            done,
            started: Instant::now(),
            done_at_start: done,
            last_line: Instant::now(),
            estimated,
        };
        if let Some(bar) = &progress.bar {
            bar.set_prefix(progress.eta_text());
        }
        progress
    }

    /// The time left, and whether it was measured (else estimated by the model).
    fn eta(&self) -> Option<(Duration, bool)> {
        let total = self.total?;
        let left = total.saturating_sub(self.done);
        let elapsed = self.started.elapsed();
        let rows = self.done - self.done_at_start;
        if elapsed >= MEASURED_AFTER && rows > 0 {
            let rate = rows as f64 / elapsed.as_secs_f64();
            return Some((Duration::from_secs_f64(left as f64 / rate), true));
        }
        let estimated = self.estimated?;
        let share = if total == 0 {
            0.0
        } else {
            left as f64 / total as f64
        };
        Some((estimated.mul_f64(share).saturating_sub(elapsed), false))
    }

    fn eta_text(&self) -> String {
        match self.eta() {
            Some((left, measured)) => format!(
                "ETA {} ({})",
                crate::plan::human_duration(left.as_millis() as u64),
                if measured { "measured" } else { "estimated" }
            ),
            None => "ETA unknown".to_owned(),
        }
    }

    fn advance(&mut self, rows: u64, batch: u64) {
        self.done += rows;
        if let Some(bar) = &self.bar {
            if self.total.is_some_and(|t| self.done > t) {
                bar.set_length(self.done);
            }
            bar.set_position(self.done);
            bar.set_prefix(self.eta_text());
            return;
        }
        if self.last_line.elapsed() >= LOG_EVERY {
            self.last_line = Instant::now();
            let rate = (self.done - self.done_at_start) as f64
                / self.started.elapsed().as_secs_f64().max(0.001);
            let of = match self.total {
                Some(t) if t >= self.done && rate > 0.0 => format!(
                    " of about {t} ({:.0}%), {}",
                    100.0 * self.done as f64 / t as f64,
                    self.eta_text()
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
        let o = BackfillOptions {
            target_batch_time: Duration::from_millis(50),
            ..BackfillOptions::default()
        };
        // Too fast: grows in proportion, at most twofold.
        assert_eq!(
            o.next_size(1000, Duration::from_millis(40), true, false),
            1250
        );
        assert_eq!(
            o.next_size(1000, Duration::from_millis(1), true, false),
            2000
        );
        // The last batch of a slice, short because little was left, does not grow it.
        assert_eq!(
            o.next_size(1000, Duration::from_millis(1), false, false),
            1000
        );
        // Too slow: shrinks, at most to a quarter, whether full or not.
        assert_eq!(
            o.next_size(1000, Duration::from_millis(100), true, false),
            500
        );
        assert_eq!(
            o.next_size(1000, Duration::from_millis(400), false, false),
            250
        );
        assert_eq!(
            o.next_size(40_000, Duration::from_millis(10), true, false),
            50_000
        );
        let fixed = BackfillOptions {
            target_batch_time: Duration::ZERO,
            ..o
        };
        assert_eq!(
            fixed.next_size(1000, Duration::from_secs(3), true, false),
            1000
        );
    }
}
