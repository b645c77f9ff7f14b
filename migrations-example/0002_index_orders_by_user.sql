-- Safe: the index is built without blocking writes (outside a transaction).
SET lock_timeout = '2s';
CREATE INDEX CONCURRENTLY orders_user_id_idx ON orders (user_id);
