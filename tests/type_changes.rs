//! The int → bigint change real schemas need, through the binary against a real server: an
//! identity key that two tables reference (one with a CHECK and a partial index), their
//! referencing columns, and a view that reads them, changed in one migration while writers of
//! both application versions run; `zdm verify` proves the same migrations equal to the SQL as
//! written; what zdm cannot move is refused with a reason before anything runs.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::{ok, verify, zdm};

/// The schema before the change: an identity primary key referenced by two tables, one of
/// them with a CHECK, a partial index with INCLUDE and an ON DELETE CASCADE key; a view over
/// both with an option and a grant; a comment on the key.
const SCHEMA: &str = "
CREATE TABLE accounts (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
COMMENT ON COLUMN accounts.id IS 'the account number';
CREATE TABLE events (
  id bigserial PRIMARY KEY,
  account_id int NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  amount int NOT NULL CHECK (amount > 0)
);
CREATE INDEX events_large ON events (account_id DESC) INCLUDE (amount) WHERE amount > 100;
CREATE TABLE notes (id serial PRIMARY KEY, account_id int CONSTRAINT notes_account REFERENCES accounts, body text);
CREATE VIEW account_totals WITH (security_barrier) AS
  SELECT a.id, a.name, sum(e.amount) AS total FROM accounts a JOIN events e ON e.account_id = a.id GROUP BY a.id, a.name;
";

/// The change as a team writes it: PostgreSQL makes it drop the view first.
const WIDEN: &str = "DROP VIEW account_totals;
ALTER TABLE accounts ALTER COLUMN id TYPE bigint;
ALTER TABLE events ALTER COLUMN account_id TYPE bigint;
ALTER TABLE notes ALTER COLUMN account_id TYPE bigint;
CREATE VIEW account_totals WITH (security_barrier) AS
  SELECT a.id, a.name, sum(e.amount) AS total, count(*) AS events FROM accounts a JOIN events e ON e.account_id = a.id GROUP BY a.id, a.name;
GRANT SELECT ON account_totals TO PUBLIC;
";

/// What one application version does, over and over: create an account, write events and a
/// note for it, read the view, delete an old account (which cascades). Every statement casts
/// its parameters, so the same code runs against the int and the bigint columns. Counts the
/// statements and keeps the failures.
fn application(
    db: &common::TestDatabase,
    stop: &Arc<AtomicBool>,
    failures: &Arc<Mutex<Vec<String>>>,
    version: &'static str,
) -> JoinHandle<u64> {
    let mut c = db.connect();
    let stop = stop.clone();
    let failures = failures.clone();
    std::thread::spawn(move || {
        let mut n = 0u64;
        let fail = |what: &str, e: postgres::Error| {
            let detail = e.as_db_error().map(|d| d.message().to_owned());
            failures.lock().unwrap().push(format!(
                "{version}: {what}: {}",
                detail.unwrap_or_else(|| e.to_string())
            ));
        };
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let id: i64 = match c.query_one(
                "INSERT INTO accounts (name) VALUES ($1) RETURNING id::bigint",
                &[&format!("{version} {n}")],
            ) {
                Ok(row) => row.get(0),
                Err(e) => {
                    fail("insert account", e);
                    continue;
                }
            };
            for (what, sql) in [
                (
                    "insert event",
                    "INSERT INTO events (account_id, amount) VALUES ($1::bigint, 150)",
                ),
                (
                    "insert note",
                    "INSERT INTO notes (account_id, body) VALUES ($1::bigint, 'hello')",
                ),
                (
                    "update event",
                    "UPDATE events SET amount = amount + 1 WHERE account_id = $1::bigint",
                ),
            ] {
                if let Err(e) = c.execute(sql, &[&id]) {
                    fail(what, e);
                }
            }
            if let Err(e) = c.query(
                "SELECT id::bigint, total::bigint FROM account_totals WHERE id = $1::bigint",
                &[&id],
            ) {
                fail("read view", e);
            }
            if n.is_multiple_of(10) {
                for sql in [
                    "DELETE FROM notes WHERE account_id = $1::bigint",
                    "DELETE FROM accounts WHERE id = $1::bigint",
                ] {
                    if let Err(e) = c.execute(sql, &[&(id - 5)]) {
                        fail("delete account", e);
                    }
                }
            }
        }
        n
    })
}

