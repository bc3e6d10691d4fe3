//! The replica's side of a sync round, without any I/O: build the request
//! from the outbox and the stored cursor, and commit a response — changes,
//! confirmations, refusals, cursor, roster and server time — in one
//! transaction, so a cut at any byte loses nothing and the next round goes on
//! from the last committed one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::coverage::Scope;
use crate::domain::edit::Field;
use crate::domain::hlc::DeviceTime;
use crate::replica::feed::ReplicaChange;
use crate::replica::{Replica, ReplicaError, ScopeSettlement};
use crate::store::{self, OutboxChange, ScopeMove};
use crate::sync::merge::{EditOutcome, MergeReport, Reconciliation, RoundSettlement, SectionChange};
use crate::sync::protocol::{PROTOCOL_VERSION, Refusal, SectionBatch, SyncRequest, SyncResponse};
use crate::sync::status::{RECENT_ROUNDS, RoundFigures, SyncProblem, SyncStatus};

/// The meta row that keeps [`SyncStatus::recent_rounds`] (figures, not data:
/// kept apart from the round's own transaction).
const RECENT_ROUNDS_KEY: &str = "recent_rounds";

/// What one committed round did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// Merge of what the server sent, with the reconciliation report.
    pub merge: MergeReport,
    /// Our changes the server confirmed.
    pub confirmed: usize,
    /// Whether the server has more for us (run another round).
    pub more: bool,
    /// Whether a new roster arrived.
    pub roster_changed: bool,
}

/// A request ready to send, and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRound {
    /// The request.
    pub request: SyncRequest,
    /// Hashes of the changes uploaded, in the request's order (the order of
    /// the response's receipt times), to confirm when the response arrives.
    pub sent: Vec<String>,
    /// Whether the outbox held more than the upload budget.
    pub more_to_send: bool,
}

impl Replica {
    /// Register a project to sync (idempotent).
    pub fn join_project(&mut self, project: &str) -> Result<(), ReplicaError> {
        let tx = self.begin()?;
        store::join_project(&tx, project)?;
        tx.commit()?;
        Ok(())
    }

    /// Projects this replica syncs.
    pub fn projects(&self) -> Result<Vec<String>, ReplicaError> {
        Ok(store::projects(&self.conn)?)
    }

    /// Local changes the server has not confirmed, oldest first, up to about `max_bytes`.
    pub fn outbox(&self, max_bytes: usize) -> Result<Vec<OutboxChange>, ReplicaError> {
        Ok(store::outbox(&self.conn, None, max_bytes)?)
    }

    /// (pending changes, oldest pending change's wall-clock ms).
    pub fn outbox_stats(&self) -> Result<(i64, Option<i64>), ReplicaError> {
        Ok(store::outbox_stats(&self.conn)?)
    }

    /// Mark local changes as confirmed by the server.
    pub fn confirm(&mut self, hashes: &[String]) -> Result<(), ReplicaError> {
        let mut changed = ReplicaChange::status();
        changed.unsynced.extend(store::outbox_sections(&self.conn, hashes)?);
        let tx = self.begin()?;
        store::confirm(&tx, hashes)?;
        tx.commit()?;
        self.feed.publish(changed);
        Ok(())
    }

    /// The request for the next round of `project`: the unconfirmed changes
    /// of its sections (up to about `upload_budget` bytes) and the cursor.
    pub fn prepare_round(
        &mut self,
        project: &str,
        upload_budget: usize,
        response_budget: u32,
    ) -> Result<PreparedRound, ReplicaError> {
        self.join_project(project)?;
        self.hold_back_dependents_of_refused(project)?;
        let (cursor, roster_version) = store::cursor(&self.conn, project)?;
        let mut outbox = store::outbox(&self.conn, Some(project), upload_budget)?;
        outbox.truncate(crate::sync::protocol::MAX_CHANGES_PER_REQUEST);
        let more_to_send = store::outbox_count(&self.conn, Some(project))? > outbox.len();
        let mut by_section: BTreeMap<String, Vec<OutboxChange>> = BTreeMap::new();
        for c in outbox {
            by_section.entry(c.section.clone()).or_default().push(c);
        }
        let sent = by_section.values().flatten().map(|c| c.hash.clone()).collect();
        let upload = by_section
            .into_iter()
            .map(|(section, changes)| SectionBatch::upload(section, changes.into_iter().map(|c| c.bytes).collect()))
            .collect();
        let (scope, held) = self.scope_to_send(project, &cursor)?;
        let request = SyncRequest {
            protocol: PROTOCOL_VERSION,
            project: project.to_owned(),
            actor: self.actor(),
            cursor,
            roster_version,
            response_budget,
            upload,
            scope,
            held,
        };
        Ok(PreparedRound { request, sent, more_to_send })
    }

