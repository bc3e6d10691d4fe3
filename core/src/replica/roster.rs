//! What the rules need besides the documents, as the server delivers it: the
//! roster and the project's config (each change recomputes every view of the
//! project in the same transaction), and the server's time the clock follows.

use std::collections::HashSet;

use rusqlite::Transaction;

use crate::domain::document::SectionDoc;
use crate::domain::project::{Member, ProjectConfig, RoleChange, Roster};
use crate::domain::role::Role;
use crate::replica::feed::ReplicaChange;
use crate::replica::{Replica, ReplicaError};
use crate::rules::validate::validate;
use crate::store;

impl Replica {
    /// Replace a project's roster, each member holding their role for ever.
    pub fn set_roster(&mut self, project: &str, members: &[Member]) -> Result<(), ReplicaError> {
        self.set_roster_with_history(project, members, &[])
    }

    /// Replace a project's roster and its role history (as the server delivers them).
    pub fn set_roster_with_history(
        &mut self,
        project: &str,
        members: &[Member],
        history: &[RoleChange],
    ) -> Result<(), ReplicaError> {
        let tx = self.begin()?;
        store::set_roster(&tx, project, members, history)?;
        let mut changed = ReplicaChange::default();
        self.revalidate_project(&tx, project, &HashSet::new(), &mut changed)?;
        tx.commit()?;
        self.feed.publish(changed);
        Ok(())
    }

    /// Replace a project's configuration (delivered by the server).
    pub fn set_project_config(&mut self, project: &str, config: &ProjectConfig) -> Result<(), ReplicaError> {
        let tx = self.begin()?;
        store::set_config(&tx, project, config)?;
        let mut changed = ReplicaChange::default();
        self.revalidate_project(&tx, project, &HashSet::new(), &mut changed)?;
        tx.commit()?;
        self.feed.publish(changed);
        Ok(())
    }

    /// A project's roster.
    pub fn roster(&self, project: &str) -> Result<Roster, ReplicaError> {
        Ok(store::roster(&self.conn, project)?)
    }

    /// Our own role in `project`, per the roster.
    pub fn role_in(&self, project: &str) -> Result<Option<Role>, ReplicaError> {
        Ok(self.roster(project)?.current_role(&self.actor()))
    }

    /// Learn the server's time (at each sync) so stamps follow it.
    pub fn observe_server_time(&mut self, server_ms: u64) -> Result<(), ReplicaError> {
        self.clock.anchor_to_server(server_ms, self.device_clock.now());
        let tx = self.begin()?;
        self.save_clock(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Recompute and store every section of a project, in `tx` (after a
    /// roster or config change), adding the project and the sections whose
    /// view or conflicts moved to `changed`. Sections in `skip` are left to
    /// the caller, which recomputes them later in the same transaction.
    pub(crate) fn revalidate_project(
        &self,
        tx: &Transaction<'_>,
        project: &str,
        skip: &HashSet<&str>,
        changed: &mut ReplicaChange,
    ) -> Result<(), ReplicaError> {
        changed.rosters.insert(project.to_owned());
        let now = self.now().wall_ms as i64;
        let roster = store::roster(tx, project)?;
        let config = store::config(tx, project)?;
        for id in store::section_ids(tx, project)? {
            if skip.contains(id.as_str()) {
                continue;
            }
            let mut input = match self.docs.peek(&id) {
                Some(doc) => doc.input(),
                None => {
                    let Some((_, snapshot, changes)) = store::load_doc(tx, &id)? else { continue };
                    SectionDoc::from_parts(snapshot.as_deref(), &changes)?.input()
                }
            };
            input.received = store::receipts(tx, &id)?;
            let validated = validate(&input, &roster, &config);
            if store::put_view_if_changed(tx, &validated.view, now)? {
                changed.views.insert(id.clone());
            }
            if store::replace_conflicts(tx, &id, &validated.conflicts)? {
                changed.conflicts.insert(id.clone());
            }
        }
        Ok(())
    }
}
