//! One Automerge document per fiber section.
//!
//! Layout (any Automerge implementation can read it):
//!
//! ```text
//! { "fieldsync": 1,                      format version
//!   "id": "<section id>", "project": "<project id>",
//!   "edits":  { "<hlc>": { "field": "progress", "base": "<hlc>", "percent": 40, "at_state": "trenched" }, … },
//!   "notes":  Text,                        merged character by character
//!   "photos": { "<photo id>": { "uri": "sha256:<hex>" | <app URI>, "caption": …, "hlc": …,
//!                               "sha256": …, "size": …, "media_type": …, "width": …, "height": … }, … } }
//! ```
//!
//! Writes never overwrite: each is a new record under its HLC key, so every
//! value ever written is in the current state and the rules decide which one
//! counts. Unknown fields in a record, and records of unknown kinds, are
//! ignored, which is how newer apps add fields without breaking older ones.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef,
};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::edit::{Edit, EditId, EditValue, Field};
use crate::domain::hlc::Hlc;
use crate::domain::route::GeoPoint;

/// Version of the document layout written by this code.
pub const FORMAT_VERSION: i64 = 1;

/// Errors reading or writing a section document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Automerge refused the bytes or the operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// A change could not be decoded.
    #[error("undecodable change: {0}")]
    BadChange(#[from] automerge::LoadChangeError),
    /// The document lacks the section layout.
    #[error("not a FieldSync section document: {0}")]
    NotASection(&'static str),
    /// Written by a newer FieldSync whose layout this version cannot read.
    #[error("section document format {0} is newer than this app understands ({FORMAT_VERSION}); update the app")]
    NewerFormat(i64),
    /// Automerge failed on bytes from elsewhere (some malformed input makes
    /// it panic, which is caught: the document or change is refused, the
    /// process goes on).
    #[error("unreadable: {0}")]
    Unreadable(String),
    /// Notes edit outside the text.
    #[error("notes edit at {pos} deleting {delete} is outside the text of length {len}")]
    NotesRange {
        /// Start position requested.
        pos: usize,
        /// Characters to delete.
        delete: usize,
        /// Text length.
        len: usize,
    },
}

/// A photo attached to a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRef {
    /// Its id.
    pub id: String,
    /// Where the photo is: `sha256:<hex>` for one whose bytes the replica
    /// keeps (content-addressed), or a URI the app keeps.
    pub uri: String,
    /// Optional caption.
    pub caption: Option<String>,
    /// When it was attached.
    pub hlc: String,
    /// Hex actor id of whoever attached it (the record's creator).
    #[serde(default)]
    pub author: String,
    /// The bytes, for a content-addressed photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<PhotoBlob>,
    /// Its thumbnail (a small JPEG that travels first), when the device
    /// that took it could make one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<PhotoBlob>,
}

/// What a content-addressed photo's record says of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoBlob {
    /// Hex SHA-256 of the bytes (the file's name on every device).
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

/// What the rules read from a document.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionInput {
    /// Section id.
    pub id: String,
    /// Project id.
    pub project: String,
    /// Every write, ordered by id (= HLC order).
    pub edits: Vec<Edit>,
    /// Notes text.
    pub notes: String,
    /// Photo references, ordered by id.
    pub photos: Vec<PhotoRef>,
    /// Hex heads of the document.
    pub heads: Vec<String>,
    /// When the hub received each change it has received, by hex change hash
    /// (server ms). A write whose change is absent is not confirmed yet; the
    /// rules count it at its stamp.
    pub received: BTreeMap<String, u64>,
}

/// A section document.
#[derive(Debug, Clone)]
pub struct SectionDoc {
    doc: Automerge,
}

fn obj(doc: &Automerge, parent: &ObjId, key: &str) -> Result<ObjId, DocumentError> {
    match doc.get(parent, key)? {
        Some((Value::Object(_), id)) => Ok(id),
        _ => Err(DocumentError::NotASection("missing object")),
    }
}

/// A change hash in hex, as `ChangeHash`'s `Display` spells it, several times faster.
pub(crate) fn hash_hex(hash: &ChangeHash) -> String {
    hex::encode(hash.0)
}

