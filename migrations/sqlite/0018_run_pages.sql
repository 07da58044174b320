-- The pages of a PDF monitor's run: `{before, after, changed}` as JSON (the page counts of the
-- baseline and the capture, and the pages with a changed region); NULL for image captures.
ALTER TABLE runs ADD COLUMN pages TEXT;
