DROP TABLE events;
DROP TABLE images;
DROP TABLE snapshots;
DROP TABLE plans;
DROP TABLE projects;
