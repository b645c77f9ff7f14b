//! What a plan is estimated to cost on one database: each step's duration, how long it holds a
//! lock that blocks the application, and the WAL it writes. The planner never fills these in
//! (it works offline); `cost` computes them from the tables' statistics and a read-only
//! calibration of the server, and the plan's output formats show them.

use crate::parse::Name;

/// What a step does to its table's data, which decides what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Changes only the catalog: instant once its lock is granted.
    Catalog,
    /// Reads the whole table (a VALIDATE, a SET NOT NULL without a proof, a foreign key check).
    Scan,
    /// Builds an index: a scan, a sort and the index written out.
    IndexBuild,
    /// `CREATE INDEX CONCURRENTLY`: the build, then a second scan to add the rows written
    /// meanwhile, and waits for older transactions.
    ConcurrentIndexBuild,
    /// Writes the whole table again and rebuilds its indexes.
    Rewrite,
    /// Updates rows: a backfill in batches, or an UPDATE run as written.
    Update,
}

impl Work {
    pub fn as_str(self) -> &'static str {
        match self {
            Work::Catalog => "catalog only",
            Work::Scan => "scans the table",
            Work::IndexBuild => "builds an index",
            Work::ConcurrentIndexBuild => "builds an index concurrently",
            Work::Rewrite => "rewrites the table",
            Work::Update => "updates rows",
        }
    }
}

/// The estimate of one step or backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEstimate {
    pub work: Work,
    /// The table whose size the estimate is based on.
    pub table: Option<Name>,
    pub millis: u64,
    pub wal_bytes: u64,
    /// How long a lock that blocks the application's reads or writes is held (ACCESS
    /// EXCLUSIVE, EXCLUSIVE, SHARE…): all of `millis` when the step works under such a lock,
    /// zero for a concurrent build or a backfill's short batches.
    pub blocking_millis: u64,
}

/// A table a plan works on, as its statistics describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSize {
    pub name: Name,
    /// Estimated rows (`pg_class.reltuples`, or live tuples from `pg_stat_user_tables`).
    pub rows: u64,
    pub heap_bytes: u64,
    pub index_bytes: u64,
    pub toast_bytes: u64,
}

/// The estimates of a migration's plan, in the order of its phases' steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanEstimate {
    pub tables: Vec<TableSize>,
    pub expand: Vec<StepEstimate>,
    pub backfill: Vec<StepEstimate>,
    pub contract: Vec<StepEstimate>,
    /// Contract's completeness checks (one per shadow copy), which run before its steps.
    pub contract_checks: Vec<StepEstimate>,
    pub down_expand: Vec<StepEstimate>,
    pub down_contract: Vec<StepEstimate>,
    /// Backfills estimated to run past the configured threshold, or to write more WAL than
    /// the configured share of `max_wal_size`.
    pub warnings: Vec<String>,
}

/// The phases whose totals the outputs show, in order.
pub const PHASES: [&str; 3] = ["expand", "backfill", "contract"];

impl PlanEstimate {
    /// The estimates of one phase by name (`expand`, `backfill`, `contract`).
    pub fn phase(&self, name: &str) -> &[StepEstimate] {
        match name {
            "expand" => &self.expand,
            "backfill" => &self.backfill,
            "contract" => &self.contract,
            "down-expand" => &self.down_expand,
            "down-contract" => &self.down_contract,
            _ => &[],
        }
    }

    /// A phase's total, contract's completeness checks included.
    pub fn phase_millis(&self, name: &str) -> u64 {
        let checks = if name == "contract" {
            &self.contract_checks[..]
        } else {
            &[]
        };
        self.phase(name)
            .iter()
            .chain(checks)
            .map(|e| e.millis)
            .sum()
    }

    pub fn phase_wal_bytes(&self, name: &str) -> u64 {
        self.phase(name).iter().map(|e| e.wal_bytes).sum()
    }

    /// The forward step (expand or contract) that holds a blocking lock longest, with its
    /// phase and position, when any step blocks at all.
    pub fn longest_blocking(&self) -> Option<(&'static str, usize, &StepEstimate)> {
        [("expand", &self.expand), ("contract", &self.contract)]
            .into_iter()
            .flat_map(|(phase, steps)| steps.iter().enumerate().map(move |(i, e)| (phase, i, e)))
            .filter(|(_, _, e)| e.blocking_millis > 0)
            .max_by_key(|(_, _, e)| e.blocking_millis)
    }
}

/// A duration for people: `40 ms`, `3.2 s`, `4 min 10 s`, `2 h 5 min`.
pub fn human_duration(millis: u64) -> String {
    let s = millis / 1000;
    match millis {
        0..1_000 => format!("{millis} ms"),
        1_000..60_000 => format!("{:.1} s", millis as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// A size for people, in powers of 1024: `512 B`, `3.4 MB`, `1.2 GB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_naturally() {
        assert_eq!(human_duration(40), "40 ms");
        assert_eq!(human_duration(3_240), "3.2 s");
        assert_eq!(human_duration(250_000), "4 min 10 s");
        assert_eq!(human_duration(7_500_000), "2 h 5 min");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3_565_158), "3.4 MB");
    }

    #[test]
    fn the_longest_blocking_step_is_found_across_phases() {
        let step = |millis, blocking_millis| StepEstimate {
            work: Work::Scan,
            table: None,
            millis,
            wal_bytes: 0,
            blocking_millis,
        };
        let e = PlanEstimate {
            expand: vec![step(10, 0), step(500, 500)],
            contract: vec![step(900, 900)],
            ..PlanEstimate::default()
        };
        let (phase, i, _) = e.longest_blocking().unwrap();
        assert_eq!((phase, i), ("contract", 0));
        assert_eq!(e.phase_millis("expand"), 510);
    }
}
