-- A muted monitor's alerts (Slack, events) are not sent until `until`; its runs go on.
CREATE TABLE mutes (
    monitor     TEXT PRIMARY KEY,
    until       BIGINT NOT NULL,
    muted_by    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
