-- The running application still queries `orders`: zdm keeps a view under the old name until
-- contract.
ALTER TABLE orders RENAME TO purchases;
