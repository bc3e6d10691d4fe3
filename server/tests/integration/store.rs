//! The `HubStore` conformance suite: what every backend must do, run against
//! each one: SQLite, and PostgreSQL on a throwaway cluster.

use fieldsync_core::{Bounds, Coverage, GeoPoint, ProjectConfig, Role};
use fieldsync_server::{DeviceRecord, HubStore, PgHubStore, RoundWrite, SectionWrite, SqliteHubStore, StoreError};

fn device(id: &str, user: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        user: user.into(),
        name: format!("{user}'s phone"),
        created_ms: 1,
        revoked_ms: None,
        expires_ms: None,
    }
}

fn write(device: &str, user: &str, bind: Option<&str>, sections: Vec<SectionWrite>) -> RoundWrite {
    RoundWrite {
        project: "p".into(),
        device: device.into(),
        user: user.into(),
        bind_actor: bind.map(str::to_owned),
        now_ms: 5,
        stamp_floor: None,
        sections,
    }
}

/// A section's write, made on a read that saw its feed up to `based_on_seq`.
fn section(id: &str, based_on_seq: u64, changes: &[(&str, &[u8])], snapshot: Option<&[u8]>) -> SectionWrite {
    SectionWrite {
        section: id.into(),
        based_on_seq,
        changes: changes.iter().map(|(h, b)| (h.to_string(), b.to_vec())).collect(),
        view: format!("{{\"id\":\"{id}\"}}"),
        conflicts: vec![(format!("c-{id}"), format!("{{\"section\":\"{id}\"}}"))],
        snapshot: snapshot.map(<[u8]>::to_vec),
        coverage: Coverage::default(),
    }
}

/// A section's write in project `cov` with this coverage.
fn covered(id: &str, based_on_seq: u64, changes: &[(&str, &[u8])], coverage: &Coverage) -> RoundWrite {
    let s = SectionWrite { coverage: coverage.clone(), ..section(id, based_on_seq, changes, None) };
    RoundWrite { project: "cov".into(), ..write("d1", "olga", None, vec![s]) }
}

/// A coverage: a route through these (lat, lon) points, and a crew.
fn coverage(points: &[(f64, f64)], crew: Option<&str>) -> Coverage {
    Coverage { route: points.iter().map(|&(lat, lon)| GeoPoint { lat, lon }).collect(), crew: crew.map(str::to_owned) }
}

/// A box: south, west, north, east.
fn area(south: f64, west: f64, north: f64, east: f64) -> Bounds {
    Bounds { south, west, north, east }
}

const WORLD: Bounds = Bounds { south: -90.0, west: -180.0, north: 90.0, east: 180.0 };