fn str_at(doc: &Automerge, o: &ObjId, key: &str) -> Option<String> {
    match doc.get(o, key).ok()?? {
        (Value::Scalar(s), _) => s.as_str().map(str::to_owned),
        _ => None,
    }
}

fn num_at(doc: &Automerge, o: &ObjId, key: &str) -> Option<f64> {
    match doc.get(o, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Int(i) => Some(*i as f64),
            ScalarValue::Uint(u) => Some(*u as f64),
            ScalarValue::F64(f) => Some(*f),
            _ => None,
        },
        _ => None,
    }
}

/// Run Automerge on bytes from elsewhere. Some malformed documents and
/// changes make automerge 0.12 panic rather than fail (found by fuzzing:
/// `core/tests/integration/fuzz.rs`, inputs kept in `fuzz-regressions/`); here
/// that is an error like any other unreadable input, not a crash of the hub
/// or the app.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, DocumentError>) -> Result<T, DocumentError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(DocumentError::Unreadable(format!("automerge failed on {what} ({why})")))
    })
}

impl SectionDoc {
    /// A new section, created by `actor` with its name and route as the first
    /// edits, stamped with the two stamps given.
    pub fn create(
        actor: ActorId,
        id: &str,
        project: &str,
        stamps: (&Hlc, &Hlc),
        name: &str,
        route: &[GeoPoint],
    ) -> Result<(SectionDoc, Change), DocumentError> {
        let (name_hlc, route_hlc) = stamps;
        let mut doc = Automerge::new().with_actor(actor);
        let mut tx = doc.transaction();
        tx.put(ROOT, "fieldsync", FORMAT_VERSION)?;
        tx.put(ROOT, "id", id)?;
        tx.put(ROOT, "project", project)?;
        let edits = tx.put_object(ROOT, "edits", ObjType::Map)?;
        tx.put_object(ROOT, "notes", ObjType::Text)?;
        tx.put_object(ROOT, "photos", ObjType::Map)?;
        write_record(&mut tx, &edits, name_hlc, None, &EditValue::Name { name: name.to_owned() })?;
        write_record(&mut tx, &edits, route_hlc, None, &EditValue::Route { points: route.to_vec() })?;
        tx.commit_with(CommitOptions::default().with_time(name_hlc.physical_ms as i64).with_message("create"));
        let mut section = SectionDoc { doc };
        let change = section.last_local_change();
        Ok((section, change))
    }

    /// A document from saved bytes (a snapshot, changes, or both concatenated).
    pub fn load(bytes: &[u8]) -> Result<SectionDoc, DocumentError> {
        guarded("a document", || {
            let doc = Automerge::load(bytes)?;
            let section = SectionDoc { doc };
            section.check_layout()?;
            Ok(section)
        })
    }

    /// A document from its stored parts: an optional snapshot and the changes
    /// stored since. Changes whose dependencies are missing wait in
    /// Automerge's queue instead of failing the load.
    pub fn from_parts(snapshot: Option<&[u8]>, changes: &[Vec<u8>]) -> Result<SectionDoc, DocumentError> {
        guarded("a document or its changes", || {
            let mut doc = match snapshot {
                Some(s) => Automerge::load(s)?,
                None => Automerge::new(),
            };
            let parsed = changes.iter().map(|c| Change::from_bytes(c.clone())).collect::<Result<Vec<_>, _>>()?;
            doc.apply_changes(parsed)?;
            let section = SectionDoc { doc };
            if !section.doc.get_heads().is_empty() {
                section.check_layout()?;
            }
            Ok(section)
        })
    }

    /// An empty document, to apply a section's changes to when they arrive
    /// from elsewhere.
    pub fn empty(actor: ActorId) -> SectionDoc {
        SectionDoc { doc: Automerge::new().with_actor(actor) }
    }

    /// Check that the document has the section layout in a version this code reads.
    pub fn check_section(&self) -> Result<(), DocumentError> {
        self.check_layout()
    }

    fn check_layout(&self) -> Result<(), DocumentError> {
        match num_at(&self.doc, &ROOT, "fieldsync") {
            Some(v) if v as i64 > FORMAT_VERSION => Err(DocumentError::NewerFormat(v as i64)),
            Some(_) => Ok(()),
            None => Err(DocumentError::NotASection("no `fieldsync` version key")),
        }
    }