fn count(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// A database with [`SCHEMA`] applied through zdm and `accounts` accounts that hold `events`
/// events and `notes` notes; returns the database, its URL and the migrations folder.
fn seeded(
    label: &str,
    accounts: u32,
    events: u32,
    notes: u32,
) -> Option<(common::TestDatabase, String, tempfile::TempDir)> {
    let db = common::TestDatabase::create(label)?;
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_schema.sql"), SCHEMA).unwrap();
    ok(zdm(&url, dir.path(), &["expand"]), "expand 0001");
    ok(zdm(&url, dir.path(), &["contract"]), "contract 0001");
    db.connect()
        .batch_execute(&format!(
            "INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, {accounts}) g;
             INSERT INTO events (account_id, amount) SELECT 1 + g % {accounts}, 1 + g % 200 FROM generate_series(1, {events}) g;
             INSERT INTO notes (account_id, body) SELECT 1 + g % {accounts}, 'n' FROM generate_series(1, {notes}) g;"
        ))
        .unwrap();
    Some((db, url, dir))
}

#[test]
fn an_identity_key_its_references_and_a_view_widen_under_traffic() {
    let Some((db, url, dir)) = seeded("types_identity", 3000, 20000, 2000) else {
        return;
    };
    let d = dir.path();
    let mut c = db.connect();
    c.batch_execute("ALTER TABLE accounts ALTER COLUMN id SET STATISTICS 500")
        .unwrap();
    std::fs::write(d.join("0002_widen.sql"), WIDEN).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let old = application(&db, &stop, &failures, "old");
    let gentle = ["expand", "--batch-size", "1000"];
    let started = std::time::Instant::now();
    let expand = zdm(&url, d, &gentle);
    eprintln!("expand took {:?}", started.elapsed());
    // Between the phases the new version is deployed beside the old one.
    let new = application(&db, &stop, &failures, "new");
    ok(expand, "expand 0002");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let contract = zdm(&url, d, &["contract"]);
    eprintln!("contract took {:?}", started.elapsed());
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let runs = old.join().unwrap() + new.join().unwrap();
    ok(contract, "contract 0002");
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {runs} application runs had failed queries: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(runs > 50, "the application ran only {runs} times");

    // Every column is bigint, and what it carried is there, valid, under its old name.
    let types = count(
        &mut c,
        "SELECT count(*) FROM pg_attribute WHERE attnum > 0 AND atttypid = 'int8'::regtype
           AND (attrelid, attname) IN (('accounts'::regclass, 'id'), ('events'::regclass, 'account_id'), ('notes'::regclass, 'account_id'))",
    );
    assert_eq!(types, 3);
    let identity: String = c
        .query_one(
            "SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(identity, "a", "still GENERATED ALWAYS");
    let constraints: Vec<(String, String)> = c
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid IN ('accounts'::regclass, 'events'::regclass, 'notes'::regclass) AND contype <> 'n' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("accounts_pkey", "PRIMARY KEY (id)"),
        (
            "events_account_id_fkey",
            "FOREIGN KEY (account_id) REFERENCES accounts(id) ON DELETE CASCADE",
        ),
        ("events_amount_check", "CHECK ((amount > 0))"),
        ("events_pkey", "PRIMARY KEY (id)"),
        (
            "notes_account",
            "FOREIGN KEY (account_id) REFERENCES accounts(id)",
        ),
        ("notes_pkey", "PRIMARY KEY (id)"),
    ];
    assert_eq!(
        constraints,
        expected
            .iter()
            .map(|(n, d)| (n.to_string(), d.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_constraint WHERE NOT convalidated"
        ),
        0
    );
    let index: String = c
        .query_one("SELECT pg_get_indexdef('events_large'::regclass)", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        index,
        "CREATE INDEX events_large ON public.events USING btree (account_id DESC) INCLUDE (amount) WHERE (amount > 100)"
    );
    let (comment, statistics): (Option<String>, i64) = {
        let r = c
            .query_one(
                "SELECT col_description('accounts'::regclass, attnum), coalesce(attstattarget, -1)::bigint FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'id'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(comment.as_deref(), Some("the account number"));
    assert_eq!(statistics, 500);
    // The view is the migration's, with its grant; the identity goes on from where it was,
    // now with bigint's range; nothing was left behind.
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'account_totals' AND column_name = 'events'"
        ),
        1
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM information_schema.role_table_grants WHERE table_name = 'account_totals' AND grantee = 'PUBLIC'"
        ),
        1
    );
    let max_id = count(&mut c, "SELECT max(id)::bigint FROM accounts");
    let next: i64 = c
        .query_one(
            "INSERT INTO accounts (name) VALUES ('after') RETURNING id::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        next > max_id,
        "the identity went back: {next} after {max_id}"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT seqmax FROM pg_sequence WHERE seqrelid = pg_get_serial_sequence('accounts', 'id')::regclass"
        ),
        i64::MAX
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_zdm%'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM events e LEFT JOIN accounts a ON a.id = e.account_id WHERE a.id IS NULL"
        ),
        0
    );
}

