-- The back-office console: staff passwords, their login failures, and the
-- console's sign-in sessions (docs/ARCHITECTURE.md, "Console").

-- An Argon2id PHC string, or NULL for staff who only use a bearer token.
ALTER TABLE staff ADD COLUMN password_hash TEXT CHECK (password_hash LIKE '$argon2id$%');

-- The console signs in by email alone, so an email may hold a password in
-- one scope only (among live staff): the scope it signs in to is then known.
CREATE UNIQUE INDEX staff_email_signin ON staff (lower(email))
    WHERE deleted_at IS NULL AND password_hash IS NOT NULL;

-- Failed console sign-ins per email (lower case), as `login_failures` counts
-- players': the failures of the last 15 minutes and a lockout in force.
CREATE TABLE staff_login_failures (
    email_key    TEXT PRIMARY KEY CHECK (char_length(email_key) BETWEEN 1 AND 254),
    recent       TIMESTAMPTZ[] NOT NULL,
    locked_until TIMESTAMPTZ
);
REVOKE ALL ON staff_login_failures FROM PUBLIC;

-- A console session: the cookie's value is stored only as its SHA-256.
CREATE TABLE console_sessions (
    token_hash   BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    staff_id     UUID NOT NULL REFERENCES staff (staff_id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_staff ON console_sessions (staff_id);
REVOKE ALL ON console_sessions FROM PUBLIC;
