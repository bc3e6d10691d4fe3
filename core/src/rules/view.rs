//! The validated view of a section: what every replica shows, computed by
//! the rules from the merged document, the roster and the project config.

use serde::{Deserialize, Serialize};

use crate::domain::coverage::Coverage;
use crate::domain::document::PhotoRef;
use crate::domain::edit::{EditId, Field};
use crate::domain::role::Role;
use crate::domain::route::GeoPoint;
use crate::domain::state_machine::{ConstructionState, DomainEventKind};
use crate::rules::conflict::Rule;

/// What the rules made of one write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// Applied and still the current value.
    Accepted,
    /// Applied, then replaced by a later accepted write.
    Superseded {
        /// The write that replaced it.
        by: EditId,
    },
    /// Lost a race to a write with the same value: its intent stands.
    Concurred {
        /// The write that stands for both.
        with: EditId,
    },
    /// Refused by a rule; the value stays in the document and the audit.
    Rejected {
        /// The rule.
        rule: Rule,
        /// The write that stands instead, if any.
        winner: Option<EditId>,
        /// Why, in words.
        reason: String,
    },
    /// An off-route point held back until a foreman accepts it.
    Quarantined {
        /// Distance to the planned route, metres.
        distance_m: f64,
    },
}

impl Decision {
    /// Whether the write's intent shows in the view (now or before it was replaced).
    pub fn applied(&self) -> bool {
        matches!(self, Decision::Accepted | Decision::Superseded { .. } | Decision::Concurred { .. })
    }
}

/// A blocked section's reason and where it goes back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// Why work stopped.
    pub reason: String,
    /// The state it blocked, to which unblocking returns.
    pub resume_to: ConstructionState,
}

/// A position that counts: the current location or an as-built point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    /// The write that reported it.
    pub edit_id: EditId,
    /// Where.
    pub point: GeoPoint,
    /// Hex actor id of the reporter.
    pub author: String,
    /// Foreman's acceptance, if it was off route.
    pub accepted_by: Option<EditId>,
}

/// An off-route point held back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedPoint {
    /// The write that reported it (give this to `accept_point`).
    pub edit_id: EditId,
    /// Where.
    pub point: GeoPoint,
    /// Distance to the planned route, metres (0.1 m resolution).
    pub distance_m: f64,
    /// Hex actor id of the reporter.
    pub author: String,
}

/// A domain event raised by an accepted transition, or by accepted progress
/// reaching a milestone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEvent {
    /// The transition write (also the event's stable id).
    pub edit_id: EditId,
    /// The section.
    pub section: String,
    /// What happened.
    pub kind: DomainEventKind,
    /// State before.
    pub from: ConstructionState,
    /// State after.
    pub to: ConstructionState,
    /// Hex actor id of the writer.
    pub author: String,
    /// For [`DomainEventKind::ProgressMilestone`]: the percentage reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone: Option<u8>,
}

/// What every replica shows for a section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionView {
    /// Section id.
    pub id: String,
    /// Project id.
    pub project: String,
    /// Name (office's latest).
    pub name: String,
    /// Planned route (office's latest).
    pub route: Vec<GeoPoint>,
    /// The crew it is assigned to (office's latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crew: Option<String>,
    /// Construction state.
    pub state: ConstructionState,
    /// Set when the state is `blocked`.
    pub blocked: Option<Blocked>,
    /// Progress percentage.
    pub progress: u8,
    /// Latest valid reported position.
    pub location: Option<PointRecord>,
    /// Every valid point, in HLC order.
    pub as_built: Vec<PointRecord>,
    /// Off-route points awaiting a foreman.
    pub quarantined: Vec<QuarantinedPoint>,
    /// Notes text.
    pub notes: String,
    /// Photo references.
    pub photos: Vec<PhotoRef>,
    /// Accepted transitions, oldest first: the section's history, each
    /// built on the one before.
    pub events: Vec<DomainEvent>,
    /// Progress milestones reached (accepted progress rising to the top of
    /// its state's band), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<DomainEvent>,
    /// How many conflict records the section has.
    pub conflict_count: usize,
    /// Hex heads of the merged document the view was computed from.
    pub heads: Vec<String>,
}

impl SectionView {
    /// What subscriptions judge the section on (partial sync).
    pub fn coverage(&self) -> Coverage {
        Coverage { route: self.route.clone(), crew: self.crew.clone() }
    }
}

/// One line of a section's audit trail: a write and what the rules made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The write.
    pub edit_id: EditId,
    /// Its field.
    pub field: Option<Field>,
    /// Its value, in words.
    pub value: String,
    /// Hex actor id of the writer.
    pub author: String,
    /// The writer's user, if known.
    pub user: Option<String>,
    /// The writer's role when the write counts (`None`: not a member then, or unknown).
    pub role: Option<Role>,
    /// Hex hash of its change.
    pub change_hash: String,
    /// When the hub received it (server ms): `None` while it is not
    /// confirmed (or the hub stored it before it recorded receipts).
    pub received_ms: Option<u64>,
    /// What the rules made of it.
    pub decision: Decision,
}