#[test]
fn type_changes_verify_equal_to_the_sql_as_written() {
    // Each case is a migration of its own over the same starting schema (verify runs the
    // earlier cases as written before each).
    let schema = format!(
        "{SCHEMA}
CREATE TABLE tags (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label text COLLATE \"C\", n int, m int,
  CONSTRAINT tags_n_m UNIQUE (n, m), CONSTRAINT tags_order CHECK (n < m));
CREATE INDEX tags_expr ON tags ((n + 1), lower(label) text_pattern_ops);
CREATE INDEX tags_hash ON tags USING hash (n);
CREATE UNIQUE INDEX tags_label_n ON tags (label COLLATE \"C\", n) WHERE n IS NOT NULL;
CREATE TABLE widgets (id int PRIMARY KEY, size int NOT NULL DEFAULT 1, title varchar(100));
CREATE TABLE owners (id serial PRIMARY KEY);
CREATE TABLE pets (id int PRIMARY KEY, owner_id int REFERENCES owners, parent_id int REFERENCES pets (id));
CREATE VIEW widget_titles AS SELECT id, title FROM widgets;"
    );
    let results = verify(
        &schema,
        &[
            ("widen", WIDEN),
            (
                "tags",
                "ALTER TABLE tags ALTER COLUMN n TYPE bigint;
ALTER TABLE tags ALTER COLUMN id TYPE bigint;",
            ),
            // What later statements set on the changed column runs after the swap.
            (
                "then_properties",
                "ALTER TABLE tags ALTER COLUMN m TYPE bigint;
ALTER TABLE tags ALTER COLUMN m SET DEFAULT 7;
COMMENT ON COLUMN tags.m IS 'widened';
ALTER TABLE tags ALTER COLUMN m SET STATISTICS 300;",
            ),
            // Without a COLLATE the new column takes its type's default collation, as
            // PostgreSQL's ALTER COLUMN … TYPE does.
            (
                "collation",
                "ALTER TABLE tags ALTER COLUMN label TYPE varchar(40);",
            ),
            // Prisma's form: the type and the default in one statement.
            (
                "type_and_default",
                "ALTER TABLE widgets ALTER COLUMN size TYPE bigint, ALTER COLUMN size SET DEFAULT 2;",
            ),
            // The referencing columns before the key they reference, and a key that its own
            // table references.
            (
                "referencing_first",
                "ALTER TABLE pets ALTER COLUMN owner_id TYPE bigint;
ALTER TABLE pets ALTER COLUMN parent_id TYPE bigint;
ALTER TABLE owners ALTER COLUMN id TYPE bigint;
ALTER TABLE pets ALTER COLUMN id TYPE bigint;",
            ),
            // A widening PostgreSQL does in the catalog runs as written, views and all.
            (
                "widen_under_view",
                "DROP VIEW widget_titles;
ALTER TABLE widgets ALTER COLUMN title TYPE varchar(200);
CREATE VIEW widget_titles AS SELECT id, title FROM widgets;",
            ),
        ],
    );
    for (name, outcome, detail) in &results {
        let expected = match name.as_str() {
            "schema" | "widen_under_view" => "as written",
            _ => "equal",
        };
        assert_eq!(outcome, expected, "{name}: {detail}");
    }
    assert_eq!(results.len(), 8, "{results:?}");
}

#[test]
fn what_zdm_cannot_move_is_refused_with_a_reason() {
    let plan = |setup: &str, sql: &str| -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_schema.sql"), setup).unwrap();
        std::fs::write(dir.path().join("0002_change.sql"), sql).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_zdm"))
            .env_remove("ZDM_CONFIG")
            .env_remove("DATABASE_URL")
            .arg("plan")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    };
    // As written, PostgreSQL refuses: the view still uses the column.
    let out = plan(
        SCHEMA,
        "ALTER TABLE events ALTER COLUMN account_id TYPE bigint;",
    );
    assert!(
        out.contains("view account_totals may use events.account_id"),
        "{out}"
    );
    assert!(out.contains("0002_change.sql"), "{out}");
    // An EXCLUDE constraint cannot be added NOT VALID or from an index built beforehand.
    let out = plan(
        "CREATE EXTENSION IF NOT EXISTS btree_gist; CREATE TABLE rooms (id int PRIMARY KEY, room int, during tsrange, EXCLUDE USING gist (room WITH =, during WITH &&));",
        "ALTER TABLE rooms ALTER COLUMN room TYPE bigint;",
    );
    assert!(out.contains("EXCLUDE constraint"), "{out}");
    // Prisma's enum swap renames the new type while the conversion trigger still names it.
    let out = plan(
        "CREATE TYPE \"Level\" AS ENUM ('low', 'high'); CREATE TABLE m (id int PRIMARY KEY, level \"Level\" NOT NULL);",
        "CREATE TYPE \"Level_new\" AS ENUM ('high', 'low');
ALTER TABLE m ALTER COLUMN level TYPE \"Level_new\" USING (level::text::\"Level_new\");
ALTER TYPE \"Level\" RENAME TO \"Level_old\";
ALTER TYPE \"Level_new\" RENAME TO \"Level\";
DROP TYPE \"Level_old\";",
    );
    assert!(out.contains("0002_change.sql:4"), "{out}");
    assert!(out.contains("\"Level_new\""), "{out}");
    // A view re-created after the swap that selects * would list the columns in another order.
    let out = plan(
        SCHEMA,
        "DROP VIEW account_totals;
ALTER TABLE events ALTER COLUMN account_id TYPE bigint;
CREATE VIEW account_totals AS SELECT e.* FROM events e;",
    );
    assert!(out.contains("selects `*`"), "{out}");
}

