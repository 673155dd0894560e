-- Retries that never count twice (issue #14): nginx passes a GET that was in
-- flight on a replica killed outright to the next replica, with the same
-- X-Request-Id. The writer records the ids of each batch here, in the batch's
-- statement, with the number each request was answered with; a batch that
-- meets an id already here answers that request with its number instead of
-- counting it again. An id means something only within its counter. Rows
-- are pruned after a minute (a retry comes within proxy_next_upstream_timeout,
-- 2 s), so the table holds about a minute of hits.
CREATE TABLE request_ids (
    id        text        NOT NULL,
    namespace text        NOT NULL,
    key       text        NOT NULL,
    number    bigint      NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, namespace, key)
);

-- Rows arrive in time order: a BRIN index lets the prune find the old ones
-- for almost nothing per insert.
CREATE INDEX request_ids_at ON request_ids USING brin (at);
