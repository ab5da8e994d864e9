DROP TABLE token_projects;
DROP TABLE tokens;