    /// Set the actor that local writes are made as.
    pub fn set_actor(&mut self, actor: ActorId) {
        self.doc.set_actor(actor);
    }

    /// The underlying Automerge document.
    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// Section id.
    pub fn id(&self) -> String {
        str_at(&self.doc, &ROOT, "id").unwrap_or_default()
    }

    /// Project id.
    pub fn project(&self) -> String {
        str_at(&self.doc, &ROOT, "project").unwrap_or_default()
    }

    /// Current heads.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The whole document, compacted.
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    fn last_local_change(&mut self) -> Change {
        self.doc.get_last_local_change().expect("a commit was just made")
    }

    /// Record one domain write; returns the change holding it.
    pub fn write(&mut self, hlc: &Hlc, base: Option<&str>, value: &EditValue) -> Result<Change, DocumentError> {
        let edits = obj(&self.doc, &ROOT, "edits")?;
        let mut tx = self.doc.transaction();
        write_record(&mut tx, &edits, hlc, base, value)?;
        let message = value.field().map_or("edit", Field::as_str);
        tx.commit_with(CommitOptions::default().with_time(hlc.physical_ms as i64).with_message(message));
        Ok(self.last_local_change())
    }

    /// Replace `delete` characters at `pos` of the notes with `insert`.
    pub fn splice_notes(
        &mut self,
        hlc: &Hlc,
        pos: usize,
        delete: usize,
        insert: &str,
    ) -> Result<Change, DocumentError> {
        let notes = obj(&self.doc, &ROOT, "notes")?;
        let len = self.doc.length(&notes);
        if pos > len || pos + delete > len {
            return Err(DocumentError::NotesRange { pos, delete, len });
        }
        let mut tx = self.doc.transaction();
        tx.splice_text(&notes, pos, delete as isize, insert)?;
        tx.commit_with(CommitOptions::default().with_time(hlc.physical_ms as i64).with_message("notes"));
        Ok(self.last_local_change())
    }

    /// Make the notes read `text`, as the smallest character diff from what they are.
    pub fn set_notes(&mut self, hlc: &Hlc, text: &str) -> Result<Change, DocumentError> {
        let notes = obj(&self.doc, &ROOT, "notes")?;
        let mut tx = self.doc.transaction();
        tx.update_text(&notes, text)?;
        tx.commit_with(CommitOptions::default().with_time(hlc.physical_ms as i64).with_message("notes"));
        Ok(self.last_local_change())
    }

    /// Attach a photo: a new record, never written again.
    pub fn add_photo(
        &mut self,
        hlc: &Hlc,
        photo_id: &str,
        uri: &str,
        caption: Option<&str>,
        blob: Option<&PhotoBlob>,
        thumbnail: Option<&PhotoBlob>,
    ) -> Result<Change, DocumentError> {
        let photos = obj(&self.doc, &ROOT, "photos")?;
        let mut tx = self.doc.transaction();
        let p = tx.put_object(&photos, photo_id, ObjType::Map)?;
        tx.put(&p, "uri", uri)?;
        if let Some(c) = caption {
            tx.put(&p, "caption", c)?;
        }
        if let Some(b) = blob {
            tx.put(&p, "sha256", b.sha256.as_str())?;
            tx.put(&p, "size", b.size)?;
            tx.put(&p, "media_type", b.media_type.as_str())?;
            tx.put(&p, "width", u64::from(b.width))?;
            tx.put(&p, "height", u64::from(b.height))?;
        }
        if let Some(t) = thumbnail {
            tx.put(&p, "thumb_sha256", t.sha256.as_str())?;
            tx.put(&p, "thumb_size", t.size)?;
            tx.put(&p, "thumb_width", u64::from(t.width))?;
            tx.put(&p, "thumb_height", u64::from(t.height))?;
        }
        tx.put(&p, "hlc", hlc.to_string())?;
        tx.commit_with(CommitOptions::default().with_time(hlc.physical_ms as i64).with_message("photo"));
        Ok(self.last_local_change())
    }

