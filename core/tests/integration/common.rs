//! Helpers shared by the test modules.

use fieldsync_core::protocol::SyncResponse;
use std::sync::Arc;

use fieldsync_core::{DeviceClock, GeoPoint, Member, Replica, ReplicaOptions, Role, SectionChange, SystemClock};

pub const PROJECT: &str = "p1";

/// A straight route of about 1.1 km due east from (48.0, 11.0).
pub fn route() -> Vec<GeoPoint> {
    vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.015 }]
}

/// Replicas in `dir`, one per role given, all in one roster.
pub fn crew(dir: &std::path::Path, roles: &[Role]) -> Vec<Replica> {
    crew_on(dir, roles, Arc::new(SystemClock))
}

/// Like [`crew`], every replica reading `clock`.
pub fn crew_on(dir: &std::path::Path, roles: &[Role], clock: Arc<dyn DeviceClock>) -> Vec<Replica> {
    let mut replicas: Vec<Replica> = roles
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let options = ReplicaOptions { device: format!("dev{i}"), clock: clock.clone(), ..Default::default() };
            Replica::open(dir.join(format!("dev{i}.db")), options).unwrap()
        })
        .collect();
    let members: Vec<Member> = replicas
        .iter()
        .zip(roles)
        .enumerate()
        .map(|(i, (r, role))| Member { actor: r.actor(), user: format!("user{i}"), role: *role })
        .collect();
    for r in &mut replicas {
        r.set_roster(PROJECT, &members).unwrap();
    }
    replicas
}

/// Every change `from` holds for `section`, as they would travel.
pub fn changes_of(from: &mut Replica, section: &str) -> Vec<SectionChange> {
    from.changes_of(section, &[])
        .unwrap()
        .into_iter()
        .map(|bytes| SectionChange { section: section.into(), bytes })
        .collect()
}

/// Copy every change of `section` from `from` to `to`.
pub fn sync_section(from: &mut Replica, to: &mut Replica, section: &str) -> fieldsync_core::MergeReport {
    let changes = changes_of(from, section);
    to.apply_changes(&changes).unwrap()
}

/// An answer with nothing in it but the feed's new `cursor`, and whether more waits.
pub fn response(cursor: &str, more: bool) -> SyncResponse {
    SyncResponse {
        server_time_ms: 1,
        changes: vec![],
        documents: vec![],
        cursor: cursor.into(),
        more,
        roster: None,
        upload_received: vec![],
        evicted: vec![],
        keep_only: None,
        still_to_send: None,
        full_size_photos: None,
    }
}