fn conformance(store: &mut dyn HubStore) {
    // Projects and members; every roster change bumps the version.
    assert!(store.create_project("p", &ProjectConfig::default()).unwrap());
    assert!(!store.create_project("p", &ProjectConfig::default()).unwrap());
    let v0 = store.project("p").unwrap().unwrap().roster_version;
    store.put_member("p", "olga", Role::Office, 1).unwrap();
    store.put_member("p", "tina", Role::Technician, 2).unwrap();
    assert_eq!(store.member_role("p", "tina").unwrap(), Some(Role::Technician));
    assert_eq!(store.member_role("p", "nobody").unwrap(), None);
    let v1 = store.project("p").unwrap().unwrap().roster_version;
    assert!(v1 > v0);
    assert!(store.project("q").unwrap().is_none());

    // Devices by token hash; revocation is kept.
    store.create_device(&device("d1", "olga"), "h1").unwrap();
    store.create_device(&device("d2", "tina"), "h2").unwrap();
    assert_eq!(store.device_by_token_hash("h1").unwrap().unwrap().id, "d1");
    assert!(store.device_by_token_hash("h3").unwrap().is_none());

    // A round binds an actor (bumping the roster) and appends to the feed.
    let w = write("d1", "olga", Some("aa"), vec![section("s1", 0, &[("x1", b"one"), ("x2", b"two")], None)]);
    assert_eq!(store.commit_round(&w).unwrap(), 2);
    assert!(store.project("p").unwrap().unwrap().roster_version > v1);
    assert_eq!(store.actor_device("aa").unwrap().as_deref(), Some("d1"));
    assert_eq!((store.actor_count("d1").unwrap(), store.actor_count("d2").unwrap()), (1, 0));
    let roster = store.roster("p").unwrap();
    assert_eq!(roster.len(), 1);
    assert_eq!((roster[0].actor.as_str(), roster[0].user.as_str(), roster[0].role), ("aa", "olga", Role::Office));
    // Each change with when it was received: the round's time.
    assert_eq!(store.received("s1", "x1").unwrap(), Some(5));
    assert_eq!(store.received("s2", "x1").unwrap(), None);

    // The same changes again, later: nothing new, the first receipt stays.
    // Another device's round with the same actor fails whole.
    let again = write("d1", "olga", Some("aa"), vec![section("s1", 2, &[("x1", b"one"), ("x2", b"two")], None)]);
    assert_eq!(store.commit_round(&RoundWrite { now_ms: 9, ..again }).unwrap(), 2);
    assert_eq!(store.received("s1", "x1").unwrap(), Some(5));
    let stolen = write("d2", "tina", Some("aa"), vec![section("s2", 0, &[("y1", b"three")], None)]);
    assert!(matches!(store.commit_round(&stolen), Err(StoreError::ActorTaken { .. })));
    assert_eq!(store.received("s2", "y1").unwrap(), None, "a failed round stored nothing");
    assert!(store.section("s2").unwrap().is_none());

    // tina's device writes too, later.
    let w = write("d2", "tina", Some("bb"), vec![section("s2", 0, &[("y1", b"three")], None)]);
    assert_eq!(store.commit_round(&RoundWrite { now_ms: 7, ..w }).unwrap(), 3);

    // Feed pages: others' rows only, in order, by budget, at least one.
    let page = store.feed_page("p", 0, "d2", 1_000).unwrap();
    assert_eq!(page.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(!page.more);
    let page = store.feed_page("p", 0, "nobody", 4).unwrap();
    assert_eq!((page.rows.len(), page.more), (1, true));
    let page = store.feed_page("p", 1, "nobody", 8).unwrap();
    assert_eq!((page.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), page.more), (vec![2, 3], false));
    assert_eq!(page.rows.iter().map(|r| r.received_ms).collect::<Vec<_>>(), vec![5, 7]);
    assert_eq!(store.feed_max("p").unwrap(), 3);
    assert_eq!(store.feed_max("q").unwrap(), 0);
    // What a device still has to get, counted as the pages pick it.
    assert_eq!(store.feed_count("p", 0, "d2").unwrap(), 2, "others' rows only");
    assert_eq!(store.feed_count("p", 1, "nobody").unwrap(), 2);
    assert_eq!(store.feed_count("p", 3, "nobody").unwrap(), 0);
    assert_eq!(store.feed_count("q", 0, "nobody").unwrap(), 0);

    // Sections: loose rows until a snapshot folds them.
    let s1 = store.section("s1").unwrap().unwrap();
    assert_eq!((s1.project.as_str(), s1.snapshot.as_deref(), s1.changes.len()), ("p", None, 2));
    let w = write("d1", "olga", None, vec![section("s1", 2, &[("x3", b"four")], Some(b"snap"))]);
    store.commit_round(&w).unwrap();
    let s1 = store.section("s1").unwrap().unwrap();
    assert_eq!((s1.snapshot.as_deref(), s1.changes.len()), (Some(&b"snap"[..]), 0));
    let w = write("d1", "olga", None, vec![section("s1", 4, &[("x5", b"five")], None)]);
    store.commit_round(&w).unwrap();
    // A round decided on a read of s1 before x5 (another process's) commits
    // nothing: its view and snapshot would claim x5 without having seen it.
    let late = write("d2", "tina", None, vec![section("s1", 4, &[("x6", b"six")], Some(b"stale"))]);
    assert!(matches!(store.commit_round(&late), Err(StoreError::Stale { section }) if section == "s1"));
    let s1 = store.section("s1").unwrap().unwrap();
    assert_eq!((s1.snapshot.as_deref(), s1.changes), (Some(&b"snap"[..]), vec![b"five".to_vec()]));
    assert_eq!(s1.last_seq, 5);
    // The receipts of every change of the section, those the snapshot folded included.
    let hashes: Vec<&str> = s1.received.keys().map(String::as_str).collect();
    assert_eq!(hashes, ["x1", "x2", "x3", "x5"]);
    // A snapshot that covers less than the stored one is not kept.
    store.put_snapshot("s1", b"older", 3).unwrap();
    assert_eq!(store.section("s1").unwrap().unwrap().snapshot.as_deref(), Some(&b"snap"[..]));
    store.put_snapshot("s1", b"newer", 5).unwrap();
    let s1 = store.section("s1").unwrap().unwrap();
    assert_eq!((s1.snapshot.as_deref(), s1.changes.len(), s1.last_seq), (Some(&b"newer"[..]), 0, 5));
    assert_eq!(store.sections_after("p", "", 10).unwrap(), vec!["s1", "s2"]);
    assert_eq!(store.sections_after("p", "s1", 10).unwrap(), vec!["s2"]);
    assert_eq!(store.sections_count_after("p", "").unwrap(), 2);
    assert_eq!(store.sections_count_after("p", "s1").unwrap(), 1);
    assert_eq!(store.sections_count_after("q", "").unwrap(), 0);
    assert_eq!(store.section_view("s2").unwrap().as_deref(), Some("{\"id\":\"s2\"}"));
    assert_eq!(store.conflicts("p").unwrap().len(), 2);
    store.put_view("s2", "{}", &[]).unwrap();
    assert_eq!(store.conflicts("p").unwrap().len(), 1);

    // Admin listings and revocation.
    assert!(store.revoke_device("d2", 9).unwrap());
    assert!(!store.revoke_device("zz", 9).unwrap());
    assert_eq!(store.device_by_token_hash("h2").unwrap().unwrap().revoked_ms, Some(9));

    // A fresh token replaces the old one, with its expiry; none for a revoked
    // or unknown device. An expiring device is stored with it.
    assert_eq!(store.device_by_token_hash("h1").unwrap().unwrap().expires_ms, None);
    assert!(store.replace_token("d1", "h1b", Some(50)).unwrap());
    assert!(store.device_by_token_hash("h1").unwrap().is_none());
    let d1 = store.device_by_token_hash("h1b").unwrap().unwrap();
    assert_eq!((d1.id.as_str(), d1.expires_ms), ("d1", Some(50)));
    assert!(store.replace_token("d1", "h1", None).unwrap());
    assert_eq!(store.device_by_token_hash("h1").unwrap().unwrap().expires_ms, None);
    assert!(!store.replace_token("d2", "h2b", None).unwrap());
    assert!(!store.replace_token("zz", "hz", None).unwrap());
    assert!(store.device_by_token_hash("h2b").unwrap().is_none());
    store.create_device(&DeviceRecord { expires_ms: Some(70), ..device("d3", "tina") }, "h3").unwrap();
    assert_eq!(store.device_by_token_hash("h3").unwrap().unwrap().expires_ms, Some(70));
    assert!(store.revoke_device("d3", 9).unwrap());
    let devices = store.list_devices().unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(devices[0].actors, vec!["aa"]);
    let projects = store.list_projects().unwrap();
    assert_eq!((projects[0].sections, projects[0].changes, projects[0].members.len()), (2, 5, 2));
    let roster_before = store.roster("p").unwrap();
    assert!(store.remove_member("p", "tina", 11).unwrap());
    assert!(!store.remove_member("p", "tina", 12).unwrap());
    // A removed member's actors stay in the roster (their past writes keep their
    // author); the history says from when they count for nothing.
    assert_eq!(store.roster("p").unwrap(), roster_before);
    let history: Vec<_> = store.role_history("p").unwrap().into_iter().map(|c| (c.user, c.role, c.at_ms)).collect();
    assert_eq!(
        history,
        [("olga".into(), Some(Role::Office), 1), ("tina".into(), Some(Role::Technician), 2), ("tina".into(), None, 11)]
    );
    assert_eq!(store.member_role("p", "tina").unwrap(), None);
    // Stamp floors, per actor, only ever raised.
    assert_eq!(store.actor_binding("aa").unwrap(), Some(("d1".into(), 0)));
    store.raise_stamp_floor("aa", 50).unwrap();
    store.raise_stamp_floor("aa", 40).unwrap();
    assert_eq!(
        (store.actor_binding("aa").unwrap(), store.actor_binding("zz").unwrap()),
        (Some(("d1".into(), 50)), None)
    );

    // Refusals are an audit apart from the data.
    let r =
        fieldsync_core::protocol::Refusal { section: "s1".into(), hash: "h".into(), rule: None, reason: "r".into() };
    store.record_refusals("p", "d1", &[r], 10).unwrap();
    assert_eq!(store.feed_max("p").unwrap(), 5);

    photos(store);
    section_coverage(store);
}