    /// Apply changes from elsewhere; returns how many were new. After an
    /// [`DocumentError::Unreadable`] the document is empty (Automerge stopped
    /// half-way): drop it.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<usize, DocumentError> {
        // Count from the change graph's size: `get_changes` would rebuild and
        // encode every new change just to count them.
        let before = self.doc.stats().num_changes;
        let applied = guarded("changes", || Ok(self.doc.apply_changes(changes)?));
        if let Err(DocumentError::Unreadable(_)) = &applied {
            self.doc = Automerge::new();
        }
        applied?;
        Ok((self.doc.stats().num_changes - before) as usize)
    }

    /// The hex hashes of every change the document holds, sorted: the order
    /// in which a whole document's receipt times travel (docs/protocol.md).
    pub fn change_hashes(&self) -> Vec<String> {
        let mut hashes: Vec<String> = self.doc.get_changes_meta(&[]).iter().map(|m| hash_hex(&m.hash)).collect();
        hashes.sort_unstable();
        hashes
    }

    /// The changes not among `heads`' ancestors.
    pub fn changes_since(&self, heads: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(heads)
    }

    /// The document as it was at `heads`.
    pub fn at(&self, heads: &[ChangeHash]) -> Result<SectionDoc, DocumentError> {
        Ok(SectionDoc { doc: self.doc.fork_at(heads)? })
    }

    /// The latest write to `field` this document holds (the base of the next local write).
    pub fn latest_edit_of(&self, field: Field) -> Option<EditId> {
        self.edits().into_iter().rev().find(|e| e.value.field() == Some(field)).map(|e| e.id)
    }

    /// The one write recorded under `id`, read alone (after a local write, so
    /// the rules' input need not be extracted from the document again).
    pub fn edit(&self, id: &str) -> Option<Edit> {
        let edits = self.root().edits?;
        let hlc = id.parse::<Hlc>().ok()?;
        let (automerge::Value::Object(ObjType::Map), rec) = self.doc.get(&edits, id).ok()?? else { return None };
        let ObjId::Id(_, ref actor, _) = rec else { return None };
        let change_hash = self.doc.hash_for_opid(&rec).map(|h| hash_hex(&h)).unwrap_or_default();
        let record = Record::read(&self.doc, &rec);
        let base = record.str("base");
        let value = read_value(&record);
        Some(Edit { id: id.to_owned(), hlc, author: actor.to_hex_string(), base, change_hash, value })
    }

    /// Every write in the document, in HLC order. Records that cannot be
    /// read (a malformed key) are skipped: they carry no valid stamp to weigh.
    pub fn edits(&self) -> Vec<Edit> {
        self.root().edits.map(|o| self.edits_in(&o)).unwrap_or_default()
    }

    /// Notes text.
    pub fn notes(&self) -> String {
        self.root().notes.map(|o| self.notes_in(&o)).unwrap_or_default()
    }

    /// Photo references, ordered by id.
    pub fn photos(&self) -> Vec<PhotoRef> {
        self.root().photos.map(|o| self.photos_in(&o)).unwrap_or_default()
    }

    /// Everything the rules read.
    pub fn input(&self) -> SectionInput {
        let root = self.root();
        SectionInput {
            edits: root.edits.map(|o| self.edits_in(&o)).unwrap_or_default(),
            notes: root.notes.map(|o| self.notes_in(&o)).unwrap_or_default(),
            photos: root.photos.map(|o| self.photos_in(&o)).unwrap_or_default(),
            heads: self.heads().iter().map(hash_hex).collect(),
            received: BTreeMap::new(),
            id: root.id,
            project: root.project,
        }
    }

    /// The root's entries in one pass: a lookup per key costs about as much
    /// as the whole pass, and the rules need all of them.
    fn root(&self) -> Root {
        let mut root = Root::default();
        for item in self.doc.map_range(ROOT, ..) {
            match (item.key.as_ref(), &item.value) {
                ("id", ValueRef::Scalar(ScalarValueRef::Str(s))) => root.id = s.to_string(),
                ("project", ValueRef::Scalar(ScalarValueRef::Str(s))) => root.project = s.to_string(),
                ("edits", ValueRef::Object(ObjType::Map)) => root.edits = Some(item.id()),
                ("notes", ValueRef::Object(_)) => root.notes = Some(item.id()),
                ("photos", ValueRef::Object(ObjType::Map)) => root.photos = Some(item.id()),
                _ => {}
            }
        }
        root
    }

    fn edits_in(&self, edits: &ObjId) -> Vec<Edit> {
        let mut out = Vec::new();
        // Few actors write a section: spell each one's id once.
        let mut authors: Vec<(ActorId, String)> = Vec::new();
        for item in self.doc.map_range(edits, ..) {
            let Ok(hlc) = item.key.parse::<Hlc>() else { continue };
            let ValueRef::Object(ObjType::Map) = item.value else { continue };
            let rec = item.id();
            let ObjId::Id(_, ref actor, _) = rec else { continue };
            let author = match authors.iter().find(|(a, _)| a == actor) {
                Some((_, hex)) => hex.clone(),
                None => {
                    let hex = actor.to_hex_string();
                    authors.push((actor.clone(), hex.clone()));
                    hex
                }
            };
            let change_hash = self.doc.hash_for_opid(&rec).map(|h| hash_hex(&h)).unwrap_or_default();
            // One pass over the record rather than a lookup per field.
            let record = Record::read(&self.doc, &rec);
            let base = record.str("base");
            let value = read_value(&record);
            out.push(Edit { id: item.key.into_owned(), hlc, author, base, change_hash, value });
        }
        out
    }

    fn notes_in(&self, notes: &ObjId) -> String {
        self.doc.text(notes).unwrap_or_default()
    }

    fn photos_in(&self, photos: &ObjId) -> Vec<PhotoRef> {
        self.doc
            .map_range(photos, ..)
            .filter_map(|item| {
                let ValueRef::Object(ObjType::Map) = item.value else { return None };
                let record = Record::read(&self.doc, &item.id());
                let author = match item.id() {
                    ObjId::Id(_, actor, _) => actor.to_hex_string(),
                    ObjId::Root => String::new(),
                };
                let blob = record.str("sha256").map(|sha256| PhotoBlob {
                    sha256,
                    size: record.uint("size").unwrap_or(0),
                    media_type: record.str("media_type").unwrap_or_default(),
                    width: record.uint("width").unwrap_or(0) as u32,
                    height: record.uint("height").unwrap_or(0) as u32,
                });
                let thumbnail = record.str("thumb_sha256").map(|sha256| PhotoBlob {
                    sha256,
                    size: record.uint("thumb_size").unwrap_or(0),
                    media_type: "image/jpeg".into(),
                    width: record.uint("thumb_width").unwrap_or(0) as u32,
                    height: record.uint("thumb_height").unwrap_or(0) as u32,
                });
                Some(PhotoRef {
                    uri: record.str("uri")?,
                    caption: record.str("caption"),
                    hlc: record.str("hlc").unwrap_or_default(),
                    id: item.key.into_owned(),
                    author,
                    blob,
                    thumbnail,
                })
            })
            .collect()
    }
}

