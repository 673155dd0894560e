-- Unique visitors: see the PostgreSQL migration of the same name. `day` is
-- YYYY-MM-DD, as in counter_days.
CREATE TABLE visitor_salts (
    day  TEXT PRIMARY KEY,
    salt BLOB NOT NULL CHECK (length(salt) = 32)
);

CREATE TABLE visitor_days (
    namespace TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    day       TEXT    NOT NULL,
    visitors  INTEGER NOT NULL CHECK (visitors >= 0),
    sketch    BLOB    NOT NULL,
    PRIMARY KEY (namespace, key, day)
);
