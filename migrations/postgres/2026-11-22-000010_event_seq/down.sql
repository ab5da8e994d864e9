DROP INDEX events_unnumbered;
DROP INDEX events_seq;
ALTER TABLE events DROP COLUMN seq;
