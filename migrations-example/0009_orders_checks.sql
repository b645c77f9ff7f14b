-- Adding a CHECK scans the table under ACCESS EXCLUSIVE unless it is added NOT VALID first.
ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount_cents > 0);
