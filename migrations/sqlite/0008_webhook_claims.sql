-- A received capture result is leased by the processor that judges it, so that with several
-- replicas exactly one acts on each (src/store/deliveries.rs, claim_webhooks); a processor that
-- dies loses its lease when it runs out.
ALTER TABLE received_webhooks ADD COLUMN lease_expires_at BIGINT;
