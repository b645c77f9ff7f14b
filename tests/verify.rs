//! `zdm verify` through the binary: the migrations that real sets showed zdm getting wrong
//! (several UPDATEs of one column, a NOT NULL after its backfill, a reused index name, ALTER
//! TABLE actions in PostgreSQL's order…) run as expand → contract on seeded copies and equal
//! the SQL run as written; the ones zdm cannot run in phases without changing their meaning
//! are refused with a reason. Needs DATABASE_URL (a server where databases may be created).

mod common;

/// The initial schema every case starts from.
const SCHEMA: &str = "
CREATE TYPE line_status AS ENUM ('draft', 'detailed', 'closed');
CREATE TABLE lines (id int PRIMARY KEY, status line_status NOT NULL, sub_id int);
CREATE TABLE users (id int PRIMARY KEY, email text, active boolean, plan text, score int, bio text);
CREATE INDEX users_email ON users (email);
CREATE TABLE items (id int PRIMARY KEY, qty int DEFAULT 1, label text);
CREATE TABLE accounts (id int PRIMARY KEY, name text);
CREATE TABLE orders (id int PRIMARY KEY, acct int, f text);
CREATE TABLE a (id int PRIMARY KEY, x int);
CREATE TABLE b (id int PRIMARY KEY, y int);
CREATE TABLE tickets (id int PRIMARY KEY, state text NOT NULL);
CREATE TABLE keys (id int PRIMARY KEY, v text);
CREATE TABLE sessions (id text PRIMARY KEY, project text NOT NULL);
CREATE UNIQUE INDEX sessions_id_project ON sessions (id, project);
CREATE TABLE traces (id int PRIMARY KEY, session_id text, project text);
CREATE TABLE counters (id serial PRIMARY KEY, n int);
CREATE TABLE perms (id int PRIMARY KEY, role_id int, policy_id int, CONSTRAINT perms_u UNIQUE (role_id, policy_id));
CREATE TABLE docs (id int PRIMARY KEY, n int);
CREATE INDEX docs_n_plus_one ON docs ((n + 1));
CREATE TYPE sort_type AS ENUM ('hot', 'new');
CREATE TABLE prefs (id int PRIMARY KEY, default_sort sort_type NOT NULL DEFAULT 'hot');
";

fn verify(cases: &[(&str, &str)]) -> Vec<(String, String, String)> {
    common::verify(SCHEMA, cases)
}

fn assert_outcomes(results: &[(String, String, String)], expected: &[(&str, &str)]) {
    for (name, outcome) in expected {
        let (_, got, detail) = results
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not reported: {results:?}"));
        assert_eq!(got, outcome, "{name}: {detail}");
    }
}

