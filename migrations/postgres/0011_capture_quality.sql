-- Whether a run's capture settled (two identical shots in a row) and whether it was cut at
-- `max_height`, from the capture result; NULL for runs judged before they were recorded.
ALTER TABLE runs ADD COLUMN stable BOOLEAN;
ALTER TABLE runs ADD COLUMN clipped BOOLEAN;
