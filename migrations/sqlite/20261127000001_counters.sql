-- The embedded record: the same tables as the PostgreSQL schema
-- (migrations/postgres), in SQLite's types. Times are Unix milliseconds.
CREATE TABLE counters (
    namespace         TEXT    NOT NULL,
    key               TEXT    NOT NULL,
    value             INTEGER NOT NULL DEFAULT 0,
    -- Unix ms at creation; a reset moves it to max(epoch + 1, now), so a
    -- counter created again after a delete outranks stale cache entries.
    epoch             INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    created_ms        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    updated_ms        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    enable_reset      INTEGER NOT NULL DEFAULT 0,
    update_lowerbound INTEGER NOT NULL DEFAULT -1,
    update_upperbound INTEGER NOT NULL DEFAULT 1,
    admin_key_hash    TEXT,
    PRIMARY KEY (namespace, key)
);

CREATE TABLE writer_progress (
    writer_id  TEXT    PRIMARY KEY,
    last_batch INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

CREATE TABLE counter_days (
    namespace TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    day       TEXT    NOT NULL,
    hits      INTEGER NOT NULL,
    PRIMARY KEY (namespace, key, day)
);