#[test]
fn order_sensitive_migrations_equal_the_sql_as_written() {
    let results = verify(&[
        // A later statement sets the default of a column whose type changes at contract:
        // it runs at contract too, after the swap (which keeps the old default until then).
        (
            "type_then_default",
            "ALTER TABLE items ALTER COLUMN qty TYPE bigint;
ALTER TABLE items ALTER COLUMN qty SET DEFAULT 5;",
        ),
        // The UNIQUE constraint comes back as a constraint (harbor 0170), the expression
        // index is built again on the shadow.
        (
            "type_of_a_unique_constraint_column",
            "ALTER TABLE perms ALTER COLUMN policy_id TYPE bigint;",
        ),
        (
            "type_under_an_expression_index",
            "ALTER TABLE docs ALTER COLUMN n TYPE bigint;",
        ),
        // Three UPDATEs fill one column under different conditions, then NOT NULL: the
        // NOT NULL must wait for the backfills, and every UPDATE must count.
        (
            "managed_by",
            "ALTER TABLE lines ADD COLUMN managed_by text;
UPDATE lines SET managed_by = 'system' WHERE status = 'detailed';
UPDATE lines SET managed_by = 'subscription' WHERE sub_id IS NOT NULL AND status <> 'detailed';
UPDATE lines SET managed_by = 'manual' WHERE sub_id IS NULL AND status <> 'detailed';
ALTER TABLE lines ALTER COLUMN managed_by SET NOT NULL;",
        ),
        // The same without the NOT NULL, which used to leave two thirds of the rows NULL.
        (
            "managed_by_nullable",
            "ALTER TABLE lines ADD COLUMN managed_by2 text;
UPDATE lines SET managed_by2 = 'system' WHERE status = 'detailed';
UPDATE lines SET managed_by2 = 'manual' WHERE status <> 'detailed';",
        ),
        // Chained renames of values: each UPDATE sees the one before.
        (
            "status_renames",
            "UPDATE tickets SET state = 'b' WHERE state = 'v1';
UPDATE tickets SET state = 'c' WHERE state = 'b';
UPDATE tickets SET state = 'v1' WHERE state = 'v2';
UPDATE tickets SET state = 'done' WHERE state = 'c';",
        ),
        // The second filter sees the first UPDATE's rows.
        (
            "filter_sees_update",
            "UPDATE users SET plan = 'free' WHERE plan IS NULL;
UPDATE users SET score = 0 WHERE plan IS NULL;",
        ),
        // The commonest failure in real sets: an index dropped and created under its name.
        (
            "reindex_same_name",
            "DROP INDEX users_email;
CREATE INDEX users_email ON users (lower(email));",
        ),
        // PostgreSQL adds the column before the CHECK that names it.
        (
            "check_before_column",
            "ALTER TABLE accounts ADD CONSTRAINT pos CHECK (score >= 0), ADD COLUMN score int DEFAULT 0;",
        ),
        // A NOT NULL after the UPDATE that fills the column.
        (
            "not_null_after_update",
            "UPDATE users SET bio = 'none' WHERE bio IS NULL;
ALTER TABLE users ALTER COLUMN bio SET NOT NULL;",
        ),
        // An UPDATE before a rename of another column, and the rename's copy after it.
        (
            "update_then_rename",
            "UPDATE items SET qty = qty * 2 WHERE qty > 1;
ALTER TABLE items RENAME COLUMN label TO title;",
        ),
        // NOT NULL on a column the first sample rows leave NULL: tried again on rows without
        // NULLs instead of being "not comparable".
        (
            "set_not_null",
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        ),
        // A json value into a jsonb column: the backfill tells rows apart without `jsonb = json`.
        (
            "json_into_jsonb",
            "ALTER TABLE users ADD COLUMN meta jsonb;
UPDATE users SET meta = json_build_object('email', email);",
        ),
        // A foreign key after the unique index it would otherwise attach to is dropped: the
        // drop runs in order, so the key depends on the new primary key, as written.
        (
            "drop_unique_index_then_foreign_key",
            "DROP INDEX sessions_id_project;
ALTER TABLE sessions DROP CONSTRAINT sessions_pkey, ADD CONSTRAINT sessions_pkey PRIMARY KEY (id, project);
ALTER TABLE traces ADD CONSTRAINT traces_session_fk FOREIGN KEY (session_id, project) REFERENCES sessions (id, project);",
        ),
        // A column renamed after its type: the shadow column is of the type's new name.
        (
            "rename_type_then_column",
            "ALTER TYPE sort_type RENAME TO post_sort_type;
ALTER TABLE prefs RENAME COLUMN default_sort TO default_post_sort;",
        ),
        // A serial key read from the database (a nextval default, no `serial` type): its
        // sequence moves to the shadow before the old column is dropped.
        (
            "serial_key_type",
            "ALTER TABLE counters ALTER COLUMN id TYPE bigint;
ALTER SEQUENCE counters_id_seq AS bigint;",
        ),
        // A type change of a primary key.
        (
            "primary_key_type",
            "ALTER TABLE keys ALTER COLUMN id TYPE bigint;",
        ),
    ]);
    assert_outcomes(
        &results,
        &[
            ("type_then_default", "equal"),
            ("type_of_a_unique_constraint_column", "equal"),
            ("type_under_an_expression_index", "equal"),
            ("managed_by", "equal"),
            ("managed_by_nullable", "equal"),
            ("status_renames", "equal"),
            ("filter_sees_update", "equal"),
            ("reindex_same_name", "equal"),
            ("check_before_column", "equal"),
            ("not_null_after_update", "equal"),
            ("update_then_rename", "equal"),
            ("set_not_null", "equal"),
            ("json_into_jsonb", "equal"),
            ("drop_unique_index_then_foreign_key", "equal"),
            ("rename_type_then_column", "equal"),
            ("serial_key_type", "equal"),
            ("primary_key_type", "equal"),
        ],
    );
}

#[test]
fn migrations_that_phases_would_change_are_refused_with_a_reason() {
    let results = verify(&[
        // Every row would end inverted: the UPDATE would write the shadow the swap drops.
        (
            "rename_then_update",
            "ALTER TABLE users RENAME COLUMN active TO disabled;
UPDATE users SET disabled = NOT disabled;",
        ),
        // The index would be built on the shadow that the contract drops.
        (
            "rename_then_index",
            "ALTER TABLE items RENAME COLUMN label TO title;
CREATE INDEX items_title ON items (title);",
        ),
        // Two tables trading names: the compatibility view holds the old one.
        (
            "table_swap",
            "ALTER TABLE a RENAME TO a_old;
ALTER TABLE b RENAME TO a;",
        ),
        (
            "drop_add_same_column",
            "ALTER TABLE orders DROP COLUMN f, ADD COLUMN f int;",
        ),
        // The key would land on the old column, which the swap drops.
        (
            "type_and_foreign_key",
            "ALTER TABLE orders ALTER COLUMN acct TYPE bigint, ADD CONSTRAINT orders_acct_fk FOREIGN KEY (acct) REFERENCES accounts (id);",
        ),
        // The rename's contract would act on the compatibility view of the renamed table.
        (
            "rename_column_then_table",
            "ALTER TABLE traces RENAME COLUMN project TO project_id;
ALTER TABLE traces RENAME TO spans;",
        ),
        (
            "temporary_table",
            "CREATE TEMP TABLE ids AS SELECT id FROM accounts;
UPDATE accounts SET name = 'x' FROM ids WHERE ids.id = accounts.id;",
        ),
    ]);
    assert_outcomes(
        &results,
        &[
            ("rename_then_update", "refused"),
            ("rename_then_index", "refused"),
            ("table_swap", "refused"),
            ("drop_add_same_column", "refused"),
            ("type_and_foreign_key", "refused"),
            ("rename_column_then_table", "refused"),
            ("temporary_table", "refused"),
        ],
    );
    let detail = |name: &str| {
        results
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, d)| d.clone())
            .unwrap()
    };
    // The refusal names both lines and says what to do.
    let d = detail("rename_then_update");
    assert!(d.contains(":2:") && d.contains("line 1"), "{d}");
    assert!(d.contains("later migration"), "{d}");
    assert!(!d.contains("zdm plan runs this"), "{d}");
}
