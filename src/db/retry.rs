//! The retry policy shared by steps and backfill batches: which errors are worth another
//! attempt (a lock timeout, a deadlock, a serialization failure), how long to wait before it,
//! and who to name as the blocker.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

pub(super) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Jittered exponential backoff: about 100 ms, 200 ms, 400 ms… up to 5 s.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    Duration::from_millis(base / 2 + nanos % (base / 2 + 1))
}

/// Who holds locks on a relation now, for messages: `pid 123 (idle in transaction for 4 s:
/// SELECT …)`. Best effort: an error here only leaves the message shorter.
pub(super) async fn lock_holders(client: &Client, relation: &str) -> Vec<String> {
    let rows = client
        .query(
            "SELECT format('pid %s (%s, %s for %s s: %s)', a.pid, l.mode, a.state,
                           coalesce(extract(epoch FROM now() - a.xact_start)::int, 0),
                           left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80))
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.relation = to_regclass($1) AND l.granted AND a.pid <> pg_backend_pid()
             ORDER BY a.xact_start LIMIT 3",
            &[&relation],
        )
        .await;
    rows.map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}
