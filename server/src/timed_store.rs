//! [`TimedStore`]: any [`HubStore`] with the time of each call recorded in
//! [`Metrics`] (`fieldsync_store_operation_duration_seconds{operation}`), so
//! that the backends themselves carry no instrumentation.

use std::sync::Arc;
use std::time::Instant;

use fieldsync_core::protocol::Refusal;
use fieldsync_core::{Bounds, Coverage, Member, ProjectConfig, Role, RoleChange};

use crate::metrics::Metrics;
use crate::store::{
    DeviceRecord, DeviceSummary, FeedPage, HubStore, ProjectRecord, ProjectSummary, RoundWrite, StoreError,
    StoredPhoto, StoredSection,
};

/// A store whose every call is timed.
pub struct TimedStore {
    inner: Box<dyn HubStore>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    /// Time every call to `inner` into `metrics`.
    pub fn new(inner: Box<dyn HubStore>, metrics: Arc<Metrics>) -> TimedStore {
        TimedStore { inner, metrics }
    }

    fn timed<T>(
        &mut self,
        operation: &'static str,
        call: impl FnOnce(&mut dyn HubStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call(self.inner.as_mut());
        self.metrics.store_operation(operation, started.elapsed());
        result
    }
}

impl HubStore for TimedStore {
    fn device_by_token_hash(&mut self, token_hash: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.timed("device_by_token_hash", |s| s.device_by_token_hash(token_hash))
    }
    fn project(&mut self, id: &str) -> Result<Option<ProjectRecord>, StoreError> {
        self.timed("project", |s| s.project(id))
    }
    fn member_role(&mut self, project: &str, user: &str) -> Result<Option<Role>, StoreError> {
        self.timed("member_role", |s| s.member_role(project, user))
    }
    fn actor_device(&mut self, actor: &str) -> Result<Option<String>, StoreError> {
        self.timed("actor_device", |s| s.actor_device(actor))
    }
    fn actor_count(&mut self, device: &str) -> Result<usize, StoreError> {
        self.timed("actor_count", |s| s.actor_count(device))
    }
    fn roster(&mut self, project: &str) -> Result<Vec<Member>, StoreError> {
        self.timed("roster", |s| s.roster(project))
    }
    fn role_history(&mut self, project: &str) -> Result<Vec<RoleChange>, StoreError> {
        self.timed("role_history", |s| s.role_history(project))
    }
    fn received(&mut self, section: &str, hash: &str) -> Result<Option<u64>, StoreError> {
        self.timed("received", |s| s.received(section, hash))
    }
    fn section(&mut self, id: &str) -> Result<Option<StoredSection>, StoreError> {
        self.timed("section", |s| s.section(id))
    }
    fn commit_round(&mut self, write: &RoundWrite) -> Result<u64, StoreError> {
        self.timed("commit_round", |s| s.commit_round(write))
    }
    fn record_refusals(
        &mut self,
        project: &str,
        device: &str,
        refusals: &[Refusal],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.timed("record_refusals", |s| s.record_refusals(project, device, refusals, now_ms))
    }
    fn feed_page(
        &mut self,
        project: &str,
        after: u64,
        exclude_device: &str,
        budget: usize,
    ) -> Result<FeedPage, StoreError> {
        self.timed("feed_page", |s| s.feed_page(project, after, exclude_device, budget))
    }
    fn feed_count(&mut self, project: &str, after: u64, exclude_device: &str) -> Result<u64, StoreError> {
        self.timed("feed_count", |s| s.feed_count(project, after, exclude_device))
    }
    fn feed_max(&mut self, project: &str) -> Result<u64, StoreError> {
        self.timed("feed_max", |s| s.feed_max(project))
    }
    fn sections_after(&mut self, project: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.timed("sections_after", |s| s.sections_after(project, after, limit))
    }
    fn sections_count_after(&mut self, project: &str, after: &str) -> Result<u64, StoreError> {
        self.timed("sections_count_after", |s| s.sections_count_after(project, after))
    }
    fn put_snapshot(&mut self, section: &str, snapshot: &[u8], covers_seq: u64) -> Result<(), StoreError> {
        self.timed("put_snapshot", |s| s.put_snapshot(section, snapshot, covers_seq))
    }
    fn section_view(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        self.timed("section_view", |s| s.section_view(id))
    }
    fn conflicts(&mut self, project: &str) -> Result<Vec<String>, StoreError> {
        self.timed("conflicts", |s| s.conflicts(project))
    }
    fn put_view(&mut self, section: &str, view: &str, conflicts: &[(String, String)]) -> Result<(), StoreError> {
        self.timed("put_view", |s| s.put_view(section, view, conflicts))
    }
    fn sections_meeting(&mut self, project: &str, area: Bounds) -> Result<Vec<String>, StoreError> {
        self.timed("sections_meeting", |s| s.sections_meeting(project, area))
    }
    fn sections_of_crew(&mut self, project: &str, crew: &str) -> Result<Vec<String>, StoreError> {
        self.timed("sections_of_crew", |s| s.sections_of_crew(project, crew))
    }
    fn coverage_at(&mut self, section: &str, seq: u64) -> Result<Option<Coverage>, StoreError> {
        self.timed("coverage_at", |s| s.coverage_at(section, seq))
    }
    fn coverage_changed(&mut self, project: &str, after: u64, until: u64) -> Result<Vec<String>, StoreError> {
        self.timed("coverage_changed", |s| s.coverage_changed(project, after, until))
    }
    fn check_writable(&mut self) -> Result<(), StoreError> {
        self.timed("check_writable", |s| s.check_writable())
    }
    fn create_project(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError> {
        self.timed("create_project", |s| s.create_project(id, config))
    }
    fn set_config(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError> {
        self.timed("set_config", |s| s.set_config(id, config))
    }
    fn put_member(&mut self, project: &str, user: &str, role: Role, at_ms: u64) -> Result<(), StoreError> {
        self.timed("put_member", |s| s.put_member(project, user, role, at_ms))
    }
    fn remove_member(&mut self, project: &str, user: &str, at_ms: u64) -> Result<bool, StoreError> {
        self.timed("remove_member", |s| s.remove_member(project, user, at_ms))
    }
    fn create_device(&mut self, device: &DeviceRecord, token_hash: &str) -> Result<(), StoreError> {
        self.timed("create_device", |s| s.create_device(device, token_hash))
    }
    fn replace_token(&mut self, id: &str, token_hash: &str, expires_ms: Option<u64>) -> Result<bool, StoreError> {
        self.timed("replace_token", |s| s.replace_token(id, token_hash, expires_ms))
    }
    fn revoke_device(&mut self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        self.timed("revoke_device", |s| s.revoke_device(id, now_ms))
    }
    fn actor_binding(&mut self, actor: &str) -> Result<Option<(String, u64)>, StoreError> {
        self.timed("actor_binding", |s| s.actor_binding(actor))
    }
    fn raise_stamp_floor(&mut self, actor: &str, floor_ms: u64) -> Result<(), StoreError> {
        self.timed("raise_stamp_floor", |s| s.raise_stamp_floor(actor, floor_ms))
    }
    fn revoked_since(&mut self, since_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.timed("revoked_since", |s| s.revoked_since(since_ms))
    }
    fn list_projects(&mut self) -> Result<Vec<ProjectSummary>, StoreError> {
        self.timed("list_projects", |s| s.list_projects())
    }
    fn list_devices(&mut self) -> Result<Vec<DeviceSummary>, StoreError> {
        self.timed("list_devices", |s| s.list_devices())
    }
    fn photo(&mut self, project: &str, sha256: &str) -> Result<Option<StoredPhoto>, StoreError> {
        self.timed("photo", |s| s.photo(project, sha256))
    }
    fn append_photo(
        &mut self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<StoredPhoto, StoreError> {
        self.timed("append_photo", |s| s.append_photo(project, sha256, size, offset, bytes, now_ms))
    }
    fn finish_photo(&mut self, project: &str, sha256: &str, keep: bool) -> Result<(), StoreError> {
        self.timed("finish_photo", |s| s.finish_photo(project, sha256, keep))
    }
    fn read_photo(&mut self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<Vec<u8>, StoreError> {
        self.timed("read_photo", |s| s.read_photo(project, sha256, offset, length))
    }
    fn unreferenced_photos(&mut self, before_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.timed("unreferenced_photos", |s| s.unreferenced_photos(before_ms))
    }
    fn delete_photo(&mut self, project: &str, sha256: &str) -> Result<(), StoreError> {
        self.timed("delete_photo", |s| s.delete_photo(project, sha256))
    }
    fn photo_named(&mut self, project: &str, sha256: &str) -> Result<bool, StoreError> {
        self.timed("photo_named", |s| s.photo_named(project, sha256))
    }
}
