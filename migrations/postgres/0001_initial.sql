-- vigil schema. Timestamps are BIGINT milliseconds since the Unix epoch (UTC) so that both
-- backends compare and sort them the same way; JSON documents are TEXT so payloads such as a
-- webhook's `metadata` come back byte for byte. Keep migrations/sqlite/ in step with this file.

-- Monitors as last synced from the YAML file. A monitor removed from the file keeps its row
-- (and history) with removed_at set.
CREATE TABLE monitors (
    name        TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    config      TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    removed_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One capture of (monitor, viewport) for one scheduler tick. The unique key makes a second
-- insert of the same tick a no-op, which is what lets several replicas share a database.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    monitor          TEXT NOT NULL,
    viewport         TEXT NOT NULL,
    scheduled_for    BIGINT NOT NULL,
    trigger          TEXT NOT NULL,
    status           TEXT NOT NULL,
    verdict          TEXT,
    job_id           TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    current_sha256   TEXT,
    baseline_sha256  TEXT,
    diff_sha256      TEXT,
    diff_pixels      BIGINT,
    total_pixels     BIGINT,
    diff_ratio       DOUBLE PRECISION,
    size_changed     BOOLEAN,
    regions          TEXT,
    error            TEXT,
    reviewed_by      TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    completed_at     BIGINT,
    UNIQUE (monitor, viewport, scheduled_for)
);
CREATE INDEX runs_by_monitor ON runs (monitor, viewport, created_at);
CREATE INDEX runs_by_status ON runs (status, updated_at);
CREATE INDEX runs_by_job ON runs (job_id);

-- The capture API's queue. Workers claim a job by taking a lease; a job whose lease expired
-- (its worker died) is claimable again.
CREATE TABLE capture_jobs (
    id                TEXT PRIMARY KEY,
    request           TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    next_attempt_at   BIGINT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    idempotency_key   TEXT UNIQUE,
    asset_id          TEXT,
    result            TEXT,
    error             TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    completed_at      BIGINT
);
CREATE INDEX capture_jobs_ready ON capture_jobs (status, next_attempt_at);

CREATE TABLE assets (
    id            TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    width         INTEGER,
    height        INTEGER,
    size          BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Outgoing webhooks: the row is written before the first attempt, so nothing is lost.
CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY,
    job_id            TEXT NOT NULL,
    url               TEXT NOT NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_expires_at  BIGINT,
    last_status       INTEGER,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    delivered_at      BIGINT
);
CREATE INDEX webhook_deliveries_ready ON webhook_deliveries (status, next_attempt_at);

-- Incoming capture webhooks, stored before the 2xx; the keys dedupe retries and replays.
CREATE TABLE received_webhooks (
    webhook_id    TEXT PRIMARY KEY,
    job_id        TEXT NOT NULL UNIQUE,
    payload       TEXT NOT NULL,
    received_at   BIGINT NOT NULL,
    processed_at  BIGINT
);
CREATE INDEX received_webhooks_unprocessed ON received_webhooks (processed_at, received_at);

-- Every baseline version ever approved; exactly one active per (monitor, viewport).
CREATE TABLE baselines (
    id           TEXT PRIMARY KEY,
    monitor      TEXT NOT NULL,
    viewport     TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    run_id       TEXT,
    source       TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    active       BOOLEAN NOT NULL,
    created_at   BIGINT NOT NULL,
    reverted_at  BIGINT
);
CREATE UNIQUE INDEX baselines_one_active ON baselines (monitor, viewport) WHERE active;
CREATE INDEX baselines_history ON baselines (monitor, viewport, created_at);

-- Slack alerts: one per (run, kind), sent through this outbox with retries.
CREATE TABLE alerts (
    id                TEXT PRIMARY KEY,
    run_id            TEXT NOT NULL,
    monitor           TEXT NOT NULL,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    lease_expires_at  BIGINT,
    slack_ts          TEXT,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    sent_at           BIGINT,
    UNIQUE (run_id, kind)
);
CREATE INDEX alerts_ready ON alerts (status, next_attempt_at);
