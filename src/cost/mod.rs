//! The cost model: how long each step of a plan takes on one database, how long it holds a lock
//! that blocks the application, and how much WAL it writes, from the tables' statistics and a
//! read-only calibration of the server (`db::calibrate` measures both; nothing here talks to a
//! database).
//!
//! What PostgreSQL does per step, and so what it costs:
//! - a catalog-only step (ADD COLUMN without a volatile default, a rename, a NOT VALID
//!   constraint, SET NOT NULL under a validated CHECK) is instant once its lock is granted;
//! - VALIDATE CONSTRAINT reads the whole table: a CHECK evaluates its expression on every row,
//!   a foreign key joins the table with the referenced one;
//! - CREATE INDEX reads the table, sorts the keys (in memory up to `maintenance_work_mem`,
//!   on disk beyond) and writes the index, all of it to WAL; CONCURRENTLY adds a second scan of
//!   the table and one of the new index to insert what was written meanwhile;
//! - a rewrite writes every row again and rebuilds every index;
//! - an UPDATE writes a new version of each row (a full tuple in WAL), a new entry in every
//!   index unless the update is HOT, and the first change to a page after a checkpoint writes
//!   the whole page to WAL.
//!
//! The scan rate is measured on the table itself (a timed sample of its pages). Update, sort and
//! index-write costs cannot be measured without writing, so they are per-row and per-byte
//! constants measured on a reference machine (2 cores, PostgreSQL 15, docs/benchmarks.md),
//! scaled by how fast this server scans against that machine.

use std::collections::HashMap;

use crate::catalog::Catalog;
use crate::classify::{Env, classify};
use crate::parse::{AlterAction, Change, ConstraintKind, DmlKind, Name, parse_statement};
use crate::plan::{MigrationPlan, PlanEstimate, Step, StepEstimate, TableSize, Work};
use crate::source::split_statements;

/// Seconds the reference machine takes to read one 8 kB heap page in a sequential scan, as
/// `db::calibrate` measures it (cached pages, a count over the sample).
pub const REFERENCE_PAGE_SECONDS: f64 = 5.0e-6;
/// Per row on the reference machine: evaluating a CHECK's expression during VALIDATE, on top
/// of reading the row.
const CHECK_ROW_SECONDS: f64 = 0.03e-6;
/// Per row of a foreign key check: a hash join with the referenced table.
const FOREIGN_KEY_ROW_SECONDS: f64 = 0.14e-6;
/// Per row and per comparison level (log2 of the rows) of an index build's sort, for a key
/// 8 bytes wide; wider keys cost proportionally more to compare and move.
const SORT_ROW_SECONDS: f64 = 0.016e-6;
/// Per row of contract's completeness check: read in key order through the index, compared.
const CHECK_WALK_ROW_SECONDS: f64 = 0.5e-6;
/// Per byte of index written by a build (pages formed, written and logged).
const INDEX_WRITE_BYTE_SECONDS: f64 = 13.0e-9;
/// Per byte of heap written by a rewrite.
const HEAP_WRITE_BYTE_SECONDS: f64 = 8.0e-9;
/// An UPDATE of one row: the new row version, its WAL record, and the primary key's entry.
const UPDATE_ROW_SECONDS: f64 = 3.8e-6;
/// Each further index adds an entry per updated row (updates that change a column cannot be
/// HOT on a full page).
const UPDATE_INDEX_SECONDS: f64 = 3.8e-6;
/// Per byte of the row version written.
const UPDATE_BYTE_SECONDS: f64 = 10.0e-9;
/// A backfill's batches against one bulk UPDATE: with one connection they pay round trips and
/// commits; two or more connections work different slices side by side (docs/benchmarks.md:
/// 0.7–0.8× the bulk rate with one worker, 1.0–1.3× adaptive on 2 cores).
const BACKFILL_ONE_WORKER: f64 = 1.35;
const BACKFILL_WORKERS: f64 = 0.9;
/// How much a full-table update grows the heap a later step scans: each row gets a new
/// version and the old one stays until VACUUM (2× on a short backfill), but autovacuum frees
/// part of it for reuse during a long one (about 1.4× measured at 10M rows).
const UPDATE_GROWTH: f64 = 0.5;
/// Bytes of WAL per row version or index entry beyond the data itself (record headers).
const WAL_RECORD_OVERHEAD: u64 = 50;
/// A B-tree entry beyond its key: the index tuple header and the line pointer.
const INDEX_ENTRY_OVERHEAD: f64 = 12.0;
/// B-tree leaf pages are filled to 90% by a build.
const INDEX_FILL: f64 = 0.9;
/// The width assumed for a column without statistics.
const DEFAULT_COLUMN_WIDTH: f64 = 8.0;

