//! The construction state machine and the domain events its transitions raise.

use serde::{Deserialize, Serialize};

use crate::domain::role::Role;

/// Where a section's construction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstructionState {
    /// Planned by the office; nothing done yet.
    Planned,
    /// Surveyed on the ground.
    Surveyed,
    /// Trench dug.
    Trenched,
    /// Conduit laid in the trench.
    ConduitLaid,
    /// Fiber cable pulled through the conduit.
    CablePulled,
    /// Fibers spliced.
    Spliced,
    /// Link tested.
    Tested,
    /// Done and handed over.
    Completed,
    /// Work stopped for a reason; left back to the state it blocked.
    Blocked,
}

/// The forward order of the active states.
pub const FORWARD: [ConstructionState; 8] = [
    ConstructionState::Planned,
    ConstructionState::Surveyed,
    ConstructionState::Trenched,
    ConstructionState::ConduitLaid,
    ConstructionState::CablePulled,
    ConstructionState::Spliced,
    ConstructionState::Tested,
    ConstructionState::Completed,
];

impl ConstructionState {
    /// Position in the forward order; `None` for `Blocked`.
    pub fn step(self) -> Option<usize> {
        FORWARD.iter().position(|s| *s == self)
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        use ConstructionState::*;
        match self {
            Planned => "planned",
            Surveyed => "surveyed",
            Trenched => "trenched",
            ConduitLaid => "conduit_laid",
            CablePulled => "cable_pulled",
            Spliced => "spliced",
            Tested => "tested",
            Completed => "completed",
            Blocked => "blocked",
        }
    }
}

impl std::str::FromStr for ConstructionState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FORWARD.iter().chain([ConstructionState::Blocked].iter()).find(|st| st.as_str() == s).copied().ok_or_else(
            || {
                format!(
                    "unknown state `{s}`: use planned, surveyed, trenched, conduit_laid, \
                     cable_pulled, spliced, tested, completed or blocked"
                )
            },
        )
    }
}

/// Why a transition is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The transition goes nowhere.
    #[error("the section is already {0}")]
    Unchanged(&'static str),
    /// Technicians move one step forward only.
    #[error("a technician may move a section one step forward only ({from} → {to} needs a foreman)")]
    NeedsForeman {
        /// State before.
        from: &'static str,
        /// Requested state.
        to: &'static str,
    },
    /// A blocked section goes back to the state it blocked, nowhere else.
    #[error("a blocked section can only be unblocked back to {0}")]
    UnblockElsewhere(&'static str),
    /// Completed sections cannot be blocked.
    #[error("a completed section cannot be blocked; a foreman can reopen it for rework")]
    BlockCompleted,
    /// Blocking needs a reason for the office to act on.
    #[error("blocking a section needs a reason")]
    BlockWithoutReason,
}

/// Check that `role` may move a section from `from` to `to`. `blocked_from`
/// is the state a blocked section returns to.
pub fn check_transition(
    role: Role,
    from: ConstructionState,
    to: ConstructionState,
    blocked_from: Option<ConstructionState>,
    reason: Option<&str>,
) -> Result<(), TransitionError> {
    use ConstructionState::*;
    if from == to {
        return Err(TransitionError::Unchanged(from.as_str()));
    }
    let foreman = role >= Role::Foreman;
    match (from, to) {
        (Completed, Blocked) => Err(TransitionError::BlockCompleted),
        (_, Blocked) if reason.is_none_or(|r| r.trim().is_empty()) => Err(TransitionError::BlockWithoutReason),
        (_, Blocked) => Ok(()),
        (Blocked, to) => {
            let back = blocked_from.unwrap_or(Planned);
            if to != back {
                Err(TransitionError::UnblockElsewhere(back.as_str()))
            } else if !foreman {
                Err(TransitionError::NeedsForeman { from: from.as_str(), to: to.as_str() })
            } else {
                Ok(())
            }
        }
        (from, to) => {
            let one_step = to.step() == from.step().map(|s| s + 1);
            if one_step || foreman {
                Ok(())
            } else {
                Err(TransitionError::NeedsForeman { from: from.as_str(), to: to.as_str() })
            }
        }
    }
}

/// What an accepted transition means to the business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DomainEventKind {
    /// Left `planned`: work on the section began.
    SectionStarted,
    /// Reached `trenched`.
    TrenchDug,
    /// Reached `conduit_laid`.
    ConduitLaid,
    /// Reached `cable_pulled`.
    CablePulled,
    /// Reached `spliced`.
    CableSpliced,
    /// Reached `tested`.
    SectionTested,
    /// Reached `completed`.
    SectionCompleted,
    /// Work stopped.
    SectionBlocked,
    /// Work resumed after a block.
    SectionUnblocked,
    /// A foreman moved the section back.
    ReworkOrdered,
    /// Progress reached the top of the band its state allows (the project's
    /// milestone for that stage of work): the section is ready to move on.
    ProgressMilestone,
}

