-- Events sent to `alerts:` destinations share the webhook outbox with capture results. `sender`
-- names the destination whose secret signs a delivery ('' for a capture result, signed with
-- `webhook.secret`); for an event, `job_id` holds the id of the run it is about.
ALTER TABLE webhook_deliveries ADD COLUMN sender TEXT NOT NULL DEFAULT '';
