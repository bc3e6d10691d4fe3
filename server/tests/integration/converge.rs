//! Crews working offline, then syncing through the real server in varied
//! orders with core's own client (`SyncClient` over `HttpTransport`): every
//! device and the hub end with identical views and conflict sets, and a new
//! device's first sync reports its progress.

use fieldsync_core::FORWARD;
use fieldsync_core::{ConstructionState, GeoPoint, Role, SyncActivity, SyncProgress, SyncReport};

use crate::common::*;

/// One random offline write by `phone` on one of `ids` (the local rules may
/// refuse it: that is part of the mix, nothing is stored then).
fn random_edit(phone: &Phone, ids: &[String], rng: &mut fastrand::Rng, n: usize) {
    let id = &ids[rng.usize(..ids.len())];
    let mut r = phone.r();
    let _ = match rng.usize(..7) {
        0 => r.record_progress(id, (rng.usize(..11) * 10) as i64).map(drop),
        1 => r.transition(id, FORWARD[rng.usize(..FORWARD.len())], None).map(drop),
        2 => r.transition(id, ConstructionState::Blocked, Some("waiting for a permit")).map(drop),
        3 => {
            // On the route mostly; now and then far off it (quarantined).
            let off = if rng.usize(..4) == 0 { 0.05 } else { 0.0 };
            let lon = 11.0 + rng.usize(..150) as f64 / 10_000.0;
            r.report_location(id, GeoPoint { lat: 48.0 + off, lon }).map(drop)
        }
        4 => r.splice_notes(id, 0, 0, &format!("{} {n}. ", phone.user)),
        5 => r.add_photo(id, &format!("content://{}/{n}", phone.user), None).map(drop),
        _ => r.rename_section(id, &format!("{}'s name {n}", phone.user)).map(drop),
    };
}

/// Sync every phone in a random order, `passes` times.
fn sync_shuffled(phones: &[Phone], rng: &mut fastrand::Rng, passes: usize) {
    for _ in 0..passes {
        let mut order: Vec<usize> = (0..phones.len()).collect();
        rng.shuffle(&mut order);
        for i in order {
            phones[i].sync();
        }
    }
}

fn assert_converged(server: &TestServer, phones: &[Phone]) {
    let first = phones[0].state();
    assert!(!first.0.is_empty());
    for p in phones {
        assert_eq!(p.r().sync_status().unwrap().pending_changes, 0, "{}'s outbox drained", p.user);
        let state = p.state();
        assert_eq!(state.0, first.0, "{}'s views differ from {}'s", p.user, phones[0].user);
        assert_eq!(state.1, first.1, "{}'s conflicts differ from {}'s", p.user, phones[0].user);
    }
    let ids: Vec<String> = first.0.iter().map(|v| v.id.clone()).collect();
    assert_eq!(hub_state(&server.hub, &ids), first, "the hub's views and conflicts match the devices'");
}

/// `users` enrolled as phones; the office creates `sections` and everyone syncs once.
fn crew(
    server: &TestServer,
    dir: &std::path::Path,
    users: &[(&str, Role)],
    sections: usize,
) -> (Vec<Phone>, Vec<String>) {
    let url = format!("http://{}", server.addr);
    let phones: Vec<Phone> = users.iter().map(|(u, _)| Phone::enroll(server, &url, dir, u)).collect();
    for p in &phones {
        p.sync();
    }
    let ids: Vec<String> = (0..sections)
        .map(|i| phones[0].r().create_section(PROJECT, &format!("section {i}"), &route()).unwrap())
        .collect();
    for p in &phones {
        p.sync();
    }
    (phones, ids)
}

