//! Local writes. A domain write is checked by the rules as if it were stored
//! and refused before anything is stored if a rule rejects it; otherwise its
//! change, outbox entry, view, conflicts and clock commit in one transaction,
//! so the write is durable when the call returns. The document's writes are
//! extracted once per write and the rules run once.

use automerge::Change;
use serde::{Deserialize, Serialize};

use crate::domain::document::{SectionDoc, SectionInput};
use crate::domain::edit::{EditId, EditValue, Field};
use crate::domain::role::Role;
use crate::domain::route::GeoPoint;
use crate::domain::state_machine::ConstructionState;
use crate::replica::feed::ReplicaChange;
use crate::replica::{Replica, ReplicaError};
use crate::rules::conflict::Rule;
use crate::rules::validate::{Validated, validate};
use crate::rules::view::Decision;
use crate::store;

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

impl Replica {
    /// Create a section (office only) with its name and planned route.
    pub fn create_section(&mut self, project: &str, name: &str, route: &[GeoPoint]) -> Result<String, ReplicaError> {
        let id = self.new_id();
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
        use crate::sync::protocol::{MAX_PROJECT_ID_BYTES, MAX_SECTION_ID_BYTES};
        if id.len() > MAX_SECTION_ID_BYTES || project.len() > MAX_PROJECT_ID_BYTES {
            return Err(ReplicaError::InvalidInput(format!(
                "a section id may have at most {MAX_SECTION_ID_BYTES} bytes and a project id {MAX_PROJECT_ID_BYTES} \
                 (the server would refuse them); use shorter ids"
            )));
        }
        check_points(route)?;
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
        let now = self.now();
        let stamps = (self.clock.tick(now), self.clock.tick(now));
        let (mut doc, change) =
            SectionDoc::create(self.actor.clone(), id, project, (&stamps.0, &stamps.1), name, route)?;
        doc.set_actor(self.actor.clone());
        let validated = self.validate(&self.input_of(&doc)?)?;
        let edits = [(stamps.0.to_string(), Field::Name), (stamps.1.to_string(), Field::Route)];
        self.commit_local(doc, change, validated, &edits)?;
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

    /// Assign a section to a crew (office only): devices subscribed to the
    /// crew's sections receive it.
    pub fn assign_crew(&mut self, section: &str, crew: &str) -> Result<EditReceipt, ReplicaError> {
        crate::Scope::Only(vec![crate::Subscription::Crew(crew.to_owned())]).check()?;
        self.write(section, EditValue::Crew { crew: crew.to_owned() })
    }

    /// Rename a section (office only).
    pub fn rename_section(&mut self, section: &str, name: &str) -> Result<EditReceipt, ReplicaError> {
        self.write(section, EditValue::Name { name: name.to_owned() })
    }

    /// Replace a section's planned route (office only).
    pub fn set_route(&mut self, section: &str, route: &[GeoPoint]) -> Result<EditReceipt, ReplicaError> {
        check_points(route)?;
        self.write(section, EditValue::Route { points: route.to_vec() })
    }

    /// Replace `delete` characters at `pos` (in characters) of the notes with `insert`.
    pub fn splice_notes(&mut self, section: &str, pos: usize, delete: usize, insert: &str) -> Result<(), ReplicaError> {
        let mut doc = self.docs.take(&self.conn, &self.actor, section)?;
        let hlc = self.clock.tick(self.device_clock.now());
        let change = doc.splice_notes(&hlc, pos, delete, insert)?;
        let validated = self.validate(&self.input_of(&doc)?)?;
        self.commit_local(doc, change, validated, &[])?;
        Ok(())
    }

    /// Make the notes read `text` (stored as the smallest character diff).
    pub fn set_notes(&mut self, section: &str, text: &str) -> Result<(), ReplicaError> {
        let mut doc = self.docs.take(&self.conn, &self.actor, section)?;
        let hlc = self.clock.tick(self.device_clock.now());
        let change = doc.set_notes(&hlc, text)?;
        let validated = self.validate(&self.input_of(&doc)?)?;
        self.commit_local(doc, change, validated, &[])?;
        Ok(())
    }

    /// Write a domain record into the document, judge it with the rules over
    /// the document as it now stands, and refuse it (the document is then
    /// dropped, nothing stored) or commit it.
    fn write(&mut self, section: &str, value: EditValue) -> Result<EditReceipt, ReplicaError> {
        let field = value.field().expect("local writes have known fields");
        let mut doc = self.docs.take(&self.conn, &self.actor, section)?;
        let mut input = self.input_of(&doc)?;
        let base = match field {
            // The transition that stands: the section's history is the chain of them.
            Field::State => self.section(section)?.events.last().map(|ev| ev.edit_id.clone()),
            // The latest write of the field seen: writes sharing a base are a contest.
            _ => input.edits.iter().rev().find(|e| e.value.field() == Some(field)).map(|e| e.id.clone()),
        };
        let hlc = self.clock.tick(self.device_clock.now());
        let change = doc.write(&hlc, base.as_deref(), &value)?;
        let id = hlc.to_string();
        let written = doc.edit(&id).expect("the record was just written");
        let at = input.edits.partition_point(|e| e.id < id);
        input.edits.insert(at, written);
        input.heads = doc.heads().iter().map(crate::domain::document::hash_hex).collect();
        let validated = self.validate(&input)?;
        let decision = validated.decisions.get(&id).cloned().unwrap_or(Decision::Accepted);
        if let Decision::Rejected { rule, reason, .. } = decision {
            return Err(ReplicaError::Refused { rule, reason });
        }
        let change_hash = change.hash().to_string();
        self.commit_local(doc, change, validated, &[(id.clone(), field)])?;
        Ok(EditReceipt { edit_id: id, section: section.to_owned(), change_hash, decision })
    }

    /// What the rules read of `doc`, with when the hub received its changes.
    pub(crate) fn input_of(&self, doc: &SectionDoc) -> Result<SectionInput, ReplicaError> {
        let mut input = doc.input();
        input.received = store::receipts(&self.conn, &input.id)?;
        Ok(input)
    }

    /// The rules over `input`, with its project's roster and config.
    pub(crate) fn validate(&self, input: &SectionInput) -> Result<Validated, ReplicaError> {
        let roster = store::roster(&self.conn, &input.project)?;
        let config = store::config(&self.conn, &input.project)?;
        Ok(validate(input, &roster, &config))
    }

    /// Store a local change with its view, conflicts, outbox entry and clock
    /// in one transaction, then keep the document as the cached current state.
    pub(super) fn commit_local(
        &mut self,
        doc: SectionDoc,
        change: Change,
        validated: Validated,
        edits: &[(EditId, Field)],
    ) -> Result<(), ReplicaError> {
        let id = validated.view.id.clone();
        let hash = change.hash().to_string();
        let tx = self.begin()?;
        // Uncompressed: a sync batch deflates many changes together far better than
        // changes deflated one by one (Automerge compresses a change over 256 bytes).
        store::put_change(&tx, &id, &hash, change.raw_bytes(), true, self.now().wall_ms as i64)?;
        for (edit_id, field) in edits {
            store::put_local_edit(&tx, edit_id, &id, &hash, field.as_str())?;
        }
        let mut changed = ReplicaChange::status();
        // A new change: new heads, so a new view.
        store::put_view(&tx, &validated.view, self.now().wall_ms as i64)?;
        changed.views.insert(id.clone());
        if store::replace_conflicts(&tx, &id, &validated.conflicts)? {
            changed.conflicts.insert(id.clone());
        }
        changed.unsynced.insert(id.clone());
        self.save_clock(&tx)?;
        tx.commit()?;
        self.feed.publish(changed);
        self.docs.put(&id, doc);
        Ok(())
    }
}

fn check_points(route: &[GeoPoint]) -> Result<(), ReplicaError> {
    if let Some(p) = route.iter().find(|p| !p.is_valid()) {
        GeoPoint::new(p.lat, p.lon)?;
    }
    Ok(())
}
