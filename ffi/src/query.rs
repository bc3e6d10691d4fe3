//! Live section lists: the query an app's list screen shows (core's
//! `SectionQuery`), its rows and page; `Replica::query_sections` reads one,
//! `Replica::observe_sections` follows one (in `replica.rs`).

use fieldsync_core as core;

use crate::domain::ConstructionState;

/// Which sections a list shows, in which order, how many.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SectionQuery {
    /// Only this project's sections (`None`: every project's).
    #[uniffi(default = None)]
    pub project: Option<String>,
    /// Only sections in one of these states (empty: any state).
    #[uniffi(default = [])]
    pub states: Vec<ConstructionState>,
    /// Only sections with conflict records.
    #[uniffi(default = false)]
    pub with_conflicts: bool,
    /// Only sections with local edits the server has not confirmed.
    #[uniffi(default = false)]
    pub with_unsynced_edits: bool,
    /// Only sections whose planned route's bounding box meets this box.
    #[uniffi(default = None)]
    pub area: Option<GeoBounds>,
    /// Only sections the office assigned to this crew.
    #[uniffi(default = None)]
    pub crew: Option<String>,
    /// The order of the rows (`None`: by id).
    #[uniffi(default = None)]
    pub order: Option<SectionOrder>,
    /// Start after this section (the last row of the previous page).
    #[uniffi(default = None)]
    pub after: Option<String>,
    /// At most this many rows.
    #[uniffi(default = 100)]
    pub limit: u32,
}

/// A box of WGS84 degrees, south ≤ north and west ≤ east.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct GeoBounds {
    /// Southern edge, latitude.
    pub south: f64,
    /// Western edge, longitude.
    pub west: f64,
    /// Northern edge, latitude.
    pub north: f64,
    /// Eastern edge, longitude.
    pub east: f64,
}

/// The order of a section list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SectionOrder {
    /// By id (stable: rows do not move).
    Id,
    /// The section whose view changed last on this device first, then by id.
    LastChange,
}

/// One row of a section list.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SectionRow {
    /// Section id.
    pub id: String,
    /// Project id.
    pub project: String,
    /// Name.
    pub name: String,
    /// Construction state.
    pub state: ConstructionState,
    /// Progress percentage.
    pub progress: u8,
    /// How many conflict records it has.
    pub conflict_count: u32,
    /// Whether it has local edits the server has not confirmed.
    pub unsynced: bool,
    /// Device wall-clock ms when its view last changed on this device.
    pub changed_ms: i64,
}

/// A page of a section list.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SectionPage {
    /// The rows, in the query's order.
    pub rows: Vec<SectionRow>,
    /// How many sections match the filters, on every page.
    pub total: u64,
}

impl From<SectionQuery> for core::SectionQuery {
    fn from(q: SectionQuery) -> Self {
        core::SectionQuery {
            project: q.project,
            states: q.states.into_iter().map(Into::into).collect(),
            with_conflicts: q.with_conflicts,
            with_unsynced_edits: q.with_unsynced_edits,
            area: q.area.map(|a| core::GeoBounds { south: a.south, west: a.west, north: a.north, east: a.east }),
            crew: q.crew,
            order: match q.order {
                None | Some(SectionOrder::Id) => core::SectionOrder::Id,
                Some(SectionOrder::LastChange) => core::SectionOrder::LastChange,
            },
            after: q.after,
            limit: q.limit as usize,
        }
    }
}

impl From<core::SectionRow> for SectionRow {
    fn from(r: core::SectionRow) -> Self {
        SectionRow {
            id: r.id,
            project: r.project,
            name: r.name,
            state: r.state.into(),
            progress: r.progress,
            conflict_count: r.conflict_count,
            unsynced: r.unsynced,
            changed_ms: r.changed_ms,
        }
    }
}

impl From<core::SectionPage> for SectionPage {
    fn from(p: core::SectionPage) -> Self {
        SectionPage { rows: p.rows.into_iter().map(Into::into).collect(), total: p.total }
    }
}

#[cfg(test)]
impl SectionQuery {
    /// What Kotlin's and Swift's defaults make of `SectionQuery()`.
    pub(crate) fn default_for_tests() -> Self {
        SectionQuery {
            project: None,
            states: vec![],
            with_conflicts: false,
            with_unsynced_edits: false,
            area: None,
            crew: None,
            order: None,
            after: None,
            limit: 100,
        }
    }
}