#[test]
fn two_devices_edit_offline_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let users = [("olga", Role::Office), ("tina", Role::Technician)];
    let server = TestServer::start(hub_with(dir.path(), &users));
    let (phones, ids) = crew(&server, dir.path(), &users, 3);
    let (olga, tina) = (&phones[0], &phones[1]);

    // Offline: both move the same section, and both rename / note / report.
    olga.r().transition(&ids[0], ConstructionState::Surveyed, None).unwrap();
    tina.r().transition(&ids[0], ConstructionState::Blocked, Some("flooded")).unwrap();
    olga.r().rename_section(&ids[1], "renamed by office").unwrap();
    tina.r().splice_notes(&ids[1], 0, 0, "tina was here. ").unwrap();
    olga.r().splice_notes(&ids[1], 0, 0, "olga was here. ").unwrap();
    tina.r().report_location(&ids[2], GeoPoint { lat: 48.0, lon: 11.002 }).unwrap();
    tina.r().report_location(&ids[2], GeoPoint { lat: 48.05, lon: 11.002 }).unwrap(); // Off route.
    // Seeded, so a failing order can be replayed.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for n in 0..30 {
        random_edit(&phones[n % 2], &ids, &mut rng, n);
    }

    // tina first, then olga, then tina again: one order…
    let t1 = tina.sync();
    let o1 = olga.sync();
    let t2 = tina.sync();
    assert!(t1.confirmed > 0 && o1.confirmed > 0 && o1.new_changes > 0 && t2.new_changes > 0);
    assert_converged(&server, &phones);
    assert!(!olga.state().1.is_empty(), "the concurrent transitions are a conflict");
    let notes = olga.r().section(&ids[1]).unwrap().notes;
    assert!(notes.contains("tina was here. ") && notes.contains("olga was here. "), "{notes}");

    // …and more offline work synced in the other order.
    for n in 30..60 {
        random_edit(&phones[n % 2], &ids, &mut rng, n);
    }
    olga.sync();
    tina.sync();
    olga.sync();
    assert_converged(&server, &phones);
}

#[test]
fn ten_devices_edit_offline_sync_in_varied_orders_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let users = [
        ("olga", Role::Office),
        ("oscar", Role::Office),
        ("fred", Role::Foreman),
        ("fiona", Role::Foreman),
        ("tina", Role::Technician),
        ("tom", Role::Technician),
        ("tara", Role::Technician),
        ("theo", Role::Technician),
        ("tess", Role::Technician),
        ("tim", Role::Technician),
    ];
    let server = TestServer::start(hub_with(dir.path(), &users));
    let (phones, ids) = crew(&server, dir.path(), &users, 8);
    let mut rng = fastrand::Rng::with_seed(0x0ff1_1ee5);
    let mut n = 0;
    for day in 0..3 {
        // A day offline: everyone edits…
        for _ in 0..12 {
            for p in &phones {
                random_edit(p, &ids, &mut rng, n);
                n += 1;
            }
        }
        // …some come back online early and sync a few times in between…
        for _ in 0..6 {
            phones[rng.usize(..phones.len())].sync();
        }
        // …then everyone syncs, in a random order, twice round (the first
        // pass brings each device what the devices before it uploaded).
        sync_shuffled(&phones, &mut rng, 2);
        assert_converged(&server, &phones);
        println!("day {day}: converged, {} conflict records", phones[0].state().1.len());
    }
    // Nothing duplicated: the hub stores each change once, and a device's
    // feed holds exactly what the hub holds.
    let total = server.hub.list_projects().unwrap()[0].changes;
    let (views, _) = phones[0].state();
    assert_eq!(views.len(), ids.len());
    let mut per_device: Vec<u64> = Vec::new();
    for p in &phones {
        let mut r = p.r();
        let mut hashes = std::collections::HashSet::new();
        for id in &ids {
            let doc = automerge::Automerge::load(&r.export(id).unwrap()).unwrap();
            for c in doc.get_changes(&[]) {
                assert!(hashes.insert(c.hash()), "a change twice in {}'s document", p.user);
            }
        }
        // A change the hub refused stays on its device (kept, not re-sent).
        let refused = r.sync_status().unwrap().refused_changes as u64;
        per_device.push(hashes.len() as u64 - refused);
    }
    assert!(per_device.iter().all(|n| *n == total), "{per_device:?} vs {total} on the hub");
}

