//! Every operation zdm plans, driven through `Runner` the way the CI stages run it, with the
//! application writing all along:
//!
//! expand → old-app and new-app queries succeed → abort → old-app queries succeed and nothing
//! of zdm remains → expand again while the old application writes throughout and the new one
//! writes as soon as the expand steps are done (so both write during the backfill) → contract
//! while the new application writes → new-app queries succeed and the scenario's row-by-row
//! checks hold. Not one application query may fail. Each scenario gets its own database.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scenarios::{HELPERS, SCENARIOS, SCHEMA, SEED, Scenario};
use zdm::db::{BackfillOptions, RunOptions, Runner};
use zdm::lint::LintOptions;
use zdm::plan::{MigrationPlan, plan_set};
use zdm::source::MigrationSet;

/// Application sessions writing in a loop until told to stop, counting queries and keeping
/// every error.
struct Writers {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn new() -> Writers {
        Writers {
            stop: Arc::default(),
            queries: Arc::default(),
            errors: Arc::default(),
            tasks: Vec::new(),
        }
    }

    /// One session running `queries` over and over; when `ready` is given, only once that
    /// boolean query is true (the new application starts after the expand steps).
    async fn spawn(
        &mut self,
        url: &str,
        label: &'static str,
        queries: &'static [&'static str],
        ready: Option<String>,
    ) {
        let client = zdm::db::connect(url).await.unwrap();
        let (stop, count, errors) = (self.stop.clone(), self.queries.clone(), self.errors.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut started = ready.is_none();
            while !stop.load(Ordering::SeqCst) {
                if !started {
                    let q = ready.as_deref().unwrap();
                    started = client
                        .query_one(q, &[])
                        .await
                        .map(|r| r.get::<_, bool>(0))
                        .unwrap_or(false);
                    if !started {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
                for q in queries {
                    match client.batch_execute(q).await {
                        Ok(()) => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => errors
                            .lock()
                            .unwrap()
                            .push(format!("{label}: `{q}`: {}", zdm::db::message(&e))),
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }

    /// Stops the sessions and returns how many queries ran and what failed.
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (self.queries.load(Ordering::SeqCst), errors)
    }
}

async fn app(client: &tokio_postgres::Client, queries: &[&str], what: &str) {
    for q in queries {
        if let Err(e) = client.batch_execute(q).await {
            panic!("{what}: `{q}` failed: {}", zdm::db::message(&e));
        }
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

const LEFTOVERS: &str = "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE '\\_zdm\\_%') \
     + (SELECT count(*) FROM pg_constraint WHERE conname LIKE '\\_zdm\\_%') \
     + (SELECT count(*) FROM pg_proc WHERE proname LIKE '\\_zdm\\_%') \
     + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE '\\_zdm\\_%')";

fn options() -> RunOptions {
    RunOptions {
        // Small fixed batches: the backfill takes many transactions, so the writers overlap it.
        backfill: BackfillOptions {
            batch_size: 100,
            target_batch_time: Duration::ZERO,
            ..BackfillOptions::default()
        },
        ..RunOptions::default()
    }
}

/// The plans of a scenario: its schema migration, then its own.
fn plan_scenario(s: &Scenario) -> Vec<MigrationPlan> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_schema.sql"),
        format!("{SCHEMA}\n{}\n{HELPERS}", s.setup),
    )
    .unwrap();
    std::fs::write(dir.path().join("0002_change.sql"), s.migration).unwrap();
    let set = MigrationSet::load(dir.path(), None).unwrap();
    plan_set(&set, &LintOptions::default(), None)
        .all_planned()
        .unwrap_or_else(|e| panic!("{}: {e}", s.name))
}

/// Each operation zdm registers (src/plan/ops/mod.rs) is planned by some scenario, so that it
/// runs end to end under writers here and as psql files in plan_sql.rs.
#[test]
fn every_operation_has_a_scenario() {
    let covered: std::collections::HashSet<&str> = SCENARIOS
        .iter()
        .flat_map(|s| plan_scenario(s)[1].operations.clone())
        .map(|o| o.kind)
        .collect();
    for kind in zdm::plan::ops::kinds() {
        assert!(
            covered.contains(kind),
            "no scenario in tests/common/scenarios.rs plans a `{kind}` operation; add one"
        );
    }
}

fn run(index: usize) {
    let s: &Scenario = &SCENARIOS[index];
    let Some(db) = common::TestDatabase::create(&format!("life{index}")) else {
        return;
    };
    let url = db.url_of_database();
    let plans = plan_scenario(s);
    let expand_steps = plans[1].expand.len();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let c = zdm::db::connect(&url).await.unwrap();
        let mut runner_client = zdm::db::connect(&url).await.unwrap();
        let mut runner = Runner::start(&mut runner_client, options()).await.unwrap();
        let name = s.name;
        runner.expand(&plans[..1]).await.unwrap();
        runner.contract(&plans[..1]).await.unwrap();
        c.batch_execute(SEED).await.unwrap();
        let users_before = count(&c, "SELECT count(*) FROM users").await;

        runner
            .expand(&plans)
            .await
            .unwrap_or_else(|e| panic!("{name}: expand: {e}"));
        app(&c, s.old_app, &format!("{name}: old app after expand")).await;
        // The new application's queries work, rolled back so that the abort below starts
        // from what the old application alone wrote (undoing a dropped column's NOT NULL
        // needs values the new application does not write).
        c.batch_execute("BEGIN").await.unwrap();
        app(&c, s.new_app, &format!("{name}: new app after expand")).await;
        c.batch_execute("ROLLBACK").await.unwrap();

        runner
            .abort(&plans)
            .await
            .unwrap_or_else(|e| panic!("{name}: abort: {e}"));
        app(&c, s.old_app, &format!("{name}: old app after abort")).await;
        assert_eq!(
            count(&c, LEFTOVERS).await,
            0,
            "{name}: zdm objects left after abort"
        );

        // Expand again with both application versions writing.
        let mut writers = Writers::new();
        writers.spawn(&url, "old app", s.old_app, None).await;
        let expanded = format!(
            "SELECT count(*) = {expand_steps} FROM zdm.steps WHERE migration_id = '0002_change' AND step_id LIKE 'expand-%' AND status = 'done'"
        );
        writers
            .spawn(&url, "new app", s.new_app, Some(expanded))
            .await;
        runner
            .expand(&plans)
            .await
            .unwrap_or_else(|e| panic!("{name}: expand under load: {e}"));
        let (during_expand, errors) = writers.finish().await;
        eprintln!("{name}: {during_expand} application queries during expand");
        assert!(
            errors.is_empty(),
            "{name}: application queries failed during expand: {errors:#?}"
        );
        assert!(
            during_expand > 0,
            "{name}: no application query ran during expand"
        );
        app(&c, s.old_app, &format!("{name}: old app after backfill")).await;

        // Contract while the new application writes.
        let mut writers = Writers::new();
        writers.spawn(&url, "new app", s.new_app, None).await;
        runner
            .contract(&plans)
            .await
            .unwrap_or_else(|e| panic!("{name}: contract under load: {e}"));
        let (_, errors) = writers.finish().await;
        assert!(
            errors.is_empty(),
            "{name}: application queries failed during contract: {errors:#?}"
        );
        app(&c, s.new_app, &format!("{name}: new app after contract")).await;
        for check in s.checks {
            let ok: bool = c.query_one(*check, &[]).await.unwrap().get(0);
            assert!(ok, "{name}: after contract, `{check}` is false");
        }
        if name != "drop table" {
            assert!(
                count(&c, "SELECT count(*) FROM users").await >= users_before,
                "{name}: rows lost"
            );
        }
        assert_eq!(
            count(&c, LEFTOVERS).await,
            0,
            "{name}: zdm objects left after contract"
        );
        let status = zdm::db::status(&c, &plans).await.unwrap();
        assert!(status.iter().all(|m| m.status == "done"), "{status:?}");
    });
}

#[test]
fn every_scenario_has_a_test() {
    assert_eq!(
        SCENARIOS.len(),
        20,
        "add a lifecycle test for the new scenario"
    );
}

macro_rules! lifecycle_tests {
    ($($name:ident = $index:expr,)*) => {
        $(
            #[test]
            fn $name() {
                run($index);
            }
        )*
    };
}

lifecycle_tests! {
    create_index = 0,
    drop_index = 1,
    add_foreign_key = 2,
    add_column_with_inline_foreign_key = 3,
    add_check = 4,
    add_unique = 5,
    add_primary_key = 6,
    set_not_null = 7,
    add_column_with_volatile_default = 8,
    add_required_column_from_backfill_directive = 9,
    add_fill_and_require_column = 10,
    drop_column = 11,
    drop_table = 12,
    rename_table = 13,
    rename_column = 14,
    change_type_of_serial_primary_key = 15,
    change_type_with_using = 16,
    two_operations_share_one_backfill = 17,
    update_from_another_table = 18,
    update_backfill = 19,
}
