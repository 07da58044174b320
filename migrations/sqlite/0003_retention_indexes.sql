-- Retention: find runs and assets older than the cutoff, and check whether a blob is still
-- referenced, without scanning the tables.
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_current ON runs (current_sha256);
CREATE INDEX runs_by_diff ON runs (diff_sha256);
CREATE INDEX runs_by_baseline ON runs (baseline_sha256);
CREATE INDEX assets_by_created ON assets (created_at);
CREATE INDEX assets_by_sha ON assets (sha256);
CREATE INDEX baselines_by_sha ON baselines (sha256);
