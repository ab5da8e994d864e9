//! Background rounds that run once across replicas. On PostgreSQL a round
//! (gc, the lease watchdog) runs only under a session advisory lock held on
//! a connection of its own, and only if no replica finished one within the
//! interval (`background_rounds`); a replica that dies mid-round loses its
//! connection and with it the lock. On SQLite one process owns the
//! database: every round runs.

use super::DatabaseUrl;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};
use diesel::{Connection, PgConnection};
use sha2::{Digest, Sha256};
use std::time::Duration;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Recent {
    #[diesel(sql_type = Bool)]
    recent: bool,
}

/// What became of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Ran,
    /// Another replica holds the lock, or finished a round within the interval.
    Skipped,
}

/// The advisory lock's key for `task`: stable across replicas and versions.
fn lock_key(task: &str) -> i64 {
    let hash = Sha256::digest(format!("snapreg background round {task}"));
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(first)
}

/// This process, for the log and `background_rounds.replica`.
fn replica() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "?".to_owned());
    format!("{host}:{}", std::process::id())
}

/// Runs `round` unless, on PostgreSQL, another replica is running it or ran
/// it less than `interval` ago. Errors are the coordination's (the database
/// unreachable); the round reports its own.
pub fn once_across_replicas(
    url: &DatabaseUrl,
    task: &str,
    interval: Duration,
    round: impl FnOnce(),
) -> Result<Round, diesel::result::Error> {
    let DatabaseUrl::Postgres(url) = url else {
        round();
        return Ok(Round::Ran);
    };
    let mut conn = PgConnection::establish(url).map_err(|e| {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new(e.to_string()),
        )
    })?;
    let key = lock_key(task);
    let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<BigInt, _>(key)
        .get_result(&mut conn)?;
    if !got.locked {
        return Ok(Round::Skipped);
    }
    // The database's clock, not the replicas': theirs may disagree.
    let recent: Recent = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM background_rounds WHERE task = $1 \
         AND finished_at > (now() AT TIME ZONE 'UTC') - make_interval(secs => $2)) AS recent",
    )
    .bind::<Text, _>(task)
    // A little slack, so that replicas whose loops tick at nearly the same
    // time do not skip every other interval.
    .bind::<Double, _>(interval.as_secs_f64() * 0.9)
    .get_result(&mut conn)?;
    if recent.recent {
        return Ok(Round::Skipped);
    }
    round();
    diesel::sql_query(
        "INSERT INTO background_rounds (task, finished_at, replica) \
         VALUES ($1, now() AT TIME ZONE 'UTC', $2) ON CONFLICT (task) \
         DO UPDATE SET finished_at = excluded.finished_at, replica = excluded.replica",
    )
    .bind::<Text, _>(task)
    .bind::<Text, _>(replica())
    .execute(&mut conn)?;
    // Dropping the connection releases the lock.
    Ok(Round::Ran)
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn tasks_have_distinct_stable_lock_keys() {
        assert_ne!(lock_key("gc"), lock_key("watchdog"));
        assert_eq!(lock_key("gc"), lock_key("gc"));
    }
}
