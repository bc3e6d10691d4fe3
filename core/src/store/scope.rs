//! The store's side of partial sync: each project's scope (what the app
//! asked for, what the cursor was earned under, a change under way) and the
//! sections waiting to be dropped until their local edits are up.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::domain::coverage::Scope;
use crate::store::StoreError;

/// A project's scopes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ScopeState {
    /// What the app asked for.
    pub wanted: Scope,
    /// What the cursor was earned under.
    pub held: Scope,
    /// A change of scope (or a bootstrap) the server has not finished: sent
    /// as it is until it is, so a change of mind never lands mid-way.
    pub moving: Option<ScopeMove>,
}

/// The scope and held scope a change under way sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScopeMove {
    /// The scope being moved to.
    pub scope: Scope,
    /// The one moved from (none: a bootstrap from nothing).
    pub held: Option<Scope>,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain values serialize")
}

fn parsed<T: for<'de> Deserialize<'de>>(text: Option<String>) -> Result<Option<T>, StoreError> {
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// The scopes of `project` (everything for a project never given one).
pub(crate) fn scope_state(conn: &Connection, project: &str) -> Result<ScopeState, StoreError> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
        .prepare_cached("SELECT scope, held_scope, scope_move FROM sync_state WHERE project = ?1")?
        .query_row([project], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((wanted, held, moving)) = row else { return Ok(ScopeState::default()) };
    Ok(ScopeState {
        wanted: parsed(wanted)?.unwrap_or_default(),
        held: parsed(held)?.unwrap_or_default(),
        moving: parsed(moving)?,
    })
}

/// Keep the scope the app asked for (the project is joined).
pub(crate) fn set_wanted_scope(tx: &Transaction<'_>, project: &str, scope: &Scope) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE sync_state SET scope = ?2 WHERE project = ?1")?.execute(params![project, json(scope)])?;
    Ok(())
}

/// Keep the change of scope a round is sending.
pub(crate) fn set_scope_move(
    tx: &Transaction<'_>,
    project: &str,
    moving: Option<&ScopeMove>,
) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE sync_state SET scope_move = ?2 WHERE project = ?1")?
        .execute(params![project, moving.map(json)])?;
    Ok(())
}

/// The server finished the change: the cursor is now earned under `held`.
pub(crate) fn set_held_scope(tx: &Transaction<'_>, project: &str, held: &Scope) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE sync_state SET held_scope = ?2, scope_move = NULL WHERE project = ?1")?
        .execute(params![project, json(held)])?;
    Ok(())
}

/// Sections of `project` this store holds.
pub(crate) fn held_sections(conn: &Connection, project: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id FROM sections WHERE project = ?1 ORDER BY id")?;
    Ok(stmt.query_map([project], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

/// Whether `section` has local changes the server has not taken (refused
/// ones included: they are kept, and so is their section).
pub(crate) fn has_local_changes(conn: &Connection, section: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM changes WHERE section = ?1 AND local = 1 AND confirmed = 0 LIMIT 1")?
        .query_row([section], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Drop everything this store keeps of `section`.
pub(crate) fn drop_section(tx: &Transaction<'_>, section: &str) -> Result<(), StoreError> {
    for table in ["sections WHERE id", "changes WHERE section", "local_edits WHERE section", "conflicts WHERE section"]
        .into_iter()
        .chain(["receipts WHERE section", "evictions WHERE section"])
    {
        tx.prepare_cached(&format!("DELETE FROM {table} = ?1"))?.execute([section])?;
    }
    Ok(())
}

/// Remember to drop `section` once its local edits are up.
pub(crate) fn defer_eviction(tx: &Transaction<'_>, section: &str) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO evictions (section) VALUES (?1) ON CONFLICT DO NOTHING")?.execute([section])?;
    Ok(())
}

/// Forget a deferred eviction (the section is covered again).
pub(crate) fn cancel_eviction(tx: &Transaction<'_>, section: &str) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM evictions WHERE section = ?1")?.execute([section])?;
    Ok(())
}

/// Sections waiting to be dropped.
pub(crate) fn deferred_evictions(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT section FROM evictions ORDER BY section")?;
    Ok(stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
}