    /// The scope a round sends, and the one its cursor was earned under when
    /// they differ. A change of scope (a bootstrap too) is kept as it is sent
    /// until the server has finished it, whatever the app asks meanwhile.
    fn scope_to_send(&mut self, project: &str, cursor: &str) -> Result<(Scope, Option<Scope>), ReplicaError> {
        let state = store::scope_state(&self.conn, project)?;
        let moving = match state.moving {
            Some(moving) => moving,
            None if cursor.is_empty() => ScopeMove { scope: state.wanted, held: None },
            None if state.wanted != state.held => ScopeMove { scope: state.wanted, held: Some(state.held) },
            None => return Ok((state.held, None)),
        };
        let tx = self.begin()?;
        store::set_scope_move(&tx, project, Some(&moving))?;
        tx.commit()?;
        Ok((moving.scope, moving.held))
    }

    /// Commit a response in one transaction: the roster, config and their
    /// version first (so the views the merge computes already use them), the
    /// server's time, the changes and documents, the confirmations of what
    /// was `sent`, and the cursor. A cut or a crash at any point leaves the
    /// previous round's state whole.
    pub fn commit_round(
        &mut self,
        project: &str,
        sent: &[String],
        response: SyncResponse,
    ) -> Result<RoundReport, ReplicaError> {
        self.commit_round_at(project, sent, response, self.now())
    }

    /// [`Self::commit_round`] with the device's clocks when the answer came
    /// (the replica's clock anchors to the server's time with them).
    pub fn commit_round_at(
        &mut self,
        project: &str,
        sent: &[String],
        response: SyncResponse,
        now: DeviceTime,
    ) -> Result<RoundReport, ReplicaError> {
        // A list of receipt times is empty (none known) or one per change.
        if !response.upload_received.is_empty() && response.upload_received.len() != sent.len() {
            return Err(ReplicaError::InvalidInput(format!(
                "the server's response gives {} receipt times for the {} changes uploaded",
                response.upload_received.len(),
                sent.len()
            )));
        }
        let mut changes: Vec<SectionChange> = Vec::new();
        let mut received: Vec<u64> = Vec::new();
        for b in &response.changes {
            if !b.received.is_empty() && b.received.len() != b.changes.len() {
                return Err(ReplicaError::InvalidInput(format!(
                    "the server sent {} changes of section {} with {} receipt times",
                    b.changes.len(),
                    b.section,
                    b.received.len()
                )));
            }
            let times = b.received.iter().copied().chain(std::iter::repeat(0));
            for (bytes, ms) in b.changes.iter().zip(times) {
                changes.push(SectionChange { section: b.section.clone(), bytes: bytes.clone() });
                received.push(ms);
            }
        }
        let settlement = RoundSettlement {
            project,
            roster: response.roster.as_ref(),
            server_time_ms: response.server_time_ms,
            confirmed: sent,
            confirmed_received: &response.upload_received,
            cursor: &response.cursor,
            scope: ScopeSettlement {
                evicted: &response.evicted,
                keep_only: response.keep_only.as_ref().map(|k| k.sections.as_slice()),
                arrived: response
                    .changes
                    .iter()
                    .map(|b| b.section.as_str())
                    .chain(response.documents.iter().map(|d| d.section.as_str()))
                    .collect(),
                more: response.more,
            },
        };
        let merge = self.merge(&changes, &received, &response.documents, Some(settlement), now)?;
        Ok(RoundReport { merge, confirmed: sent.len(), more: response.more, roster_changed: response.roster.is_some() })
    }

    /// Mark changes the server refused, and the local changes that build on
    /// them, so the outbox stops sending them (they stay stored: nothing is
    /// lost). Returns how many changes were marked, and the local edits they
    /// carry, each settled as refused with the server's reason.
    pub fn mark_refused(&mut self, refusals: &[Refusal]) -> Result<(usize, Vec<Reconciliation>), ReplicaError> {
        let mut refused: BTreeMap<String, String> = refusals
            .iter()
            .map(|r| (r.hash.clone(), r.rule.as_ref().map_or(r.reason.clone(), |rule| format!("{rule}: {}", r.reason))))
            .collect();
        for section in refusals.iter().map(|r| r.section.as_str()).collect::<std::collections::BTreeSet<_>>() {
            // Local changes are stored in causal order, so one pass finds every dependent.
            for c in store::outbox(&self.conn, None, usize::MAX)?.into_iter().filter(|c| c.section == section) {
                let change =
                    automerge::Change::from_bytes(c.bytes).map_err(crate::domain::document::DocumentError::from)?;
                if let Some(why) = change.deps().iter().find_map(|d| refused.get(&d.to_string()).cloned()) {
                    refused.entry(c.hash).or_insert(format!("depends on a refused change ({why})"));
                }
            }
        }
        let hashes: Vec<String> = refused.keys().cloned().collect();
        let mut changed = ReplicaChange::status();
        changed.unsynced.extend(store::outbox_sections(&self.conn, &hashes)?);
        let tx = self.begin()?;
        let mut n = 0;
        for (hash, why) in &refused {
            n += store::mark_refused(&tx, hash, why)?;
        }
        let settled = store::settle_refused_edits(&tx, &hashes)?
            .into_iter()
            .map(|(edit_id, section, field, hash)| Reconciliation {
                edit_id,
                section,
                field: Field::parse(&field),
                outcome: EditOutcome::Refused { reason: refused.get(&hash).cloned().unwrap_or_default() },
            })
            .collect();
        tx.commit()?;
        self.feed.publish(changed);
        Ok((n, settled))
    }