/// The root entries of a section document (see [`SectionDoc::root`]).
#[derive(Default)]
struct Root {
    id: String,
    project: String,
    edits: Option<ObjId>,
    notes: Option<ObjId>,
    photos: Option<ObjId>,
}

fn write_record<T: Transactable>(
    tx: &mut T,
    edits: &ObjId,
    hlc: &Hlc,
    base: Option<&str>,
    value: &EditValue,
) -> Result<(), DocumentError> {
    let rec = tx.put_object(edits, hlc.to_string(), ObjType::Map)?;
    let field = match value {
        EditValue::Unknown { field } => field.as_str(),
        v => v.field().map(Field::as_str).unwrap_or("unknown"),
    };
    tx.put(&rec, "field", field)?;
    if let Some(b) = base {
        tx.put(&rec, "base", b)?;
    }
    match value {
        EditValue::Name { name } => tx.put(&rec, "name", name.as_str())?,
        EditValue::Crew { crew } => tx.put(&rec, "crew", crew.as_str())?,
        EditValue::Route { points } => {
            // One string, not a list of lists: a route is replaced whole, never
            // merged point by point, and a string costs one op instead of 3n.
            let encoded = serde_json::to_string(points).expect("points serialize");
            tx.put(&rec, "points", encoded)?;
        }
        EditValue::Transition { from, to, reason } => {
            tx.put(&rec, "from", from.as_str())?;
            tx.put(&rec, "to", to.as_str())?;
            if let Some(r) = reason {
                tx.put(&rec, "reason", r.as_str())?;
            }
        }
        EditValue::Progress { percent, at_state } => {
            tx.put(&rec, "percent", *percent)?;
            tx.put(&rec, "at_state", at_state.as_str())?;
        }
        EditValue::Location { point } => {
            tx.put(&rec, "lat", point.lat)?;
            tx.put(&rec, "lon", point.lon)?;
        }
        EditValue::Accept { point_edit } => tx.put(&rec, "point_edit", point_edit.as_str())?,
        EditValue::Unknown { .. } => {}
    }
    Ok(())
}

