-- A constant default is stored in the catalog (PostgreSQL 11+): no rewrite.
SET lock_timeout = '2s';
ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';
-- A whole-table UPDATE holds row locks on every row until it commits: flagged, and planned
-- as a batched backfill.
UPDATE users SET plan = 'pro' WHERE created_at < '2024-01-01';
UPDATE orders SET amount_cents = amount_cents * 100;
