-- What the words inside each changed region say changed (src/diff/text.rs): a JSON array of
-- `{region, text: [{kind, ...}]}`; NULL when the baseline or the capture has no words.
ALTER TABLE runs ADD COLUMN text_changes TEXT;
