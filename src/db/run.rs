//! What a run is given and how it ends: the options of `zdm expand`, `contract` and `abort`,
//! the stop signal SIGINT and SIGTERM raise, and the error that says what the user does next.
//! Shared by the runner (`executor`) and the backfill engine (`backfill`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::message;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The longest one attempt of a step waits for a lock; a queued ACCESS EXCLUSIVE request
    /// blocks every later query on its table, so this is also the longest the application can
    /// be held up by one attempt. A step asks only in a lock window (see `lock_window`).
    pub lock_timeout: Duration,
    /// How long a step may wait for its lock, over all its attempts and lock-window waits;
    /// then it stops with the sessions that held the lock named, and resumes on the next run.
    pub lock_deadline: Duration,
    /// End the transactions that have held a conflicting lock this long
    /// (`--cancel-blockers-after`); never by default.
    pub cancel_blockers_after: Option<Duration>,
    /// With `cancel_blockers_after`: terminate the blocking sessions instead of cancelling
    /// their statements (which also ends an idle transaction).
    pub terminate_blockers: bool,
    /// The lock wait of CONCURRENTLY steps, which also wait for every older transaction to
    /// end. Their SHARE UPDATE EXCLUSIVE lock blocks no application query, so by default they
    /// wait as long as `lock_deadline`.
    pub concurrent_lock_timeout: Option<Duration>,
    /// Where zdm may open more sessions beside the runner's: one to watch a CONCURRENTLY step
    /// that waits for older transactions (it names them every few seconds), and the backfill's
    /// workers. None: waits are not named and batches run on the runner's connection.
    pub sessions: Option<super::ConnectOptions>,
    /// The longest one statement may run (zero: no limit).
    pub statement_timeout: Duration,
    /// Attempts of a step whose lock is not granted (or that deadlocks) before giving up;
    /// None: as many as `lock_deadline` allows.
    pub max_attempts: Option<u32>,
    pub backfill: BackfillOptions,
    pub stop: Stop,
    /// Expand a migration again even though an aborted run of it had started a backfill that
    /// is not safe to repeat (an UPDATE whose new values depend on the old): the user has put
    /// the rows back or accepts the second application.
    pub rerun_backfill: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            lock_timeout: Duration::from_millis(100),
            lock_deadline: Duration::from_secs(300),
            cancel_blockers_after: None,
            terminate_blockers: false,
            concurrent_lock_timeout: None,
            sessions: None,
            statement_timeout: Duration::ZERO,
            max_attempts: None,
            backfill: BackfillOptions::default(),
            stop: Stop::default(),
            rerun_backfill: false,
        }
    }
}

pub use super::state::Phase;

impl Phase {
    fn advice(self) -> &'static str {
        match self {
            Phase::Expand => "fix the cause, then `zdm expand` resumes it; `zdm abort` undoes it",
            Phase::Contract => "fix the cause, then `zdm contract` resumes it",
            Phase::Abort => {
                "fix the cause (an undo may need data the new application did not write), then run `zdm abort` again; `zdm expand` goes forward instead"
            }
        }
    }
}

/// A request to stop after the current batch or step (SIGINT, SIGTERM). Every wait of the
/// runner (a retry's backoff, a rate limit, a pause, a replication-lag hold) is a
/// [`Stop::sleep`], which ends as soon as a stop is requested.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<StopSignal>);

#[derive(Debug, Default)]
pub struct StopSignal {
    requested: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Stop {
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.wake.notify_waiters();
    }

    pub fn requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration`, or until a stop is requested.
    pub async fn sleep(&self, duration: Duration) {
        let woken = self.0.wake.notified();
        tokio::pin!(woken);
        // Registered before the flag is read, so a request in between still wakes it.
        woken.as_mut().enable();
        if self.requested() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = woken => {}
        }
    }
}

/// Why a run stopped. Each variant says what the user does next.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "another zdm runner is working on this database{}; wait for it to finish (a session left by a killed runner ends when its statement does, or with `SELECT pg_terminate_backend(pid)`)",
        .holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    Busy {
        pid: Option<i32>,
        holder: Option<String>,
    },
    #[error(
        "{path}: the migration changed after it was applied (checksum {recorded}, now {current}); restore the file or write a new migration; nothing was run"
    )]
    Edited {
        path: String,
        recorded: String,
        current: String,
    },
    #[error(
        "{migration}: {step} failed after {attempts} attempt(s): {message}; the migration is marked failed: {}",
        .phase.advice()
    )]
    Step {
        migration: String,
        step: String,
        attempts: u32,
        message: String,
        phase: Phase,
    },
    #[error(
        "{path}:{line}: an expression of this statement fails against the database: {message}; fix the statement (or its -- zdm: directive) and run the command again; nothing of this migration was run"
    )]
    Expression {
        path: String,
        line: usize,
        message: String,
    },
    #[error(
        "{migration}: expanding it needs the contract of {earlier} first (both change {table}); run `zdm contract`, then `zdm expand` again"
    )]
    NeedsContract {
        migration: String,
        earlier: String,
        table: String,
    },
    /// The session zdm got cannot run migrations safely (its settings, not any migration).
    #[error("the database session is not usable: {0}")]
    Session(String),
    #[error("{migration} is {status}; {what}")]
    WrongState {
        migration: String,
        status: String,
        what: String,
    },
    #[error(
        "{migration}: stopped on request; its state is saved: run the same command again to resume, or `zdm abort` to undo"
    )]
    Interrupted { migration: String },
    /// A backfill batch failed; the runner retries it or reports it as a failed `Step`.
    #[error("backfill batch failed: {}", message(.0))]
    Batch(tokio_postgres::Error),
    #[error("database error: {0}")]
    Db(String),
}

impl From<tokio_postgres::Error> for RunError {
    fn from(e: tokio_postgres::Error) -> Self {
        RunError::Db(message(&e))
    }
}

/// How fast a backfill may go.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Rows in the first batch.
    pub batch_size: u64,
    /// Adapt the batch size so a batch takes about this long (zero: keep `batch_size`).
    pub target_batch_time: Duration,
    pub max_batch_size: u64,
    /// At most this many rows per second, on average over the backfill.
    pub max_rows_per_second: Option<u64>,
    /// A pause after each batch.
    pub pause: Duration,
    /// Wait while a standby's replay lag (`pg_stat_replication.replay_lag`) exceeds this.
    pub max_replication_lag: Option<Duration>,
    /// Connections that run batches side by side; None: chosen while the backfill runs, from
    /// one up to `max_workers` (see `backfill/pace.rs`).
    pub workers: Option<usize>,
    pub max_workers: usize,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            batch_size: 1000,
            // A batch holds the locks of the rows it updated until it commits, so an
            // application write to one of them waits up to this long.
            target_batch_time: Duration::from_millis(10),
            max_batch_size: 50_000,
            max_rows_per_second: None,
            pause: Duration::ZERO,
            max_replication_lag: None,
            workers: None,
            max_workers: 4,
        }
    }
}
