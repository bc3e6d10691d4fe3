//! The replica's side of a sync round, without any I/O: build the request
//! from the outbox and the stored cursor, and commit a response — changes,
//! confirmations, refusals, cursor, roster and server time — in one
//! transaction, so a cut at any byte loses nothing and the next round goes on
//! from the last committed one.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::protocol::{PROTOCOL_VERSION, Refusal, SectionBatch, SyncRequest, SyncResponse};
use crate::replica::{MergeReport, Replica, ReplicaError, SectionChange};
use crate::store;
use crate::sync_client::SyncProblem;

/// What the app can see of sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Local changes not yet confirmed by the server.
    pub pending_changes: i64,
    /// Device wall-clock ms of the oldest of them.
    pub oldest_pending_ms: Option<i64>,
    /// Changes the server refused (kept locally, not re-sent).
    pub refused_changes: i64,
    /// Device wall-clock ms of the last successful round.
    pub last_success_ms: Option<i64>,
    /// The last round's error, cleared by a success.
    pub last_error: Option<String>,
    /// What that error needs, by kind.
    pub last_problem: Option<SyncProblem>,
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRound {
    /// The request.
    pub request: SyncRequest,
    /// Hashes of the changes uploaded, to confirm when the response arrives.
    pub sent: Vec<String>,
    /// Whether the outbox held more than the upload budget.
    pub more_to_send: bool,
}

impl Replica {
    /// Register a project to sync (idempotent).
    pub fn join_project(&mut self, project: &str) -> Result<(), ReplicaError> {
        self.conn.execute(
            "INSERT INTO sync_state (project, cursor, roster_version) VALUES (?1, '', 0) ON CONFLICT DO NOTHING",
            [project],
        )?;
        Ok(())
    }

