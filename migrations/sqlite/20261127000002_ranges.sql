-- Every number the record keeps lies within ±(2^53 - 1) (see the PostgreSQL
-- migration of the same name). SQLite cannot add a CHECK constraint to an
-- existing table, so triggers refuse out-of-range rows instead (and SQLite
-- turns an overflowing integer sum into a REAL, which they refuse too).
UPDATE counters SET value = max(-9007199254740991, min(9007199254740991, value))
    WHERE value NOT BETWEEN -9007199254740991 AND 9007199254740991;
UPDATE counter_days SET hits = max(-9007199254740991, min(9007199254740991, hits))
    WHERE hits NOT BETWEEN -9007199254740991 AND 9007199254740991;
UPDATE counters SET update_lowerbound = max(-9007199254740991, min(9007199254740991, update_lowerbound)),
                    update_upperbound = max(-9007199254740991, min(9007199254740991, update_upperbound))
    WHERE update_lowerbound NOT BETWEEN -9007199254740991 AND 9007199254740991
       OR update_upperbound NOT BETWEEN -9007199254740991 AND 9007199254740991;

-- Counters made by a first hit: anonymous clients may only count them up.
UPDATE counters SET update_lowerbound = 0
    WHERE admin_key_hash IS NULL AND update_lowerbound < 0;

CREATE TRIGGER counters_range_insert BEFORE INSERT ON counters
WHEN typeof(NEW.value) != 'integer' OR NEW.value NOT BETWEEN -9007199254740991 AND 9007199254740991
  OR NEW.update_lowerbound NOT BETWEEN -9007199254740991 AND 9007199254740991
  OR NEW.update_upperbound NOT BETWEEN -9007199254740991 AND 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'counter value or bound out of range');
END;

CREATE TRIGGER counters_range_update BEFORE UPDATE ON counters
WHEN typeof(NEW.value) != 'integer' OR NEW.value NOT BETWEEN -9007199254740991 AND 9007199254740991
  OR NEW.update_lowerbound NOT BETWEEN -9007199254740991 AND 9007199254740991
  OR NEW.update_upperbound NOT BETWEEN -9007199254740991 AND 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'counter value or bound out of range');
END;

CREATE TRIGGER counter_days_range_insert BEFORE INSERT ON counter_days
WHEN typeof(NEW.hits) != 'integer' OR NEW.hits NOT BETWEEN -9007199254740991 AND 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'daily total out of range');
END;

CREATE TRIGGER counter_days_range_update BEFORE UPDATE ON counter_days
WHEN typeof(NEW.hits) != 'integer' OR NEW.hits NOT BETWEEN -9007199254740991 AND 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'daily total out of range');
END;
