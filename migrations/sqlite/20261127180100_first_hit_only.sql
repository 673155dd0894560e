-- First hits of the day only: see the PostgreSQL migration of the same name.
ALTER TABLE counters ADD COLUMN first_hit_only INTEGER NOT NULL DEFAULT 0;

CREATE TABLE visitor_firsts (
    namespace TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    day       TEXT    NOT NULL,
    hash      INTEGER NOT NULL,
    PRIMARY KEY (namespace, key, day, hash)
);