/// Coverage (partial sync): each section's current route box and crew,
/// indexed, and the history of its coverages by feed seq. In project `cov`.
fn section_coverage(store: &mut dyn HubStore) {
    assert!(store.create_project("cov", &ProjectConfig::default()).unwrap());
    let munich = coverage(&[(48.10, 11.50), (48.20, 11.60)], Some("north"));
    let near_munich = area(48.14, 11.54, 48.16, 11.56);
    let berlin = coverage(&[(52.50, 13.40), (52.52, 13.38)], Some("south"));
    let near_berlin = area(52.49, 13.30, 52.60, 13.50);

    // A section committed with a route: found by a box meeting it (one that
    // only touches its corner too), not by one far away nor in another project.
    let first = store.commit_round(&covered("r1", 0, &[("r1a", b"1")], &munich)).unwrap();
    assert_eq!(store.sections_meeting("cov", near_munich).unwrap(), ["r1"]);
    assert_eq!(store.sections_meeting("cov", area(48.20, 11.60, 48.30, 11.70)).unwrap(), ["r1"]);
    assert!(store.sections_meeting("cov", near_berlin).unwrap().is_empty());
    assert!(store.sections_meeting("p", WORLD).unwrap().is_empty());
    assert_eq!(store.sections_of_crew("cov", "north").unwrap(), ["r1"]);
    assert!(store.sections_of_crew("p", "north").unwrap().is_empty());
    assert_eq!(store.coverage_at("r1", first).unwrap(), Some(munich.clone()));
    assert_eq!(store.coverage_at("r1", first - 1).unwrap(), None, "none before its first commit");
    assert_eq!(store.coverage_changed("cov", first - 1, first).unwrap(), ["r1"]);

    // A section with no route: found by its crew, never by a box.
    let no_route = coverage(&[], Some("south"));
    let second = store.commit_round(&covered("r2", 0, &[("r2a", b"2")], &no_route)).unwrap();
    assert_eq!(store.sections_of_crew("cov", "south").unwrap(), ["r2"]);
    assert_eq!(store.sections_meeting("cov", WORLD).unwrap(), ["r1"]);

    // A commit that leaves the coverage as it was records nothing, with new
    // changes or without.
    let third = store.commit_round(&covered("r1", first, &[("r1b", b"3")], &munich)).unwrap();
    assert_eq!(store.commit_round(&covered("r1", third, &[], &munich)).unwrap(), third);
    assert!(store.coverage_changed("cov", second, third).unwrap().is_empty());
    assert_eq!(store.coverage_changed("cov", 0, u64::MAX).unwrap(), ["r1", "r2"]);

    // The route and crew changed in a later commit: a second record, the old
    // one still there for the seqs before it; the index follows.
    let fourth = store.commit_round(&covered("r1", third, &[("r1c", b"4")], &berlin)).unwrap();
    assert_eq!(store.coverage_at("r1", first).unwrap(), Some(munich.clone()));
    assert_eq!(store.coverage_at("r1", fourth - 1).unwrap(), Some(munich.clone()));
    assert_eq!(store.coverage_at("r1", fourth).unwrap(), Some(berlin.clone()));
    assert_eq!(store.coverage_at("r1", u64::MAX).unwrap(), Some(berlin.clone()));
    assert_eq!(store.coverage_changed("cov", third, fourth).unwrap(), ["r1"]);
    assert_eq!(store.coverage_changed("cov", third, u64::MAX).unwrap(), ["r1"]);
    assert!(store.coverage_changed("cov", first, fourth - 1).unwrap().contains(&"r2".to_owned()));
    assert!(!store.coverage_changed("cov", first, fourth - 1).unwrap().contains(&"r1".to_owned()));
    assert!(store.coverage_changed("cov", fourth, u64::MAX).unwrap().is_empty());
    assert!(store.sections_meeting("cov", near_munich).unwrap().is_empty());
    assert_eq!(store.sections_meeting("cov", near_berlin).unwrap(), ["r1"]);
    assert!(store.sections_of_crew("cov", "north").unwrap().is_empty());
    assert_eq!(store.sections_of_crew("cov", "south").unwrap(), ["r1", "r2"]);

    // A crew reassigned by a commit with no new change of the section: its
    // record takes the commit's highest seq.
    let north_no_route = coverage(&[], Some("north"));
    assert_eq!(store.commit_round(&covered("r2", second, &[], &north_no_route)).unwrap(), fourth);
    assert_eq!(store.coverage_at("r2", fourth - 1).unwrap(), Some(no_route));
    assert_eq!(store.coverage_at("r2", u64::MAX).unwrap(), Some(north_no_route));
    assert_eq!(store.coverage_changed("cov", third, fourth).unwrap(), ["r1", "r2"]);
    assert_eq!(store.sections_of_crew("cov", "north").unwrap(), ["r2"]);
    assert_eq!(store.sections_of_crew("cov", "south").unwrap(), ["r1"]);

    // A route taken away leaves the spatial index.
    let fifth = store.commit_round(&covered("r1", fourth, &[("r1d", b"5")], &coverage(&[], Some("south")))).unwrap();
    assert!(store.sections_meeting("cov", WORLD).unwrap().is_empty());
    assert_eq!(store.coverage_changed("cov", fourth, fifth).unwrap(), ["r1"]);
    assert_eq!(store.sections_of_crew("cov", "south").unwrap(), ["r1"]);

    // And back: found again.
    store.commit_round(&covered("r1", fifth, &[("r1e", b"6")], &berlin)).unwrap();
    assert_eq!(store.sections_meeting("cov", near_berlin).unwrap(), ["r1"]);
}