    /// Projects this replica syncs.
    pub fn projects(&self) -> Result<Vec<String>, ReplicaError> {
        let mut stmt = self.conn.prepare_cached("SELECT project FROM sync_state ORDER BY project")?;
        Ok(stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
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
        let (cursor, roster_version): (String, i64) = self.conn.query_row(
            "SELECT cursor, roster_version FROM sync_state WHERE project = ?1",
            [project],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let outbox = store::outbox(&self.conn, Some(project), upload_budget)?;
        let total: usize = store::outbox(&self.conn, Some(project), usize::MAX)?.len();
        let mut by_section: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut sent = Vec::with_capacity(outbox.len());
        let more_to_send = total > outbox.len();
        for c in outbox {
            sent.push(c.hash);
            by_section.entry(c.section).or_default().push(c.bytes);
        }
        let upload = by_section.into_iter().map(|(section, changes)| SectionBatch { section, changes }).collect();
        let request = SyncRequest {
            protocol: PROTOCOL_VERSION,
            project: project.to_owned(),
            actor: self.actor(),
            cursor,
            roster_version: roster_version as u64,
            response_budget,
            upload,
        };
        Ok(PreparedRound { request, sent, more_to_send })
    }

    /// Commit a response in one transaction (the roster first, so the views
    /// the merge computes already use it).
    pub fn commit_round(
        &mut self,
        project: &str,
        sent: &[String],
        response: SyncResponse,
    ) -> Result<RoundReport, ReplicaError> {
        let roster_changed = response.roster.is_some();
        if let Some(r) = &response.roster {
            // Roster, config and their version together, and every view recomputed once.
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            store::set_roster(&tx, project, &r.members)?;
            store::set_config(&tx, project, &r.config)?;
            tx.execute(
                "UPDATE sync_state SET roster_version = ?2 WHERE project = ?1",
                params![project, r.version as i64],
            )?;
            self.revalidate_project(&tx, project)?;
            tx.commit()?;
        }
        self.observe_server_time(response.server_time_ms)?;
        let changes: Vec<SectionChange> = response
            .changes
            .iter()
            .flat_map(|b| {
                b.changes.iter().map(|bytes| SectionChange { section: b.section.clone(), bytes: bytes.clone() })
            })
            .collect();
        let confirmed = sent.to_vec();
        let cursor = response.cursor.clone();
        let now = crate::hlc::wall_clock_ms() as i64;
        let merge = self.merge_in_transaction(&changes, &response.documents, |tx: &Transaction<'_>| {
            store::confirm(tx, &confirmed)?;
            tx.execute(
                "UPDATE sync_state SET cursor = ?2, last_success_ms = ?3, last_error = NULL, last_problem = NULL
                 WHERE project = ?1",
                params![project, cursor, now],
            )?;
            Ok(())
        })?;
        Ok(RoundReport { merge, confirmed: confirmed.len(), more: response.more, roster_changed })
    }

    /// Mark changes the server refused, and the local changes that build on
    /// them, so the outbox stops sending them (they stay stored: nothing is
    /// lost). Returns how many changes were marked.
    pub fn mark_refused(&mut self, refusals: &[Refusal]) -> Result<usize, ReplicaError> {
        let mut refused: BTreeMap<String, String> = refusals
            .iter()
            .map(|r| (r.hash.clone(), r.rule.as_ref().map_or(r.reason.clone(), |rule| format!("{rule}: {}", r.reason))))
            .collect();
        for section in refusals.iter().map(|r| r.section.as_str()).collect::<std::collections::BTreeSet<_>>() {
            // Local changes are stored in causal order, so one pass finds every dependent.
            for c in store::outbox(&self.conn, None, usize::MAX)?.into_iter().filter(|c| c.section == section) {
                let change = automerge::Change::from_bytes(c.bytes).map_err(crate::document::DocumentError::from)?;
                if let Some(why) = change.deps().iter().find_map(|d| refused.get(&d.to_string()).cloned()) {
                    refused.entry(c.hash).or_insert(format!("depends on a refused change ({why})"));
                }
            }
        }
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let mut n = 0;
        for (hash, why) in &refused {
            n += tx.execute(
                "UPDATE changes SET refused = ?2 WHERE hash = ?1 AND local = 1 AND confirmed = 0",
                params![hash, why],
            )?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Forget where `project`'s feed was (and the roster version), so the next
    /// round starts over from an empty cursor: what the server sends again is
    /// deduplicated by hash. For a server that no longer knows the cursor.
    pub fn reset_cursor(&mut self, project: &str) -> Result<(), ReplicaError> {
        self.join_project(project)?;
        self.conn.execute("UPDATE sync_state SET cursor = '', roster_version = 0 WHERE project = ?1", [project])?;
        Ok(())
    }

    /// Remember why a round failed, for the status the app shows.
    pub fn record_sync_error(&mut self, project: &str, error: &str, problem: SyncProblem) -> Result<(), ReplicaError> {
        self.join_project(project)?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE sync_state SET last_error = ?2, last_problem = ?3 WHERE project = ?1",
            params![project, error, problem.as_str()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The sync status across projects.
    pub fn sync_status(&self) -> Result<SyncStatus, ReplicaError> {
        let (pending_changes, oldest_pending_ms) = self.outbox_stats()?;
        let refused_changes: i64 =
            self.conn.query_row("SELECT count(*) FROM changes WHERE refused IS NOT NULL", [], |r| r.get(0))?;
        let last_success_ms: Option<i64> =
            self.conn.query_row("SELECT max(last_success_ms) FROM sync_state", [], |r| r.get(0))?;
        let (last_error, last_problem): (Option<String>, Option<String>) = self
            .conn
            .query_row(
                "SELECT last_error, last_problem FROM sync_state WHERE last_error IS NOT NULL LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((None, None));
        let last_problem = last_problem.as_deref().and_then(SyncProblem::parse);
        Ok(SyncStatus {
            pending_changes,
            oldest_pending_ms,
            refused_changes,
            last_success_ms,
            last_error,
            last_problem,
        })
    }
}
