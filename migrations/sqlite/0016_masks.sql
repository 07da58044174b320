-- Rectangles a reviewer drew on a capture (the review page, the API): not compared, for that
-- monitor and viewport, beside the config's `mask:`. The YAML file stays the source of the
-- config; these are shown, and exported as YAML to paste into it.
CREATE TABLE masks (
    id          TEXT PRIMARY KEY,
    monitor     TEXT NOT NULL,
    viewport    TEXT NOT NULL,
    x           BIGINT NOT NULL,
    y           BIGINT NOT NULL,
    width       BIGINT NOT NULL,
    height      BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX masks_rect ON masks (monitor, viewport, x, y, width, height);
