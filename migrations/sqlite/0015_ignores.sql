-- Changes a person said to ignore: a later run of that monitor and viewport showing the same
-- change (the same words changed, within the same regions, with no more changed pixels than a
-- quarter over) is judged `ignored` until `until`; `matched` counts the runs it spared.
CREATE TABLE ignores (
    id               TEXT PRIMARY KEY,
    monitor          TEXT NOT NULL,
    viewport         TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    regions          TEXT NOT NULL,
    diff_pixels      BIGINT NOT NULL,
    description      TEXT NOT NULL,
    until            BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    run_id           TEXT NOT NULL,
    matched          BIGINT NOT NULL DEFAULT 0,
    last_matched_at  BIGINT
);
CREATE INDEX ignores_change ON ignores (monitor, viewport, fingerprint);
