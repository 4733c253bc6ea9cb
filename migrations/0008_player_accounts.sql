-- Player accounts: the identity a player registers with, login sessions,
-- login lockouts, and the KYC tier that gates the player's own deposits,
-- withdrawals and bets.
--
-- The wallet row (`players`) stays narrow, because every provider request
-- locks and rewrites it: it gains only what the hot path or the cashier
-- reads under that lock (the tier, the lifetime sum of the player's own
-- deposits) and the status the responsible-gambling rules need. Everything
-- else of the account lives in `accounts`, one row per registered player.

ALTER TABLE players
    -- 0, 1 or 2: what the operator's `kyc_tiers` let this player do. Every
    -- player starts at 0, registered or created by the back office.
    ADD COLUMN kyc_tier       SMALLINT NOT NULL DEFAULT 0 CHECK (kyc_tier BETWEEN 0 AND 2),
    -- Sum of the player's own deposits (the cashier, not staff adjustments),
    -- which a tier's `deposit_lifetime_max` caps: kept here so that the check
    -- needs no scan of the ledger and runs under the row lock it already holds.
    ADD COLUMN own_deposits   BIGINT NOT NULL DEFAULT 0 CHECK (own_deposits >= 0),
    -- When a time-out or a self-exclusion ends by itself; NULL while the
    -- status has no end.
    ADD COLUMN status_until   TIMESTAMPTZ;
ALTER TABLE players DROP CONSTRAINT players_status_check;
ALTER TABLE players ADD CONSTRAINT players_status_check
    CHECK (status IN ('active', 'blocked', 'self_excluded', 'cooling_off'));

-- A registered player's identity. The password is stored only as an Argon2id
-- PHC string (algorithm, parameters, salt and hash: see docs/ARCHITECTURE.md).
CREATE TABLE accounts (
    player_id     BIGINT PRIMARY KEY REFERENCES players (id),
    operator_id   SMALLINT NOT NULL REFERENCES operators (id),
    email         TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    -- The email as uniqueness and login compare it: lower-cased by the
    -- service, so `Ann@x.example` and `ann@X.example` are one account.
    email_key     TEXT NOT NULL CHECK (char_length(email_key) BETWEEN 3 AND 254),
    password_hash TEXT NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    date_of_birth DATE NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_key UNIQUE (operator_id, email_key)
);
REVOKE ALL ON accounts FROM PUBLIC;

-- Login sessions. The bearer token is a random 256-bit value shown once; only
-- its SHA-256 is kept, so a copy of this table logs nobody in. The absolute
-- end is fixed at login; the idle end follows `last_seen_at` and the
-- operator's current `session_idle_minutes`.
CREATE TABLE player_sessions (
    session_id   UUID PRIMARY KEY,
    player_id    BIGINT NOT NULL REFERENCES players (id),
    operator_id  SMALLINT NOT NULL REFERENCES operators (id),
    token_hash   BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    CHECK (expires_at > created_at),
    CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);
CREATE INDEX player_sessions_player ON player_sessions (player_id, created_at);
REVOKE ALL ON player_sessions FROM PUBLIC;

-- Failed logins per email within an operator, whether or not an account has
-- that email (so that a lockout tells nothing about which emails exist):
-- the times of the failures of the last 15 minutes, and the end of a lockout
-- once `login_max_failures` of them fell within 15 minutes.
CREATE TABLE login_failures (
    operator_id  SMALLINT NOT NULL REFERENCES operators (id),
    email_key    TEXT NOT NULL CHECK (char_length(email_key) BETWEEN 1 AND 254),
    recent       TIMESTAMPTZ[] NOT NULL,
    locked_until TIMESTAMPTZ,
    PRIMARY KEY (operator_id, email_key)
);
