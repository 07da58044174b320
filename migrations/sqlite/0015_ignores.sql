-- Changes a person said to ignore: the same change of that monitor (by its fingerprint) is
-- judged `ignored` until `until`; `matched` counts the runs it spared.
CREATE TABLE ignores (
    id               TEXT PRIMARY KEY,
    monitor          TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    description      TEXT NOT NULL,
    until            BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    run_id           TEXT NOT NULL,
    matched          BIGINT NOT NULL DEFAULT 0,
    last_matched_at  BIGINT,
    UNIQUE (monitor, fingerprint)
);
