//! The global event feed (`GET /v1/events`): events in the order they
//! became readable, by `seq`.
//!
//! On PostgreSQL concurrent transactions commit in any order, so a number
//! taken inside a transaction (a sequence) can commit after a larger one a
//! reader already passed. Instead, events are inserted unnumbered and a
//! reader first numbers every committed event still without a seq, in one
//! statement under a transaction-level advisory lock: numbering rounds take
//! turns, each continues after the last seq given (`last_given`), and an
//! event that commits later is numbered in a later round. A reader that has
//! seen N can therefore never be handed a new event with seq <= N. Writers
//! pay only a `NOTIFY`; a read pays one UPDATE when events are waiting (an
//! index holds the unnumbered ones). On SQLite writers take turns, so
//! `events::record` numbers at insert.

use crate::db::rows::EventRow;
use crate::db::schema::{events, feed_position};
use crate::db::{read_tx, write_tx, DbConn};
use crate::error::{Error, Result};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use std::time::Duration;

/// The advisory lock numbering rounds take turns on.
const NUMBERING_LOCK: i64 = 0x736e_6170_7365_7100; // "snapseq\0"

/// Most events one read answers.
pub const MAX_LIMIT: i64 = 500;

/// What a reader asks the feed for.
#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    /// Exclusive.
    pub after: i64,
    /// Only these projects (`None`: all); a scoped token's projects, or the
    /// one project asked for.
    pub projects: Option<Vec<String>>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<String>,
    pub limit: i64,
}

/// Numbers the committed events that have no seq yet (PostgreSQL).
pub fn number_committed(conn: &mut DbConn) -> Result<()> {
    if let DbConn::Sqlite(_) = conn {
        return Ok(());
    }
    // Most reads find nothing to number: a look at the partial index
    // spares them the write transaction and its lock, which hundreds of
    // waiters woken at once would otherwise take in turn. An event that
    // commits after the look is numbered by a later read, after every seq
    // handed out so far.
    let waiting = events::table
        .filter(events::seq.is_null())
        .select(events::id)
        .limit(1)
        .load::<String>(conn)?;
    if waiting.is_empty() {
        return Ok(());
    }
    write_tx(conn, |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(NUMBERING_LOCK)
            .execute(conn)?;
        // Numbers continue after the highest ever given (`last`).
        diesel::sql_query(
            "UPDATE events SET seq = base.last + numbered.n \
             FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY at, id) AS n \
                   FROM events WHERE seq IS NULL) AS numbered, \
                  (SELECT GREATEST(COALESCE(MAX(seq), 0), \
                                   (SELECT last_seq FROM feed_position WHERE id = 1)) AS last \
                   FROM events) AS base \
             WHERE events.id = numbered.id",
        )
        .execute(conn)?;
        Ok(())
    })
}

/// The highest seq ever given is `MAX(seq)`, or, once events were deleted
/// (a project's, or by retention), `feed_position.last_seq`, which a
/// deletion raises to `MAX(seq)` first, in its transaction. Writers then
/// only read it, so numbering costs them no extra row write. On PostgreSQL
/// this takes the numbering lock, so that no round numbers meanwhile.
pub fn before_deleting_events(conn: &mut DbConn) -> Result<()> {
    if let DbConn::Pg(_) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(NUMBERING_LOCK)
            .execute(conn)?;
    }
    let newest: Option<i64> = events::table
        .select(diesel::dsl::max(events::seq))
        .get_result(conn)?;
    if let Some(newest) = newest {
        diesel::update(feed_position::table.filter(feed_position::last_seq.lt(newest)))
            .set(feed_position::last_seq.eq(newest))
            .execute(conn)?;
    }
    Ok(())
}

/// The highest seq given so far (see `before_deleting_events`).
pub fn last_given(conn: &mut DbConn) -> Result<i64> {
    let newest: Option<i64> = events::table
        .select(diesel::dsl::max(events::seq))
        .get_result(conn)?;
    let kept: i64 = feed_position::table
        .select(feed_position::last_seq)
        .get_result(conn)?;
    Ok(newest.unwrap_or(0).max(kept))
}

/// What one read of the feed found.
#[derive(Debug, Default)]
pub struct Batch {
    /// The matching events after `after`, oldest first.
    pub events: Vec<EventRow>,
    /// The highest seq the read looked at: every event up to it that
    /// matched is in `events` (or came before). A filtered reader resumes
    /// from here, so it neither re-scans nor falls behind retention.
    pub through: i64,
}

/// The events after `query.after`, oldest first, and how far the read
/// looked; `CursorExpired` when retention removed events the reader has
/// not seen. (`after=0` reads from the oldest kept event: a new reader has
/// nothing to miss.)
pub fn read(conn: &mut DbConn, query: &FeedQuery) -> Result<Batch> {
    number_committed(conn)?;
    read_tx(conn, |conn| {
        if query.after > 0 {
            let expired: i64 = feed_position::table
                .select(feed_position::expired_through)
                .get_result(conn)?;
            if query.after < expired {
                return Err(Error::CursorExpired {
                    after: query.after,
                    expired,
                });
            }
        }
        let mut select = events::table
            .filter(events::seq.gt(query.after))
            .order(events::seq.asc())
            .limit(query.limit.clamp(1, MAX_LIMIT))
            .select(EventRow::as_select())
            .into_boxed();
        if let Some(projects) = &query.projects {
            select = select.filter(events::project_id.eq_any(projects.clone()));
        }
        if !query.kinds.is_empty() {
            select = select.filter(events::kind.eq_any(query.kinds.clone()));
        }
        let events: Vec<EventRow> = select.load(conn)?;
        let through = match events.last().and_then(|e| e.seq) {
            Some(last) if events.len() as i64 >= query.limit => last,
            _ => events::table
                .select(diesel::dsl::max(events::seq))
                .get_result::<Option<i64>>(conn)?
                .unwrap_or(0)
                .max(query.after),
        };
        Ok(Batch { events, through })
    })
}

/// Removes numbered events older than `age`, and notes the highest seq
/// removed: a reader whose cursor is below it has missed events.
pub fn expire(conn: &mut DbConn, age: Duration) -> Result<usize> {
    let cutoff = super::now()
        - chrono::Duration::from_std(age).map_err(|e| Error::Internal(e.to_string()))?;
    number_committed(conn)?;
    let mut removed = 0;
    // In batches: the first round after turning retention on may find
    // millions, and each batch holds the numbering lock (and on SQLite the
    // write lock) only briefly.
    loop {
        let batch = write_tx(conn, |conn| {
            before_deleting_events(conn)?;
            let seqs: Vec<i64> = events::table
                .filter(events::at.lt(cutoff))
                .filter(events::seq.is_not_null())
                .order(events::seq.asc())
                .limit(EXPIRE_BATCH)
                .select(events::seq.assume_not_null())
                .load(conn)?;
            let Some(&highest) = seqs.last() else {
                return Ok(0);
            };
            diesel::update(feed_position::table.filter(feed_position::expired_through.lt(highest)))
                .set(feed_position::expired_through.eq(highest))
                .execute(conn)?;
            Ok(diesel::delete(events::table.filter(events::seq.eq_any(&seqs))).execute(conn)?)
        })?;
        removed += batch;
        if batch < EXPIRE_BATCH as usize {
            return Ok(removed);
        }
    }
}

/// Events one retention transaction removes at most.
const EXPIRE_BATCH: i64 = 5000;
