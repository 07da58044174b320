-- A capture result that cannot be processed yet (its asset's server is down, say) waits its own
-- backoff instead of being read again at once: `attempts` failures so far, `fetch_failures` of
-- them failed downloads (after a bounded number its run fails: src/pipeline/processor.rs), and
-- not before `retry_at`.
ALTER TABLE received_webhooks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE received_webhooks ADD COLUMN fetch_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE received_webhooks ADD COLUMN retry_at BIGINT;
