-- The tables of every project in a SQLite file. Money is decimal text: exact.
-- Run at each start; every statement is idempotent (columns added later are added by the store).

CREATE TABLE IF NOT EXISTS bm_budgets (
    project TEXT NOT NULL,
    user_id TEXT NOT NULL,
    total_budget TEXT NOT NULL,
    current_cost TEXT NOT NULL,
    model_cost TEXT,
    period TEXT,
    duration TEXT,
    created_at REAL,
    last_updated_at REAL,
    extra TEXT,
    parent TEXT,
    fired TEXT,
    on_unknown_model TEXT,
    on_store_error TEXT,
    PRIMARY KEY (project, user_id)
);

CREATE TABLE IF NOT EXISTS bm_holds (
    project TEXT NOT NULL,
    hold_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    level_users TEXT NOT NULL,   -- JSON array: the user, then each ancestor
    level_starts TEXT NOT NULL,  -- JSON array: each one's period start (null: never resets)
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL,
    model TEXT,
    state TEXT NOT NULL,
    settled TEXT,
    PRIMARY KEY (project, hold_id)
);
CREATE INDEX IF NOT EXISTS bm_holds_end ON bm_holds (expires_at);

CREATE TABLE IF NOT EXISTS bm_hold_levels (
    project TEXT NOT NULL,
    level_user TEXT NOT NULL,
    hold_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (project, level_user, hold_id)
);
-- Limit checks sum only the unexpired rows of one budget.
CREATE INDEX IF NOT EXISTS bm_hold_levels_live ON bm_hold_levels (project, level_user, expires_at);

CREATE TABLE IF NOT EXISTS bm_charge_keys (
    id BLOB NOT NULL PRIMARY KEY,
    request BLOB NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bm_charge_keys_age ON bm_charge_keys (created_at);
DROP TABLE IF EXISTS bm_idempotency;

-- History: one row per change (see budget_manager/history.py), kept for the retention.
CREATE TABLE IF NOT EXISTS bm_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    model TEXT,
    cost TEXT NOT NULL,
    amount TEXT,
    tokens TEXT,                 -- JSON object
    hold_id TEXT,
    window_start REAL,
    window_end REAL
);
CREATE INDEX IF NOT EXISTS bm_events_at ON bm_events (project, at);
CREATE INDEX IF NOT EXISTS bm_events_user ON bm_events (project, user_id, at);
