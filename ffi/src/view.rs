//! The validated view of a section and what the rules made of each write, as
//! the app reads them.

use fieldsync_core as core;

use crate::conflict::Rule;
use crate::domain::{ConstructionState, Field, GeoPoint, Role};

/// What the rules made of one write.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Decision {
    /// Applied and still the current value.
    Accepted,
    /// Applied, then replaced by a later accepted write.
    Superseded {
        /// The write that replaced it.
        by: String,
    },
    /// Lost a race to a write with the same value: its intent stands.
    Concurred {
        /// The write that stands for both.
        with: String,
    },
    /// Refused by a rule; the value stays in the document and the audit.
    Rejected {
        /// The rule.
        rule: Rule,
        /// The write that stands instead, if any.
        winner: Option<String>,
        /// Why, in words.
        reason: String,
    },
    /// An off-route point held back until a foreman accepts it.
    Quarantined {
        /// Distance to the planned route, metres.
        distance_m: f64,
    },
}

impl From<core::Decision> for Decision {
    fn from(d: core::Decision) -> Self {
        match d {
            core::Decision::Accepted => Decision::Accepted,
            core::Decision::Superseded { by } => Decision::Superseded { by },
            core::Decision::Concurred { with } => Decision::Concurred { with },
            core::Decision::Rejected { rule, winner, reason } => {
                Decision::Rejected { rule: rule.into(), winner, reason }
            }
            core::Decision::Quarantined { distance_m } => Decision::Quarantined { distance_m },
        }
    }
}

/// A blocked section's reason and where it goes back to.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Blocked {
    /// Why work stopped.
    pub reason: String,
    /// The state it blocked, to which unblocking returns.
    pub resume_to: ConstructionState,
}

/// A position that counts: the current location or an as-built point.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PointRecord {
    /// The write that reported it.
    pub edit_id: String,
    /// Where.
    pub point: GeoPoint,
    /// Hex actor id of the reporter.
    pub author: String,
    /// The foreman's acceptance, if it was off route.
    pub accepted_by: Option<String>,
}

impl From<core::PointRecord> for PointRecord {
    fn from(p: core::PointRecord) -> Self {
        PointRecord { edit_id: p.edit_id, point: p.point.into(), author: p.author, accepted_by: p.accepted_by }
    }
}

/// An off-route point held back.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct QuarantinedPoint {
    /// The write that reported it (give this to `accept_point`).
    pub edit_id: String,
    /// Where.
    pub point: GeoPoint,
    /// Distance to the planned route, metres.
    pub distance_m: f64,
    /// Hex actor id of the reporter.
    pub author: String,
}

impl From<core::QuarantinedPoint> for QuarantinedPoint {
    fn from(q: core::QuarantinedPoint) -> Self {
        QuarantinedPoint { edit_id: q.edit_id, point: q.point.into(), distance_m: q.distance_m, author: q.author }
    }
}

/// What an accepted transition means for the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
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
    /// Progress reached the top of its state's band (`milestone` says which %).
    ProgressMilestone,
    /// An event newer than these bindings (core's kind is non-exhaustive).
    Unrecognized,
}

impl From<core::DomainEventKind> for DomainEventKind {
    fn from(k: core::DomainEventKind) -> Self {
        use core::DomainEventKind as C;
        match k {
            C::SectionStarted => Self::SectionStarted,
            C::TrenchDug => Self::TrenchDug,
            C::ConduitLaid => Self::ConduitLaid,
            C::CablePulled => Self::CablePulled,
            C::CableSpliced => Self::CableSpliced,
            C::SectionTested => Self::SectionTested,
            C::SectionCompleted => Self::SectionCompleted,
            C::SectionBlocked => Self::SectionBlocked,
            C::SectionUnblocked => Self::SectionUnblocked,
            C::ReworkOrdered => Self::ReworkOrdered,
            C::ProgressMilestone => Self::ProgressMilestone,
            _ => Self::Unrecognized,
        }
    }
}

/// A domain event raised by an accepted transition.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DomainEvent {
    /// The transition write (also the event's stable id).
    pub edit_id: String,
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
    /// For a progress milestone: the percentage reached.
    pub milestone: Option<u8>,
}

impl From<core::DomainEvent> for DomainEvent {
    fn from(e: core::DomainEvent) -> Self {
        DomainEvent {
            edit_id: e.edit_id,
            section: e.section,
            kind: e.kind.into(),
            from: e.from.into(),
            to: e.to.into(),
            author: e.author,
            milestone: e.milestone,
        }
    }
}

/// A photo reference attached to a section (the app keeps the photo itself).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PhotoRef {
    /// Its id.
    pub id: String,
    /// Where the app keeps the photo (URI or content hash).
    pub uri: String,
    /// Optional caption.
    pub caption: Option<String>,
    /// HLC stamp of when it was attached.
    pub hlc: String,
    /// Hex actor id of whoever attached it.
    pub author: String,
    /// Hex SHA-256 of the bytes, for a photo the replica keeps by content.
    pub sha256: Option<String>,
    /// Size in bytes (0 when not kept by content).
    pub size: u64,
    /// Media type (`image/jpeg`, …), if kept by content.
    pub media_type: Option<String>,
    /// Pixels (0 when unknown).
    pub width: u32,
    /// Pixels (0 when unknown).
    pub height: u32,
    /// Its thumbnail (a small JPEG that travels first; every sync fetches
    /// other devices'), when the device that took it could make one. Its
    /// bytes are in `photo_file(thumbnail.sha256)` once here.
    pub thumbnail: Option<PhotoBlob>,
}

