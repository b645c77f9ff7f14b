//! The operations zdm plans, each with the queries of the application version before and after
//! it and the facts that must hold once it is contracted. Shared by `plan_sql.rs` (the SQL
//! files run like psql) and `lifecycle.rs` (the executor under concurrent writers).

pub struct Scenario {
    pub name: &'static str,
    pub setup: &'static str,
    pub migration: &'static str,
    /// Queries of the application version deployed before the migration.
    pub old_app: &'static [&'static str],
    /// Queries of the version deployed after expand.
    pub new_app: &'static [&'static str],
    /// Boolean queries that must hold after contract.
    pub checks: &'static [&'static str],
}

pub const SEED: &str = "INSERT INTO users (id, email, legacy) SELECT g, 'user' || g || '@example.com', g FROM generate_series(1, 2500) g;
INSERT INTO orders (id, user_id, amount) SELECT g, g, g FROM generate_series(1, 2500) g;";

pub const SCHEMA: &str =
    "CREATE TABLE users (id bigint PRIMARY KEY, email text, plan text, legacy int NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, amount int);
CREATE INDEX orders_amount_idx ON orders (amount);
CREATE TABLE audit_log (id bigint PRIMARY KEY);";

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "create index",
        setup: "",
        migration: "CREATE INDEX orders_user_idx ON orders (user_id);",
        old_app: &["INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 1, 5)"],
        new_app: &["SELECT count(*) FROM orders WHERE user_id = 1"],
        checks: &["SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_user_idx'::regclass"],
    },
    Scenario {
        name: "drop index",
        setup: "",
        migration: "DROP INDEX orders_amount_idx;",
        old_app: &["SELECT count(*) FROM orders WHERE amount = 3"],
        new_app: &["INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 2, 7)"],
        checks: &["SELECT to_regclass('orders_amount_idx') IS NULL"],
    },
    Scenario {
        name: "add foreign key",
        setup: "",
        migration: "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
        old_app: &["INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 3, 1)"],
        new_app: &["INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 4, 1)"],
        checks: &["SELECT convalidated FROM pg_constraint WHERE conname = 'orders_user_fk'"],
    },
    Scenario {
        name: "add column with an inline foreign key",
        setup: "",
        migration: "ALTER TABLE orders ADD COLUMN referrer_id bigint REFERENCES users (id) ON DELETE SET NULL;",
        old_app: &["INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 3, 1)"],
        new_app: &[
            "INSERT INTO orders (id, user_id, amount, referrer_id) VALUES (nextid('orders'), 4, 1, 2)",
        ],
        checks: &[
            "SELECT convalidated FROM pg_constraint WHERE conname = 'orders_referrer_id_fkey'",
        ],
    },
    Scenario {
        name: "add check",
        setup: "",
        migration: "ALTER TABLE orders ADD CHECK (amount > 0);",
        old_app: &["INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 3, 9)"],
        new_app: &["UPDATE orders SET amount = amount + 1 WHERE id = 1"],
        checks: &[
            "SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c'",
        ],
    },
    Scenario {
        name: "add unique",
        setup: "",
        migration: "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
        old_app: &[
            "INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'old' || nextid('users') || '@x', 1)",
        ],
        new_app: &["SELECT id FROM users WHERE email = 'user1@example.com'"],
        checks: &[
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'users_email_key' AND contype = 'u')",
        ],
    },
    Scenario {
        name: "add primary key",
        setup: "CREATE TABLE events (id bigint, at int); INSERT INTO events SELECT g, g FROM generate_series(1, 100) g;",
        migration: "ALTER TABLE events ADD PRIMARY KEY (id);",
        old_app: &["INSERT INTO events VALUES (nextid('events'), 1)"],
        new_app: &["SELECT * FROM events WHERE id = 5"],
        checks: &[
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'p')",
        ],
    },
    Scenario {
        name: "set not null",
        setup: "",
        migration: "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        old_app: &["INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'a@b', 1)"],
        new_app: &["SELECT email FROM users WHERE id = 1"],
        checks: &[
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'",
        ],
    },
    Scenario {
        name: "add column with a volatile default",
        setup: "",
        migration: "ALTER TABLE users ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();",
        old_app: &["INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'o@x', 1)"],
        new_app: &[
            "INSERT INTO users (id, email, legacy, token) VALUES (nextid('users'), 'n@x', 1, gen_random_uuid())",
            "SELECT token FROM users WHERE id = 1",
        ],
        checks: &[
            "SELECT count(*) = count(DISTINCT token) FROM users",
            "SELECT count(*) FILTER (WHERE token IS NULL) = 0 FROM users",
        ],
    },
    Scenario {
        name: "add required column from a backfill directive",
        setup: "",
        migration: "-- zdm:backfill lower(email)\nALTER TABLE users ADD COLUMN email_lower text NOT NULL;",
        old_app: &["INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'MiXed@X', 1)"],
        new_app: &[
            "INSERT INTO users (id, email, legacy, email_lower) VALUES (nextid('users'), 'n@x', 1, 'n@x')",
        ],
        checks: &["SELECT bool_and(email_lower = lower(email)) FROM users"],
    },
    Scenario {
        name: "add column, fill it, make it required (three statements)",
        setup: "",
        migration: "ALTER TABLE users ADD COLUMN domain text;\nUPDATE users SET domain = split_part(email, '@', 2);\nALTER TABLE users ALTER COLUMN domain SET NOT NULL;",
        old_app: &[
            "INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'o@old.example', 1)",
        ],
        new_app: &[
            "INSERT INTO users (id, email, legacy, domain) VALUES (nextid('users'), 'n@new.example', 1, 'new.example')",
        ],
        checks: &[
            "SELECT bool_and(domain = split_part(email, '@', 2)) FROM users",
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'domain'",
        ],
    },
    Scenario {
        name: "drop column",
        setup: "",
        migration: "ALTER TABLE users DROP COLUMN legacy;",
        old_app: &[
            "INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'o@x', 1)",
            "SELECT legacy FROM users WHERE id = 1",
        ],
        new_app: &["INSERT INTO users (id, email) VALUES (nextid('users'), 'n@x')"],
        checks: &[
            "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'legacy' AND NOT attisdropped)",
        ],
    },
    Scenario {
        name: "drop table",
        setup: "",
        migration: "DROP TABLE audit_log;",
        old_app: &["INSERT INTO audit_log VALUES (nextid('audit_log'))"],
        new_app: &["SELECT count(*) FROM users"],
        checks: &["SELECT to_regclass('audit_log') IS NULL"],
    },
    Scenario {
        name: "rename table",
        setup: "",
        migration: "ALTER TABLE orders RENAME TO purchases;",
        old_app: &[
            "INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 1, 1)",
            "UPDATE orders SET amount = 2 WHERE id = 1",
            "SELECT count(*) FROM orders",
        ],
        new_app: &[
            "INSERT INTO purchases (id, user_id, amount) VALUES (nextid('purchases'), 1, 1)",
            "SELECT count(*) FROM purchases",
        ],
        checks: &[
            "SELECT count(*) >= 2500 FROM purchases",
            "SELECT to_regclass('orders') IS NULL",
        ],
    },
    Scenario {
        name: "rename column",
        setup: "",
        migration: "ALTER TABLE users RENAME COLUMN email TO contact;",
        old_app: &[
            "INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'old@x', 1)",
            "UPDATE users SET email = 'changed-by-old@x' WHERE id = 1",
            "SELECT email FROM users WHERE id = 2",
        ],
        new_app: &[
            "INSERT INTO users (id, contact, legacy) VALUES (nextid('users'), 'new@x', 1)",
            "UPDATE users SET contact = 'changed-by-new@x' WHERE id = 3",
            "SELECT contact FROM users WHERE id = 2",
        ],
        checks: &[
            "SELECT contact = 'changed-by-old@x' FROM users WHERE id = 1",
            "SELECT contact = 'changed-by-new@x' FROM users WHERE id = 3",
            "SELECT bool_and(contact = 'user' || id || '@example.com') FROM users WHERE id BETWEEN 4 AND 2500",
            "SELECT count(*) FILTER (WHERE contact IS NULL) = 0 FROM users",
        ],
    },
    Scenario {
        name: "change type of a serial primary key (int to bigint)",
        setup: "CREATE TABLE tickets (id serial PRIMARY KEY, code int NOT NULL, note text);\nCREATE INDEX tickets_code_idx ON tickets (code);\nINSERT INTO tickets (code, note) SELECT g, 'n' || g FROM generate_series(1, 2100) g;",
        migration: "ALTER TABLE tickets ALTER COLUMN id TYPE bigint;",
        old_app: &[
            "INSERT INTO tickets (code, note) VALUES (7, 'old')",
            "UPDATE tickets SET note = 'edited' WHERE id = 5",
        ],
        new_app: &[
            "INSERT INTO tickets (code, note) VALUES (8, 'new') RETURNING id",
            "SELECT * FROM tickets WHERE id = 5",
        ],
        checks: &[
            "SELECT format_type(atttypid, atttypmod) = 'bigint' FROM pg_attribute WHERE attrelid = 'tickets'::regclass AND attname = 'id'",
            "SELECT count(*) >= 2100 AND count(*) = count(DISTINCT id) FROM tickets",
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'tickets_pkey' AND contype = 'p')",
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tickets_code_idx'::regclass",
            "SELECT note = 'edited' FROM tickets WHERE id = 5",
            "SELECT pg_get_serial_sequence('tickets', 'id') IS NOT NULL",
        ],
    },
    Scenario {
        name: "change type with USING",
        setup: "",
        migration: "ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12,2) USING amount / 100.0;",
        old_app: &["INSERT INTO orders (id, user_id, amount) VALUES (nextid('orders'), 1, 250)"],
        new_app: &["SELECT sum(amount) FROM orders"],
        checks: &[
            "SELECT amount = 0.05 FROM orders WHERE id = 5",
            "SELECT format_type(atttypid, atttypmod) = 'numeric(12,2)' FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'amount'",
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_amount_idx'::regclass",
        ],
    },
    Scenario {
        name: "two operations on one table share one backfill pass",
        setup: "",
        migration: "UPDATE users SET plan = 'free' WHERE plan IS NULL;\nALTER TABLE users RENAME COLUMN email TO contact;",
        old_app: &["INSERT INTO users (id, email, legacy) VALUES (nextid('users'), 'o@x', 1)"],
        new_app: &[
            "INSERT INTO users (id, contact, legacy, plan) VALUES (nextid('users'), 'n@x', 1, 'pro')",
        ],
        checks: &[
            "SELECT bool_and(plan = 'free') FROM users WHERE id <= 2500",
            "SELECT bool_and(contact = 'user' || id || '@example.com') FROM users WHERE id <= 2500",
        ],
    },
    Scenario {
        name: "update from another table, with an alias",
        setup: "",
        migration: "UPDATE users AS u SET plan = o.amount::text FROM orders o WHERE o.user_id = u.id AND u.id <= 1500;",
        old_app: &["SELECT plan FROM users WHERE id = 1"],
        new_app: &["SELECT plan FROM users WHERE id = 2"],
        checks: &[
            "SELECT bool_and(plan = id::text) FROM users WHERE id <= 1500",
            "SELECT bool_and(plan IS NULL) FROM users WHERE id > 1500 AND id <= 2500",
        ],
    },
    Scenario {
        name: "update backfill",
        setup: "",
        migration: "UPDATE users SET plan = 'free' WHERE plan IS NULL;",
        old_app: &["SELECT plan FROM users WHERE id = 1"],
        new_app: &["SELECT plan FROM users WHERE id = 2"],
        checks: &["SELECT count(*) FILTER (WHERE plan IS NULL) = 0 FROM users WHERE id <= 2500"],
    },
];

/// `nextid('t')`: a fresh id for an insert, above every seeded id and never handed out twice,
/// so application queries can insert repeatedly, from several sessions at once.
pub const HELPERS: &str = "CREATE SEQUENCE test_ids START 1000000;
CREATE FUNCTION nextid(t regclass) RETURNS bigint LANGUAGE sql AS $$ SELECT nextval('test_ids') $$;";
