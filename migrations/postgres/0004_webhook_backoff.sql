-- A capture result that cannot be processed yet (its asset's server is down, say) waits its own
-- backoff instead of being read again at once: `attempts` failures so far, and not before
-- `retry_at`. After a bounded number it fails its run (src/pipeline/processor.rs).
ALTER TABLE received_webhooks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE received_webhooks ADD COLUMN retry_at BIGINT;
