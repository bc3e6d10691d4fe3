//! The change feed, live section lists and the sync activity: what each
//! write, merge, round and roster change publishes (counted, never timed),
//! the list's filters and orders, and the activity a sync goes through.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use fieldsync_core::protocol::{self, SectionDocument, SyncRequest, SyncResponse};
use fieldsync_core::{
    ConstructionState, DeviceTime, GeoBounds, GeoPoint, ManualClock, Replica, ReplicaChange, Role, SectionOrder,
    SectionQuery, SyncActivity, SyncClient, SyncProblem, TransportError,
};

use crate::common::{PROJECT, changes_of, crew, crew_on, route, sync_section};

/// Every change a replica's feed delivers, in order.
fn record(replica: &Replica) -> (Arc<Mutex<Vec<ReplicaChange>>>, fieldsync_core::FeedSubscription) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    let subscription = replica.change_feed().subscribe(move |c| log.lock().unwrap().push(c.clone()));
    (heard, subscription)
}

fn ids(of: &[&str]) -> BTreeSet<String> {
    of.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_merge_publishes_only_the_sections_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = r.split_at_mut(1);
    let (office, tech) = (&mut office[0], &mut tech[0]);
    let sections: Vec<String> =
        (0..5).map(|i| office.create_section(PROJECT, &format!("S{i}"), &route()).unwrap()).collect();
    for s in &sections {
        sync_section(office, tech, s);
    }
    let (heard, _subscription) = record(tech);
    office.record_progress(&sections[1], 10).unwrap();
    office.set_notes(&sections[3], "water main").unwrap();

    // Everything the office has of all five sections arrives: two are new.
    let all: Vec<_> = sections.iter().flat_map(|s| changes_of(office, s)).collect();
    tech.apply_changes(&all).unwrap();
    tech.change_feed().flush();
    let heard_now = heard.lock().unwrap().clone();
    assert_eq!(heard_now.len(), 1, "one flush, one change: {heard_now:?}");
    assert_eq!(heard_now[0].views, ids(&[&sections[1], &sections[3]]));
    assert!(heard_now[0].conflicts.is_empty() && heard_now[0].unsynced.is_empty() && !heard_now[0].status);

    // The same again: nothing changed, nothing published.
    tech.apply_changes(&all).unwrap();
    tech.change_feed().flush();
    assert_eq!(heard.lock().unwrap().len(), 1);

    // A local write names its section's view and unsynced edits, and the status.
    tech.record_progress(&sections[2], 5).unwrap();
    tech.change_feed().flush();
    let write = heard.lock().unwrap()[1].clone();
    assert_eq!(
        (write.views.clone(), write.unsynced.clone(), write.status),
        (ids(&[&sections[2]]), ids(&[&sections[2]]), true)
    );

    // A concurrent write to the same field: a contest, and its conflict record.
    office.record_progress(&sections[2], 7).unwrap();
    tech.apply_changes(&changes_of(office, &sections[2])).unwrap();
    tech.change_feed().flush();
    let contest = heard.lock().unwrap()[2].clone();
    assert_eq!((contest.views.clone(), contest.conflicts.clone()), (ids(&[&sections[2]]), ids(&[&sections[2]])));

    // The same roster again changes no view: only the roster is named.
    let roster = tech.roster(PROJECT).unwrap();
    let members: Vec<_> = roster.members().cloned().collect();
    tech.set_roster(PROJECT, &members).unwrap();
    tech.change_feed().flush();
    let same = heard.lock().unwrap()[3].clone();
    assert_eq!(same.rosters, ids(&[PROJECT]));
    assert!(same.views.is_empty(), "{same:?}");
}

