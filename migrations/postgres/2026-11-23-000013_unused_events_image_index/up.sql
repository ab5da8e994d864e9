-- No query looks events up by image: the index was for the foreign key's
-- cascade, which went with 2026-11-22-000009_snapshot_lifecycle. Every
-- image event (status changes included) paid for it with a page write.
DROP INDEX events_image;