/// What zdm knows of one existing table on this database.
#[derive(Debug, Clone)]
pub struct TableFacts {
    pub size: TableSize,
    pub heap_pages: u64,
    /// The table's indexes, the primary key's included.
    pub indexes: usize,
    /// Average width in bytes of each column's values (`pg_stats.avg_width`).
    pub column_widths: HashMap<String, f64>,
    /// Measured seconds per heap page of a sequential scan of this table.
    pub page_seconds: f64,
}

impl TableFacts {
    fn rows(&self) -> f64 {
        self.size.rows as f64
    }

    /// Average bytes of one row in the heap, header and free space included.
    fn row_bytes(&self) -> f64 {
        if self.size.rows == 0 {
            0.0
        } else {
            self.size.heap_bytes as f64 / self.rows()
        }
    }

    /// How much slower than the reference machine this server works rows of this table. The
    /// sample's scan rate depends as much on where its pages were (shared buffers, the OS
    /// cache, disk) as on the CPU, so per-row costs follow it only by its square root: on the
    /// reference machine the same table samples at 0.6× to 1.5× the reference rate as its
    /// pages move between caches, while its updates run at one speed.
    fn machine(&self) -> f64 {
        (self.page_seconds / REFERENCE_PAGE_SECONDS)
            .clamp(0.01, 10_000.0)
            .sqrt()
    }

    fn scan_seconds(&self) -> f64 {
        self.heap_pages as f64 * self.page_seconds
    }

    fn key_width(&self, columns: &[String]) -> f64 {
        columns
            .iter()
            .map(|c| {
                self.column_widths
                    .get(c)
                    .copied()
                    .unwrap_or(DEFAULT_COLUMN_WIDTH)
            })
            .sum::<f64>()
            .max(1.0)
    }
}

/// The server's settings the model reads.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub max_wal_size_bytes: u64,
    pub maintenance_work_mem_bytes: u64,
}

/// Everything measured on the database, by table (`Name::key`).
#[derive(Debug, Clone)]
pub struct Facts {
    pub tables: HashMap<Name, TableFacts>,
    pub server: ServerFacts,
}

/// How the run is configured, where it changes the estimate.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--backfill-workers`; None is adaptive.
    pub backfill_workers: Option<usize>,
    pub max_rows_per_second: Option<u64>,
    /// A backfill estimated longer than this gets a warning.
    pub warn_backfill_seconds: u64,
    /// A backfill estimated to write more WAL than this share of `max_wal_size` gets one.
    pub warn_wal_share: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backfill_workers: None,
            max_rows_per_second: None,
            warn_backfill_seconds: 3600,
            warn_wal_share: 1.0,
        }
    }
}

/// The existing tables a plan's steps and backfills work on: what calibration must measure.
pub fn tables_of(plan: &MigrationPlan, catalog: &Catalog) -> Vec<Name> {
    let mut out: Vec<Name> = Vec::new();
    let mut push = |name: &Name| {
        let key = name.key();
        if catalog.table(&key).is_some() && !out.contains(&key) {
            out.push(key);
        }
    };
    let steps = plan
        .expand
        .iter()
        .chain(&plan.contract)
        .chain(&plan.down.expand)
        .chain(plan.down.contract.iter().flatten());
    for step in steps {
        if let Some(lock) = &step.lock {
            push(&lock.relation);
        }
    }
    for b in &plan.backfill {
        push(&b.table);
    }
    out
}

