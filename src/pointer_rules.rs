//! The current pointer's rules (API.md, "Current snapshot" and "Current
//! pointer: history, rollback, compare-and-swap"): which snapshot a
//! fallback or a rollback picks, whether auto-promotion moves the pointer,
//! what an explicit rollback target must be, and `If-Match`. Pure
//! functions, no I/O; `registry::pointer` reads the rows, asks these, and
//! writes the answer.

use chrono::NaiveDateTime;

/// A move in the pointer's history, newest first, as the rules see it:
/// where the pointer went, and whether that snapshot is still `active`
/// (`false` too when it is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Former<'a> {
    pub snapshot_id: &'a str,
    pub active: bool,
}

/// The `n` snapshots that most recently became current and are still
/// `active`, each once, other than `present`; `history` is newest first.
/// Fallback and rollback pick the first (`present`: the snapshot leaving
/// `active`, or the current one a rollback moves away from; walking back
/// past it is what makes a second rollback undo the first); build hosts
/// keep all `n`: what a rollback or a fallback may bring back.
pub fn recent_active_formers<'a>(
    history: &[Former<'a>],
    present: Option<&str>,
    n: usize,
) -> Vec<&'a str> {
    let mut found: Vec<&'a str> = Vec::new();
    for former in history {
        if found.len() == n {
            break;
        }
        if former.active
            && Some(former.snapshot_id) != present
            && !found.contains(&former.snapshot_id)
        {
            found.push(former.snapshot_id);
        }
    }
    found
}

/// A snapshot's place in creation order: `created_at`, then id.
pub type Created<'a> = (NaiveDateTime, &'a str);

/// Auto-promotion: a snapshot that became `active` becomes current when
/// the project asks for it, unless it is current already or the current
/// snapshot was created after it.
pub fn auto_promotes(auto_promote: bool, current: Option<Created>, candidate: Created) -> bool {
    match current {
        _ if !auto_promote => false,
        None => true,
        Some(current) => current < candidate,
    }
}

/// What `POST …/current/rollback` with `{"to": …}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplicitRollback {
    /// Move the pointer there.
    Move,
    /// It is the current snapshot already: succeed, change nothing.
    AlreadyCurrent,
    /// `422 unknown_reference`: it never was current in this project.
    NeverCurrent,
    /// `409 snapshot_not_active`.
    NotActive,
}

/// `known`: the snapshot was current in this project before and still
/// exists; `is_current`: it is the current one now.
pub fn explicit_rollback(known: bool, is_current: bool, active: bool) -> ExplicitRollback {
    match () {
        _ if !known => ExplicitRollback::NeverCurrent,
        _ if is_current => ExplicitRollback::AlreadyCurrent,
        _ if !active => ExplicitRollback::NotActive,
        _ => ExplicitRollback::Move,
    }
}

/// An `If-Match` header on a pointer change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No header: act unconditionally.
    None,
    /// `*`: the pointer exists, which it always does.
    Any,
    /// The entity tags listed (strong comparison; a weak tag never matches).
    Tags(Vec<String>),
}

