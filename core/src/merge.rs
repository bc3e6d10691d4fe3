//! Merging changes from elsewhere: the sync engine's entry point.
//!
//! Every section touched is revalidated and stored with its changes in one
//! transaction. Sections go through in chunks, and each chunk phase by phase
//! (read the stored documents, apply the changes, read the documents for the
//! rules, validate and store) rather than one section start to end: each
//! phase keeps one library's code and data hot in the CPU's caches, which made
//! the 1,000-section merge about a fifth faster (BENCHMARKS.md). A chunk is as
//! many documents as the replica caches, so memory stays bounded however
//! large the batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{Change, ChangeHash, ReadDoc};
use rusqlite::{Transaction, TransactionBehavior};

use crate::conflict::{Candidate, Rule};
use crate::document::{DocumentError, SectionDoc, SectionInput, hash_hex};
use crate::edit::{Edit, EditId, Field};
use crate::hlc::wall_clock_ms;
use crate::project::{ProjectConfig, Roster};
use crate::protocol::SectionDocument;
use crate::replica::{DOC_CACHE, EditOutcome, MergeReport, Reconciliation, Replica, ReplicaError, SectionChange};
use crate::rules::{Validated, validate};
use crate::store;
use crate::view::Decision;

/// What arrived for one section.
enum Arrival<'a> {
    /// Changes (encoded as they came, or from a whole document of a section we have).
    Changes { raw: Vec<&'a [u8]>, parsed: Vec<Change> },
    /// A whole document of a section this store lacks, stored as it comes.
    Whole(&'a [u8]),
}

/// One section on its way through the phases.
struct Merging<'a> {
    section: &'a str,
    doc: SectionDoc,
    before: Vec<ChangeHash>,
    whole: Option<&'a [u8]>,
    /// Changes the document lacked, to store as loose rows.
    rows: Vec<(String, Vec<u8>)>,
    /// `None` while only changes whose dependencies have not arrived are known.
    input: Option<SectionInput>,
}

impl Replica {
    /// Merge changes from elsewhere. The report says what became of our
    /// unconfirmed writes.
    pub fn apply_changes(&mut self, changes: &[SectionChange]) -> Result<MergeReport, ReplicaError> {
        self.merge_in_transaction(changes, &[], |_| Ok(()))
    }

