-- Every number the record keeps lies within ±(2^53 - 1), the exact range of
-- JSON numbers and of Redis's Lua: values, update bounds and daily totals.
-- The service checks before it writes; these constraints make sure no path
-- it forgot can store a number its clients would read wrong. Values an older
-- version let out of range are brought to the nearest limit first.
UPDATE counters SET value = LEAST(GREATEST(value, -9007199254740991), 9007199254740991)
    WHERE value NOT BETWEEN -9007199254740991 AND 9007199254740991;
UPDATE counter_days SET hits = LEAST(GREATEST(hits, -9007199254740991), 9007199254740991)
    WHERE hits NOT BETWEEN -9007199254740991 AND 9007199254740991;
UPDATE counters SET update_lowerbound = LEAST(GREATEST(update_lowerbound, -9007199254740991), 9007199254740991),
                    update_upperbound = LEAST(GREATEST(update_upperbound, -9007199254740991), 9007199254740991)
    WHERE update_lowerbound NOT BETWEEN -9007199254740991 AND 9007199254740991
       OR update_upperbound NOT BETWEEN -9007199254740991 AND 9007199254740991;

-- Counters made by a first hit have no admin key, so nobody opted them into
-- being counted down: anonymous clients may only count them up (0..1).
UPDATE counters SET update_lowerbound = 0
    WHERE admin_key_hash IS NULL AND update_lowerbound < 0;

ALTER TABLE counters
    ALTER COLUMN update_lowerbound SET DEFAULT 0,
    ADD CONSTRAINT counters_value_range
        CHECK (value BETWEEN -9007199254740991 AND 9007199254740991),
    ADD CONSTRAINT counters_bounds_range
        CHECK (update_lowerbound BETWEEN -9007199254740991 AND 9007199254740991
               AND update_upperbound BETWEEN -9007199254740991 AND 9007199254740991);

ALTER TABLE counter_days
    ADD CONSTRAINT counter_days_hits_range
        CHECK (hits BETWEEN -9007199254740991 AND 9007199254740991);
