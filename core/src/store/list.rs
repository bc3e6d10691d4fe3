//! Section lists: a filtered, ordered page of the materialized views, with
//! each section's conflict count and whether it has unsynced edits. No
//! document is loaded: every filter is a column or an indexed lookup.

use rusqlite::types::Type;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::domain::state_machine::ConstructionState;
use crate::store::StoreError;

/// Which sections a list shows, in which order, how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionQuery {
    /// Only this project's sections (`None`: every project's).
    pub project: Option<String>,
    /// Only sections in one of these states (empty: any state).
    pub states: Vec<ConstructionState>,
    /// Only sections with conflict records.
    pub with_conflicts: bool,
    /// Only sections with local edits the server has not confirmed.
    pub with_unsynced_edits: bool,
    /// Only sections whose planned route's bounding box meets this box.
    pub area: Option<GeoBounds>,
    /// Only sections assigned to this crew.
    #[serde(default)]
    pub crew: Option<String>,
    /// The order of the rows.
    pub order: SectionOrder,
    /// Start after this section (the last row of the previous page).
    pub after: Option<String>,
    /// At most this many rows.
    pub limit: usize,
}

impl Default for SectionQuery {
    fn default() -> Self {
        SectionQuery {
            project: None,
            states: Vec::new(),
            with_conflicts: false,
            with_unsynced_edits: false,
            area: None,
            crew: None,
            order: SectionOrder::Id,
            after: None,
            limit: 100,
        }
    }
}

/// A box of WGS84 degrees, south ≤ north and west ≤ east (a box across the
/// antimeridian is two queries).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionOrder {
    /// By id (stable: rows do not move).
    Id,
    /// The section whose view changed last on this device first, then by id.
    LastChange,
}

/// One row of a section list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Device wall-clock ms when its view last changed on this device (0: before this was recorded).
    pub changed_ms: i64,
}

/// A page of a section list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionPage {
    /// The rows, in the query's order.
    pub rows: Vec<SectionRow>,
    /// How many sections match the filters, on every page.
    pub total: u64,
}

/// The filters, shared by the page and its count.
const FILTERS: &str = "FROM sections s
    WHERE (?1 IS NULL OR s.project = ?1)
      AND (?2 IS NULL OR s.state IN (SELECT value FROM json_each(?2)))
      AND (?3 = 0 OR EXISTS (SELECT 1 FROM conflicts c WHERE c.section = s.id))
      AND (?4 = 0 OR EXISTS (SELECT 1 FROM changes c WHERE c.section = s.id
                               AND c.local = 1 AND c.confirmed = 0 AND c.refused IS NULL))
      AND (?5 IS NULL OR (s.north >= ?5 AND s.south <= ?6 AND s.east >= ?7 AND s.west <= ?8))
      AND (?9 IS NULL OR s.crew = ?9)";

const COLUMNS: &str = "SELECT s.id, s.project, s.name, s.state, s.progress,
    (SELECT count(*) FROM conflicts c WHERE c.section = s.id),
    EXISTS (SELECT 1 FROM changes c WHERE c.section = s.id AND c.local = 1 AND c.confirmed = 0 AND c.refused IS NULL),
    s.changed_ms ";

/// A page of the sections `query` selects.
pub(crate) fn query_sections(conn: &Connection, query: &SectionQuery) -> Result<SectionPage, StoreError> {
    let states = (!query.states.is_empty())
        .then(|| serde_json::to_string(&query.states.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
        .transpose()?;
    let area = query.area.map(|a| (a.south, a.north, a.west, a.east));
    let (south, north, west, east) = (area.map(|a| a.0), area.map(|a| a.1), area.map(|a| a.2), area.map(|a| a.3));
    let filters = params![
        query.project,
        states,
        query.with_conflicts,
        query.with_unsynced_edits,
        south,
        north,
        west,
        east,
        query.crew
    ];
    let total: i64 = conn.prepare_cached(&format!("SELECT count(*) {FILTERS}"))?.query_row(filters, |r| r.get(0))?;
    let page = match query.order {
        SectionOrder::Id => format!("{COLUMNS} {FILTERS} AND (?10 IS NULL OR s.id > ?10) ORDER BY s.id LIMIT ?11"),
        // After a row: the rows that changed before it, or at the same ms with a larger id.
        SectionOrder::LastChange => format!(
            "{COLUMNS} {FILTERS} AND (?10 IS NULL OR s.changed_ms < (SELECT changed_ms FROM sections WHERE id = ?10)
                 OR (s.changed_ms = (SELECT changed_ms FROM sections WHERE id = ?10) AND s.id > ?10))
             ORDER BY s.changed_ms DESC, s.id LIMIT ?11"
        ),
    };
    let mut stmt = conn.prepare_cached(&page)?;
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(
        params![
            query.project,
            states,
            query.with_conflicts,
            query.with_unsynced_edits,
            south,
            north,
            west,
            east,
            query.crew,
            query.after,
            limit
        ],
        |r| {
            let state: String = r.get(3)?;
            Ok(SectionRow {
                id: r.get(0)?,
                project: r.get(1)?,
                name: r.get(2)?,
                state: state
                    .parse()
                    .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, e.into()))?,
                progress: r.get(4)?,
                conflict_count: r.get(5)?,
                unsynced: r.get(6)?,
                changed_ms: r.get(7)?,
            })
        },
    )?;
    Ok(SectionPage { rows: rows.collect::<Result<_, _>>()?, total: total as u64 })
}
