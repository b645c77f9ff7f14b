-- Breaking for the running application: `zdm lint` flags it, and `zdm plan` runs it as
-- expand (new column + sync trigger + backfill) and contract (drop the old column).
ALTER TABLE users RENAME COLUMN full_name TO display_name;
