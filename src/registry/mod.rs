//! The registry's operations: one function per use case, each one
//! transaction (`db::write_tx`) holding every derived change — aggregate
//! status, current-pointer moves, events. Decisions come from `status` and
//! `pointer_rules`; nothing here knows about HTTP. `db::write_tx` runs a
//! transaction again when it lost a race, so a use case's transaction does
//! database work only (file I/O goes before or after it).

pub mod artifacts;
pub mod dashboard;
pub mod events;
pub mod feed;
pub mod fsck;
pub mod gc;
pub mod images;
pub mod keep;
pub mod leases;
pub mod lifecycle;
pub mod lookup;
pub mod lxc;
pub mod page;
pub mod plans;
pub mod pointer;
pub mod projects;
pub mod recompute;
pub mod resolve;
pub mod snapshots;
pub mod storage;
pub mod tokens;
pub mod uploads;

use chrono::{NaiveDateTime, SubsecRound, Utc};
use uuid::Uuid;

/// Who asked for a change; recorded as the `actor` of its events.
#[derive(Debug, Clone, Default)]
pub struct Actor(pub Option<String>);

/// The context of one mutating operation: who, and the one timestamp it
/// stamps on every row and event it writes. Taken after the operation's locks
/// are held, so timestamps follow the order in which changes commit.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub actor: &'a Actor,
    pub now: NaiveDateTime,
}

impl<'a> Change<'a> {
    pub fn new(actor: &'a Actor) -> Change<'a> {
        Change { actor, now: now() }
    }
}

/// The current time in UTC at the microsecond precision both databases keep.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// The moment `d` before now; the earliest time there is when `d` reaches
/// further back (a duration can be configured as large as one likes).
pub fn ago(d: std::time::Duration) -> NaiveDateTime {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now().checked_sub_signed(d))
        .unwrap_or(NaiveDateTime::MIN)
}

/// The same for file times.
pub fn ago_system(d: std::time::Duration) -> std::time::SystemTime {
    std::time::SystemTime::now()
        .checked_sub(d)
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// A new UUIDv7: ids sort by creation time, and ids made by one process are
/// strictly increasing (events of one transaction keep their order).
pub fn new_id() -> String {
    Uuid::now_v7().hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn any_duration_ago_is_a_time_not_a_panic() {
        assert_eq!(super::ago(Duration::MAX), chrono::NaiveDateTime::MIN);
        assert_eq!(super::ago_system(Duration::MAX), std::time::UNIX_EPOCH);
        assert!(super::ago(Duration::from_secs(60)) < super::now());
    }
}
