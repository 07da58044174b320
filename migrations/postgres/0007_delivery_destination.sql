-- The origin (scheme, host, port) a webhook delivery goes to: at most one delivery per origin
-- is in flight, so one slow receiver, however many URLs it has, holds one slot
-- (src/webhook/delivery.rs). Rows from before have none; their URL stands in.
ALTER TABLE webhook_deliveries ADD COLUMN destination TEXT NOT NULL DEFAULT '';
