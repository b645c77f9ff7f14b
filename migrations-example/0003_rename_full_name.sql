-- Breaking for the running application: `zdm lint` flags it, and `zdm plan` runs it as
-- expand (a shadow column + a two-way sync trigger + a backfill) and contract (drop the
-- shadow, rename the original column).
ALTER TABLE users RENAME COLUMN full_name TO display_name;
