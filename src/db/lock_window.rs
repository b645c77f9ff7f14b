//! Lock windows: a step that needs a lock the application's sessions could be queued behind
//! asks for it only when no other session holds a conflicting lock in a long transaction.
//!
//! PostgreSQL grants locks in queue order. A request for ACCESS EXCLUSIVE that waits behind a
//! long reader makes every later query on the table wait behind it too, for as long as the
//! request waits: with a 1 s `lock_timeout`, a 6 s report stalls the application for a second
//! at every attempt. So before each attempt the runner looks at `pg_locks` (which asks for
//! nothing and queues behind nothing) and waits while a session holds a lock that conflicts
//! with one the step will take in a transaction that is long: open longer than the step's
//! `lock_timeout`, or still the same transaction at a second look [`PROBE`] later (a report
//! that started a moment before the step is long too). Only then does it ask, with the short
//! `lock_timeout`, so that a holder that appears in between costs the application at most
//! that long. The application's short transactions are not waited for: each is gone by the
//! second look, and waiting for a moment with none would never end under load.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio_postgres::Client;

use super::ConnectOptions;
use crate::catalog::Catalog;
use crate::classify::{Env, LockMode, classify};
use crate::parse::parse_statement;
use crate::plan::Step;
use crate::source::split_statements;
use crate::sql::{Name, Qualified};

/// A lock a step takes: on which relation (as `Qualified` writes it), in which mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    pub relation: String,
    pub mode: LockMode,
}

/// The locks a step takes, strongest per relation, in a fixed order (by relation name): what
/// `classify` says of each of its statements, and the lock the plan records for it.
pub(super) fn wanted_locks(step: &Step, pg_version: u32) -> Vec<Wanted> {
    let catalog = Catalog::default();
    let env = Env {
        pg_version,
        catalog: &catalog,
        is_new: &|_: &Name| false,
    };
    let mut strongest: BTreeMap<String, LockMode> = BTreeMap::new();
    let mut add = |relation: &Name, mode: LockMode| {
        let entry = strongest
            .entry(Qualified(relation).to_string())
            .or_insert(mode);
        *entry = (*entry).max(mode);
    };
    if let Some(lock) = &step.lock {
        add(&lock.relation, lock.mode);
    }
    for stmt in split_statements(&step.sql).statements {
        for effect in classify(&parse_statement(&stmt), &env).effects {
            add(&effect.relation, effect.lock);
        }
    }
    strongest
        .into_iter()
        .map(|(relation, mode)| Wanted { relation, mode })
        .collect()
}

/// Whether waiting for `wanted` could hold up the application: its ordinary reads and writes
/// (ACCESS SHARE, ROW SHARE, ROW EXCLUSIVE) conflict with it.
pub(super) fn could_queue_the_application(wanted: &[Wanted]) -> bool {
    wanted.iter().any(|w| {
        [
            LockMode::AccessShare,
            LockMode::RowShare,
            LockMode::RowExclusive,
        ]
        .iter()
        .any(|m| w.mode.conflicts_with(*m))
    })
}

/// How long after a look at `pg_locks` that found holders the runner looks again: a
/// transaction that still holds its lock then is one to wait out.
pub(super) const PROBE: Duration = Duration::from_millis(50);

/// A session holding a lock that conflicts with one a step wants.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Blocker {
    pub pid: i32,
    /// When its transaction (or its statement, outside one) started, in epoch seconds: with
    /// the pid, which transaction it is.
    pub since: f64,
    pub application: String,
    pub state: String,
    /// How long its transaction (or its statement, outside one) has been running.
    pub seconds: f64,
    pub query: String,
    pub relation: String,
    pub mode: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let application = if self.application.is_empty() {
            String::new()
        } else {
            format!(" \"{}\"", self.application)
        };
        write!(
            f,
            "pid {}{application} ({}, transaction open {:.0} s, {} on {}: {})",
            self.pid, self.state, self.seconds, self.mode, self.relation, self.query
        )
    }
}

/// The sessions holding a lock that conflicts with `wanted`, longest first. zdm's own session
/// is never one.
pub(super) async fn blockers(
    client: &Client,
    wanted: &[Wanted],
) -> Result<Vec<Blocker>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for w in wanted {
        let conflicting: Vec<&str> = LockMode::ALL
            .into_iter()
            .filter(|m| m.conflicts_with(w.mode))
            .map(LockMode::pg_locks_name)
            .collect();
        let rows = client
            .query(
                "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
                        extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::float8,
                        left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 100),
                        l.mode,
                        extract(epoch FROM coalesce(a.xact_start, a.query_start))::float8
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'relation' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.relation = to_regclass($1)
                   AND l.mode = ANY($2)
                   AND l.pid <> pg_backend_pid()
                 ORDER BY 4 DESC",
                &[&w.relation, &conflicting],
            )
            .await?;
        for r in rows {
            let pid: i32 = r.get(0);
            if out.iter().any(|b: &Blocker| b.pid == pid) {
                continue;
            }
            out.push(Blocker {
                pid,
                application: r.get(1),
                state: r.get(2),
                seconds: r.get(3),
                query: r.get(4),
                relation: w.relation.clone(),
                mode: r.get(5),
                since: r.get(6),
            });
        }
    }
    Ok(out)
}

