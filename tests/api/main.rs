//! Integration tests: the real service over real HTTP, on SQLite by default
//! and on PostgreSQL when `SNAPREG_TEST_DATABASE_URL` is set; artifacts in a
//! folder by default and in an S3 bucket when `SNAPREG_TEST_BLOB_STORE` is.

mod artifacts;
mod auth;
mod blob_store;
mod contention;
mod current;
mod dashboard;
mod deletion_races;
mod errors;
mod events;
mod feed;
mod feed_wait;
mod housekeeping;
mod images;
mod keep;
mod leases;
mod lifecycle;
mod lxc;
mod objects;
mod operability;
mod plans;
mod pointer;
mod projects;
mod races;
mod read_cache;
mod resolve;
mod rounds;
mod snapshots;
mod stalls;
mod support;
mod uploads;
