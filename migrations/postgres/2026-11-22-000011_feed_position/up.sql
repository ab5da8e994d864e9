-- Where the event feed stands, kept apart from the events themselves:
-- deleting a project deletes its events, and retention deletes old ones, so
-- MAX(events.seq) could go back and hand out a seq a reader already saw.
-- last_seq: raised to MAX(seq) by a deletion before it deletes; the next
-- seq follows the greater of it and MAX(seq) (writers only read it).
-- expired_through: the highest seq retention removed (a cursor before it
-- missed events: 410).
CREATE TABLE feed_position (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL,
    expired_through BIGINT NOT NULL
);
INSERT INTO feed_position (id, last_seq, expired_through)
SELECT 1, COALESCE(MAX(seq), 0), 0 FROM events;
