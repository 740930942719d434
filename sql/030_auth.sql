-- 030: security records: server-side sessions, failed log-ins, the audit log.
--
-- Sessions are found by the SHA-256 of the cookie token (never the token), so a
-- copy of the database gives nobody a live session. Times are epoch seconds
-- (float) as the embedded store keeps them.
-- The audit log is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE.

CREATE TABLE IF NOT EXISTS auth_sessions (
    sid_hash   text PRIMARY KEY,
    username   text NOT NULL,
    created    double precision NOT NULL,
    last_seen  double precision NOT NULL,
    expires    double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_sessions_username ON auth_sessions (username);

CREATE TABLE IF NOT EXISTS auth_failures (
    key           text PRIMARY KEY,
    count         integer NOT NULL DEFAULT 0,
    locks         integer NOT NULL DEFAULT 0,
    locked_until  double precision NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    username  text,
    action    text NOT NULL,
    address   text,
    detail    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);

CREATE OR REPLACE FUNCTION rtcc_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END;
$$;

DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION rtcc_audit_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION rtcc_audit_append_only();