    /// A local change built on a change the server refused can never be
    /// stored there (its dependency is missing): mark it refused too, with
    /// why, before it is sent, so that one refusal never stops the device
    /// syncing. It stays stored here, like the refused change.
    fn hold_back_dependents_of_refused(&mut self, project: &str) -> Result<(), ReplicaError> {
        let mut refused = store::refused_hashes(&self.conn, project)?;
        if refused.is_empty() {
            return Ok(());
        }
        let mut dependents = Vec::new();
        // Local changes are stored in causal order: one pass finds every dependent.
        for c in store::outbox(&self.conn, Some(project), usize::MAX)? {
            let change =
                automerge::Change::from_bytes(c.bytes).map_err(crate::domain::document::DocumentError::from)?;
            if let Some(dep) = change.deps().iter().map(ToString::to_string).find(|d| refused.contains(d)) {
                refused.insert(c.hash.clone());
                dependents.push((c.hash, format!("depends on the refused change {dep}")));
            }
        }
        let hashes: Vec<String> = dependents.iter().map(|(hash, _)| hash.clone()).collect();
        let mut changed = ReplicaChange::status();
        changed.unsynced.extend(store::outbox_sections(&self.conn, &hashes)?);
        let tx = self.begin()?;
        for (hash, why) in &dependents {
            store::mark_refused(&tx, hash, why)?;
        }
        tx.commit()?;
        self.feed.publish(changed);
        Ok(())
    }

    /// Forget where `project`'s feed was (and the roster version), so the next
    /// round starts over from an empty cursor: what the server sends again is
    /// deduplicated by hash. For a server that no longer knows the cursor.
    pub fn reset_cursor(&mut self, project: &str) -> Result<(), ReplicaError> {
        let tx = self.begin()?;
        store::join_project(&tx, project)?;
        store::reset_cursor(&tx, project)?;
        store::set_scope_move(&tx, project, None)?;
        tx.commit()?;
        Ok(())
    }

    /// Remember why a round failed, for the status the app shows.
    pub fn record_sync_error(&mut self, project: &str, error: &str, problem: SyncProblem) -> Result<(), ReplicaError> {
        let tx = self.begin()?;
        store::join_project(&tx, project)?;
        store::set_sync_error(&tx, project, error, problem.as_str())?;
        tx.commit()?;
        self.feed.publish(ReplicaChange::status());
        Ok(())
    }

    /// Remember a round trip's figures (the last [`RECENT_ROUNDS`] are kept).
    pub fn record_round(&mut self, figures: RoundFigures) -> Result<(), ReplicaError> {
        let mut rounds = self.recent_rounds()?;
        rounds.push(figures);
        let excess = rounds.len().saturating_sub(RECENT_ROUNDS);
        rounds.drain(..excess);
        let tx = self.begin()?;
        store::set_meta(&tx, RECENT_ROUNDS_KEY, &serde_json::to_string(&rounds).expect("plain figures"))?;
        tx.commit()?;
        self.feed.publish(ReplicaChange::status());
        Ok(())
    }

    fn recent_rounds(&self) -> Result<Vec<RoundFigures>, ReplicaError> {
        // Figures only: a value this version cannot read starts the list over.
        Ok(store::meta(&self.conn, RECENT_ROUNDS_KEY)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// The sync status across projects.
    pub fn sync_status(&self) -> Result<SyncStatus, ReplicaError> {
        let (pending_changes, oldest_pending_ms) = store::outbox_stats(&self.conn)?;
        let row = store::sync_summary(&self.conn)?;
        Ok(SyncStatus {
            pending_changes,
            oldest_pending_ms,
            refused_changes: row.refused_changes,
            last_success_ms: row.last_success_ms,
            last_error: row.last_error,
            last_problem: row.last_problem.as_deref().and_then(SyncProblem::parse),
            recent_rounds: self.recent_rounds()?,
        })
    }
}
