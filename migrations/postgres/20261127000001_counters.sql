-- The record: one row per counter. `value` is the durable count; `epoch`
-- grows on every reset so that a cache entry written before a reset can never
-- overwrite one written after it.
CREATE TABLE counters (
    namespace  text        NOT NULL,
    key        text        NOT NULL,
    value      bigint      NOT NULL DEFAULT 0,
    epoch      bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key)
);

-- Idempotent group commit: every writer (one per process) numbers its batches
-- 1, 2, 3, ... and a batch is applied only if its number is above the last one
-- recorded here, in the same statement. A batch whose commit outcome was lost
-- (connection dropped during COMMIT) can then be retried without counting twice.
CREATE TABLE writer_progress (
    writer_id  text        PRIMARY KEY,
    last_batch bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
