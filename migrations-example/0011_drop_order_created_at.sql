-- The old application still writes created_at; the new one no longer reads or writes it.
ALTER TABLE purchases DROP COLUMN created_at;
