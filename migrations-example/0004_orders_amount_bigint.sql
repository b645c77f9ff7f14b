-- Rewrites the table under ACCESS EXCLUSIVE: zdm plans a shadow column, a sync trigger and a
-- batched backfill instead.
ALTER TABLE orders ALTER COLUMN amount_cents TYPE bigint;
