//! Partial sync on the hub: which sections a device's scope covers (found by
//! the store's spatial index, crews and ids, each then judged exactly by
//! core's coverage, as the device judges it), which enter whole when the
//! scope changes, and which a page of the feed sends, sends whole or drops.
//!
//! What a device holds follows from its requests alone: at its cursor `seq`
//! it holds the sections its scope covered as their coverage stood then. So
//! the hub keeps no state per device, and any process answers any round.

use std::collections::{BTreeSet, HashMap};

use fieldsync_core::protocol::{Holding, SyncResponse};
use fieldsync_core::{Coverage, Scope, Subscription};

use crate::error::HubError;
use crate::store::{FeedRow, HubStore};

/// The sections a bootstrap (or a change of scope) sends whole, by id.
pub(super) enum Entering {
    /// Every section of the project.
    All,
    /// Every section except those the device held at `seq` under `held`.
    AllBut {
        /// The scope the device held them under.
        held: Scope,
        /// Its cursor's seq.
        seq: u64,
    },
    /// These, sorted.
    Listed(Vec<String>),
}

impl Entering {
    /// What a round with this scope, held scope and cursor seq sends whole.
    pub(super) fn of(
        store: &mut dyn HubStore,
        project: &str,
        scope: &Scope,
        held: Option<&Scope>,
        seq: u64,
    ) -> Result<Entering, HubError> {
        Ok(match (scope, held) {
            (Scope::Everything, None) => Entering::All,
            (Scope::Everything, Some(held)) => Entering::AllBut { held: held.clone(), seq },
            (Scope::Only(list), held) => {
                let mut entering = Vec::new();
                for id in covered_now(store, project, list)? {
                    if held.is_none_or(|h| !held_at(store, h, &id, seq).unwrap_or(false)) {
                        entering.push(id);
                    }
                }
                Entering::Listed(entering)
            }
        })
    }

    /// The next sections after `after` (by id), a batch at a time; empty at the end.
    pub(super) fn after(
        &self,
        store: &mut dyn HubStore,
        project: &str,
        after: &str,
        batch: usize,
    ) -> Result<Vec<String>, HubError> {
        match self {
            Entering::All => Ok(store.sections_after(project, after, batch)?),
            Entering::AllBut { held, seq } => {
                let mut after = after.to_owned();
                loop {
                    let ids = store.sections_after(project, &after, batch)?;
                    let Some(last) = ids.last().cloned() else { return Ok(ids) };
                    let mut entering = Vec::new();
                    for id in ids {
                        if !held_at(store, held, &id, *seq)? {
                            entering.push(id);
                        }
                    }
                    if !entering.is_empty() {
                        return Ok(entering);
                    }
                    after = last;
                }
            }
            Entering::Listed(ids) => {
                let start = ids.partition_point(|id| id.as_str() <= after);
                Ok(ids[start..].iter().take(batch).cloned().collect())
            }
        }
    }
}

/// What `scope` (not everything) covers now: the list a device keeps.
pub(super) fn holding(store: &mut dyn HubStore, project: &str, scope: &Scope) -> Result<Option<Holding>, HubError> {
    match scope {
        Scope::Everything => Ok(None),
        Scope::Only(list) => Ok(Some(Holding { sections: covered_now(store, project, list)?.into_iter().collect() })),
    }
}

/// The sections of `project` the subscriptions cover now, sorted.
fn covered_now(
    store: &mut dyn HubStore,
    project: &str,
    subscriptions: &[Subscription],
) -> Result<BTreeSet<String>, HubError> {
    let mut candidates = BTreeSet::new();
    for s in subscriptions {
        match s {
            Subscription::Sections(ids) => {
                // Only ids of this project's sections: a scope never widens access.
                for id in ids {
                    if store.section(id)?.is_some_and(|found| found.project == project) {
                        candidates.insert(id.clone());
                    }
                }
            }
            Subscription::Crew(crew) => candidates.extend(store.sections_of_crew(project, crew)?),
            Subscription::Area(_) | Subscription::Corridor { .. } => {
                if let Some(area) = s.search_bounds() {
                    candidates.extend(store.sections_meeting(project, area)?);
                }
            }
        }
    }
    let mut covered = BTreeSet::new();
    for id in candidates {
        let coverage = store.coverage_at(&id, u64::MAX)?.unwrap_or_default();
        if subscriptions.iter().any(|s| s.covers(&id, &coverage)) {
            covered.insert(id);
        }
    }
    Ok(covered)
}

/// Whether a device with `scope` held `section` at feed seq `seq`.
fn held_at(store: &mut dyn HubStore, scope: &Scope, section: &str, seq: u64) -> Result<bool, HubError> {
    Ok(store.coverage_at(section, seq)?.is_some_and(|coverage| scope.covers(section, &coverage)))
}

/// A page of the feed as a device with a scope (not everything) receives
/// it: the rows of sections it holds; a section whose coverage changed in
/// the page's range whole if the scope covers it now (the device may not have
/// it), or dropped if it held it before.
pub(super) struct ScopedPage<'a> {
    scope: &'a Scope,
    /// Coverage now, by section, read once a round.
    now: HashMap<String, bool>,
}

impl<'a> ScopedPage<'a> {
    pub(super) fn new(scope: &'a Scope) -> ScopedPage<'a> {
        ScopedPage { scope, now: HashMap::new() }
    }

    /// Whether the scope covers `section` now.
    pub(super) fn covers(&mut self, store: &mut dyn HubStore, section: &str) -> Result<bool, HubError> {
        if let Some(&covered) = self.now.get(section) {
            return Ok(covered);
        }
        let coverage: Coverage = store.coverage_at(section, u64::MAX)?.unwrap_or_default();
        let covered = self.scope.covers(section, &coverage);
        self.now.insert(section.to_owned(), covered);
        Ok(covered)
    }

    /// Settle the sections whose coverage changed in (after, until]: their
    /// rows are dropped from `rows`, the ones the device held and no longer
    /// holds are evicted in `response`, and the ones the scope covers now
    /// are returned, to be sent whole (the device may not have them).
    pub(super) fn settle_moves(
        &mut self,
        store: &mut dyn HubStore,
        project: &str,
        (after, until): (u64, u64),
        rows: &mut Vec<FeedRow>,
        response: &mut SyncResponse,
    ) -> Result<Vec<String>, HubError> {
        let moved = store.coverage_changed(project, after, until)?;
        let mut whole = Vec::new();
        for section in &moved {
            if self.covers(store, section)? {
                whole.push(section.clone());
            } else if held_at(store, self.scope, section, after)? {
                response.evicted.push(section.clone());
            }
        }
        let moved: BTreeSet<&String> = moved.iter().collect();
        rows.retain(|r| !moved.contains(&r.section));
        Ok(whole)
    }
}