impl Precondition {
    /// Parses the header's value (`"3"`, `"3", "4"`, `*`, `W/"3"`).
    pub fn parse(header: Option<&str>) -> Precondition {
        let Some(header) = header else {
            return Precondition::None;
        };
        if header.trim() == "*" {
            return Precondition::Any;
        }
        Precondition::Tags(
            header
                .split(',')
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether a change may go ahead when the pointer's last move is `seq`.
    pub fn holds(&self, seq: i64) -> bool {
        match self {
            Precondition::None | Precondition::Any => true,
            Precondition::Tags(tags) => tags.iter().any(|tag| *tag == etag(seq)),
        }
    }
}

/// The pointer's entity tag: its last move's seq, quoted.
pub fn etag(seq: i64) -> String {
    format!("\"{seq}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_former<'a>(history: &[Former<'a>], present: Option<&str>) -> Option<&'a str> {
        recent_active_formers(history, present, 1).pop()
    }

    #[test]
    fn build_hosts_keep_the_next_rollback_targets_once_each() {
        let former = |snapshot_id, active| Former {
            snapshot_id,
            active,
        };
        // Newest first: c (current), b, a, gone (deleted), b again, d.
        let history = [
            former("c", true),
            former("b", true),
            former("a", true),
            former("gone", false),
            former("b", true),
            former("d", true),
        ];
        assert_eq!(
            recent_active_formers(&history, Some("c"), 0),
            Vec::<&str>::new()
        );
        assert_eq!(recent_active_formers(&history, Some("c"), 2), ["b", "a"]);
        assert_eq!(
            recent_active_formers(&history, Some("c"), 10),
            ["b", "a", "d"]
        );
    }

    fn history<'a>(moves: &[(&'a str, bool)]) -> Vec<Former<'a>> {
        moves
            .iter()
            .map(|&(snapshot_id, active)| Former {
                snapshot_id,
                active,
            })
            .collect()
    }

    #[test]
    fn fallback_picks_the_most_recent_current_still_active() {
        // s1, s2, s3 were made current in turn; s3 is leaving `active`.
        let moves = history(&[("s3", false), ("s2", true), ("s1", true)]);
        assert_eq!(first_former(&moves, Some("s3")), Some("s2"));
        let moves = history(&[("s3", false), ("s2", false), ("s1", true)]);
        assert_eq!(first_former(&moves, Some("s3")), Some("s1"));
        let moves = history(&[("s3", false), ("s2", false)]);
        assert_eq!(first_former(&moves, Some("s3")), None);
        assert_eq!(first_former(&[], None), None);
    }

    #[test]
    fn a_second_rollback_undoes_the_first() {
        // a, b, c made current; c is current: rollback goes to b.
        let moves = history(&[("c", true), ("b", true), ("a", true)]);
        assert_eq!(first_former(&moves, Some("c")), Some("b"));
        // After that rollback the newest move is to b: rolling back again is c.
        let moves = history(&[("b", true), ("c", true), ("b", true), ("a", true)]);
        assert_eq!(first_former(&moves, Some("b")), Some("c"));
    }

    #[test]
    fn rollback_walks_past_snapshots_no_longer_active() {
        let moves = history(&[("c", true), ("b", false), ("a", true)]);
        assert_eq!(first_former(&moves, Some("c")), Some("a"));
    }

    #[test]
    fn with_nothing_current_rollback_restores_the_latest_active_former() {
        let moves = history(&[("b", false), ("a", true)]);
        assert_eq!(first_former(&moves, None), Some("a"));
    }

    #[test]
    fn auto_promotion_moves_only_to_a_newer_snapshot() {
        let at = |s| {
            chrono::DateTime::from_timestamp(s, 0)
                .map(|t| t.naive_utc())
                .unwrap_or_default()
        };
        let older = (at(1), "a");
        let newer = (at(2), "b");
        assert!(auto_promotes(true, None, older));
        assert!(auto_promotes(true, Some(older), newer));
        assert!(!auto_promotes(true, Some(newer), older));
        assert!(!auto_promotes(true, Some(newer), newer), "already current");
        assert!(!auto_promotes(false, None, newer));
        // Same instant: the id breaks the tie, as in every list.
        assert!(auto_promotes(true, Some((at(1), "a")), (at(1), "b")));
    }

    #[test]
    fn explicit_rollback_targets() {
        use ExplicitRollback::*;
        assert_eq!(explicit_rollback(false, false, true), NeverCurrent);
        assert_eq!(explicit_rollback(true, true, true), AlreadyCurrent);
        assert_eq!(explicit_rollback(true, false, false), NotActive);
        assert_eq!(explicit_rollback(true, false, true), Move);
    }

    #[test]
    fn if_match_compares_strongly() {
        assert!(Precondition::parse(None).holds(7));
        assert!(Precondition::parse(Some("*")).holds(7));
        assert!(Precondition::parse(Some("\"7\"")).holds(7));
        assert!(Precondition::parse(Some("\"6\", \"7\"")).holds(7));
        assert!(!Precondition::parse(Some("\"6\"")).holds(7));
        assert!(!Precondition::parse(Some("W/\"7\"")).holds(7));
        assert!(!Precondition::parse(Some("7")).holds(7));
        assert!(!Precondition::parse(Some("")).holds(7));
        assert_eq!(etag(0), "\"0\"");
    }
}
