//! PostgreSQL `LISTEN` for events committed by any replica: the wake-up of
//! this replica's feed waiters (`wake`).
//!
//! `events::record` sends `NOTIFY snapreg_events` inside the writing
//! transaction, which PostgreSQL delivers only once it commits. Each replica
//! keeps one connection of its own (outside the pool) listening, and checks
//! it every `POLL`: reading what the server already sent is local (no round
//! trip), so an idle replica costs a syscall ten times a second. While that
//! connection is down, waiters are woken every `FALLBACK` instead (they
//! re-read the feed: a database poll), and it is re-opened.

use crate::wake::Wake;
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CHANNEL: &str = "snapreg_events";

/// How often the listening connection is checked.
pub const POLL: Duration = Duration::from_millis(100);

/// How often waiters re-read while the listening connection is down.
const FALLBACK: Duration = Duration::from_secs(1);

/// How often the listening connection is asked a question: a connection a
/// NAT or proxy dropped silently reports nothing until written to.
const PING: Duration = Duration::from_secs(30);

pub struct Listener {
    url: String,
    wake: Arc<Wake>,
    conn: Option<PgConnection>,
    last_fallback: Instant,
    last_ping: Instant,
}

impl Listener {
    /// Starts listening at once, so that no commit after start-up is missed.
    pub fn new(url: String, wake: Arc<Wake>) -> Listener {
        let conn = open(&url)
            .map_err(|e| log::warn!("cannot listen for events of other replicas yet: {e}"))
            .ok();
        Listener {
            url,
            wake,
            conn,
            last_fallback: Instant::now(),
            last_ping: Instant::now(),
        }
    }

    /// One check, run every `POLL` by a background loop.
    pub fn poll(&mut self) {
        if self.conn.is_none() {
            if self.last_fallback.elapsed() < FALLBACK {
                return;
            }
            self.last_fallback = Instant::now();
            // Whatever committed while nobody listened is found by a re-read.
            self.wake.bump();
            match open(&self.url) {
                Ok(conn) => {
                    log::info!("listening for events of other replicas again");
                    self.conn = Some(conn);
                }
                Err(e) => {
                    log::warn!("cannot listen for events of other replicas ({e}); polling every {FALLBACK:?}");
                    return;
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let (mut woke, mut lost) = (false, None);
        if self.last_ping.elapsed() >= PING {
            self.last_ping = Instant::now();
            if let Err(e) = diesel::sql_query("SELECT 1").execute(conn) {
                lost = Some(e);
            }
        }
        if lost.is_none() {
            for notification in conn.notifications_iter() {
                match notification {
                    Ok(_) => woke = true,
                    Err(e) => {
                        lost = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = lost {
            log::warn!(
                "lost the connection listening for events ({e}); polling every {FALLBACK:?}"
            );
            self.conn = None;
            self.last_fallback = Instant::now();
            woke = true;
        }
        if woke {
            self.wake.bump();
        }
    }
}

fn open(url: &str) -> diesel::ConnectionResult<PgConnection> {
    let mut conn = PgConnection::establish(url)?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}