/// The swap's proof fails on a copy that is not the original's twin (here a different WHERE),
/// and passes on one that differs only by the shadow's name and the casts the new type needs.
#[test]
fn the_swap_refuses_a_copy_that_is_not_the_originals_twin() {
    use zdm::sql::Name;
    use zdm::sql::swap::{Twin, TwinKind, prove_twins};
    let Some(db) = common::TestDatabase::create("types_twins") else {
        return;
    };
    let mut c = db.connect();
    c.batch_execute(
        "CREATE TABLE t (n varchar(10), shadow text, m int);
         CREATE INDEX original ON t (lower(n)) WHERE m > 0;
         CREATE INDEX twin ON t (lower(shadow)) WHERE m > 0;
         CREATE INDEX other ON t (lower(shadow)) WHERE m > 1;",
    )
    .unwrap();
    let table = Name::new(None, "t");
    let proof = |copy: &str| {
        prove_twins(
            "n",
            "shadow",
            &[Twin {
                kind: TwinKind::Index,
                table: &table,
                original: "original",
                copy,
            }],
        )
        .unwrap()
    };
    c.batch_execute(&proof("twin")).unwrap();
    let e = c.batch_execute(&proof("other")).unwrap_err();
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("original was built on the shadow as"),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
}

/// Abort after expand undoes a coordinated change completely (the copies of the foreign keys
/// that reference the shadow go before it), and the change then runs again to the end.
#[test]
fn a_coordinated_change_aborts_after_expand_and_runs_again() {
    let Some((db, url, dir)) = seeded("types_abort", 500, 2000, 0) else {
        return;
    };
    let d = dir.path();
    let mut c = db.connect();
    let schema_of = |c: &mut postgres::Client| -> Vec<String> {
        c.query(
            "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
             WHERE connamespace = 'public'::regnamespace
             UNION ALL SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid IN ('accounts'::regclass, 'events'::regclass, 'notes'::regclass)
             UNION ALL SELECT attrelid::regclass::text || '.' || attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
               WHERE attrelid IN ('accounts'::regclass, 'events'::regclass, 'notes'::regclass) AND attnum > 0 AND NOT attisdropped
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let before = schema_of(&mut c);
    std::fs::write(d.join("0002_widen.sql"), WIDEN).unwrap();
    ok(zdm(&url, d, &["expand"]), "expand 0002");
    assert_ne!(schema_of(&mut c), before);
    ok(zdm(&url, d, &["abort"]), "abort 0002");
    assert_eq!(schema_of(&mut c), before);
    ok(zdm(&url, d, &["expand"]), "expand 0002 again");
    ok(zdm(&url, d, &["contract"]), "contract 0002");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM events e JOIN accounts a ON a.id = e.account_id"
        ),
        2000
    );
}