/// Photo uploads: a chunk is stored only where the upload stands (once,
/// without gaps), per project; a finished one is kept or dropped whole.
fn photos(store: &mut dyn HubStore) {
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let at = |store: &mut dyn HubStore, sha: &str| store.photo("p", sha).unwrap().map(|p| (p.received, p.complete));
    assert_eq!(at(store, &a), None);
    assert_eq!(store.append_photo("p", &a, 6, 3, b"def", 1).unwrap().received, 0, "nothing before the start");
    assert_eq!(at(store, &a), None);
    assert_eq!(store.append_photo("p", &a, 6, 0, b"abc", 1).unwrap().received, 3);
    assert_eq!(store.append_photo("p", &a, 6, 0, b"abc", 1).unwrap().received, 3, "a chunk sent twice is kept once");
    assert_eq!(store.append_photo("p", &a, 6, 5, b"f", 1).unwrap().received, 3, "no gaps");
    let full = store.append_photo("p", &a, 6, 3, b"def", 1).unwrap();
    assert_eq!((full.size, full.received, full.complete), (6, 6, false));
    assert_eq!(store.read_photo("p", &a, 2, 3).unwrap(), b"cde");
    store.finish_photo("p", &a, true).unwrap();
    assert_eq!(at(store, &a), Some((6, true)));
    assert_eq!(store.read_photo("p", &a, 0, 100).unwrap(), b"abcdef");
    assert_eq!(store.append_photo("p", &a, 6, 0, b"xyz", 1).unwrap().received, 6, "a kept photo is not written");
    assert_eq!(store.read_photo("p", &a, 0, 6).unwrap(), b"abcdef");
    assert_eq!(store.photo("q", &a).unwrap(), None, "photos are kept per project");

    store.append_photo("p", &b, 2, 0, b"zz", 1).unwrap();
    store.finish_photo("p", &b, false).unwrap();
    assert_eq!(at(store, &b), None, "a photo that failed its check is dropped");
    assert_eq!(store.append_photo("p", &b, 2, 0, b"z", 1).unwrap().received, 1, "and may start again");
}

