-- The counter API: per-counter options (CountAPI's), the hash of the admin
-- key returned once by /create, and the daily history.
--
-- Epochs become Unix milliseconds at creation, and a reset moves them to
-- max(epoch + 1, now): a counter deleted and created again then always has a
-- higher epoch than anything the cache still holds from before.
ALTER TABLE counters
    ALTER COLUMN epoch SET DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    ADD COLUMN enable_reset      boolean NOT NULL DEFAULT false,
    ADD COLUMN update_lowerbound bigint  NOT NULL DEFAULT -1,
    ADD COLUMN update_upperbound bigint  NOT NULL DEFAULT 1,
    ADD COLUMN admin_key_hash    text;

-- Increments per counter per UTC day, written in the same statement as the
-- total.
CREATE TABLE counter_days (
    namespace text   NOT NULL,
    key       text   NOT NULL,
    day       date   NOT NULL,
    hits      bigint NOT NULL,
    PRIMARY KEY (namespace, key, day)
);