/// The other shapes under traffic: a BY DEFAULT identity key, a column in a multi-column
/// UNIQUE constraint, a CHECK over two columns, expression, hash and partial unique indexes,
/// and a serial key, changed in one migration while both application versions insert, update
/// and look rows up by the unique key.
#[test]
fn unique_keys_checks_and_every_index_widen_under_traffic() {
    let Some(db) = common::TestDatabase::create("types_unique") else {
        return;
    };
    let url = db.url_of_database();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("0001_schema.sql"),
        "CREATE TABLE tags (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label text, n int NOT NULL, m int NOT NULL,
           CONSTRAINT tags_n_m UNIQUE (n, m), CONSTRAINT tags_order CHECK (n < m));
         CREATE INDEX tags_expr ON tags ((n + 1), lower(label) text_pattern_ops);
         CREATE INDEX tags_hash ON tags USING hash (n);
         CREATE UNIQUE INDEX tags_label_n ON tags (label, n) WHERE n > 0;
         CREATE TABLE counters (id serial PRIMARY KEY, n int);",
    )
    .unwrap();
    ok(zdm(&url, d, &["expand"]), "expand 0001");
    ok(zdm(&url, d, &["contract"]), "contract 0001");
    let mut c = db.connect();
    c.batch_execute(
        "INSERT INTO tags (label, n, m) SELECT 't' || g, g, g + 1 FROM generate_series(1, 5000) g;
         INSERT INTO counters (n) SELECT g FROM generate_series(1, 2000) g;",
    )
    .unwrap();
    std::fs::write(
        d.join("0002_widen.sql"),
        "ALTER TABLE tags ALTER COLUMN id TYPE bigint;
ALTER TABLE tags ALTER COLUMN n TYPE bigint;
ALTER TABLE counters ALTER COLUMN id TYPE bigint;",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let app = |version: i64| {
        let mut c = db.connect();
        let stop = stop.clone();
        let failures = failures.clone();
        std::thread::spawn(move || {
            let mut k = 0i64;
            while !stop.load(Ordering::SeqCst) {
                k += 1;
                let n = 1_000_000 + k * 2 + version;
                let mut run =
                    |what: &str, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]| {
                        if let Err(e) = c.query(sql, params) {
                            let detail = e.as_db_error().map(|d| d.message().to_owned());
                            failures.lock().unwrap().push(format!(
                                "{version} {what}: {}",
                                detail.unwrap_or_else(|| e.to_string())
                            ));
                        }
                    };
                run(
                    "insert tag",
                    "INSERT INTO tags (label, n, m) VALUES ('v' || $1::bigint, $1::bigint, $1::bigint + 1)",
                    &[&n],
                );
                run(
                    "update tag",
                    "UPDATE tags SET label = label || 'x' WHERE n = $1::bigint AND m = $1::bigint + 1",
                    &[&n],
                );
                run(
                    "look up",
                    "SELECT id::bigint FROM tags WHERE n = $1::bigint",
                    &[&(k % 5000 + 1)],
                );
                run(
                    "insert counter",
                    "INSERT INTO counters (n) VALUES ($1::bigint) RETURNING id::bigint",
                    &[&n],
                );
            }
            k
        })
    };
    let old = app(0);
    ok(zdm(&url, d, &["expand"]), "expand 0002");
    let new = app(1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let contract = zdm(&url, d, &["contract"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let runs = old.join().unwrap() + new.join().unwrap();
    ok(contract, "contract 0002");
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed queries in {runs} runs: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(runs > 20, "the application ran only {runs} times");
    let definitions: Vec<String> = c
        .query(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'tags'::regclass AND contype <> 'n' AND convalidated
             UNION ALL SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'tags'::regclass
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        definitions,
        [
            "CHECK ((n < m))",
            "CREATE INDEX tags_expr ON public.tags USING btree (((n + 1)), lower(label) text_pattern_ops)",
            "CREATE INDEX tags_hash ON public.tags USING hash (n)",
            "CREATE UNIQUE INDEX tags_label_n ON public.tags USING btree (label, n) WHERE (n > 0)",
            "CREATE UNIQUE INDEX tags_n_m ON public.tags USING btree (n, m)",
            "CREATE UNIQUE INDEX tags_pkey ON public.tags USING btree (id)",
            "PRIMARY KEY (id)",
            "UNIQUE (n, m)",
        ]
    );
    let identity: String = c
        .query_one(
            "SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'tags'::regclass AND attname = 'id'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(identity, "d", "still BY DEFAULT");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM tags WHERE n IS NULL OR id IS NULL"
        ),
        0
    );
    let next: i64 = c
        .query_one(
            "INSERT INTO counters (n) VALUES (0) RETURNING id::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(next > count(&mut c, "SELECT max(id)::bigint - 1 FROM counters"));
}