/// Estimates every step of a plan, replaying its steps on a copy of the live catalog so that
/// each is classified as it will run (a SET NOT NULL after its CHECK was validated is instant).
pub fn estimate(
    plan: &MigrationPlan,
    catalog: &Catalog,
    pg_version: u32,
    facts: &Facts,
    settings: &Settings,
) -> PlanEstimate {
    let mut model = Model {
        facts,
        settings,
        pg_version,
        grown: HashMap::new(),
    };
    // Expand in the order it runs: each backfill before the steps planned after it, so a step
    // that reads the table after a backfill reads its dead row versions too.
    let mut forward = catalog.clone();
    let mut expand = Vec::new();
    let mut backfill = vec![None; plan.backfill.len()];
    for position in 0..=plan.expand.len() {
        for (i, b) in plan.backfill.iter().enumerate() {
            if b.after_step.min(plan.expand.len()) == position {
                backfill[i] = Some(model.backfill(&b.table));
            }
        }
        if let Some(step) = plan.expand.get(position) {
            expand.push(model.step(step, &mut forward));
        }
    }
    let backfill: Vec<StepEstimate> = backfill.into_iter().flatten().collect();
    let contract_checks = plan
        .backfill
        .iter()
        .filter(|b| b.shadow_copy)
        .map(|b| model.completeness_check(&b.table))
        .collect();
    let contract = model.steps(&plan.contract, &mut forward);
    // Undoing expand runs on the schema expand left.
    let mut after_expand = catalog.clone();
    for step in &plan.expand {
        apply_step(step, &mut after_expand);
    }
    let down_expand = model.steps(&plan.down.expand, &mut after_expand);
    let down_contract = match &plan.down.contract {
        Some(steps) => model.steps(steps, &mut forward),
        None => Vec::new(),
    };
    let tables = tables_of(plan, catalog)
        .iter()
        .filter_map(|t| facts.tables.get(t).map(|f| f.size.clone()))
        .collect();
    let warnings = model.warnings(&plan.backfill, &backfill);
    PlanEstimate {
        tables,
        expand,
        backfill,
        contract,
        contract_checks,
        down_expand,
        down_contract,
        warnings,
    }
}

/// Applies a step's statements to the catalog.
fn apply_step(step: &Step, catalog: &mut Catalog) {
    for stmt in split_statements(step.sql.as_str()).statements {
        catalog.apply(&parse_statement(&stmt));
    }
}

struct Model<'a> {
    facts: &'a Facts,
    settings: &'a Settings,
    pg_version: u32,
    /// Tables an update ran over, with how much their heap grew (see `UPDATE_GROWTH`).
    grown: HashMap<Name, f64>,
}

