//! The hub's administration: projects, members and their roles, devices and
//! their tokens, and what the server holds (views, conflicts, roster). A
//! roster or config change takes its project's turn, like a round, and
//! re-judges every section under the new roster history.

use fieldsync_core::{ConflictRecord, Member, ProjectConfig, Role, SectionDoc, SectionView, validate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::round::{conflict_rows, input_of};
use super::{BOOTSTRAP_BATCH, Hub, roster_of};
use crate::error::HubError;
use crate::limits;
use crate::store::{DeviceRecord, DeviceSummary, HubStore, ProjectSummary, StoreError};

/// What enrolling a device returns. The token is shown once: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The new device's id.
    pub device_id: String,
    /// Its bearer token (64 hex characters).
    pub token: String,
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS has randomness");
    hex::encode(b)
}

impl Hub {
    /// Create a project.
    pub fn create_project(&self, id: &str, config: ProjectConfig) -> Result<(), HubError> {
        if id.is_empty() || id.trim() != id {
            return Err(HubError::Malformed(format!("`{id}` is not a usable project id")));
        }
        if id.len() > limits::MAX_PROJECT_ID_BYTES {
            return Err(HubError::Malformed(format!(
                "a project id is at most {} bytes; this one is {}",
                limits::MAX_PROJECT_ID_BYTES,
                id.len()
            )));
        }
        if !self.store()?.create_project(id, &config)? {
            return Err(HubError::AlreadyExists(format!("project `{id}` exists already")));
        }
        Ok(())
    }

    /// Replace a project's rule configuration (every view is recomputed).
    pub fn set_config(&self, project: &str, config: ProjectConfig) -> Result<(), HubError> {
        let turn = self.turn(project);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.store()?;
        if !store.set_config(project, &config)? {
            return Err(HubError::UnknownProject(project.to_owned()));
        }
        revalidate(&mut *store, project)
    }

    /// Make `user` a member of `project` with `role` (or change their role), from now on.
    pub fn add_member(&self, project: &str, user: &str, role: Role) -> Result<(), HubError> {
        self.add_member_at(project, user, role, fieldsync_core::wall_clock_ms())
    }

    /// Make `user` a member of `project` with `role` from `now_ms` (server
    /// time) on: their earlier writes keep the role they were made under.
    pub fn add_member_at(&self, project: &str, user: &str, role: Role, now_ms: u64) -> Result<(), HubError> {
        if user.is_empty() {
            return Err(HubError::Malformed("a member needs a user name".into()));
        }
        if self.store()?.project(project)?.is_none() {
            return Err(HubError::UnknownProject(project.to_owned()));
        }
        // The turn before a store, as rounds take them (a pool of one would deadlock otherwise).
        let turn = self.turn(project);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.store()?;
        store.put_member(project, user, role, now_ms)?;
        revalidate(&mut *store, project)
    }

    /// Remove `user` from `project`: their devices can no longer sync it.
    pub fn remove_member(&self, project: &str, user: &str) -> Result<(), HubError> {
        self.remove_member_at(project, user, fieldsync_core::wall_clock_ms())
    }

    /// Remove `user` from `project` at `now_ms` (server time): their earlier
    /// writes keep the role they were made under, later ones count for nothing.
    pub fn remove_member_at(&self, project: &str, user: &str, now_ms: u64) -> Result<(), HubError> {
        if self.store()?.project(project)?.is_none() {
            return Err(HubError::UnknownProject(project.to_owned()));
        }
        // The turn before a store, as rounds take them (a pool of one would deadlock otherwise).
        let turn = self.turn(project);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.store()?;
        store.remove_member(project, user, now_ms)?;
        revalidate(&mut *store, project)
    }

    /// Enroll a device for `user`; the token in the answer is shown only once.
    pub fn enroll_device(&self, user: &str, device_name: &str) -> Result<Enrollment, HubError> {
        self.enroll_device_until(user, device_name, None)
    }

