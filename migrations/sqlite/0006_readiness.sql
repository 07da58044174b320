-- One row that /readyz writes (at most every few seconds per replica): a database that answers
-- reads but refuses writes (read-only, a full disk, a standby) is not ready.
CREATE TABLE readiness (
    id          INTEGER PRIMARY KEY,
    checked_at  BIGINT NOT NULL
);
