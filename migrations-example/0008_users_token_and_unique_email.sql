-- A volatile default would rewrite the table under ACCESS EXCLUSIVE to fill every row.
ALTER TABLE users ADD COLUMN api_token uuid NOT NULL DEFAULT gen_random_uuid();
-- A plain UNIQUE constraint builds its index under a lock that blocks writes.
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
-- A plain CREATE INDEX blocks writes for the whole build.
CREATE INDEX users_created_at_idx ON users (created_at);
