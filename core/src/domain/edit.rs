//! Domain writes as they sit in a section document: one immutable record per
//! write, keyed by its HLC stamp, so every value anyone wrote stays in the
//! merged document and the rules can weigh them all.

use serde::{Deserialize, Serialize};

use crate::domain::hlc::Hlc;
use crate::domain::route::GeoPoint;
use crate::domain::state_machine::ConstructionState;

/// The id of one write: its HLC stamp in string form.
pub type EditId = String;

/// The field of a section a write is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The section's name (office only).
    Name,
    /// The planned route (office only).
    Route,
    /// The construction state.
    State,
    /// Progress percentage.
    Progress,
    /// Reported location / as-built GPS point.
    Location,
    /// A foreman's acceptance of a quarantined point.
    Acceptance,
    /// The crew the section is assigned to (office only).
    Crew,
}

impl Field {
    /// The name stored in documents and shown in conflicts.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Route => "route",
            Field::State => "state",
            Field::Progress => "progress",
            Field::Location => "location",
            Field::Acceptance => "acceptance",
            Field::Crew => "crew",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Field> {
        [Field::Name, Field::Route, Field::State, Field::Progress, Field::Location, Field::Acceptance, Field::Crew]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// What a write says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EditValue {
    /// A new section name.
    Name {
        /// The name.
        name: String,
    },
    /// A new planned route.
    Route {
        /// The route's points, in order.
        points: Vec<GeoPoint>,
    },
    /// A state transition, with the state its writer saw.
    Transition {
        /// The state the writer saw.
        from: ConstructionState,
        /// The state requested.
        to: ConstructionState,
        /// Why, when blocking.
        reason: Option<String>,
    },
    /// A progress report, with the state its writer saw.
    Progress {
        /// Percentage as written (validated by the rules, may be out of range).
        percent: i64,
        /// The state the writer saw, which sets the allowed band.
        at_state: ConstructionState,
    },
    /// A reported position.
    Location {
        /// Where.
        point: GeoPoint,
    },
    /// Acceptance of a quarantined point.
    Accept {
        /// The location write being accepted.
        point_edit: EditId,
    },
    /// An assignment of the section to a crew.
    Crew {
        /// The crew's name.
        crew: String,
    },
    /// A write of a kind this version does not know (from a newer app).
    Unknown {
        /// The field name it carried.
        field: String,
    },
}

impl EditValue {
    /// The field this write is about; `None` for unknown kinds.
    pub fn field(&self) -> Option<Field> {
        Some(match self {
            EditValue::Name { .. } => Field::Name,
            EditValue::Route { .. } => Field::Route,
            EditValue::Transition { .. } => Field::State,
            EditValue::Progress { .. } => Field::Progress,
            EditValue::Location { .. } => Field::Location,
            EditValue::Accept { .. } => Field::Acceptance,
            EditValue::Crew { .. } => Field::Crew,
            EditValue::Unknown { .. } => return None,
        })
    }

    /// A short human form, for conflict records and the audit trail.
    pub fn describe(&self) -> String {
        match self {
            EditValue::Name { name } => format!("name {name:?}"),
            EditValue::Route { points } => format!("route of {} points", points.len()),
            EditValue::Transition { from, to, reason: Some(r) } => {
                format!("{} → {} ({r})", from.as_str(), to.as_str())
            }
            EditValue::Transition { from, to, reason: None } => {
                format!("{} → {}", from.as_str(), to.as_str())
            }
            EditValue::Progress { percent, .. } => format!("{percent}%"),
            EditValue::Location { point } => format!("({:.6}, {:.6})", point.lat, point.lon),
            EditValue::Accept { point_edit } => format!("accept point {point_edit}"),
            EditValue::Crew { crew } => format!("assigned to crew {crew:?}"),
            EditValue::Unknown { field } => format!("unknown field {field}"),
        }
    }
}

/// One write as read back from a merged document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// Its id (the HLC stamp string; also the key in the document).
    pub id: EditId,
    /// Its stamp.
    pub hlc: Hlc,
    /// Hex actor id of the change that wrote it: the author the roster is
    /// asked about. Taken from Automerge's op id, so no one can write as another.
    pub author: String,
    /// The latest write to the same field its writer had seen, if any; writes
    /// with the same base were made without knowing of each other.
    pub base: Option<EditId>,
    /// Hex hash of the Automerge change that holds it.
    pub change_hash: String,
    /// What it says.
    pub value: EditValue,
}
