//! The replica: the one API the phone app, the CLI, the server and the
//! bindings call. It keeps section documents in the local store, refuses
//! local writes that break a rule before storing anything, and after every
//! write or merge stores the validated view and conflict records in the same
//! transaction as the changes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use automerge::{ActorId, Change, ChangeHash, ReadDoc};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpointer;
use crate::conflict::{Candidate, ConflictRecord, Rule};
use crate::document::{DocumentError, SectionDoc};
use crate::edit::{Edit, EditId, EditValue, Field};
use crate::encryption::StoreKey;
use crate::hlc::{HlcClock, wall_clock_ms};
use crate::project::{Member, ProjectConfig, Role, Roster};
use crate::route::{GeoPoint, InvalidPoint};
use crate::rules::{Validated, validate};
use crate::schema::{self, Durability, OpenError};
use crate::state_machine::ConstructionState;
use crate::store::{self, OutboxChange, SectionSummary, StoreError};
use crate::view::{AuditEntry, Decision, SectionView};

/// How many parsed documents a replica keeps in memory.
pub(crate) const DOC_CACHE: usize = 32;

/// Errors from replica calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// A rule refused the write; nothing was stored.
    #[error("refused by rule {}: {reason}", rule.as_str())]
    Refused {
        /// The rule.
        rule: Rule,
        /// Why, in words for the technician.
        reason: String,
    },
    /// No such section in this store.
    #[error("no section `{0}` in this store; list sections to see the ids")]
    UnknownSection(String),
    /// The input makes no sense.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The local database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document could not be read or written.
    #[error(transparent)]
    Document(#[from] DocumentError),
}

impl From<rusqlite::Error> for ReplicaError {
    fn from(e: rusqlite::Error) -> Self {
        ReplicaError::Store(StoreError::Sqlite(e))
    }
}

impl From<InvalidPoint> for ReplicaError {
    fn from(e: InvalidPoint) -> Self {
        ReplicaError::InvalidInput(e.to_string())
    }
}

/// How to open a replica.
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// The device this store belongs to; a store refuses to open as another.
    pub device: String,
    /// Durability of each edit.
    pub durability: Durability,
    /// Encrypt the store with this key (feature `encryption`); `None`: a plain SQLite file.
    pub encryption_key: Option<StoreKey>,
}

/// What a local write returns: its id and what the rules made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditReceipt {
    /// The write's id.
    pub edit_id: EditId,
    /// The section.
    pub section: String,
    /// Hex hash of the change that holds it.
    pub change_hash: String,
    /// Accepted, or quarantined for off-route points.
    pub decision: Decision,
}

/// What became of a local write not yet confirmed, after a merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
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
}

/// One line of the optimistic-reconciliation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// The local write.
    pub edit_id: EditId,
    /// Its section.
    pub section: String,
    /// Its field.
    pub field: Option<Field>,
    /// What became of it.
    pub outcome: EditOutcome,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    /// Changes that were new here.
    pub new_changes: usize,
    /// Sections whose view changed.
    pub sections_changed: Vec<String>,
    /// Every local write not yet confirmed in the touched sections.
    pub reconciliation: Vec<Reconciliation>,
}

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

/// A change as it travels: its section and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionChange {
    /// The section document it belongs to.
    pub section: String,
    /// Raw Automerge change bytes.
    pub bytes: Vec<u8>,
}

/// A replica of the sections this device works on.
pub struct Replica {
    // First, so that it stops (closing its connection) before `conn` closes
    // last and SQLite folds the WAL back into the file.
    _checkpoints: Checkpointer,
    pub(crate) conn: Connection,
    path: PathBuf,
    device: String,
    pub(crate) actor: ActorId,
    pub(crate) clock: HlcClock,
    pub(crate) docs: HashMap<String, SectionDoc>,
    lru: VecDeque<String>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("path", &self.path).field("device", &self.device).finish_non_exhaustive()
    }
}

