//! The migrations the benchmark runs, with each application version's queries.
//!
//! Every scenario table is `(id bigint PRIMARY KEY, a int, payload text, ref_id bigint)`, with
//! `a = id` (unique, nullable), and `ref_id` pointing into `bench_ref` (1,000 rows, no
//! constraint yet).

use crate::workload::{AppVersion, Query};

pub struct Scenario {
    pub name: &'static str,
    /// The migration, with `{t}` for the table.
    pub migration: &'static str,
    /// The queries of the application version before the migration and of the one after it,
    /// with `{t}` for the table; the clients cycle through them.
    pub old: &'static [&'static str],
    pub new: &'static [&'static str],
}

/// The default workload: point reads, updates of a column no migration touches, inserts.
pub const DEFAULT: &[&str] = &[
    "SELECT id, a, payload, ref_id FROM {t} WHERE id = $1",
    "UPDATE {t} SET payload = md5(random()::text) WHERE id = $1",
    "SELECT id, a, payload, ref_id FROM {t} WHERE id = $1",
    "INSERT INTO {t} (id, a, payload, ref_id) VALUES ($1, $1::bigint::int, 'new', 1 + $1 % 1000)",
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "rename column",
        migration: "ALTER TABLE {t} RENAME COLUMN payload TO body;",
        old: DEFAULT,
        new: &[
            "SELECT id, a, body, ref_id FROM {t} WHERE id = $1",
            "UPDATE {t} SET body = md5(random()::text) WHERE id = $1",
            "SELECT id, a, body, ref_id FROM {t} WHERE id = $1",
            "INSERT INTO {t} (id, a, body, ref_id) VALUES ($1, $1::bigint::int, 'new', 1 + $1 % 1000)",
        ],
    },
    Scenario {
        name: "int to bigint",
        migration: "ALTER TABLE {t} ALTER COLUMN a TYPE bigint;",
        old: DEFAULT,
        new: DEFAULT,
    },
    Scenario {
        name: "add NOT NULL column with a volatile default",
        migration: "ALTER TABLE {t} ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();",
        old: DEFAULT,
        new: &[
            "SELECT id, a, payload, ref_id, token FROM {t} WHERE id = $1",
            "UPDATE {t} SET payload = md5(random()::text) WHERE id = $1",
            "SELECT id, token FROM {t} WHERE id = $1",
            "INSERT INTO {t} (id, a, payload, ref_id, token) VALUES ($1, $1::bigint::int, 'new', 1 + $1 % 1000, gen_random_uuid())",
        ],
    },
    Scenario {
        name: "set NOT NULL",
        migration: "ALTER TABLE {t} ALTER COLUMN a SET NOT NULL;",
        old: DEFAULT,
        new: DEFAULT,
    },
    Scenario {
        name: "add foreign key",
        migration: "ALTER TABLE {t} ADD CONSTRAINT {t}_ref_fk FOREIGN KEY (ref_id) REFERENCES bench_ref (id);",
        old: DEFAULT,
        new: DEFAULT,
    },
    Scenario {
        name: "add UNIQUE",
        migration: "ALTER TABLE {t} ADD CONSTRAINT {t}_a_key UNIQUE (a);",
        old: DEFAULT,
        new: DEFAULT,
    },
    Scenario {
        name: "create index",
        migration: "CREATE INDEX {t}_a_idx ON {t} (a);",
        old: DEFAULT,
        new: &[
            "SELECT id FROM {t} WHERE a = $1::bigint::int",
            "UPDATE {t} SET payload = md5(random()::text) WHERE id = $1",
            "SELECT id, a, payload, ref_id FROM {t} WHERE id = $1",
            "INSERT INTO {t} (id, a, payload, ref_id) VALUES ($1, $1::bigint::int, 'new', 1 + $1 % 1000)",
        ],
    },
    Scenario {
        name: "drop column",
        migration: "ALTER TABLE {t} DROP COLUMN ref_id;",
        old: DEFAULT,
        new: &[
            "SELECT id, a, payload FROM {t} WHERE id = $1",
            "UPDATE {t} SET payload = md5(random()::text) WHERE id = $1",
            "SELECT id, a, payload FROM {t} WHERE id = $1",
            "INSERT INTO {t} (id, a, payload) VALUES ($1, $1::bigint::int, 'new')",
        ],
    },
];

impl Scenario {
    /// A short identifier for file and table names.
    pub fn slug(&self) -> String {
        self.name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    }

    pub fn migration_for(&self, table: &str) -> String {
        self.migration.replace("{t}", table)
    }

    pub fn versions(&self, table: &str) -> (AppVersion, AppVersion) {
        let version = |queries: &[&str]| AppVersion {
            queries: queries
                .iter()
                .map(|q| Query {
                    sql: q.replace("{t}", table),
                    fresh_id: q.starts_with("INSERT"),
                })
                .collect(),
        };
        (version(self.old), version(self.new))
    }
}

/// Creates a scenario table of `rows` rows, vacuumed and analyzed.
pub async fn create_table(
    c: &tokio_postgres::Client,
    table: &str,
    rows: u64,
) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table} CASCADE;
         CREATE TABLE {table} (id bigint PRIMARY KEY, a int, payload text, ref_id bigint);
         INSERT INTO {table} SELECT g, g, md5(g::text), 1 + g % 1000 FROM generate_series(1, {rows}) g;"
    ))
    .await?;
    // VACUUM cannot share the implicit transaction of a multi-statement query.
    c.batch_execute(&format!("VACUUM ANALYZE {table}")).await
}
