-- The tables of every project in a PostgreSQL database. Money is NUMERIC: exact.
-- Run at each start, under an advisory lock; every statement is idempotent.

CREATE TABLE IF NOT EXISTS bm_budgets (
    project TEXT NOT NULL,
    user_id TEXT NOT NULL,
    total_budget NUMERIC NOT NULL,
    current_cost NUMERIC NOT NULL,
    model_cost TEXT,              -- JSON object: model -> decimal string
    period TEXT,
    duration TEXT,                -- JSON number of days, as LiteLLM stores it
    created_at DOUBLE PRECISION,  -- the anchor periods are counted from
    last_updated_at DOUBLE PRECISION,  -- the start of the current period
    extra TEXT,                   -- JSON object of keys this library does not read
    PRIMARY KEY (project, user_id)
);
ALTER TABLE bm_budgets ADD COLUMN IF NOT EXISTS parent TEXT;
ALTER TABLE bm_budgets ADD COLUMN IF NOT EXISTS fired TEXT;  -- alert fractions announced, "0.5,0.8"
ALTER TABLE bm_budgets ADD COLUMN IF NOT EXISTS on_unknown_model TEXT;
ALTER TABLE bm_budgets ADD COLUMN IF NOT EXISTS on_store_error TEXT;
CREATE INDEX IF NOT EXISTS bm_budgets_parent ON bm_budgets (project, parent)
    WHERE parent IS NOT NULL;

-- Holds, kept for a while after they end so that a late or repeated settle answers correctly.
CREATE TABLE IF NOT EXISTS bm_holds (
    project TEXT NOT NULL,
    hold_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    level_users TEXT[] NOT NULL,            -- the user, then each ancestor
    level_starts DOUBLE PRECISION[] NOT NULL,  -- each one's period start (NULL: never resets)
    expires_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    model TEXT,
    state TEXT NOT NULL,
    settled NUMERIC,
    PRIMARY KEY (project, hold_id)
);
CREATE INDEX IF NOT EXISTS bm_holds_end ON bm_holds (expires_at);

-- One row per open hold and budget it holds against: what limit checks sum.
CREATE TABLE IF NOT EXISTS bm_hold_levels (
    project TEXT NOT NULL,
    level_user TEXT NOT NULL,
    hold_id TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, level_user, hold_id)
);
-- Limit checks sum only the unexpired rows of one budget.
CREATE INDEX IF NOT EXISTS bm_hold_levels_live ON bm_hold_levels (project, level_user, expires_at);

-- Idempotency keys of charges: fixed-size digests, kept for the idempotency window.
CREATE TABLE IF NOT EXISTS bm_charge_keys (
    id BYTEA NOT NULL PRIMARY KEY,
    request BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS bm_charge_keys_age ON bm_charge_keys (created_at);
-- The first release kept a whole record per key, without bound: superseded.
DROP TABLE IF EXISTS bm_idempotency;

-- History: one row per change (see budget_manager/history.py), kept for the retention; written
-- by the ledger functions in the transaction of the change.
CREATE TABLE IF NOT EXISTS bm_events (
    seq BIGSERIAL PRIMARY KEY,
    project TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    model TEXT,
    cost NUMERIC NOT NULL,
    amount NUMERIC,
    tokens TEXT,                 -- JSON object
    hold_id TEXT,
    window_start DOUBLE PRECISION,
    window_end DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS bm_events_at ON bm_events (project, at);
CREATE INDEX IF NOT EXISTS bm_events_user ON bm_events (project, user_id, at);