impl Replica {
    /// Open (or create) the store at `path` for `options.device`. Only small
    /// metadata is read: no document is loaded until it is used.
    pub fn open(path: impl AsRef<Path>, options: ReplicaOptions) -> Result<Replica, OpenError> {
        let path = path.as_ref().to_owned();
        let key = options.encryption_key.as_ref();
        let mut conn = schema::open(&path, options.durability, key)?;
        let checkpoints = Checkpointer::start(&mut conn, &path, key.cloned()).map_err(OpenError::Checkpointer)?;
        let read = |conn: &Connection, k| {
            store::meta(conn, k).map_err(|e| match e {
                StoreError::Sqlite(s) => OpenError::Sqlite(s),
                StoreError::Json(j) => OpenError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(j))),
            })
        };
        let device = read(&conn, "device")?;
        let actor = match (device, read(&conn, "actor")?) {
            (Some(found), _) if found != options.device => {
                return Err(OpenError::OtherDevice { path, found, wanted: options.device });
            }
            (Some(_), Some(actor)) => ActorId::from(hex::decode(&actor).unwrap_or_default()),
            _ => {
                let actor = ActorId::from(hex::decode(new_id()).expect("new_id is hex"));
                let tx = Transaction::new(&mut conn, TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('device', ?1), ('actor', ?2)",
                    [&options.device, &actor.to_hex_string()],
                )?;
                tx.commit()?;
                actor
            }
        };
        let num = |k| -> Result<i64, OpenError> { Ok(read(&conn, k)?.and_then(|v| v.parse().ok()).unwrap_or(0)) };
        let clock = HlcClock::new(
            actor.to_hex_string(),
            num("hlc_ms")? as u64,
            num("hlc_counter")? as u32,
            num("server_offset_ms")?,
        );
        Ok(Replica {
            _checkpoints: checkpoints,
            conn,
            path,
            device: options.device,
            actor,
            clock,
            docs: HashMap::new(),
            lru: VecDeque::new(),
        })
    }

    /// The file this replica lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device this store belongs to.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Hex Automerge actor id this replica writes as (what the roster binds).
    pub fn actor(&self) -> String {
        self.actor.to_hex_string()
    }

    /// The underlying connection, for the sync engine's own tables.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Replace a project's roster (delivered by the server).
    pub fn set_roster(&mut self, project: &str, members: &[Member]) -> Result<(), ReplicaError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        store::set_roster(&tx, project, members)?;
        self.revalidate_project(&tx, project)?;
        tx.commit()?;
        Ok(())
    }

    /// Replace a project's configuration (delivered by the server).
    pub fn set_project_config(&mut self, project: &str, config: &ProjectConfig) -> Result<(), ReplicaError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        store::set_config(&tx, project, config)?;
        self.revalidate_project(&tx, project)?;
        tx.commit()?;
        Ok(())
    }

    /// A project's roster.
    pub fn roster(&self, project: &str) -> Result<Roster, ReplicaError> {
        Ok(store::roster(&self.conn, project)?)
    }

    /// Our own role in `project`, per the roster.
    pub fn role_in(&self, project: &str) -> Result<Option<Role>, ReplicaError> {
        Ok(self.roster(project)?.member(&self.actor()).map(|m| m.role))
    }

    /// Learn the server's time (at each sync) so stamps follow it.
    pub fn observe_server_time(&mut self, server_ms: u64) -> Result<(), ReplicaError> {
        self.clock.anchor_to_server(server_ms, wall_clock_ms());
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        self.save_clock(&tx)?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn save_clock(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let (ms, counter, offset) = self.clock.state();
        store::set_meta(tx, "hlc_ms", &ms.to_string())?;
        store::set_meta(tx, "hlc_counter", &counter.to_string())?;
        store::set_meta(tx, "server_offset_ms", &offset.to_string())
    }

    /// Forget a cached document (it is older than what the store now holds).
    pub(crate) fn uncache(&mut self, id: &str) {
        if self.docs.remove(id).is_some() {
            self.lru.retain(|cached| cached != id);
        }
    }

    pub(crate) fn cache(&mut self, id: &str, doc: SectionDoc) {
        if !self.docs.contains_key(id) {
            self.lru.push_back(id.to_owned());
            if self.lru.len() > DOC_CACHE
                && let Some(old) = self.lru.pop_front()
            {
                self.docs.remove(&old);
            }
        }
        self.docs.insert(id.to_owned(), doc);
    }

    fn doc(&self, id: &str) -> Result<SectionDoc, ReplicaError> {
        if let Some(d) = self.docs.get(id) {
            return Ok(d.clone());
        }
        let Some((_, snapshot, changes)) = store::load_doc(&self.conn, id)? else {
            return Err(ReplicaError::UnknownSection(id.to_owned()));
        };
        let mut doc = SectionDoc::from_parts(snapshot.as_deref(), &changes)?;
        doc.set_actor(self.actor.clone());
        Ok(doc)
    }

    fn validated(&self, doc: &SectionDoc) -> Result<Validated, ReplicaError> {
        let project = doc.project();
        let roster = store::roster(&self.conn, &project)?;
        let config = store::config(&self.conn, &project)?;
        Ok(validate(&doc.input(), &roster, &config))
    }

    /// Create a section (office only) with its name and planned route.
    pub fn create_section(&mut self, project: &str, name: &str, route: &[GeoPoint]) -> Result<String, ReplicaError> {
        let id = new_id();
        self.create_section_with_id(&id, project, name, route)?;
        Ok(id)
    }

    /// Create a section with a chosen id (for imports and tests).
    pub fn create_section_with_id(
        &mut self,
        id: &str,
        project: &str,
        name: &str,
        route: &[GeoPoint],
    ) -> Result<(), ReplicaError> {
        if id.is_empty() || project.is_empty() {
            return Err(ReplicaError::InvalidInput("a section needs an id and a project".into()));
        }
        if let Some(p) = route.iter().find(|p| !p.is_valid()) {
            GeoPoint::new(p.lat, p.lon)?;
        }
        if store::view(&self.conn, id)?.is_some() {
            return Err(ReplicaError::InvalidInput(format!("section `{id}` already exists")));
        }
        let role = self.role_in(project)?;
        if role != Some(Role::Office) {
            return Err(ReplicaError::Refused {
                rule: Rule::OfficeOnly,
                reason: format!(
                    "only office staff may create sections; this device is {}",
                    role.map_or("not in the project's roster", Role::as_str)
                ),
            });
        }
        let now = wall_clock_ms();
        let stamps = (self.clock.tick(now), self.clock.tick(now));
        let (mut doc, change) =
            SectionDoc::create(self.actor.clone(), id, project, (&stamps.0, &stamps.1), name, route)?;
        doc.set_actor(self.actor.clone());
        let edits = [(stamps.0.to_string(), Field::Name), (stamps.1.to_string(), Field::Route)];
        self.commit_local(doc, change, &edits)?;
        Ok(())
    }

    /// Record progress.
    pub fn record_progress(&mut self, section: &str, percent: i64) -> Result<EditReceipt, ReplicaError> {
        let state = self.section(section)?.state;
        self.write(section, EditValue::Progress { percent, at_state: state })
    }

    /// Move a section to `to`; blocking needs a reason.
    pub fn transition(
        &mut self,
        section: &str,
        to: ConstructionState,
        reason: Option<&str>,
    ) -> Result<EditReceipt, ReplicaError> {
        let from = self.section(section)?.state;
        self.write(section, EditValue::Transition { from, to, reason: reason.map(str::to_owned) })
    }

    /// Report the crew's position (an as-built point). Off-route points are
    /// stored and quarantined, not refused.
    pub fn report_location(&mut self, section: &str, point: GeoPoint) -> Result<EditReceipt, ReplicaError> {
        GeoPoint::new(point.lat, point.lon)?;
        self.write(section, EditValue::Location { point })
    }

    /// Accept a quarantined point (foreman or office).
    pub fn accept_point(&mut self, section: &str, point_edit: &str) -> Result<EditReceipt, ReplicaError> {
        self.write(section, EditValue::Accept { point_edit: point_edit.to_owned() })
    }

    /// Rename a section (office only).
    pub fn rename_section(&mut self, section: &str, name: &str) -> Result<EditReceipt, ReplicaError> {
        self.write(section, EditValue::Name { name: name.to_owned() })
    }

    /// Replace a section's planned route (office only).
    pub fn set_route(&mut self, section: &str, route: &[GeoPoint]) -> Result<EditReceipt, ReplicaError> {
        if let Some(p) = route.iter().find(|p| !p.is_valid()) {
            GeoPoint::new(p.lat, p.lon)?;
        }
        self.write(section, EditValue::Route { points: route.to_vec() })
    }

    /// Replace `delete` characters at `pos` (in characters) of the notes with `insert`.
    pub fn splice_notes(&mut self, section: &str, pos: usize, delete: usize, insert: &str) -> Result<(), ReplicaError> {
        let mut doc = self.doc(section)?;
        let hlc = self.clock.tick(wall_clock_ms());
        let change = doc.splice_notes(&hlc, pos, delete, insert)?;
        self.commit_local(doc, change, &[])?;
        Ok(())
    }

    /// Make the notes read `text` (stored as the smallest character diff).
    pub fn set_notes(&mut self, section: &str, text: &str) -> Result<(), ReplicaError> {
        let mut doc = self.doc(section)?;
        let hlc = self.clock.tick(wall_clock_ms());
        let change = doc.set_notes(&hlc, text)?;
        self.commit_local(doc, change, &[])?;
        Ok(())
    }

    /// Attach a photo reference; returns its id.
    pub fn add_photo(&mut self, section: &str, uri: &str, caption: Option<&str>) -> Result<String, ReplicaError> {
        if uri.trim().is_empty() {
            return Err(ReplicaError::InvalidInput("a photo needs a URI".into()));
        }
        let mut doc = self.doc(section)?;
        let hlc = self.clock.tick(wall_clock_ms());
        let id = new_id();
        let change = doc.add_photo(&hlc, &id, uri, caption)?;
        self.commit_local(doc, change, &[])?;
        Ok(id)
    }

    /// Check a domain write against the rules as if it were stored, refuse it
    /// if a rule would reject it, otherwise store it.
    fn write(&mut self, section: &str, value: EditValue) -> Result<EditReceipt, ReplicaError> {
        let field = value.field().expect("local writes have known fields");
        let mut doc = self.doc(section)?;
        let hlc = self.clock.tick(wall_clock_ms());
        let base = doc.latest_edit_of(field);
        let mut input = doc.input();
        let id = hlc.to_string();
        let prospective = Edit {
            id: id.clone(),
            hlc: hlc.clone(),
            author: self.actor(),
            base: base.clone(),
            change_hash: String::new(),
            value: value.clone(),
        };
        let at = input.edits.partition_point(|e| e.id < id);
        input.edits.insert(at, prospective);
        let roster = store::roster(&self.conn, &input.project)?;
        let config = store::config(&self.conn, &input.project)?;
        if let Some(Decision::Rejected { rule, reason, .. }) = validate(&input, &roster, &config).decisions.get(&id) {
            return Err(ReplicaError::Refused { rule: *rule, reason: reason.clone() });
        }
        let change = doc.write(&hlc, base.as_deref(), &value)?;
        let change_hash = change.hash().to_string();
        let decision = self.commit_local(doc, change, &[(id.clone(), field)])?;
        Ok(EditReceipt {
            edit_id: id.clone(),
            section: section.to_owned(),
            change_hash,
            decision: decision.get(&id).cloned().unwrap_or(Decision::Accepted),
        })
    }

    /// Store a local change with its view, conflicts, outbox entry and clock in one transaction.
    fn commit_local(
        &mut self,
        doc: SectionDoc,
        change: Change,
        edits: &[(EditId, Field)],
    ) -> Result<BTreeMap<EditId, Decision>, ReplicaError> {
        let validated = self.validated(&doc)?;
        let id = validated.view.id.clone();
        let hash = change.hash().to_string();
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        // Uncompressed: a sync batch deflates many changes together far better than
        // changes deflated one by one (Automerge compresses a change over 256 bytes).
        store::put_change(&tx, &id, &hash, change.raw_bytes(), true, wall_clock_ms() as i64)?;
        for (edit_id, field) in edits {
            store::put_local_edit(&tx, edit_id, &id, &hash, field.as_str())?;
        }
        store::put_view(&tx, &validated.view)?;
        store::replace_conflicts(&tx, &id, &validated.conflicts)?;
        self.save_clock(&tx)?;
        tx.commit()?;
        self.cache(&id, doc);
        Ok(validated.decisions)
    }

    /// Re-apply unsynced local changes recovered with [`crate::store::salvage`]
    /// from a database that was moved aside, and queue them for the server again.
    pub fn import_unsynced(&mut self, changes: &[OutboxChange]) -> Result<MergeReport, ReplicaError> {
        let batch: Vec<SectionChange> =
            changes.iter().map(|c| SectionChange { section: c.section.clone(), bytes: c.bytes.clone() }).collect();
        let report = self.apply_changes(&batch)?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        for c in changes {
            tx.execute(
                "UPDATE changes SET local = 1, confirmed = 0, created_ms = ?3 WHERE section = ?1 AND hash = ?2",
                rusqlite::params![c.section, c.hash, c.created_ms],
            )?;
        }
        tx.commit()?;
        Ok(report)
    }

    /// Recompute and store every section of a project (after a roster or config change).
    pub(crate) fn revalidate_project(&self, tx: &Transaction<'_>, project: &str) -> Result<(), ReplicaError> {
        let ids: Vec<String> = tx
            .prepare("SELECT id FROM sections WHERE project = ?1")?
            .query_map([project], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let roster = store::roster(tx, project)?;
        let config = store::config(tx, project)?;
        for id in ids {
            let doc = match self.docs.get(&id) {
                Some(d) => d.clone(),
                None => {
                    let Some((_, snapshot, changes)) = store::load_doc(tx, &id)? else { continue };
                    SectionDoc::from_parts(snapshot.as_deref(), &changes)?
                }
            };
            let validated = validate(&doc.input(), &roster, &config);
            store::put_view(tx, &validated.view)?;
            store::replace_conflicts(tx, &id, &validated.conflicts)?;
        }
        Ok(())
    }

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

    /// Conflict records, of one section or all.
    pub fn conflicts(&self, section: Option<&str>) -> Result<Vec<ConflictRecord>, ReplicaError> {
        Ok(store::conflicts(&self.conn, section)?)
    }

    /// A section's audit trail: every write and what the rules made of it.
    pub fn audit(&mut self, section: &str) -> Result<Vec<AuditEntry>, ReplicaError> {
        let doc = self.doc(section)?;
        let input = doc.input();
        let roster = store::roster(&self.conn, &input.project)?;
        let config = store::config(&self.conn, &input.project)?;
        Ok(validate(&input, &roster, &config).audit(&input, &roster))
    }

    /// A section's changes in causal order.
    pub fn history(&mut self, section: &str) -> Result<Vec<HistoryEntry>, ReplicaError> {
        let doc = self.doc(section)?;
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
        let doc = self.doc(section)?;
        let heads: Vec<ChangeHash> = match at {
            PastPoint::Heads(hs) => hs
                .iter()
                .map(|h| h.parse().map_err(|_| ReplicaError::InvalidInput(format!("`{h}` is not a change hash"))))
                .collect::<Result<_, _>>()?,
            PastPoint::Time(ms) => {
                let mut kept: std::collections::HashSet<ChangeHash> = Default::default();
                for c in doc.automerge().get_changes(&[]) {
                    if c.timestamp() as u64 <= *ms && c.deps().iter().all(|d| kept.contains(d)) {
                        kept.insert(c.hash());
                    }
                }
                let deps: std::collections::HashSet<ChangeHash> = kept
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
        Ok(self.validated(&past)?.view)
    }

    /// The section's whole Automerge document (loadable by any Automerge implementation).
    pub fn export(&mut self, section: &str) -> Result<Vec<u8>, ReplicaError> {
        Ok(self.doc(section)?.save())
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
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        store::confirm(&tx, hashes)?;
        tx.commit()?;
        Ok(())
    }

    /// Every change of a section, raw (for a server or a full export).
    pub fn changes_of(&mut self, section: &str, since: &[String]) -> Result<Vec<Vec<u8>>, ReplicaError> {
        let heads: Vec<ChangeHash> = since.iter().filter_map(|h| h.parse().ok()).collect();
        Ok(self.doc(section)?.changes_since(&heads).into_iter().map(|c| c.raw_bytes().to_vec()).collect())
    }

    /// Fold loose changes of up to `limit` sections with more than
    /// `threshold` of them into snapshots. Safe to run from a background
    /// thread on its own replica handle: it drops only the rows it folded.
    pub fn compact(&mut self, threshold: usize, limit: usize) -> Result<usize, ReplicaError> {
        let ids = store::sections_to_compact(&self.conn, threshold, limit)?;
        let mut n = 0;
        for id in ids {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            n += usize::from(store::compact(&tx, &id)?);
            tx.commit()?;
        }
        Ok(n)
    }
}

thread_local! {
    static SIMULATED_IDS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Make [`new_id`] (section, photo and actor ids) draw from a sequence seeded
/// with `seed` on the calling thread (`None`: the OS's randomness again). For
/// deterministic simulations (`fieldsync-tests`); an app never calls it.
pub fn set_simulated_ids(seed: Option<u64>) {
    SIMULATED_IDS.with(|c| c.set(seed));
}

/// A random 128-bit id in hex.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if let Some(state) = SIMULATED_IDS.with(std::cell::Cell::get) {
        // SplitMix64, twice.
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (a, c) = (state.wrapping_add(0x9E37_79B9_7F4A_7C15), state.wrapping_add(0x3C6E_F372_FE94_F82A));
        SIMULATED_IDS.with(|cell| cell.set(Some(c)));
        b[..8].copy_from_slice(&mix(a).to_le_bytes());
        b[8..].copy_from_slice(&mix(c).to_le_bytes());
    } else {
        getrandom::fill(&mut b).expect("the OS has randomness");
    }
    hex::encode(b)
}