    /// Merge `changes` and whole `documents` (for sections this store lacks),
    /// then run `also` in the same transaction: the sync client commits its
    /// cursor and confirmations there, so a cut at any point loses nothing.
    pub(crate) fn merge_in_transaction(
        &mut self,
        changes: &[SectionChange],
        documents: &[SectionDocument],
        also: impl FnOnce(&Transaction<'_>) -> Result<(), ReplicaError>,
    ) -> Result<MergeReport, ReplicaError> {
        let mut arrivals: BTreeMap<&str, Arrival<'_>> = BTreeMap::new();
        for c in changes {
            let entry = arrivals.entry(c.section.as_str()).or_insert(Arrival::Changes { raw: vec![], parsed: vec![] });
            if let Arrival::Changes { raw, .. } = entry {
                raw.push(&c.bytes);
            }
        }
        // For sections we have, a whole document's changes merge like any others.
        for d in documents {
            match arrivals.get_mut(d.section.as_str()) {
                Some(Arrival::Changes { parsed, .. }) => {
                    parsed.extend(SectionDoc::load(&d.document)?.changes_since(&[]))
                }
                Some(Arrival::Whole(_)) => {}
                None if store::view(&self.conn, &d.section)?.is_some() => {
                    let parsed = SectionDoc::load(&d.document)?.changes_since(&[]);
                    arrivals.insert(&d.section, Arrival::Changes { raw: vec![], parsed });
                }
                None => {
                    arrivals.insert(&d.section, Arrival::Whole(&d.document));
                }
            }
        }
        let mut report = MergeReport::default();
        let now = wall_clock_ms();
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let local_edits = store::local_edits(&tx)?;
        let me = self.actor();
        let mut rules: HashMap<String, (Roster, ProjectConfig)> = HashMap::new();
        let mut last_chunk = Vec::new();
        let mut earlier_chunks = Vec::new();
        let mut arrivals = arrivals.into_iter().peekable();
        while arrivals.peek().is_some() {
            let chunk: Vec<_> = arrivals.by_ref().take(DOC_CACHE).collect();
            let mut merging = self.open_documents(&tx, chunk, &mut report)?;
            for m in &mut merging {
                // No heads: only changes whose dependencies have not arrived yet.
                m.input = (!m.doc.automerge().get_heads().is_empty()).then(|| m.doc.input());
            }
            for m in &merging {
                for (hash, bytes) in &m.rows {
                    store::put_change(&tx, m.section, hash, bytes, false, now as i64)?;
                }
                let Some(input) = &m.input else { continue };
                if !rules.contains_key(&input.project) {
                    let r = (store::roster(&tx, &input.project)?, store::config(&tx, &input.project)?);
                    rules.insert(input.project.clone(), r);
                }
                let (roster, config) = &rules[&input.project];
                for e in &input.edits {
                    self.clock.observe(&e.hlc, now);
                }
                let validated = validate(input, roster, config);
                if m.doc.heads() != m.before {
                    report.sections_changed.push(m.section.to_owned());
                }
                store::put_view(&tx, &validated.view)?;
                if let Some(bytes) = m.whole {
                    store::set_snapshot(&tx, m.section, bytes, &validated.view.heads)?;
                }
                store::replace_conflicts(&tx, m.section, &validated.conflicts)?;
                if let Some(mine) = local_edits.get(m.section) {
                    report.reconciliation.extend(reconcile(m.section, mine, &input.edits, &validated, roster, &me));
                }
            }
            earlier_chunks.extend(std::mem::replace(&mut last_chunk, merging).into_iter().map(|m| m.section));
        }
        also(&tx)?;
        self.save_clock(&tx)?;
        tx.commit()?;
        // The last chunk's documents stay cached; any cached copy of an earlier
        // chunk's section is now older than the store's and must go.
        for section in earlier_chunks {
            self.uncache(section);
        }
        for m in last_chunk {
            self.cache(m.section, m.doc);
        }
        Ok(report)
    }

    /// The documents of a chunk with their changes applied: stored ones read
    /// from SQLite first, then all loaded and merged by Automerge.
    fn open_documents<'a>(
        &self,
        tx: &Transaction<'_>,
        chunk: Vec<(&'a str, Arrival<'a>)>,
        report: &mut MergeReport,
    ) -> Result<Vec<Merging<'a>>, ReplicaError> {
        let unloaded: Vec<&str> = chunk
            .iter()
            .filter(|(section, arrival)| {
                matches!(arrival, Arrival::Changes { .. }) && !self.docs.contains_key(*section)
            })
            .map(|(section, _)| *section)
            .collect();
        let mut stored = store::load_docs(tx, &unloaded)?;
        let mut merging = Vec::with_capacity(chunk.len());
        for (section, arrival) in chunk {
            let (raw, parsed) = match arrival {
                Arrival::Whole(bytes) => {
                    let mut doc = SectionDoc::load(bytes)?;
                    doc.set_actor(self.actor.clone());
                    report.new_changes += doc.automerge().get_changes(&[]).len();
                    merging.push(Merging {
                        section,
                        doc,
                        before: vec![],
                        whole: Some(bytes),
                        rows: vec![],
                        input: None,
                    });
                    continue;
                }
                Arrival::Changes { raw, parsed } => (raw, parsed),
            };
            let (mut doc, fresh) = match (self.docs.get(section), stored.remove(section)) {
                (Some(cached), _) => (cached.clone(), false),
                // Only loose changes stored (their dependencies had not arrived): still new here.
                (None, Some((project, snapshot, loose))) => {
                    (SectionDoc::from_parts(snapshot.as_deref(), &loose)?, project.is_empty())
                }
                (None, None) => (SectionDoc::empty(self.actor.clone()), true),
            };
            doc.set_actor(self.actor.clone());
            let mut batch = Vec::with_capacity(raw.len() + parsed.len());
            for bytes in raw {
                batch.push(Change::from_bytes(bytes.to_vec()).map_err(DocumentError::from)?);
            }
            batch.extend(parsed);
            // Store only what the document lacks: a change sent again after it
            // was folded into the snapshot must not come back as a loose row.
            let hashes: Vec<ChangeHash> = batch.iter().map(Change::hash).collect();
            let lacking: HashSet<ChangeHash> = doc.automerge().get_missing_deps(&hashes).into_iter().collect();
            let rows = batch
                .iter()
                .filter(|c| lacking.contains(&c.hash()))
                .map(|c| (hash_hex(&c.hash()), c.raw_bytes().to_vec()))
                .collect();
            let before = doc.heads();
            report.new_changes += doc.apply_changes(batch)?;
            if fresh && !doc.automerge().get_heads().is_empty() {
                doc.check_section()?;
            }
            merging.push(Merging { section, doc, before, whole: None, rows, input: None });
        }
        Ok(merging)
    }
}

/// What became of each unconfirmed local write (`mine`) of `section`.
fn reconcile(
    section: &str,
    mine: &[EditId],
    edits: &[Edit],
    validated: &Validated,
    roster: &Roster,
    me: &str,
) -> Vec<Reconciliation> {
    let by_id: HashMap<&str, &Edit> = edits.iter().map(|e| (e.id.as_str(), e)).collect();
    let candidate = |id: &Option<EditId>| id.as_deref().and_then(|i| by_id.get(i)).map(|e| Candidate::of(e, roster));
    mine.iter()
        .map(|edit_id| {
            let field = by_id.get(edit_id.as_str()).and_then(|e| e.value.field());
            let outcome = match validated.decisions.get(edit_id) {
                Some(Decision::Rejected { rule, winner, reason }) => {
                    EditOutcome::Overridden { by: candidate(winner), rule: *rule, reason: reason.clone() }
                }
                Some(Decision::Superseded { by }) if by_id.get(by.as_str()).is_some_and(|e| e.author != me) => {
                    let rule = match field {
                        Some(Field::Progress) => Rule::ProgressMaxWins,
                        Some(Field::Location) => Rule::LocationLastWriterWins,
                        Some(Field::State) => Rule::TransitionPrecedence,
                        _ => Rule::LastWriterWins,
                    };
                    let by = candidate(&Some(by.clone()));
                    let reason = format!("replaced by {}", by.as_ref().map_or("a later write", |c| c.value.as_str()));
                    EditOutcome::Overridden { by, rule, reason }
                }
                _ => EditOutcome::Stands,
            };
            Reconciliation { edit_id: edit_id.clone(), section: section.to_owned(), field, outcome }
        })
        .collect()
}
