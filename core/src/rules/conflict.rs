//! Conflict records: every concurrent contest and every rejection, with every
//! candidate, the winner and the rule that decided. Their ids derive from the
//! candidates alone, so every replica records the same conflict with the same id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::edit::{Edit, EditId, Field};
use crate::domain::project::Roster;
use crate::domain::role::Role;

/// The rule that decided a contest or refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rule {
    /// The writer is not in the project's roster.
    UnknownAuthor,
    /// The stamp names another actor than the change that carries it.
    ForgedStamp,
    /// Only office staff may name sections and plan routes.
    OfficeOnly,
    /// Among office writes of name or route, the latest HLC wins.
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
    /// Concurrent transitions: higher role, then later HLC, then actor id.
    TransitionPrecedence,
    /// Concurrent locations: the latest HLC among valid points wins.
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
    /// Concurrent progress writes: a foreman's or office's stands over a
    /// lower role's (a rollback is not undone by a raise made without seeing it).
    ProgressRolePrecedence,
}

impl Rule {
    /// Whether a write this rule rejects can only come from a tampered or
    /// broken client (a stamp naming another actor, an author the project
    /// never had): the hub refuses such a change. Every other rejection is
    /// a rule doing its work on an honest write: it is stored, and shown.
    pub fn is_attack(self) -> bool {
        matches!(self, Rule::ForgedStamp | Rule::UnknownAuthor)
    }

    /// Its snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::UnknownAuthor => "unknown_author",
            Rule::ForgedStamp => "forged_stamp",
            Rule::OfficeOnly => "office_only",
            Rule::LastWriterWins => "last_writer_wins",
            Rule::ProgressRange => "progress_range",
            Rule::ProgressBand => "progress_band",
            Rule::ProgressOnlyRises => "progress_only_rises",
            Rule::ProgressMaxWins => "progress_max_wins",
            Rule::StaleTransition => "stale_transition",
            Rule::TransitionNotAllowed => "transition_not_allowed",
            Rule::TransitionPrecedence => "transition_precedence",
            Rule::LocationLastWriterWins => "location_last_writer_wins",
            Rule::OffRoute => "off_route",
            Rule::InvalidPoint => "invalid_point",
            Rule::AcceptRequiresForeman => "accept_requires_foreman",
            Rule::UnknownTarget => "unknown_target",
            Rule::NotAMemberThen => "not_a_member_then",
            Rule::ProgressRolePrecedence => "progress_role_precedence",
        }
    }
}

/// Whether a record is about writes that raced or about one refused write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Writes made without knowing of each other; one stands.
    Contest,
    /// A write the rules refused.
    Rejection,
    /// A point held back as off route until a foreman accepts it.
    Quarantine,
}

/// One write taking part in a conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The write's id (its HLC stamp).
    pub edit_id: EditId,
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

impl Candidate {
    /// The candidate form of `edit`, with the author looked up in `roster`
    /// and the role they held at `counted_at_ms`, when the write counts
    /// ([`crate::Validated::counted_at`]).
    pub fn of(edit: &Edit, roster: &Roster, counted_at_ms: u64) -> Candidate {
        let member = roster.member(&edit.author);
        Candidate {
            edit_id: edit.id.clone(),
            value: edit.value.describe(),
            author: edit.author.clone(),
            user: member.map(|m| m.user.clone()),
            role: roster.role_at(&edit.author, counted_at_ms),
            hlc: edit.hlc.to_string(),
            change_hash: edit.change_hash.clone(),
        }
    }
}

/// A contest or a rejection, as every replica records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub winner: Option<EditId>,
    /// What happened, in words for the app.
    pub explanation: String,
}

impl ConflictRecord {
    /// A record whose id derives from its section, field, rule and candidates.
    pub fn new(
        section: &str,
        field: Field,
        kind: ConflictKind,
        rule: Rule,
        mut candidates: Vec<Candidate>,
        winner: Option<EditId>,
        explanation: String,
    ) -> ConflictRecord {
        candidates.sort_by(|a, b| a.edit_id.cmp(&b.edit_id));
        candidates.dedup_by(|a, b| a.edit_id == b.edit_id);
        let mut h = Sha256::new();
        for part in [section, field.as_str(), rule.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for c in &candidates {
            h.update(c.edit_id.as_bytes());
            h.update([0]);
        }
        let id = hex::encode(&h.finalize()[..16]);
        ConflictRecord { id, section: section.to_owned(), field, kind, rule, candidates, winner, explanation }
    }
}
