-- The Slack channel id a posted alert went to, so a retry after the message was posted only
-- uploads the images into its thread (and approvals can update the message).
ALTER TABLE alerts ADD COLUMN slack_channel TEXT;