/// What a photo's record says of a file of bytes (a thumbnail's).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PhotoBlob {
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type (`image/jpeg`, …).
    pub media_type: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

impl From<core::PhotoBlob> for PhotoBlob {
    fn from(b: core::PhotoBlob) -> Self {
        PhotoBlob { sha256: b.sha256, size: b.size, media_type: b.media_type, width: b.width, height: b.height }
    }
}

impl From<PhotoBlob> for core::PhotoBlob {
    fn from(b: PhotoBlob) -> Self {
        core::PhotoBlob { sha256: b.sha256, size: b.size, media_type: b.media_type, width: b.width, height: b.height }
    }
}

/// The record again, as core has it (for `photo_state`).
impl From<PhotoRef> for core::PhotoRef {
    fn from(p: PhotoRef) -> Self {
        let blob = p.sha256.map(|sha256| core::PhotoBlob {
            sha256,
            size: p.size,
            media_type: p.media_type.unwrap_or_default(),
            width: p.width,
            height: p.height,
        });
        core::PhotoRef {
            id: p.id,
            uri: p.uri,
            caption: p.caption,
            hlc: p.hlc,
            author: p.author,
            blob,
            thumbnail: p.thumbnail.map(Into::into),
        }
    }
}

impl From<core::PhotoRef> for PhotoRef {
    fn from(p: core::PhotoRef) -> Self {
        let blob = p.blob.as_ref();
        PhotoRef {
            thumbnail: p.thumbnail.map(Into::into),
            sha256: blob.map(|b| b.sha256.clone()),
            size: blob.map_or(0, |b| b.size),
            media_type: blob.map(|b| b.media_type.clone()),
            width: blob.map_or(0, |b| b.width),
            height: blob.map_or(0, |b| b.height),
            id: p.id,
            uri: p.uri,
            caption: p.caption,
            hlc: p.hlc,
            author: p.author,
        }
    }
}

/// What every replica shows for a section.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SectionView {
    /// Section id.
    pub id: String,
    /// Project id.
    pub project: String,
    /// Name (the office's latest).
    pub name: String,
    /// Planned route (the office's latest).
    pub route: Vec<GeoPoint>,
    /// The crew it is assigned to (the office's latest; `assign_crew`).
    pub crew: Option<String>,
    /// Construction state.
    pub state: ConstructionState,
    /// Set when the state is `Blocked`.
    pub blocked: Option<Blocked>,
    /// Progress percentage.
    pub progress: u8,
    /// Latest valid reported position.
    pub location: Option<PointRecord>,
    /// Every valid point, oldest first.
    pub as_built: Vec<PointRecord>,
    /// Off-route points awaiting a foreman.
    pub quarantined: Vec<QuarantinedPoint>,
    /// Notes text.
    pub notes: String,
    /// Photo references.
    pub photos: Vec<PhotoRef>,
    /// Accepted transitions, oldest first.
    pub events: Vec<DomainEvent>,
    /// Progress milestones reached, oldest first.
    pub milestones: Vec<DomainEvent>,
    /// How many conflict records the section has.
    pub conflict_count: u64,
    /// Hex heads of the merged document the view was computed from (give
    /// them to `view_at` to come back to this point).
    pub heads: Vec<String>,
}

impl From<core::SectionView> for SectionView {
    fn from(v: core::SectionView) -> Self {
        SectionView {
            id: v.id,
            project: v.project,
            name: v.name,
            route: v.route.into_iter().map(Into::into).collect(),
            crew: v.crew,
            state: v.state.into(),
            blocked: v.blocked.map(|b| Blocked { reason: b.reason, resume_to: b.resume_to.into() }),
            progress: v.progress,
            location: v.location.map(Into::into),
            as_built: v.as_built.into_iter().map(Into::into).collect(),
            quarantined: v.quarantined.into_iter().map(Into::into).collect(),
            notes: v.notes,
            photos: v.photos.into_iter().map(Into::into).collect(),
            events: v.events.into_iter().map(Into::into).collect(),
            milestones: v.milestones.into_iter().map(Into::into).collect(),
            conflict_count: v.conflict_count as u64,
            heads: v.heads,
        }
    }
}

/// One row of a section list (read without loading any document).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SectionSummary {
    /// Section id (pass the last one as `after` for the next page).
    pub id: String,
    /// Project id.
    pub project: String,
    /// Name.
    pub name: String,
    /// Construction state.
    pub state: ConstructionState,
    /// Progress percentage.
    pub progress: u8,
}

impl From<core::SectionSummary> for SectionSummary {
    fn from(s: core::SectionSummary) -> Self {
        // The store writes the state with `ConstructionState::as_str`, so it always parses.
        let state = s.state.parse::<core::ConstructionState>().map_or(ConstructionState::Planned, Into::into);
        SectionSummary { id: s.id, project: s.project, name: s.name, state, progress: s.progress }
    }
}

/// One line of a section's audit trail: a write and what the rules made of it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AuditEntry {
    /// The write.
    pub edit_id: String,
    /// Its field (`None` for a kind of write from a newer app).
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
    /// When the server received it (ms since the epoch); `None` while it is not confirmed.
    pub received_ms: Option<u64>,
    /// What the rules made of it.
    pub decision: Decision,
}

impl From<core::AuditEntry> for AuditEntry {
    fn from(a: core::AuditEntry) -> Self {
        AuditEntry {
            edit_id: a.edit_id,
            field: a.field.map(Into::into),
            value: a.value,
            author: a.author,
            user: a.user,
            role: a.role.map(Into::into),
            change_hash: a.change_hash,
            received_ms: a.received_ms,
            decision: a.decision.into(),
        }
    }
}
