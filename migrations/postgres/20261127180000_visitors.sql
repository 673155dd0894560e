-- Unique visitors (issue #13, item 2; src/visitors.rs). A visitor of a
-- counter on a UTC day is a keyed hash of the day's salt, the client's
-- address, its User-Agent and the counter.
--
-- One salt per UTC day, made by the first replica that needs it (insert if
-- missing, then read) and deleted once older than yesterday, so that no hash
-- can be recomputed from an address afterwards.
CREATE TABLE visitor_salts (
    day  date  PRIMARY KEY,
    salt bytea NOT NULL CHECK (length(salt) = 32)
);

-- Each counter's visitors per day: the sketch (the exact hashes up to 1024
-- visitors, then a HyperLogLog of 2^14 registers) and its estimate, merged by
-- the writer in the transaction that commits the hits.
CREATE TABLE visitor_days (
    namespace text   NOT NULL,
    key       text   NOT NULL,
    day       date   NOT NULL,
    visitors  bigint NOT NULL CHECK (visitors >= 0),
    sketch    bytea  NOT NULL,
    PRIMARY KEY (namespace, key, day)
);