/// The holders in `now` to wait out: open longer than `older_than`, or the same transaction
/// (pid and start) as at the look `before`.
pub(super) fn long_holders(
    now: &[Blocker],
    before: Option<&[Blocker]>,
    older_than: Duration,
) -> Vec<Blocker> {
    now.iter()
        .filter(|b| {
            b.seconds > older_than.as_secs_f64()
                || before.is_some_and(|before| {
                    before.iter().any(|o| o.pid == b.pid && o.since == b.since)
                })
        })
        .cloned()
        .collect()
}

/// `LOCK TABLE` for each wanted relation that can be locked so (a table, view or foreign
/// table that exists), in the fixed order of `wanted`: a step that locks several relations
/// takes them all up front, so nothing after its first statement waits, and two runs never
/// take them in opposite orders.
pub(super) async fn lock_up_front(
    client: &Client,
    wanted: &[Wanted],
) -> Result<String, tokio_postgres::Error> {
    let mut sql = String::new();
    for w in wanted {
        let lockable: bool = client
            .query_one(
                "SELECT coalesce((SELECT relkind IN ('r', 'p', 'v', 'm', 'f') FROM pg_class WHERE oid = to_regclass($1)), false)",
                &[&w.relation],
            )
            .await?
            .get(0);
        if lockable {
            sql.push_str(&format!("LOCK TABLE {} IN {} MODE;\n", w.relation, w.mode));
        }
    }
    Ok(sql)
}

/// Ends the transactions of `blockers` that have held their lock longer than `after`:
/// `pg_cancel_backend` (the running statement), or with `terminate` `pg_terminate_backend`
/// (the session, which also ends an idle transaction). Returns what was done, for the log.
pub(super) async fn end_blockers(
    client: &Client,
    blockers: &[Blocker],
    after: Duration,
    terminate: bool,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut done = Vec::new();
    for b in blockers.iter().filter(|b| b.seconds > after.as_secs_f64()) {
        if b.application.starts_with("zdm") {
            continue;
        }
        let function = if terminate {
            "pg_terminate_backend"
        } else {
            "pg_cancel_backend"
        };
        let ok: bool = client
            .query_one(&format!("SELECT {function}($1)"), &[&b.pid])
            .await?
            .get(0);
        if ok {
            done.push(format!("{function}({}) for {b}", b.pid));
        }
    }
    Ok(done)
}

/// Watches a CONCURRENTLY step from a second session: after a few seconds, and every few
/// seconds after that, logs the sessions it waits for (`pg_blocking_pids`: the transactions
/// older than the build, which it must outlast). Runs until aborted; a failure to connect or
/// query only leaves them unnamed.
pub(super) async fn name_what_it_waits_for(watch: ConnectOptions, pid: i32, step: String) {
    const EVERY: Duration = Duration::from_secs(5);
    tokio::time::sleep(EVERY).await;
    let Ok(client) = watch.connect().await else {
        return;
    };
    loop {
        let rows = client
            .query(
                "SELECT format('pid %s%s (%s, transaction open %s s: %s)', a.pid,
                               coalesce(' \"' || nullif(a.application_name, '') || '\"', ''),
                               a.state,
                               coalesce(extract(epoch FROM now() - a.xact_start)::int, 0),
                               left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 100))
                 FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1))
                 ORDER BY a.xact_start",
                &[&pid],
            )
            .await;
        if let Ok(rows) = rows
            && !rows.is_empty()
        {
            let named: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            tracing::warn!(
                "{step} waits for these transactions to end (a CONCURRENTLY build outlasts every transaction older than itself; the application is not held up): {}",
                named.join("; ")
            );
        }
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: i32, since: f64, seconds: f64) -> Blocker {
        Blocker {
            pid,
            since,
            application: String::new(),
            state: "active".into(),
            seconds,
            query: String::new(),
            relation: "t".into(),
            mode: "AccessShareLock".into(),
        }
    }

    #[test]
    fn a_holder_is_long_when_old_or_seen_twice_in_the_same_transaction() {
        let timeout = Duration::from_millis(100);
        // First look: only what is already older than the timeout.
        let now = [holder(1, 10.0, 0.01), holder(2, 5.0, 3.0)];
        let long = long_holders(&now, None, timeout);
        assert_eq!(long.iter().map(|b| b.pid).collect::<Vec<_>>(), [2]);
        // Second look: pid 1 in the same transaction is long; pid 3 is new; pid 4 is the same
        // session in a new transaction (a short one ended and another began).
        let before = [holder(1, 10.0, 0.01), holder(4, 11.0, 0.01)];
        let now = [
            holder(1, 10.0, 0.06),
            holder(3, 12.0, 0.0),
            holder(4, 12.5, 0.0),
        ];
        let long = long_holders(&now, Some(&before), timeout);
        assert_eq!(long.iter().map(|b| b.pid).collect::<Vec<_>>(), [1]);
    }
}
