-- Sessions ended by signing out before their expiry (src/http/session.rs): the cookie is
-- stateless, so the sign-out is remembered here, by the session's random id, until the cookie
-- would have expired anyway; every replica checks it.
CREATE TABLE revoked_sessions (
    id          TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX revoked_sessions_by_expiry ON revoked_sessions (expires_at);
