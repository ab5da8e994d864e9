-- The global event feed's position. SQLite runs one write transaction at a
-- time, so a seq taken when an event is inserted grows with commit order.
ALTER TABLE events ADD COLUMN seq BIGINT;
UPDATE events SET seq = (
    SELECT COUNT(*) FROM events AS earlier
    WHERE earlier.at < events.at OR (earlier.at = events.at AND earlier.id <= events.id)
);
CREATE UNIQUE INDEX events_seq ON events (seq);
