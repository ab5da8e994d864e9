-- The global event feed's position. A transaction inserts its events with
-- seq NULL; a reader first numbers, in one serialised statement, every
-- committed event still without one (db::feed): an event that commits later
-- is numbered later, so seq grows with the order events become readable
-- and a reader that has seen N never receives a later event with seq <= N.
ALTER TABLE events ADD COLUMN seq BIGINT;
UPDATE events SET seq = numbered.n
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY at, id) AS n FROM events) AS numbered
WHERE events.id = numbered.id;
CREATE UNIQUE INDEX events_seq ON events (seq);
CREATE INDEX events_unnumbered ON events (at, id) WHERE seq IS NULL;
