//! The application workload: clients issuing one version's queries at a fixed rate, switched
//! to the other version as a rolling deploy would, every query's latency recorded.
//!
//! Latency is measured from when a query was due, not from when it was sent (as wrk2 does):
//! a client stuck behind a lock for two seconds owes the queries it could not send, and they
//! count with the wait they suffered. Otherwise a stall would hide itself by sending fewer
//! samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use zdm::db::ConnectOptions;

/// The queries of one application version. Each takes one bigint parameter: an existing id
/// for reads and updates, a fresh id for inserts.
#[derive(Debug, Clone)]
pub struct AppVersion {
    pub queries: Vec<Query>,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub sql: String,
    pub fresh_id: bool,
}

/// One query's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was due, since the run started.
    pub at: Duration,
    pub latency: Duration,
    pub ok: bool,
}

/// A running workload.
pub struct Workload {
    stop: Arc<AtomicBool>,
    /// How many clients run the new version (clients `0..n` switch first).
    switched: Arc<AtomicUsize>,
    samples: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub started: Instant,
    clients: usize,
}

impl Workload {
    pub async fn start(
        connection: &ConnectOptions,
        clients: usize,
        rate: u32,
        rows: i64,
        old: AppVersion,
        new: AppVersion,
        next_id: Arc<AtomicI64>,
    ) -> anyhow::Result<Workload> {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let switched = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for client_no in 0..clients {
            let client = connection.connect().await?;
            let (old, new) = (old.clone(), new.clone());
            let (stop, switched, samples, errors, next_id) = (
                stop.clone(),
                switched.clone(),
                samples.clone(),
                errors.clone(),
                next_id.clone(),
            );
            let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            tasks.push(tokio::spawn(async move {
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut n = client_no as u64;
                let mut local = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let due = interval.tick().await.into_std();
                    let version = if client_no < switched.load(Ordering::SeqCst) {
                        &new
                    } else {
                        &old
                    };
                    let q = &version.queries[n as usize % version.queries.len()];
                    n += 1;
                    let id = if q.fresh_id {
                        next_id.fetch_add(1, Ordering::SeqCst)
                    } else {
                        // A spread-out pseudo-random existing row.
                        1 + ((n.wrapping_mul(2_654_435_761)) % rows as u64) as i64
                    };
                    let result = client.execute(q.sql.as_str(), &[&id]).await;
                    let sample = Sample {
                        at: due.saturating_duration_since(started),
                        latency: due.elapsed(),
                        ok: result.is_ok(),
                    };
                    if let Err(e) = result {
                        errors
                            .lock()
                            .await
                            .push(format!("{}: {}", q.sql, zdm::db::message(&e)));
                    }
                    local.push(sample);
                }
                samples.lock().await.extend(local);
            }));
        }
        Ok(Workload {
            stop,
            switched,
            samples,
            errors,
            tasks,
            started,
            clients,
        })
    }

    /// Seconds since the workload started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Moves the clients to the new version one by one over `over`, as instances of a rolling
    /// deploy restart.
    pub async fn rolling_deploy(&self, over: Duration) {
        let step = over / self.clients.max(1) as u32;
        for i in 1..=self.clients {
            tokio::time::sleep(step).await;
            self.switched.store(i, Ordering::SeqCst);
        }
    }

    pub async fn finish(self) -> (Vec<Sample>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut samples = self.samples.lock().await.clone();
        samples.sort_by_key(|s| s.at);
        let errors = self.errors.lock().await.clone();
        (samples, errors)
    }
}

/// Latency figures of the samples due within `[from, to)` seconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    pub queries: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub fn stats(samples: &[Sample], from: f64, to: f64) -> Stats {
    let mut histogram =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut out = Stats::default();
    for s in samples {
        let at = s.at.as_secs_f64();
        if at < from || at >= to {
            continue;
        }
        out.queries += 1;
        if !s.ok {
            out.errors += 1;
        }
        histogram.saturating_record(s.latency.as_micros().max(1) as u64);
    }
    if out.queries > 0 {
        let ms = |us: u64| us as f64 / 1000.0;
        out.p50_ms = ms(histogram.value_at_quantile(0.50));
        out.p99_ms = ms(histogram.value_at_quantile(0.99));
        out.max_ms = ms(histogram.max());
    }
    out
}
