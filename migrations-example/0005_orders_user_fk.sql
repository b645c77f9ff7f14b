-- Blocks writes to both tables while every order is checked; the safe form is NOT VALID,
-- then VALIDATE CONSTRAINT in another transaction.
ALTER TABLE orders ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);
