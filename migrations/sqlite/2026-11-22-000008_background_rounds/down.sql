DROP TABLE background_rounds;