/// The fields of one edit record, read in a single pass.
struct Record<'a>(Vec<(std::borrow::Cow<'a, str>, ValueRef<'a>)>);

impl<'a> Record<'a> {
    fn read(doc: &'a Automerge, rec: &ObjId) -> Record<'a> {
        Record(doc.map_range(rec, ..).map(|item| (item.key, item.value)).collect())
    }

    fn scalar(&self, key: &str) -> Option<&ScalarValueRef<'a>> {
        match self.0.iter().find(|(k, _)| k == key)? {
            (_, ValueRef::Scalar(s)) => Some(s),
            _ => None,
        }
    }

    /// Read like `str_at`.
    fn str(&self, key: &str) -> Option<String> {
        match self.scalar(key)? {
            ScalarValueRef::Str(s) => Some(s.to_string()),
            _ => None,
        }
    }

    /// A count (a size, pixels); negative or fractional values read as none.
    fn uint(&self, key: &str) -> Option<u64> {
        match self.scalar(key)? {
            ScalarValueRef::Uint(u) => Some(*u),
            ScalarValueRef::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// Read like `num_at`.
    fn num(&self, key: &str) -> Option<f64> {
        match self.scalar(key)? {
            ScalarValueRef::Int(i) => Some(*i as f64),
            ScalarValueRef::Uint(u) => Some(*u as f64),
            ScalarValueRef::F64(f) => Some(*f),
            _ => None,
        }
    }
}

fn read_value(rec: &Record<'_>) -> EditValue {
    let field = rec.str("field").unwrap_or_default();
    let unknown = || EditValue::Unknown { field: field.clone() };
    let state = |key| rec.str(key).and_then(|s| s.parse().ok());
    let parsed = match Field::parse(&field) {
        Some(Field::Name) => rec.str("name").map(|name| EditValue::Name { name }),
        Some(Field::Route) => {
            rec.str("points").and_then(|s| serde_json::from_str(&s).ok()).map(|points| EditValue::Route { points })
        }
        Some(Field::State) => match (state("from"), state("to")) {
            (Some(from), Some(to)) => Some(EditValue::Transition { from, to, reason: rec.str("reason") }),
            _ => None,
        },
        Some(Field::Progress) => match (rec.num("percent"), state("at_state")) {
            (Some(p), Some(at_state)) => Some(EditValue::Progress { percent: p as i64, at_state }),
            _ => None,
        },
        Some(Field::Location) => match (rec.num("lat"), rec.num("lon")) {
            (Some(lat), Some(lon)) => Some(EditValue::Location { point: GeoPoint { lat, lon } }),
            _ => None,
        },
        Some(Field::Acceptance) => rec.str("point_edit").map(|point_edit| EditValue::Accept { point_edit }),
        Some(Field::Crew) => rec.str("crew").map(|crew| EditValue::Crew { crew }),
        None => None,
    };
    parsed.unwrap_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_spells_a_hash_as_automerge_does() {
        let hash = ChangeHash([0x0f; 32]);
        assert_eq!(hash_hex(&hash), hash.to_string());
        let hash = ChangeHash(std::array::from_fn(|i| (i * 37) as u8));
        assert_eq!(hash_hex(&hash), hash.to_string());
    }
}
