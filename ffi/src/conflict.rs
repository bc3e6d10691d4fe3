//! Conflict records as the app shows them: every contest and rejection, with
//! every candidate, the winner and the rule that decided.

use fieldsync_core as core;

use crate::domain::{Field, Role};

/// The rule that decided a contest or refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Rule {
    /// The writer is not in the project's roster.
    UnknownAuthor,
    /// The stamp names another actor than the change that carries it.
    ForgedStamp,
    /// Only office staff may name sections and plan routes.
    OfficeOnly,
    /// Among office writes of name or route, the latest wins.
    LastWriterWins,
    /// Progress must be 0–100.
    ProgressRange,
    /// Progress must lie in the band of the state its writer saw.
    ProgressBand,
    /// Progress only rises, unless a foreman or office rolls it back.
    ProgressOnlyRises,
    /// Concurrent progress reports: the highest stands.
    ProgressMaxWins,
    /// A transition must start from the state the section is in.
    StaleTransition,
    /// The writer's role may not make this transition.
    TransitionNotAllowed,
    /// Concurrent transitions: higher role, then later stamp, then actor id.
    TransitionPrecedence,
    /// Concurrent locations: the latest among valid points wins.
    LocationLastWriterWins,
    /// A point too far from the planned route is quarantined.
    OffRoute,
    /// Coordinates outside WGS84.
    InvalidPoint,
    /// Only a foreman or office may accept a quarantined point.
    AcceptRequiresForeman,
    /// The acceptance names no location write of this section.
    UnknownTarget,
    /// The writer's user was not a member of the project when the write was made.
    NotAMemberThen,
    /// Concurrent progress writes: a foreman's or office's stands over a lower role's.
    ProgressRolePrecedence,
    /// A rule newer than these bindings (core's `Rule` is non-exhaustive);
    /// show the record's explanation.
    Unrecognized,
}

impl From<core::Rule> for Rule {
    fn from(r: core::Rule) -> Self {
        use core::Rule as C;
        match r {
            C::UnknownAuthor => Rule::UnknownAuthor,
            C::ForgedStamp => Rule::ForgedStamp,
            C::OfficeOnly => Rule::OfficeOnly,
            C::LastWriterWins => Rule::LastWriterWins,
            C::ProgressRange => Rule::ProgressRange,
            C::ProgressBand => Rule::ProgressBand,
            C::ProgressOnlyRises => Rule::ProgressOnlyRises,
            C::ProgressMaxWins => Rule::ProgressMaxWins,
            C::StaleTransition => Rule::StaleTransition,
            C::TransitionNotAllowed => Rule::TransitionNotAllowed,
            C::TransitionPrecedence => Rule::TransitionPrecedence,
            C::LocationLastWriterWins => Rule::LocationLastWriterWins,
            C::OffRoute => Rule::OffRoute,
            C::InvalidPoint => Rule::InvalidPoint,
            C::AcceptRequiresForeman => Rule::AcceptRequiresForeman,
            C::UnknownTarget => Rule::UnknownTarget,
            C::NotAMemberThen => Rule::NotAMemberThen,
            C::ProgressRolePrecedence => Rule::ProgressRolePrecedence,
            _ => Rule::Unrecognized,
        }
    }
}

/// Whether a record is about writes that raced or about one refused write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum ConflictKind {
    /// Writes made without knowing of each other; one stands.
    Contest,
    /// A write the rules refused.
    Rejection,
    /// A point held back as off route until a foreman accepts it.
    Quarantine,
}

impl From<core::ConflictKind> for ConflictKind {
    fn from(k: core::ConflictKind) -> Self {
        match k {
            core::ConflictKind::Contest => ConflictKind::Contest,
            core::ConflictKind::Rejection => ConflictKind::Rejection,
            core::ConflictKind::Quarantine => ConflictKind::Quarantine,
        }
    }
}

/// One write taking part in a conflict.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Candidate {
    /// The write's id (its HLC stamp).
    pub edit_id: String,
    /// The value, in words.
    pub value: String,
    /// Hex actor id of the writer.
    pub author: String,
    /// The writer's user, if the roster knows the actor.
    pub user: Option<String>,
    /// The writer's role, if the roster knows the actor.
    pub role: Option<Role>,
    /// The write's HLC stamp.
    pub hlc: String,
    /// Hex hash of the change that carried it.
    pub change_hash: String,
}

impl From<core::Candidate> for Candidate {
    fn from(c: core::Candidate) -> Self {
        Candidate {
            edit_id: c.edit_id,
            value: c.value,
            author: c.author,
            user: c.user,
            role: c.role.map(Into::into),
            hlc: c.hlc,
            change_hash: c.change_hash,
        }
    }
}

/// A contest or a rejection, recorded with the same id on every replica.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictRecord {
    /// Stable id: a hash of the section, field, rule and candidate ids.
    pub id: String,
    /// The section.
    pub section: String,
    /// The field contested.
    pub field: Field,
    /// Contest, rejection or quarantine.
    pub kind: ConflictKind,
    /// The rule that decided.
    pub rule: Rule,
    /// Every write involved, in HLC order.
    pub candidates: Vec<Candidate>,
    /// The write that stands, if any.
    pub winner: Option<String>,
    /// What happened, in words for the app.
    pub explanation: String,
}

impl From<core::ConflictRecord> for ConflictRecord {
    fn from(c: core::ConflictRecord) -> Self {
        ConflictRecord {
            id: c.id,
            section: c.section,
            field: c.field.into(),
            kind: c.kind.into(),
            rule: c.rule.into(),
            candidates: c.candidates.into_iter().map(Into::into).collect(),
            winner: c.winner,
            explanation: c.explanation,
        }
    }
}
