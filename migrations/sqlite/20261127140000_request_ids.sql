-- Retries that never count twice: see the PostgreSQL migration of the same
-- name. `at_ms` is Unix milliseconds.
CREATE TABLE request_ids (
    id        TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    number    INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (id, namespace, key)
);

CREATE INDEX request_ids_at ON request_ids (at_ms);