impl DomainEventKind {
    /// The event an accepted `from → to` transition raises.
    pub fn for_transition(from: ConstructionState, to: ConstructionState) -> Self {
        use ConstructionState as S;
        match (from, to) {
            (_, S::Blocked) => Self::SectionBlocked,
            (S::Blocked, _) => Self::SectionUnblocked,
            (f, t) if t.step() < f.step() => Self::ReworkOrdered,
            (_, S::Planned | S::Surveyed) => Self::SectionStarted,
            (S::Planned, _) => Self::SectionStarted,
            (_, S::Trenched) => Self::TrenchDug,
            (_, S::ConduitLaid) => Self::ConduitLaid,
            (_, S::CablePulled) => Self::CablePulled,
            (_, S::Spliced) => Self::CableSpliced,
            (_, S::Tested) => Self::SectionTested,
            (_, S::Completed) => Self::SectionCompleted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConstructionState::*;
    use super::*;

    #[test]
    fn technicians_step_forward_only() {
        assert!(check_transition(Role::Technician, Planned, Surveyed, None, None).is_ok());
        assert_eq!(
            check_transition(Role::Technician, Planned, Trenched, None, None),
            Err(TransitionError::NeedsForeman { from: "planned", to: "trenched" })
        );
        assert!(check_transition(Role::Technician, Trenched, Surveyed, None, None).is_err());
        assert!(check_transition(Role::Foreman, Trenched, Surveyed, None, None).is_ok());
        assert!(check_transition(Role::Foreman, Planned, Completed, None, None).is_ok());
    }

    #[test]
    fn blocking_needs_a_reason_and_unblocking_a_foreman_and_the_old_state() {
        assert_eq!(
            check_transition(Role::Technician, Trenched, Blocked, None, Some(" ")),
            Err(TransitionError::BlockWithoutReason)
        );
        assert!(check_transition(Role::Technician, Trenched, Blocked, None, Some("rock")).is_ok());
        assert!(check_transition(Role::Technician, Blocked, Trenched, Some(Trenched), None).is_err());
        assert_eq!(
            check_transition(Role::Foreman, Blocked, Spliced, Some(Trenched), None),
            Err(TransitionError::UnblockElsewhere("trenched"))
        );
        assert!(check_transition(Role::Foreman, Blocked, Trenched, Some(Trenched), None).is_ok());
        assert_eq!(
            check_transition(Role::Office, Completed, Blocked, None, Some("x")),
            Err(TransitionError::BlockCompleted)
        );
    }

    #[test]
    fn events_name_what_happened() {
        assert_eq!(DomainEventKind::for_transition(Planned, Surveyed), DomainEventKind::SectionStarted);
        assert_eq!(DomainEventKind::for_transition(ConduitLaid, CablePulled), DomainEventKind::CablePulled);
        assert_eq!(DomainEventKind::for_transition(Tested, Completed), DomainEventKind::SectionCompleted);
        assert_eq!(DomainEventKind::for_transition(Spliced, Trenched), DomainEventKind::ReworkOrdered);
        assert_eq!(DomainEventKind::for_transition(Blocked, Spliced), DomainEventKind::SectionUnblocked);
    }
}