    /// Enroll a device for `user` with a token that stops working at
    /// `expires_ms` (server ms; `None`: never). The token is shown only once.
    pub fn enroll_device_until(
        &self,
        user: &str,
        device_name: &str,
        expires_ms: Option<u64>,
    ) -> Result<Enrollment, HubError> {
        if user.is_empty() {
            return Err(HubError::Malformed("a device needs a user".into()));
        }
        let token = random_hex(32);
        let device = DeviceRecord {
            id: random_hex(16),
            user: user.to_owned(),
            name: device_name.to_owned(),
            created_ms: crate::now_ms(),
            revoked_ms: None,
            expires_ms,
        };
        self.store()?.create_device(&device, &token_hash(&token))?;
        Ok(Enrollment { device_id: device.id, token })
    }

    /// A fresh token for an enrolled device, stopping at `expires_ms` (`None`:
    /// never): what the app's backend hands its connector when a token
    /// expired. The device keeps its id, actors and projects; its previous
    /// token stops working at once. A revoked device gets none.
    pub fn issue_token(&self, device_id: &str, expires_ms: Option<u64>) -> Result<Enrollment, HubError> {
        let token = random_hex(32);
        let mut store = self.store()?;
        if !store.replace_token(device_id, &token_hash(&token), expires_ms)? {
            // Say why: a revoked device is not an unknown one.
            let revoked = store.list_devices()?.into_iter().find(|d| d.device.id == device_id);
            return Err(match revoked.and_then(|d| d.device.revoked_ms) {
                Some(at) => HubError::Forbidden(format!(
                    "device {device_id} was revoked (at {at} ms since the epoch) and gets no token; enroll the device again"
                )),
                None => HubError::UnknownDevice(device_id.to_owned()),
            });
        }
        Ok(Enrollment { device_id: device_id.to_owned(), token })
    }

    /// Revoke a device: its token stops working at once. Its past changes stay.
    pub fn revoke_device(&self, device_id: &str) -> Result<(), HubError> {
        if !self.store()?.revoke_device(device_id, crate::now_ms())? {
            return Err(HubError::UnknownDevice(device_id.to_owned()));
        }
        self.live.revoked(device_id);
        Ok(())
    }

    /// Every project with its members.
    pub fn list_projects(&self) -> Result<Vec<ProjectSummary>, HubError> {
        Ok(self.store()?.list_projects()?)
    }

    /// Every device with its actors.
    pub fn list_devices(&self) -> Result<Vec<DeviceSummary>, HubError> {
        Ok(self.store()?.list_devices()?)
    }

    /// The server's validated view of a section.
    pub fn section_view(&self, section: &str) -> Result<Option<SectionView>, HubError> {
        match self.store()?.section_view(section)? {
            Some(json) => Ok(Some(serde_json::from_str(&json).map_err(StoreError::from)?)),
            None => Ok(None),
        }
    }

    /// The server's conflict records of a project (the audit of rule decisions).
    pub fn conflicts(&self, project: &str) -> Result<Vec<ConflictRecord>, HubError> {
        let rows = self.store()?.conflicts(project)?;
        rows.iter().map(|j| Ok(serde_json::from_str(j).map_err(StoreError::from)?)).collect()
    }

    /// The project's current roster (actor → user → role).
    pub fn roster(&self, project: &str) -> Result<Vec<Member>, HubError> {
        Ok(self.store()?.roster(project)?)
    }
}

/// Recompute every section view and conflict set of a project (after its
/// roster or config changed), one document at a time.
fn revalidate(store: &mut dyn HubStore, project: &str) -> Result<(), HubError> {
    let Some(record) = store.project(project)? else { return Ok(()) };
    let roster = roster_of(store, project, None)?;
    let mut after = String::new();
    loop {
        let ids = store.sections_after(project, &after, BOOTSTRAP_BATCH)?;
        let Some(last) = ids.last().cloned() else { return Ok(()) };
        for id in ids {
            let Some(s) = store.section(&id)? else { continue };
            let Ok(doc) = SectionDoc::from_parts(s.snapshot.as_deref(), &s.changes) else { continue };
            let validated = validate(&input_of(&doc, &s.received), &roster, &record.config);
            let conflicts = conflict_rows(&validated)?;
            let view = serde_json::to_string(&validated.view).map_err(StoreError::from)?;
            store.put_view(&id, &view, &conflicts)?;
        }
        after = last;
    }
}
