-- Whether a token was limited to projects when it was made, so that a
-- scope never widens: a scoped token whose projects are all deleted (their
-- token_projects rows cascade away) reaches nothing, not everything.
ALTER TABLE tokens ADD COLUMN scoped BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE tokens SET scoped = TRUE
WHERE id IN (SELECT token_id FROM token_projects);
