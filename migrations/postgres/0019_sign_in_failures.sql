-- Sign-ins of a login session refused in a row (a step or the check failed after the steps ran:
-- a wrong password, most often) and when the last one was. The next sign-in waits 5 minutes,
-- doubling per refusal up to an hour, so monitors of a session with a wrong password do not
-- lock its account; a sign-in that works resets both.
ALTER TABLE login_states ADD COLUMN sign_in_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE login_states ADD COLUMN last_sign_in_failure BIGINT;
