//! Partial sync on the replica: the scope each project is to hold, which
//! sections it holds and why, and dropping the ones a round says the scope
//! no longer covers (never before the server has their local edits).

use std::collections::{BTreeSet, HashSet};

use rusqlite::Transaction;
use serde::{Deserialize, Serialize};

use crate::domain::coverage::{Scope, Subscription};
use crate::replica::feed::ReplicaChange;
use crate::replica::{DocCache, Replica, ReplicaError};
use crate::store;

/// Why the replica holds a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "because", rename_all = "snake_case")]
pub enum HeldBecause {
    /// The project's scope is everything.
    Everything,
    /// A subscription of the scope covers it (its index in the scope).
    Subscription {
        /// Index in [`Replica::scope`]'s list.
        index: usize,
    },
    /// It has local edits the server has not taken: kept until it has.
    UnsyncedEdits,
    /// The scope changed and the next round settles whether it stays.
    ScopeChanging,
}

/// A section this replica holds, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionHolding {
    /// Section id.
    pub section: String,
    /// Every reason that holds (at least one).
    pub reasons: Vec<HeldBecause>,
}

/// What a round's response says about the scope, settled in its transaction.
pub(crate) struct ScopeSettlement<'a> {
    /// Sections the scope no longer covers.
    pub evicted: &'a [String],
    /// Every section the scope covers, when the server lists them.
    pub keep_only: Option<&'a [String]>,
    /// Sections the response brought (covered, so never dropped).
    pub arrived: HashSet<&'a str>,
    /// Whether the server has more for this scope (a change is not finished).
    pub more: bool,
}

impl Replica {
    /// The scope `project` is to hold (everything unless set).
    pub fn scope(&self, project: &str) -> Result<Scope, ReplicaError> {
        Ok(store::scope_state(&self.conn, project)?.wanted)
    }

    /// Hold only what `scope` covers of `project`, from the next round on
    /// (kept across restarts; it can change offline). Sections leaving it are
    /// dropped once the server has their local edits; sections entering it
    /// arrive whole.
    pub fn set_scope(&mut self, project: &str, scope: Scope) -> Result<(), ReplicaError> {
        scope.check()?;
        let tx = self.begin()?;
        store::join_project(&tx, project)?;
        store::set_wanted_scope(&tx, project, &scope)?;
        tx.commit()?;
        self.feed.publish(ReplicaChange::status());
        Ok(())
    }

    /// Add `subscription` to `project`'s scope (a scope of everything
    /// becomes this subscription alone). Returns the new scope.
    pub fn subscribe(&mut self, project: &str, subscription: Subscription) -> Result<Scope, ReplicaError> {
        let scope = match self.scope(project)? {
            Scope::Only(mut list) if !list.contains(&subscription) => {
                list.push(subscription);
                Scope::Only(list)
            }
            Scope::Only(list) => Scope::Only(list),
            Scope::Everything => Scope::Only(vec![subscription]),
        };
        self.set_scope(project, scope.clone())?;
        Ok(scope)
    }

    /// The sections of `project` this replica holds, each with why.
    pub fn holdings(&self, project: &str) -> Result<Vec<SectionHolding>, ReplicaError> {
        let state = store::scope_state(&self.conn, project)?;
        let changing = state.moving.is_some() || state.wanted != state.held;
        let mut out = Vec::new();
        for section in store::held_sections(&self.conn, project)? {
            let coverage = store::view(&self.conn, &section)?.map(|v| v.coverage()).unwrap_or_default();
            let mut reasons = match &state.wanted {
                Scope::Everything => vec![HeldBecause::Everything],
                Scope::Only(list) => list
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.covers(&section, &coverage))
                    .map(|(index, _)| HeldBecause::Subscription { index })
                    .collect(),
            };
            if store::has_local_changes(&self.conn, &section)? {
                reasons.push(HeldBecause::UnsyncedEdits);
            }
            if reasons.is_empty() || changing {
                reasons.push(HeldBecause::ScopeChanging);
            }
            out.push(SectionHolding { section, reasons });
        }
        Ok(out)
    }
}

/// Drop what a round says the scope no longer covers (a section with local
/// edits the server has not taken waits for a later round), and when the
/// server has finished a change of scope, hold it as the one the cursor is
/// earned under.
pub(crate) fn settle_scope(
    tx: &Transaction<'_>,
    docs: &mut DocCache,
    project: &str,
    settlement: &ScopeSettlement<'_>,
    changed: &mut ReplicaChange,
) -> Result<(), ReplicaError> {
    let mut leaving: BTreeSet<String> = settlement.evicted.iter().cloned().collect();
    if let Some(keep) = settlement.keep_only {
        let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
        leaving.extend(store::held_sections(tx, project)?.into_iter().filter(|s| !keep.contains(s.as_str())));
    }
    for section in &settlement.arrived {
        store::cancel_eviction(tx, section)?;
    }
    leaving.extend(store::deferred_evictions(tx)?);
    for section in leaving.iter().filter(|s| !settlement.arrived.contains(s.as_str())) {
        if store::has_local_changes(tx, section)? {
            store::defer_eviction(tx, section)?;
            continue;
        }
        store::drop_section(tx, section)?;
        docs.pop(section);
        changed.views.insert(section.clone());
        changed.conflicts.insert(section.clone());
    }
    if !settlement.more
        && let Some(moving) = store::scope_state(tx, project)?.moving
    {
        store::set_held_scope(tx, project, &moving.scope)?;
    }
    Ok(())
}