#[test]
fn a_new_devices_first_sync_reports_progress_with_its_total() {
    let dir = tempfile::tempdir().unwrap();
    let users = [("olga", Role::Office), ("fred", Role::Foreman)];
    let server = TestServer::start(hub_with(dir.path(), &users));
    let url = format!("http://{}", server.addr);
    let olga = Phone::enroll(&server, &url, dir.path(), "olga");
    olga.sync();
    let sections = 300;
    let mut ids = Vec::new();
    {
        let mut r = olga.r();
        for i in 0..sections {
            let id = r.create_section(PROJECT, &format!("section {i}"), &route()).unwrap();
            r.set_notes(&id, &format!("notes of section {i}: dig carefully")).unwrap();
            ids.push(id);
        }
    }
    olga.sync();

    let fred = Phone::enroll(&server, &url, dir.path(), "fred");
    let mut client = fieldsync_core::SyncClient::new(
        std::sync::Arc::clone(&fred.replica),
        std::sync::Arc::new(
            fieldsync_core::HttpTransport::new(&url, &fred.token, std::time::Duration::from_secs(20)).unwrap(),
        ),
    );
    client.response_budget = 32 * 1024; // Small pages, so progress has steps.
    // What the app shows after each round: the report, and the activity's progress.
    let shown = |steps: &mut Vec<(SyncReport, SyncProgress)>, r: &SyncReport| {
        let SyncActivity::Syncing(progress) = fred.r().sync_activity().unwrap() else { panic!("not syncing") };
        steps.push((r.clone(), progress));
    };
    let mut steps = Vec::new();
    let report = client.sync_with_progress(&mut |r| shown(&mut steps, r)).unwrap();
    assert_eq!(report.documents, sections);
    assert!(steps.len() > 3, "{} progress steps", steps.len());
    for w in steps.windows(2) {
        assert!(w[1].0.documents >= w[0].0.documents && w[1].0.bytes_received > w[0].0.bytes_received);
    }
    assert_eq!(steps.last().unwrap().0.documents, sections);
    // The total is known from the first answer: "n of 300 sections".
    let totals: Vec<_> = steps.iter().map(|(_, p)| p.documents_to_download).collect();
    assert!(totals.iter().all(|t| *t == Some(sections as u64)), "{totals:?}");
    let fractions: Vec<f64> = steps.iter().map(|(_, p)| p.download_fraction().unwrap()).collect();
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]) && fractions[0] < 0.5, "{fractions:?}");
    assert_eq!(fractions.last(), Some(&1.0));
    let line: Vec<String> = steps
        .iter()
        .map(|(s, p)| format!("{}/{:?}/{}B", s.documents, p.documents_to_download, s.bytes_received))
        .collect();
    println!("first sync of {sections} sections, progress (documents/total/bytes): {}", line.join(" "));
    assert_eq!(section_ids(&fred.r()).len(), sections);
    assert_eq!(fred.state(), olga.state());

    // Back from a day offline, behind by a change per section: the changes have a total too.
    {
        let mut r = olga.r();
        for id in &ids {
            r.set_notes(id, "notes: duct found at 60 cm").unwrap();
        }
    }
    olga.sync();
    steps.clear();
    let report = client.sync_with_progress(&mut |r| shown(&mut steps, r)).unwrap();
    assert_eq!(report.new_changes, sections);
    assert!(steps.len() > 1, "{} progress steps", steps.len());
    let totals: Vec<_> = steps.iter().map(|(_, p)| (p.changes_to_download, p.documents_to_download)).collect();
    assert!(totals.iter().all(|t| *t == (Some(sections as u64), Some(0))), "{totals:?}");
    assert_eq!(fred.state(), olga.state());
}
