CREATE INDEX events_image ON events (image_id);
