//! What a write or a merge did: the receipt of a local write, the changes
//! that travel between replicas, and the reconciliation report of a merge.

use fieldsync_core as core;

use crate::conflict::{Candidate, Rule};
use crate::domain::Field;
use crate::view::Decision;

/// What a local write returns: its id and what the rules made of it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct EditReceipt {
    /// The write's id.
    pub edit_id: String,
    /// The section.
    pub section: String,
    /// Hex hash of the change that holds it.
    pub change_hash: String,
    /// Accepted, or quarantined for off-route points.
    pub decision: Decision,
}

impl From<core::EditReceipt> for EditReceipt {
    fn from(r: core::EditReceipt) -> Self {
        EditReceipt { edit_id: r.edit_id, section: r.section, change_hash: r.change_hash, decision: r.decision.into() }
    }
}

/// A change as it travels between replicas: its section and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SectionChange {
    /// The section document it belongs to.
    pub section: String,
    /// Raw Automerge change bytes.
    pub bytes: Vec<u8>,
}

impl From<SectionChange> for core::SectionChange {
    fn from(c: SectionChange) -> Self {
        core::SectionChange { section: c.section, bytes: c.bytes }
    }
}

/// What became of a local write not yet confirmed, after a merge.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum EditOutcome {
    /// It still stands (or was replaced by our own later write).
    Stands,
    /// Another write won, or a rule now refuses it.
    Overridden {
        /// The write that stands instead, if any.
        by: Option<Candidate>,
        /// The rule that decided.
        rule: Rule,
        /// Why, in words for the technician.
        reason: String,
    },
    /// The server would not take it (or what it builds on); kept here, unsent.
    Refused {
        /// Why, as the server said.
        reason: String,
    },
}

/// One line of the optimistic-reconciliation report.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Reconciliation {
    /// The local write.
    pub edit_id: String,
    /// Its section.
    pub section: String,
    /// Its field.
    pub field: Option<Field>,
    /// What became of it.
    pub outcome: EditOutcome,
}

impl From<core::Reconciliation> for Reconciliation {
    fn from(r: core::Reconciliation) -> Self {
        let outcome = match r.outcome {
            core::EditOutcome::Stands => EditOutcome::Stands,
            core::EditOutcome::Overridden { by, rule, reason } => {
                EditOutcome::Overridden { by: by.map(Into::into), rule: rule.into(), reason }
            }
            core::EditOutcome::Refused { reason } => EditOutcome::Refused { reason },
        };
        Reconciliation { edit_id: r.edit_id, section: r.section, field: r.field.map(Into::into), outcome }
    }
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MergeReport {
    /// Changes that were new here.
    pub new_changes: u64,
    /// Sections whose view changed.
    pub sections_changed: Vec<String>,
    /// Every local write not yet confirmed in the touched sections, and what became of it.
    pub reconciliation: Vec<Reconciliation>,
}

impl From<core::MergeReport> for MergeReport {
    fn from(m: core::MergeReport) -> Self {
        MergeReport {
            new_changes: m.new_changes as u64,
            sections_changed: m.sections_changed,
            reconciliation: m.reconciliation.into_iter().map(Into::into).collect(),
        }
    }
}
