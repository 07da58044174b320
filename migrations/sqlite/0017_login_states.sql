-- The kept cookies of each login session (`sessions:`), sealed with the capture key
-- (ChaCha20-Poly1305); `failed_since` is set by the first failed sign-in after a good one, so
-- one failure alerts for the session and not every monitor of it.
CREATE TABLE login_states (
    name          TEXT PRIMARY KEY,
    state         BLOB,
    expires_at    BIGINT NOT NULL,
    failed_since  BIGINT,
    updated_at    BIGINT NOT NULL
);
