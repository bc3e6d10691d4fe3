//! A section's coverage as the embedded store records it: its history by
//! feed seq and its index rows (crew, the R*Tree of its route's box), shared
//! by a round's commit and the schema's upgrade.

use fieldsync_core::Coverage;
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{StoreError, coverage_json, stored_seq};

/// Record `coverage` as `section`'s from feed seq `seq` on, unless it is the
/// latest recorded already, and index it: its crew, its route's box (none for
/// no route). A second record at the same seq (a commit without new changes)
/// replaces the first: the latest is what held at that seq.
pub(crate) fn record_coverage(
    conn: &Connection,
    project: &str,
    section: &str,
    seq: u64,
    coverage: &Coverage,
) -> Result<(), StoreError> {
    let json = coverage_json(coverage)?;
    let latest: Option<String> = conn
        .prepare_cached("SELECT coverage FROM coverage_history WHERE section = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row([section], |r| r.get(0))
        .optional()?;
    if latest.as_deref() == Some(json.as_str()) {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO coverage_history (project, section, seq, coverage) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (section, seq) DO UPDATE SET coverage = excluded.coverage",
    )?
    .execute(params![project, section, stored_seq(seq), json])?;
    let key: i64 = conn
        .prepare_cached(
            "INSERT INTO section_index (section, project, crew) VALUES (?1, ?2, ?3)
             ON CONFLICT (section) DO UPDATE SET crew = excluded.crew RETURNING key",
        )?
        .query_row(params![section, project, coverage.crew], |r| r.get(0))?;
    conn.prepare_cached("DELETE FROM route_boxes WHERE key = ?1")?.execute([key])?;
    if let Some(b) = coverage.bounds() {
        conn.prepare_cached(
            "INSERT INTO route_boxes (key, min_lon, max_lon, min_lat, max_lat) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![key, b.west, b.east, b.south, b.north])?;
    }
    Ok(())
}