#[test]
fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteHubStore::open(dir.path()).unwrap();
    conformance(&mut store);
    // And everything is still there after reopening.
    drop(store);
    let mut store = SqliteHubStore::open(dir.path()).unwrap();
    assert_eq!(store.feed_max("p").unwrap(), 5);
    assert_eq!(store.list_devices().unwrap().len(), 3);
    assert_eq!(store.read_photo("p", &"a".repeat(64), 0, 6).unwrap(), b"abcdef");
    assert_eq!(store.sections_meeting("cov", WORLD).unwrap(), ["r1"]);
    assert_eq!(store.sections_of_crew("cov", "north").unwrap(), ["r2"]);
}

#[test]
fn postgres_store_conforms() {
    let cluster = crate::pg::Cluster::start();
    let mut store = PgHubStore::connect(&cluster.url()).unwrap();
    conformance(&mut store);
    drop(store);
    let mut store = PgHubStore::connect(&cluster.url()).unwrap();
    assert_eq!(store.feed_max("p").unwrap(), 5);
    assert_eq!(store.list_devices().unwrap().len(), 3);
    assert_eq!(store.read_photo("p", &"a".repeat(64), 0, 6).unwrap(), b"abcdef");
    assert_eq!(store.sections_meeting("cov", WORLD).unwrap(), ["r1"]);
    assert_eq!(store.sections_of_crew("cov", "north").unwrap(), ["r2"]);
}

