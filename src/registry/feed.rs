//! The global event feed (`GET /v1/events`): events in the order they
//! became readable, by `seq`.
//!
//! On PostgreSQL concurrent transactions commit in any order, so a number
//! taken inside a transaction (a sequence) can commit after a larger one a
//! reader already passed. Instead, events are inserted unnumbered and a
//! reader first numbers every committed event still without a seq, in one
//! statement under a transaction-level advisory lock: numbering rounds take
//! turns, each continues after the last, and an event that commits later is
//! numbered in a later round. A reader that has seen N can therefore never
//! be handed a new event with seq <= N. Writers pay nothing; a read pays one
//! UPDATE when events are waiting (an index holds the unnumbered ones).
//! On SQLite writers take turns, so `events::record` numbers at insert.

use crate::db::rows::EventRow;
use crate::db::schema::events;
use crate::db::{read_tx, write_tx, DbConn};
use crate::error::Result;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

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
    write_tx(conn, |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(NUMBERING_LOCK)
            .execute(conn)?;
        diesel::sql_query(
            "UPDATE events SET seq = numbered.base + numbered.n \
             FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY at, id) AS n, \
                   (SELECT COALESCE(MAX(seq), 0) FROM events) AS base \
                   FROM events WHERE seq IS NULL) AS numbered \
             WHERE events.id = numbered.id",
        )
        .execute(conn)?;
        Ok(())
    })
}

/// The events after `query.after`, oldest first.
pub fn read(conn: &mut DbConn, query: &FeedQuery) -> Result<Vec<EventRow>> {
    number_committed(conn)?;
    read_tx(conn, |conn| {
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
        Ok(select.load(conn)?)
    })
}
