-- A counter option set at /create: count only each visitor's first hit of
-- the UTC day. The first hits are claimed here (one row per visitor of such
-- a counter per day: a primary-key insert, so exactly one replica wins);
-- rows older than yesterday are deleted with the old salts. A hash is
-- meaningless without its day's salt, which is deleted too.
ALTER TABLE counters ADD COLUMN first_hit_only boolean NOT NULL DEFAULT false;

CREATE TABLE visitor_firsts (
    namespace text   NOT NULL,
    key       text   NOT NULL,
    day       date   NOT NULL,
    hash      bigint NOT NULL,
    PRIMARY KEY (namespace, key, day, hash)
);
