-- Keys every replica must hold alike (src/app/keys.rs): the generated webhook secret when
-- `webhook.secret` is not set, the web UI's session key, and the monitor role's token for the
-- capture API. The first replica to start stores them; the others read them, so a request
-- signed or issued by one replica is accepted by every other behind the same load balancer.
CREATE TABLE shared_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
