//! Reads: views and lists come from the materialized views (no document is
//! loaded); the audit, history, time travel and export read the document.

use std::collections::HashSet;

use automerge::{ChangeHash, ReadDoc};
use serde::{Deserialize, Serialize};

use crate::replica::{Replica, ReplicaError};
use crate::rules::conflict::ConflictRecord;
use crate::rules::validate::validate;
use crate::rules::view::{AuditEntry, SectionView};
use crate::store::{self, SectionPage, SectionQuery, SectionSummary};

/// One change of a section's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Hex change hash.
    pub hash: String,
    /// Hex actor id.
    pub actor: String,
    /// HLC physical time of the change, ms.
    pub time_ms: i64,
    /// What the change was about.
    pub message: Option<String>,
    /// Hex hashes of the changes it builds on.
    pub deps: Vec<String>,
}

/// A past point of a section's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PastPoint {
    /// As it was once the changes with these hashes had been made.
    Heads(Vec<String>),
    /// As it was at this HLC time (ms): every change stamped at or before it
    /// whose dependencies were too.
    Time(u64),
}

impl Replica {
    /// The validated view of a section (from the materialized view: no document is loaded).
    pub fn section(&self, id: &str) -> Result<SectionView, ReplicaError> {
        store::view(&self.conn, id)?.ok_or_else(|| ReplicaError::UnknownSection(id.to_owned()))
    }

    /// Sections ordered by id, `limit` at a time after the id `after`.
    pub fn list_sections(
        &self,
        project: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SectionSummary>, ReplicaError> {
        Ok(store::list_sections(&self.conn, project, after, limit)?)
    }

    /// A filtered, ordered page of sections, each with its conflict count and
    /// whether it has unsynced edits (from the materialized views: no
    /// document is loaded). Follow it live by re-reading it when the change
    /// feed names sections (`ReplicaChange::sections`).
    pub fn query_sections(&self, query: &SectionQuery) -> Result<SectionPage, ReplicaError> {
        Ok(store::query_sections(&self.conn, query)?)
    }

    /// Conflict records, of one section or all.
    pub fn conflicts(&self, section: Option<&str>) -> Result<Vec<ConflictRecord>, ReplicaError> {
        Ok(store::conflicts(&self.conn, section)?)
    }

    /// A section's audit trail: every write and what the rules made of it.
    pub fn audit(&mut self, section: &str) -> Result<Vec<AuditEntry>, ReplicaError> {
        let mut input = self.docs.get(&self.conn, &self.actor, section)?.input();
        input.received = store::receipts(&self.conn, section)?;
        let roster = store::roster(&self.conn, &input.project)?;
        let config = store::config(&self.conn, &input.project)?;
        Ok(validate(&input, &roster, &config).audit(&input, &roster))
    }

    /// A section's changes in causal order.
    pub fn history(&mut self, section: &str) -> Result<Vec<HistoryEntry>, ReplicaError> {
        let doc = self.docs.get(&self.conn, &self.actor, section)?;
        Ok(doc
            .automerge()
            .get_changes(&[])
            .iter()
            .map(|c| HistoryEntry {
                hash: c.hash().to_string(),
                actor: c.actor_id().to_hex_string(),
                time_ms: c.timestamp(),
                message: c.message().map(str::to_owned),
                deps: c.deps().iter().map(ToString::to_string).collect(),
            })
            .collect())
    }

    /// A section's validated view as it was at a past point (time travel),
    /// judged by today's roster and config.
    pub fn view_at(&mut self, section: &str, at: &PastPoint) -> Result<SectionView, ReplicaError> {
        let doc = self.docs.get(&self.conn, &self.actor, section)?;
        let heads: Vec<ChangeHash> = match at {
            PastPoint::Heads(hs) => hs
                .iter()
                .map(|h| h.parse().map_err(|_| ReplicaError::InvalidInput(format!("`{h}` is not a change hash"))))
                .collect::<Result<_, _>>()?,
            PastPoint::Time(ms) => {
                let mut kept: HashSet<ChangeHash> = HashSet::new();
                for c in doc.automerge().get_changes(&[]) {
                    if c.timestamp() as u64 <= *ms && c.deps().iter().all(|d| kept.contains(d)) {
                        kept.insert(c.hash());
                    }
                }
                let deps: HashSet<ChangeHash> = kept
                    .iter()
                    .filter_map(|h| doc.automerge().get_change_by_hash(h))
                    .flat_map(|c| c.deps().to_vec())
                    .collect();
                kept.into_iter().filter(|h| !deps.contains(h)).collect()
            }
        };
        if heads.is_empty() {
            return Err(ReplicaError::InvalidInput("the section did not exist yet at that point".into()));
        }
        let past = doc.at(&heads)?;
        Ok(self.validate(&self.input_of(&past)?)?.view)
    }

    /// The section's whole Automerge document (loadable by any Automerge implementation).
    pub fn export(&mut self, section: &str) -> Result<Vec<u8>, ReplicaError> {
        Ok(self.docs.get(&self.conn, &self.actor, section)?.save())
    }

    /// A section's changes since `since` (hex heads; empty: all), raw.
    pub fn changes_of(&mut self, section: &str, since: &[String]) -> Result<Vec<Vec<u8>>, ReplicaError> {
        let heads: Vec<ChangeHash> = since.iter().filter_map(|h| h.parse().ok()).collect();
        let doc = self.docs.get(&self.conn, &self.actor, section)?;
        Ok(doc.changes_since(&heads).into_iter().map(|c| c.raw_bytes().to_vec()).collect())
    }
}