#[test]
fn a_section_list_filters_orders_and_pages_and_flags_unsynced_edits() {
    let dir = tempfile::tempdir().unwrap();
    // A clock of their own, so that each step is a millisecond of its own: "last change" is then exact.
    let clock = Arc::new(ManualClock::new(DeviceTime::wall(1_800_000_000_000)));
    let mut r = crew_on(dir.path(), &[Role::Office, Role::Foreman], clock.clone());
    let (office, foreman) = r.split_at_mut(1);
    let (office, foreman) = (&mut office[0], &mut foreman[0]);
    let at = |ms: u64| clock.set(DeviceTime::wall(1_800_000_000_000 + ms));
    let east = |lon: f64| vec![GeoPoint { lat: 48.0, lon }, GeoPoint { lat: 48.0, lon: lon + 0.01 }];
    let a = office.create_section(PROJECT, "A", &east(11.0)).unwrap();
    let b = office.create_section(PROJECT, "B", &east(12.0)).unwrap();
    let c = office.create_section(PROJECT, "C", &east(13.0)).unwrap();
    office.transition(&b, ConstructionState::Surveyed, None).unwrap();
    for s in [&a, &b, &c] {
        sync_section(office, foreman, s);
    }
    // The office's edits are all unsynced; confirm them as a round would.
    let outbox: Vec<String> = office.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect();
    office.confirm(&outbox).unwrap();
    at(1_000);
    office.set_notes(&c, "unsynced").unwrap();
    // A contest on A (the foreman's stamp the later: max wins): a conflict record.
    at(2_000);
    office.record_progress(&a, 5).unwrap();
    at(2_001);
    foreman.record_progress(&a, 8).unwrap();
    at(3_000);
    office.apply_changes(&changes_of(foreman, &a)).unwrap();

    let query = |q: SectionQuery| -> Vec<String> {
        office
            .query_sections(&SectionQuery { project: Some(PROJECT.into()), ..q })
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let mut by_id = vec![a.clone(), b.clone(), c.clone()];
    by_id.sort();
    assert_eq!(query(SectionQuery::default()), by_id);
    assert_eq!(query(SectionQuery { states: vec![ConstructionState::Surveyed], ..Default::default() }), [b.as_str()]);
    assert_eq!(query(SectionQuery { with_conflicts: true, ..Default::default() }), [a.as_str()]);
    let unsynced = query(SectionQuery { with_unsynced_edits: true, ..Default::default() });
    assert_eq!(unsynced.iter().collect::<BTreeSet<_>>(), [&a, &c].into_iter().collect());
    let around_12 = GeoBounds { south: 47.9, west: 11.95, north: 48.1, east: 12.005 };
    assert_eq!(query(SectionQuery { area: Some(around_12), ..Default::default() }), [b.as_str()]);
    let nowhere = GeoBounds { south: 10.0, west: 10.0, north: 11.0, east: 11.0 };
    assert!(query(SectionQuery { area: Some(nowhere), ..Default::default() }).is_empty());

    // The row says what the list shows.
    let page = office.query_sections(&SectionQuery { with_conflicts: true, ..Default::default() }).unwrap();
    let row = &page.rows[0];
    assert_eq!((row.name.as_str(), row.progress, row.unsynced, page.total), ("A", 8, true, 1));
    assert_eq!(row.changed_ms, 1_800_000_003_000, "when the merge changed it");
    assert!(row.conflict_count > 0, "{row:?}");

    // Last change first: A (merged last), then C (notes), then B; paged by the last row.
    let recent = |after: Option<String>| {
        query(SectionQuery { order: SectionOrder::LastChange, after, limit: 2, ..Default::default() })
    };
    let first = recent(None);
    assert_eq!(first, [a.as_str(), c.as_str()]);
    assert_eq!(recent(first.last().cloned()), [b.as_str()], "the next page");
    let total = office.query_sections(&SectionQuery { limit: 1, ..Default::default() }).unwrap().total;
    assert_eq!(total, 3, "the total counts every page");

    // The crew's sections, as the office assigned them.
    office.assign_crew(&c, "north").unwrap();
    let of_crew = |office: &fieldsync_core::Replica, crew: &str| -> Vec<String> {
        let q = SectionQuery { crew: Some(crew.into()), ..Default::default() };
        office.query_sections(&q).unwrap().rows.into_iter().map(|r| r.id).collect()
    };
    assert_eq!(of_crew(office, "north"), std::slice::from_ref(&c));
    assert!(of_crew(office, "south").is_empty());
    office.assign_crew(&c, "south").unwrap();
    assert!(of_crew(office, "north").is_empty(), "reassigned");
}

/// A stand-in hub that serves `documents` two to a page, then nothing.
fn bootstrap_pages(documents: Vec<SectionDocument>) -> impl Fn(Vec<u8>) -> Result<Vec<u8>, TransportError> {
    move |body: Vec<u8>| {
        let request: SyncRequest = protocol::decode(&body).unwrap();
        let from: usize = request.cursor.parse().unwrap_or(0);
        let to = (from + 2).min(documents.len());
        let response = SyncResponse {
            server_time_ms: 1,
            changes: vec![],
            documents: documents[from..to].to_vec(),
            cursor: to.to_string(),
            more: to < documents.len(),
            roster: None,
            upload_received: vec![0; request.upload.iter().map(|b| b.changes.len()).sum()],
            evicted: vec![],
            keep_only: None,
            still_to_send: None,
            full_size_photos: None,
        };
        Ok(protocol::encode(&response))
    }
}

#[test]
fn a_sync_goes_from_connecting_through_each_rounds_progress_to_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = crew(dir.path(), &[Role::Office, Role::Technician]);
    let mut tech = r.pop().unwrap();
    let mut office = r.pop().unwrap();
    let documents: Vec<SectionDocument> = (0..5)
        .map(|i| {
            let id = office.create_section(PROJECT, &format!("S{i}"), &route()).unwrap();
            SectionDocument { section: id.clone(), document: office.export(&id).unwrap(), received: vec![] }
        })
        .collect();
    tech.join_project(PROJECT).unwrap();
    // One section already here with an edit of its own, so the upload shows too.
    sync_section(&mut office, &mut tech, &documents[0].section);
    tech.set_notes(&documents[0].section, "on site").unwrap();
    let replica = Arc::new(Mutex::new(tech));
    let seen: Arc<Mutex<Vec<SyncActivity>>> = Arc::default();
    let (log, reader) = (seen.clone(), Arc::downgrade(&replica));
    let _subscription = replica.lock().unwrap().change_feed().subscribe(move |change| {
        // Flushed with the replica's lock released: the subscriber may read it.
        if let (true, Some(r)) = (change.status, reader.upgrade()) {
            let activity = r.lock().unwrap().sync_activity().unwrap();
            let mut log = log.lock().unwrap();
            if log.last() != Some(&activity) {
                log.push(activity);
            }
        }
    });
    assert_eq!(replica.lock().unwrap().sync_activity().unwrap(), SyncActivity::Waiting, "never synced");
    let client = SyncClient::new(replica.clone(), Arc::new(bootstrap_pages(documents)));
    let report = client.sync_now().unwrap();
    assert_eq!((report.rounds, report.documents), (3, 5));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&SyncActivity::Connecting), "{seen:#?}");
    assert_eq!(seen.last(), Some(&SyncActivity::UpToDate), "{seen:#?}");
    let progress: Vec<_> =
        seen.iter().filter_map(|a| if let SyncActivity::Syncing(p) = a { Some(*p) } else { None }).collect();
    assert_eq!(progress.iter().map(|p| p.downloaded_documents).collect::<Vec<_>>(), [2, 4, 5], "{seen:#?}");
    assert_eq!(progress.iter().map(|p| p.more_to_download).collect::<Vec<_>>(), [true, true, false]);
    assert!(progress.iter().all(|p| (p.uploaded, p.to_upload) == (1, 1)), "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].downloaded_bytes < w[1].downloaded_bytes));
    assert_eq!(progress[0].upload_fraction(), 1.0);

    // A local edit waits; the app's offline hint shows as offline.
    let id = replica.lock().unwrap().query_sections(&SectionQuery::default()).unwrap().rows[0].id.clone();
    replica.lock().unwrap().set_notes(&id, "later").unwrap();
    assert_eq!(replica.lock().unwrap().sync_activity().unwrap(), SyncActivity::Waiting);
    replica.lock().unwrap().set_online_hint(false);
    assert_eq!(replica.lock().unwrap().sync_activity().unwrap(), SyncActivity::Offline);
    replica.lock().unwrap().set_online_hint(true);

    // A failure: no network is offline, a revoked token needs someone.
    let down = |_: Vec<u8>| Err(TransportError::Unreachable("no route to host".into()));
    SyncClient::new(replica.clone(), Arc::new(down)).sync_now().unwrap_err();
    assert_eq!(replica.lock().unwrap().sync_activity().unwrap(), SyncActivity::Offline);
    let revoked = |_: Vec<u8>| Err(TransportError::from_response(401, br#"{"error":"e","message":"revoked"}"#));
    SyncClient::new(replica.clone(), Arc::new(revoked)).sync_now().unwrap_err();
    let activity = replica.lock().unwrap().sync_activity().unwrap();
    assert!(
        matches!(&activity, SyncActivity::NeedsAttention { problem: SyncProblem::NotAuthorized, detail } if detail.contains("revoked")),
        "{activity:?}"
    );
}
