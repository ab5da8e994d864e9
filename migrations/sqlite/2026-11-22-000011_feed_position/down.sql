DROP TABLE feed_position;