impl Model<'_> {
    /// A table's facts as the step finds it: with the dead row versions of earlier updates.
    fn table(&self, name: &Name) -> Option<TableFacts> {
        let key = name.key();
        let mut t = self.facts.tables.get(&key)?.clone();
        if let Some(growth) = self.grown.get(&key) {
            t.heap_pages = (t.heap_pages as f64 * growth) as u64;
        }
        Some(t)
    }

    fn updated(&mut self, name: &Name) {
        *self.grown.entry(name.key()).or_insert(1.0) += UPDATE_GROWTH;
    }

    fn steps(&mut self, steps: &[Step], catalog: &mut Catalog) -> Vec<StepEstimate> {
        steps.iter().map(|step| self.step(step, catalog)).collect()
    }

    fn step(&mut self, step: &Step, catalog: &mut Catalog) -> StepEstimate {
        let mut estimate = StepEstimate {
            work: Work::Catalog,
            table: step.lock.as_ref().map(|l| l.relation.clone()),
            millis: 0,
            wal_bytes: 0,
            blocking_millis: 0,
        };
        for stmt in split_statements(step.sql.as_str()).statements {
            let change = parse_statement(&stmt);
            let one = self.statement(&change, catalog);
            catalog.apply(&change);
            if one.work == Work::Update
                && let Some(table) = &one.table
            {
                self.updated(table);
            }
            if one.work != Work::Catalog || estimate.work == Work::Catalog {
                estimate.work = one.work;
                estimate.table = one.table.or(estimate.table);
            }
            estimate.millis += one.millis;
            estimate.wal_bytes += one.wal_bytes;
        }
        let blocks = step.lock.as_ref().is_some_and(|l| l.mode.blocks_writes());
        if blocks {
            estimate.blocking_millis = estimate.millis;
        }
        estimate
    }

    /// One statement of a step, classified on the catalog as it stands before it.
    fn statement(&self, change: &Change, catalog: &Catalog) -> StepEstimate {
        let none = |work| StepEstimate {
            work,
            table: None,
            millis: 0,
            wal_bytes: 0,
            blocking_millis: 0,
        };
        let sized = |work, table: &Name, seconds: f64, wal: f64| StepEstimate {
            work,
            table: Some(table.clone()),
            millis: (seconds * 1000.0).round() as u64,
            wal_bytes: wal.max(0.0) as u64,
            blocking_millis: 0,
        };
        match change {
            Change::CreateIndex {
                table,
                columns,
                concurrently,
                ..
            } => {
                let Some(t) = self.table(table) else {
                    return none(Work::Catalog);
                };
                let (seconds, wal) = self.index_build(&t, columns);
                if *concurrently {
                    // The second pass: the table again, and the new index read to find
                    // which rows it lacks.
                    let index_pages = wal / 8192.0;
                    let extra = t.scan_seconds() + index_pages * t.page_seconds;
                    sized(Work::ConcurrentIndexBuild, table, seconds + extra, wal)
                } else {
                    sized(Work::IndexBuild, table, seconds, wal)
                }
            }
            Change::Dml {
                kind: DmlKind::Update,
                table,
                pinned,
                ..
            } if pinned.is_empty() => match self.table(table) {
                Some(t) => {
                    let (seconds, wal) = self.update(&t, 1.0);
                    sized(Work::Update, table, seconds, wal)
                }
                None => none(Work::Catalog),
            },
            _ => {
                let env = Env {
                    pg_version: self.pg_version,
                    catalog,
                    is_new: &|_| false,
                };
                let class = classify(change, &env);
                let Some(effect) = class.effects.iter().find(|e| e.rewrite || e.scan) else {
                    return none(Work::Catalog);
                };
                let Some(t) = self.table(&effect.relation) else {
                    return none(Work::Catalog);
                };
                if effect.rewrite {
                    let (seconds, wal) = self.rewrite(&t);
                    return sized(Work::Rewrite, &effect.relation, seconds, wal);
                }
                let per_row = if validates_foreign_key(change, catalog) {
                    FOREIGN_KEY_ROW_SECONDS
                } else {
                    CHECK_ROW_SECONDS
                };
                let seconds = t.scan_seconds() + t.rows() * per_row * t.machine();
                sized(Work::Scan, &effect.relation, seconds, 0.0)
            }
        }
    }

    /// A B-tree build over `columns`: (seconds, bytes of index and so of WAL).
    fn index_build(&self, t: &TableFacts, columns: &[String]) -> (f64, f64) {
        let rows = t.rows();
        let width = t.key_width(columns);
        let index_bytes = rows * (width + INDEX_ENTRY_OVERHEAD) / INDEX_FILL;
        let levels = rows.max(2.0).log2();
        let mut sort = rows * levels * SORT_ROW_SECONDS * (width / 8.0).max(1.0).sqrt();
        // Past maintenance_work_mem the sort runs in passes over temporary files.
        if index_bytes > self.facts.server.maintenance_work_mem_bytes as f64 {
            sort *= 1.5;
        }
        let seconds =
            t.scan_seconds() + (sort + index_bytes * INDEX_WRITE_BYTE_SECONDS) * t.machine();
        (seconds, index_bytes)
    }

    /// A rewrite: every row written again, and every index rebuilt from it.
    fn rewrite(&self, t: &TableFacts) -> (f64, f64) {
        let heap = t.size.heap_bytes as f64;
        let indexes = t.size.index_bytes as f64;
        let levels = t.rows().max(2.0).log2();
        let sorts = t.indexes as f64 * t.rows() * levels * SORT_ROW_SECONDS;
        let seconds = t.scan_seconds()
            + (heap * HEAP_WRITE_BYTE_SECONDS + indexes * INDEX_WRITE_BYTE_SECONDS + sorts)
                * t.machine();
        (seconds, heap + indexes)
    }

    /// An UPDATE of `share` of the table's rows in one statement: (seconds, WAL bytes).
    fn update(&self, t: &TableFacts, share: f64) -> (f64, f64) {
        let rows = t.rows() * share;
        let further_indexes = t.indexes.saturating_sub(1) as f64;
        let per_row = UPDATE_ROW_SECONDS
            + further_indexes * UPDATE_INDEX_SECONDS
            + t.row_bytes() * UPDATE_BYTE_SECONDS;
        let seconds = rows * per_row * t.machine();
        // Each row version, each index entry, and each page's first change after a
        // checkpoint as a full page image (the heap's and the indexes' pages).
        let entry = WAL_RECORD_OVERHEAD as f64 + 16.0;
        let wal = rows * (t.row_bytes() + WAL_RECORD_OVERHEAD as f64)
            + rows * t.indexes.max(1) as f64 * entry
            + share * (t.size.heap_bytes + t.size.index_bytes) as f64;
        (seconds, wal)
    }

    /// A backfill: the rows an UPDATE would touch, in batches, at the configured pace. A
    /// filtered UPDATE still walks every row, and how many it changes is unknown: its estimate
    /// is the whole table's, an upper bound.
    fn backfill(&mut self, table: &Name) -> StepEstimate {
        let Some(t) = self.table(table) else {
            return StepEstimate {
                work: Work::Update,
                table: Some(table.clone()),
                millis: 0,
                wal_bytes: 0,
                blocking_millis: 0,
            };
        };
        self.updated(table);
        let (bulk, wal) = self.update(&t, 1.0);
        let factor = match self.settings.backfill_workers {
            Some(1) => BACKFILL_ONE_WORKER,
            _ => BACKFILL_WORKERS,
        };
        let mut seconds = bulk * factor;
        if let Some(limit) = self.settings.max_rows_per_second.filter(|l| *l > 0) {
            seconds = seconds.max(t.rows() / limit as f64);
        }
        StepEstimate {
            work: Work::Update,
            table: Some(table.clone()),
            millis: (seconds * 1000.0).round() as u64,
            wal_bytes: wal as u64,
            blocking_millis: 0,
        }
    }

    /// Contract's completeness check before a shadow is swapped in: the backfill's walk again,
    /// reading every row in key order and writing only those still out of sync (none, when the
    /// triggers did their work).
    fn completeness_check(&self, table: &Name) -> StepEstimate {
        let (millis, work_table) = match self.table(table) {
            Some(t) => {
                let seconds = t.scan_seconds() + t.rows() * CHECK_WALK_ROW_SECONDS * t.machine();
                ((seconds * 1000.0).round() as u64, Some(table.clone()))
            }
            None => (0, Some(table.clone())),
        };
        StepEstimate {
            work: Work::Scan,
            table: work_table,
            millis,
            wal_bytes: 0,
            blocking_millis: 0,
        }
    }

    fn warnings(
        &self,
        backfills: &[crate::plan::Backfill],
        estimates: &[StepEstimate],
    ) -> Vec<String> {
        let mut out = Vec::new();
        let wal_limit = self.facts.server.max_wal_size_bytes as f64 * self.settings.warn_wal_share;
        for (b, e) in backfills.iter().zip(estimates) {
            if e.millis > self.settings.warn_backfill_seconds * 1000 {
                out.push(format!(
                    "the backfill of {} is estimated at {}, over the {} threshold: run it in a quiet period, or raise --max-rows-per-second / --backfill-workers",
                    b.table,
                    crate::plan::human_duration(e.millis),
                    crate::plan::human_duration(self.settings.warn_backfill_seconds * 1000)
                ));
            }
            if wal_limit > 0.0 && e.wal_bytes as f64 > wal_limit {
                out.push(format!(
                    "the backfill of {} writes about {} of WAL, more than {:.0}% of max_wal_size ({}): checkpoints come more often and replicas must replay it all; bound it with --max-rows-per-second or --max-replication-lag",
                    b.table,
                    crate::plan::human_bytes(e.wal_bytes),
                    self.settings.warn_wal_share * 100.0,
                    crate::plan::human_bytes(self.facts.server.max_wal_size_bytes)
                ));
            }
        }
        out
    }
}