/// A stored view as a v6 server left it (before coverage was recorded).
const VIEW_V6: &str = r#"{"id":"s","project":"p","name":"n","route":[{"lat":48.0,"lon":11.02},{"lat":48.1,"lon":11.0}],
    "crew":"north","state":"planned","blocked":null,"progress":0,"location":null,"as_built":[],
    "quarantined":[],"notes":"","photos":[],"events":[],"conflict_count":0,"heads":[]}"#;

#[test]
fn postgres_upgrade_to_coverage_indexes_the_sections_stored_before() {
    let cluster = crate::pg::Cluster::start();
    drop(PgHubStore::connect(&cluster.url()).unwrap());
    // Back to version 6: without the coverage tables, with a section stored.
    let mut admin = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "DROP TABLE coverage_history, section_index;
             UPDATE fieldsync_schema SET version = 6;",
        )
        .unwrap();
    admin
        .execute(
            "INSERT INTO sections (id, project, snapshot, snapshot_seq, view) VALUES ('s', 'p', NULL, 0, $1)",
            &[&VIEW_V6],
        )
        .unwrap();

    let mut store = PgHubStore::connect(&cluster.url()).unwrap();
    let version: i64 = admin.query_one("SELECT version FROM fieldsync_schema", &[]).unwrap().get(0);
    assert_eq!(version, fieldsync_server::pg_store::PG_SCHEMA_VERSION);
    let route = vec![GeoPoint { lat: 48.0, lon: 11.02 }, GeoPoint { lat: 48.1, lon: 11.0 }];
    let expected = Coverage { route, crew: Some("north".into()) };
    assert_eq!(store.coverage_at("s", 0).unwrap(), Some(expected));
    assert_eq!(store.sections_meeting("p", area(48.05, 11.01, 48.06, 11.015)).unwrap(), ["s"]);
    assert!(store.sections_meeting("p", area(52.0, 13.0, 53.0, 14.0)).unwrap().is_empty());
    assert_eq!(store.sections_of_crew("p", "north").unwrap(), ["s"]);
    assert!(store.coverage_changed("p", 0, u64::MAX).unwrap().is_empty(), "held since seq 0");
}
