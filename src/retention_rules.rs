//! Which snapshots may be deleted, by hand or by a project's retention
//! policy: pure rules, unit-tested without a database (API.md, "Snapshot
//! deletion, pinning and retention").

use crate::status::Status;
use chrono::NaiveDateTime;
use std::time::Duration;

/// Most snapshots `keep_active` may name.
pub const MAX_KEEP_ACTIVE: u32 = 1000;

/// A project's retention policy; both unset: keep everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the N newest `active` snapshots; older active ones go.
    pub keep_active: Option<u32>,
    /// A `failed` or `invalidated` snapshot goes once its last status change
    /// is older than this.
    pub terminal_after: Option<Duration>,
}

impl Retention {
    pub fn keeps_everything(&self) -> bool {
        self.keep_active.is_none() && self.terminal_after.is_none()
    }
}

/// What the rules need to know about one snapshot of the project.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub status: Status,
    pub created_at: NaiveDateTime,
    /// Its last status change.
    pub updated_at: NaiveDateTime,
    pub pinned: bool,
    pub current: bool,
}

/// Why a snapshot cannot be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It is the project's current snapshot.
    InUse,
    Pinned,
}

/// Whether a snapshot may be deleted at all (by hand or by retention).
pub fn may_delete(pinned: bool, current: bool) -> Result<(), Refusal> {
    match (current, pinned) {
        (true, _) => Err(Refusal::InUse),
        (_, true) => Err(Refusal::Pinned),
        _ => Ok(()),
    }
}

/// The snapshots of one project that `policy` removes at `now`, in the
/// order given. Never the current one, a pinned one, or one still building
/// (`pending`, `unknown`).
pub fn expired(policy: &Retention, snapshots: &[Candidate], now: NaiveDateTime) -> Vec<String> {
    let mut newest_active: Vec<&Candidate> = snapshots
        .iter()
        .filter(|s| s.status == Status::Active)
        .collect();
    newest_active.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let kept_active: Vec<&str> = match policy.keep_active {
        Some(n) => newest_active
            .iter()
            .take(n as usize)
            .map(|s| s.id.as_str())
            .collect(),
        None => newest_active.iter().map(|s| s.id.as_str()).collect(),
    };
    let terminal_before = policy
        .terminal_after
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d));
    snapshots
        .iter()
        .filter(|s| may_delete(s.pinned, s.current).is_ok())
        .filter(|s| match s.status {
            Status::Active => !kept_active.contains(&s.id.as_str()),
            Status::Failed | Status::Invalidated => {
                terminal_before.is_some_and(|before| s.updated_at < before)
            }
            Status::Pending | Status::Unknown => false,
        })
        .map(|s| s.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 22)
            .and_then(|d| d.and_hms_opt(12, minute, 0))
            .unwrap_or_default()
    }

    fn snapshot(id: &str, status: Status, minute: u32) -> Candidate {
        Candidate {
            id: id.to_owned(),
            status,
            created_at: at(minute),
            updated_at: at(minute),
            pinned: false,
            current: false,
        }
    }

    #[test]
    fn keeping_everything_removes_nothing() {
        let all = [
            snapshot("a", Status::Active, 1),
            snapshot("f", Status::Failed, 2),
        ];
        assert!(expired(&Retention::default(), &all, at(59)).is_empty());
    }

    #[test]
    fn keep_active_keeps_the_newest_and_never_current_pinned_or_building() {
        let mut all = vec![
            snapshot("a1", Status::Active, 1),
            snapshot("a2", Status::Active, 2),
            snapshot("a3", Status::Active, 3),
            snapshot("a4", Status::Active, 4),
            snapshot("a5", Status::Active, 5),
            snapshot("p", Status::Pending, 0),
            snapshot("u", Status::Unknown, 0),
            snapshot("f", Status::Failed, 0),
        ];
        all[0].current = true;
        all[1].pinned = true;
        let policy = Retention {
            keep_active: Some(2),
            terminal_after: None,
        };
        // a5 and a4 are the two newest; a1 is current, a2 pinned.
        assert_eq!(expired(&policy, &all, at(59)), ["a3"]);
    }

    #[test]
    fn equal_creation_times_rank_by_id() {
        let all = [
            snapshot("b", Status::Active, 1),
            snapshot("a", Status::Active, 1),
        ];
        let policy = Retention {
            keep_active: Some(1),
            terminal_after: None,
        };
        assert_eq!(expired(&policy, &all, at(59)), ["a"]);
    }

    #[test]
    fn terminal_snapshots_go_after_their_last_status_change_ages() {
        let mut invalidated = snapshot("i", Status::Invalidated, 1);
        invalidated.updated_at = at(50); // invalidated late: young
        let all = [
            snapshot("f", Status::Failed, 1),
            invalidated,
            snapshot("a", Status::Active, 1),
        ];
        let policy = Retention {
            keep_active: None,
            terminal_after: Some(Duration::from_secs(30 * 60)),
        };
        assert_eq!(expired(&policy, &all, at(55)), ["f"]);
        assert_eq!(expired(&policy, &all, at(32)), ["f"], "31 minutes");
        assert!(expired(&policy, &all, at(30)).is_empty(), "29 minutes");
    }

    #[test]
    fn the_current_snapshot_then_a_pinned_one_refuse_deletion() {
        assert_eq!(may_delete(true, true), Err(Refusal::InUse));
        assert_eq!(may_delete(true, false), Err(Refusal::Pinned));
        assert_eq!(may_delete(false, false), Ok(()));
    }
}