/// Whether the statement checks a foreign key over the table: ADD FOREIGN KEY without NOT
/// VALID, or VALIDATE of a foreign key constraint.
fn validates_foreign_key(change: &Change, catalog: &Catalog) -> bool {
    let Change::AlterTable { table, actions } = change else {
        return false;
    };
    actions.iter().any(|a| match a {
        AlterAction::AddConstraint(spec) => {
            matches!(spec.kind, ConstraintKind::ForeignKey { .. }) && !spec.not_valid
        }
        AlterAction::ValidateConstraint { name } => catalog.table(table).is_some_and(|t| {
            t.constraints.iter().any(|c| {
                c.name.as_deref() == Some(name.as_str())
                    && matches!(c.kind, ConstraintKind::ForeignKey { .. })
            })
        }),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::LintOptions;
    use crate::source::SourceFile;

    const SCHEMA: &str =
        "CREATE TABLE users (id bigint PRIMARY KEY, name text, age int, org_id int);
        CREATE TABLE orgs (id int PRIMARY KEY);";

    fn facts(rows: u64) -> Facts {
        let pages = rows / 120;
        let table = |name: &str, rows: u64, pages: u64| TableFacts {
            size: TableSize {
                name: Name::new(None, name),
                rows,
                heap_bytes: pages * 8192,
                index_bytes: rows * 20,
                toast_bytes: 0,
            },
            heap_pages: pages,
            indexes: 1,
            column_widths: HashMap::from([("name".to_owned(), 16.0)]),
            page_seconds: REFERENCE_PAGE_SECONDS,
        };
        Facts {
            tables: HashMap::from([
                (Name::new(None, "users"), table("users", rows, pages)),
                (Name::new(None, "orgs"), table("orgs", 1000, 10)),
            ]),
            server: ServerFacts {
                max_wal_size_bytes: 1 << 30,
                maintenance_work_mem_bytes: 64 << 20,
            },
        }
    }

    fn estimate_of(sql: &str, rows: u64, settings: &Settings) -> (MigrationPlan, PlanEstimate) {
        let catalog = Catalog::from_sql(SCHEMA);
        let file = SourceFile::from_text(std::path::Path::new("0002_x.sql"), sql.to_owned());
        let plan = crate::plan::plan_file(&file, &mut catalog.clone(), &LintOptions::default())
            .expect("plans");
        let e = estimate(&plan, &catalog, 15, &facts(rows), settings);
        (plan, e)
    }

    #[test]
    fn each_kind_of_step_costs_what_it_does() {
        let (plan, e) = estimate_of(
            "CREATE INDEX users_name_idx ON users (name);
             ALTER TABLE users ADD CONSTRAINT org_id_positive CHECK (org_id > 0);
             ALTER TABLE users ADD CONSTRAINT users_org FOREIGN KEY (org_id) REFERENCES orgs (id);",
            1_000_000,
            &Settings::default(),
        );
        let works: Vec<Work> = e.expand.iter().map(|s| s.work).collect();
        assert_eq!(
            works,
            [
                Work::ConcurrentIndexBuild,
                Work::Catalog,
                Work::Scan,
                Work::Catalog,
                Work::Scan
            ],
            "{:?}",
            plan.expand
        );
        // The foreign key joins: dearer than the CHECK. Nothing here blocks the application.
        assert!(e.expand[4].millis > e.expand[2].millis);
        assert!(e.expand[0].wal_bytes > 0);
        assert!(e.longest_blocking().is_none());
        // Ten times the rows: about ten times the time (a little more for the sort).
        let (_, big) = estimate_of(
            "CREATE INDEX users_name_idx ON users (name);",
            10_000_000,
            &Settings::default(),
        );
        let ratio = big.expand[0].millis as f64 / e.expand[0].millis as f64;
        assert!((9.0..14.0).contains(&ratio), "{ratio}");
    }

    #[test]
    fn a_set_not_null_under_a_validated_check_is_instant_and_a_rewrite_blocks() {
        let (_, e) = estimate_of(
            "ALTER TABLE users ALTER COLUMN name SET NOT NULL;",
            1_000_000,
            &Settings::default(),
        );
        // The helper CHECK, its VALIDATE (a scan), SET NOT NULL (proven: no scan), the drop.
        let works: Vec<Work> = e.expand.iter().map(|s| s.work).collect();
        assert_eq!(
            works,
            [Work::Catalog, Work::Scan, Work::Catalog, Work::Catalog]
        );
        assert_eq!(e.expand[2].millis, 0);
        let (_, e) = estimate_of(
            "-- zdm:allow-locking -- a quiet table\nALTER TABLE users ALTER COLUMN age TYPE bigint;",
            1_000_000,
            &Settings::default(),
        );
        let (phase, _, step) = e.longest_blocking().expect("the rewrite blocks");
        assert_eq!((phase, step.work), ("expand", Work::Rewrite));
        assert_eq!(step.blocking_millis, step.millis);
    }

    #[test]
    fn backfills_follow_the_rate_limit_and_warn_past_the_thresholds() {
        let sql = "ALTER TABLE users ALTER COLUMN age TYPE bigint;";
        let (_, free) = estimate_of(sql, 1_000_000, &Settings::default());
        assert!(free.warnings.is_empty(), "{:?}", free.warnings);
        let limited = Settings {
            max_rows_per_second: Some(100),
            warn_wal_share: 0.01,
            ..Settings::default()
        };
        let (_, slow) = estimate_of(sql, 1_000_000, &limited);
        assert_eq!(
            slow.backfill[0].millis, 10_000_000,
            "a million rows at 100/s"
        );
        assert_eq!(slow.warnings.len(), 2, "{:?}", slow.warnings);
        assert!(
            slow.warnings[0].contains("2 h 46 min"),
            "{:?}",
            slow.warnings
        );
        // Contract walks the copy again before the swap.
        assert_eq!(slow.contract_checks.len(), 1);
        assert!(slow.phase_millis("contract") > 0);
    }
}
