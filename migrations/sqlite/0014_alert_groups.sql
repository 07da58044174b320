-- One alert for one change: a change alert's fingerprint (its words, else its regions, with its
-- channel), and, on an alert sent as part of another's message, that alert's id.
ALTER TABLE alerts ADD COLUMN fingerprint TEXT;
ALTER TABLE alerts ADD COLUMN grouped_into TEXT;
CREATE INDEX alerts_fingerprint ON alerts (fingerprint, status);
CREATE INDEX alerts_grouped_into ON alerts (grouped_into);
