//! The status state machine and the aggregate rule (API.md, "Status state
//! machine" and "Aggregate snapshot status"). Pure functions, no I/O: the
//! registry layer asks these for every decision and only applies the answer.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Status of a snapshot or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Unknown,
    Pending,
    Active,
    Failed,
    Invalidated,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Unknown,
        Status::Pending,
        Status::Active,
        Status::Failed,
        Status::Invalidated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Failed => "failed",
            Status::Invalidated => "invalidated",
        }
    }

    /// `failed` and `invalidated` never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Failed | Status::Invalidated)
    }

    /// The statuses a create request may ask for.
    pub fn is_initial(self) -> bool {
        matches!(self, Status::Unknown | Status::Pending)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

/// What a requested status change means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The resource already has that status: succeed, change nothing.
    Same,
    Allowed,
    Forbidden,
}

/// The state machine table of API.md, row by row.
pub fn transition(from: Status, to: Status) -> Transition {
    use Status::*;
    if from == to {
        return Transition::Same;
    }
    let allowed = match from {
        Unknown => true,
        Pending => matches!(to, Active | Failed),
        Active => to == Invalidated,
        Failed | Invalidated => false,
    };
    if allowed {
        Transition::Allowed
    } else {
        Transition::Forbidden
    }
}

/// Why the aggregate moved a snapshot; written as the event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateReason {
    /// Rule 1: a pending snapshot whose images are all active.
    AllImagesActive,
    /// Rule 2: an image can never become active again.
    ImageTerminal,
    /// Rule 3: an active snapshot lost an active image.
    ImageNotActive,
}

impl AggregateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateReason::AllImagesActive => "all_images_active",
            AggregateReason::ImageTerminal => "image_terminal",
            AggregateReason::ImageNotActive => "image_not_active",
        }
    }
}

/// The aggregate rule: given a snapshot's status and its images' statuses,
/// the status the snapshot must move to, or `None` when it stays.
pub fn aggregate(snapshot: Status, images: &[Status]) -> Option<(Status, AggregateReason)> {
    use Status::*;
    let all_active = images_all_active(images);
    let any_terminal = images.iter().any(|s| s.is_terminal());
    match snapshot {
        Pending if all_active => Some((Active, AggregateReason::AllImagesActive)),
        Pending | Unknown if any_terminal => Some((Failed, AggregateReason::ImageTerminal)),
        Active if !all_active => Some((Invalidated, AggregateReason::ImageNotActive)),
        // Rule 4 (unknown stays unknown) and rule 5 (terminal stays terminal).
        _ => None,
    }
}

/// A snapshot may be set `active` by hand only when this holds.
pub fn images_all_active(images: &[Status]) -> bool {
    !images.is_empty() && images.iter().all(|s| *s == Status::Active)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn every_transition_matches_the_table() {
        // Rows: from; columns: to, in the order of Status::ALL (API.md table).
        let table = [
            (Unknown, ["same", "yes", "yes", "yes", "yes"]),
            (Pending, ["no", "same", "yes", "yes", "no"]),
            (Active, ["no", "no", "same", "no", "yes"]),
            (Failed, ["no", "no", "no", "same", "no"]),
            (Invalidated, ["no", "no", "no", "no", "same"]),
        ];
        for (from, row) in table {
            for (to, cell) in Status::ALL.into_iter().zip(row) {
                let expected = match cell {
                    "same" => Transition::Same,
                    "yes" => Transition::Allowed,
                    _ => Transition::Forbidden,
                };
                assert_eq!(transition(from, to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn terminal_statuses_are_failed_and_invalidated() {
        let terminal: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, vec![Failed, Invalidated]);
    }

    #[test]
    fn only_unknown_and_pending_are_initial() {
        let initial: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_initial()).collect();
        assert_eq!(initial, vec![Unknown, Pending]);
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("Active".parse::<Status>().is_err());
        assert!("".parse::<Status>().is_err());
    }

    #[test]
    fn rule1_pending_with_all_images_active_becomes_active() {
        assert_eq!(
            aggregate(Pending, &[Active, Active]),
            Some((Active, AggregateReason::AllImagesActive))
        );
        assert_eq!(
            aggregate(Pending, &[Active]),
            Some((Active, AggregateReason::AllImagesActive))
        );
    }

    #[test]
    fn rule1_needs_at_least_one_image_and_all_active() {
        assert_eq!(aggregate(Pending, &[]), None);
        assert_eq!(aggregate(Pending, &[Active, Pending]), None);
        assert_eq!(aggregate(Pending, &[Active, Unknown]), None);
    }

    #[test]
    fn rule2_pending_or_unknown_with_a_terminal_image_fails() {
        for snapshot in [Pending, Unknown] {
            for image in [Failed, Invalidated] {
                assert_eq!(
                    aggregate(snapshot, &[Active, image, Pending]),
                    Some((Failed, AggregateReason::ImageTerminal)),
                    "{snapshot} with a {image} image"
                );
            }
        }
    }

    #[test]
    fn rule3_active_losing_an_active_image_is_invalidated() {
        for image in [Unknown, Pending, Failed, Invalidated] {
            assert_eq!(
                aggregate(Active, &[Active, image]),
                Some((Invalidated, AggregateReason::ImageNotActive)),
                "active snapshot with a {image} image"
            );
        }
        assert_eq!(aggregate(Active, &[Active, Active]), None);
    }

    #[test]
    fn rule4_unknown_with_all_images_active_stays_unknown() {
        assert_eq!(aggregate(Unknown, &[Active, Active]), None);
        assert_eq!(aggregate(Unknown, &[Pending]), None);
        assert_eq!(aggregate(Unknown, &[]), None);
    }

    #[test]
    fn rule5_terminal_snapshots_never_change() {
        let image_sets: [&[Status]; 4] = [&[], &[Active], &[Failed], &[Active, Pending]];
        for snapshot in [Failed, Invalidated] {
            for images in image_sets {
                assert_eq!(aggregate(snapshot, images), None, "{snapshot} {images:?}");
            }
        }
    }

    #[test]
    fn manual_activation_needs_images_all_active() {
        assert!(images_all_active(&[Active]));
        assert!(!images_all_active(&[]));
        assert!(!images_all_active(&[Active, Pending]));
    }
}
