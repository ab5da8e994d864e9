//! Answers to the scheduler's hot reads (`GET …/current`, `GET …/plans/
//! {plan}/image`, and a scoped token's "which project is this?"), kept in
//! memory so that most of them cost no database round trip.
//!
//! The rules (README, "Caching of the scheduler's reads"):
//! - a write transaction of this process makes every entry unusable the
//!   moment it starts, so a change made through this replica is seen by
//!   every request that arrives after it was acknowledged; a read taken
//!   while a write was under way is not kept (`db::write_clock`);
//! - an entry is used for at most `MAX_AGE` after its read began, which
//!   bounds how long a change made through another replica (or another
//!   process on the same SQLite file) can go unseen here.
//!
//! Only answers are kept, never errors.

use crate::db::write_clock::WRITES;
use crate::error::Result;
use crate::registry::lookup::Addressed;
use actix_web::http::header;
use actix_web::HttpRequest;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a change made elsewhere goes unseen by this replica's reads.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Entries kept before the cache starts afresh (a bound on memory).
const MAX_ENTRIES: usize = 10_000;

/// Whether a client takes a kept answer. `Cache-Control: no-cache` (or
/// `Pragma: no-cache`) asks for the database's: a scheduler that must see
/// a move made through another replica at once sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    Kept,
    FromDatabase,
}

impl Fresh {
    pub fn of(req: &HttpRequest) -> Fresh {
        let no_cache = [header::CACHE_CONTROL, header::PRAGMA].iter().any(|name| {
            req.headers()
                .get_all(name)
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
        });
        if no_cache {
            Fresh::FromDatabase
        } else {
            Fresh::Kept
        }
    }
}

struct Entry<V> {
    stamp: u64,
    read_at: Instant,
    value: V,
}

pub struct ReadCache<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> Default for ReadCache<K, V> {
    fn default() -> Self {
        ReadCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    /// The kept answer for `key` if it is still good (and the client did
    /// not ask for a fresh one), else `read`'s, which is kept when no write
    /// overlapped it.
    pub async fn get_or_read<F>(&self, key: K, fresh: Fresh, read: F) -> Result<V>
    where
        F: Future<Output = Result<V>>,
    {
        if let Some(value) = self.get(&key).filter(|_| fresh == Fresh::Kept) {
            return Ok(value);
        }
        // Both taken before the read: the entry is then no newer than the
        // data it holds.
        let (stamp, read_at) = (WRITES.stamp(), Instant::now());
        let value = read.await?;
        if let Some(stamp) = stamp.filter(|s| WRITES.unchanged_since(*s)) {
            self.put(key, stamp, read_at, value.clone());
        }
        Ok(value)
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        (WRITES.unchanged_since(entry.stamp) && entry.read_at.elapsed() < MAX_AGE)
            .then(|| entry.value.clone())
    }

    fn put(&self, key: K, stamp: u64, read_at: Instant, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                key,
                Entry {
                    stamp,
                    read_at,
                    value,
                },
            );
        }
    }
}

/// The caches of one application.
#[derive(Default)]
pub struct ReadCaches {
    /// By project reference: the pointer's seq and, when it points at a
    /// snapshot, that snapshot as JSON.
    pub current: ReadCache<String, (i64, Option<bytes::Bytes>)>,
    /// By (project, plan, `?snapshot=`): the image as JSON.
    pub plan_image: ReadCache<(String, String, Option<String>), bytes::Bytes>,
    /// By what a path names: the project it belongs to, for scoped tokens.
    pub project_of: ReadCache<(Addressed, String), String>,
}
