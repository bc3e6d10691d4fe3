//! The sync client around a stand-in transport (the real server is in the
//! server's and the simulation's tests): refusals are kept but not re-sent,
//! failures land in the status, responses commit with their cursor.

use std::sync::{Arc, Mutex};

use fieldsync_core::protocol::{self, ErrorBody, Refusal, SyncRequest, SyncResponse};
use fieldsync_core::{RECENT_ROUNDS, Role, SyncClient, SyncProblem, TransportError};

use crate::common::{PROJECT, crew, response, route};

#[test]
fn refused_changes_stay_stored_but_leave_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    office.join_project(PROJECT).unwrap();
    let id = office.create_section(PROJECT, "North", &route()).unwrap();
    let rename = office.rename_section(&id, "North 2").unwrap();
    let replica = Arc::new(Mutex::new(office));
    let seen = Arc::new(Mutex::new(Vec::<SyncRequest>::new()));
    let log = seen.clone();
    let section = id.clone();
    let transport = move |body: Vec<u8>| {
        let req: SyncRequest = protocol::decode(&body).unwrap();
        log.lock().unwrap().push(req.clone());
        let first_change = req.upload.iter().flat_map(|b| &b.changes).next().cloned();
        match first_change {
            // Refuse the section's first change: everything after builds on it.
            Some(bytes) => {
                let hash = automerge::Change::from_bytes(bytes).unwrap().hash().to_string();
                let refusal = Refusal {
                    section: section.clone(),
                    hash,
                    rule: Some("office_only".into()),
                    reason: "demoted".into(),
                };
                let body = ErrorBody {
                    error: "refused".into(),
                    message: "refused".into(),
                    refusals: vec![refusal],
                    retry_after_s: None,
                };
                Err(TransportError::Server { status: 422, body })
            }
            None => Ok(protocol::encode(&response("c:1", false))),
        }
    };
    let client = SyncClient::new(replica.clone(), Arc::new(transport));
    let report = client.sync_now().unwrap();
    assert_eq!(report.refused, 2, "the refused change and the rename that builds on it");
    assert_eq!(report.rounds, 2);
    let requests = seen.lock().unwrap();
    assert!(requests[1].upload.is_empty(), "refused changes are not sent again");
    let status = client.status().unwrap();
    assert_eq!((status.pending_changes, status.refused_changes), (0, 2));
    // Nothing lost: the writes are still in the local document and audit.
    let audit = replica.lock().unwrap().audit(&rename.section).unwrap();
    assert!(audit.iter().any(|e| e.edit_id == rename.edit_id));
    drop(requests);

    // A later edit builds on the refused changes: it is held back too, never
    // sent (the server could not store it), and the device goes on syncing.
    let later = replica.lock().unwrap().rename_section(&id, "North 3").unwrap();
    let report = client.sync_now().unwrap();
    assert_eq!((report.rounds, report.refused), (1, 0));
    let requests = seen.lock().unwrap();
    assert!(requests.last().unwrap().upload.is_empty(), "{:?}", requests.last());
    let status = client.status().unwrap();
    assert_eq!((status.pending_changes, status.refused_changes), (0, 3));
    assert!(replica.lock().unwrap().audit(&id).unwrap().iter().any(|e| e.edit_id == later.edit_id));
}

#[test]
fn a_failed_round_is_in_the_status_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    office.join_project(PROJECT).unwrap();
    office.create_section(PROJECT, "North", &route()).unwrap();
    let replica = Arc::new(Mutex::new(office));
    let down = |_: Vec<u8>| Err(TransportError::Unreachable("no route to host".into()));
    let client = SyncClient::new(replica.clone(), Arc::new(down));
    let err = client.sync_now().unwrap_err();
    assert!(err.retryable());
    let status = client.status().unwrap();
    assert_eq!(status.pending_changes, 1);
    assert!(status.last_error.unwrap().contains("no route to host"));
    assert_eq!(status.last_problem, Some(SyncProblem::Offline));
    assert_eq!(status.last_success_ms, None);
    assert!(status.recent_rounds.is_empty(), "a round that reached no server has no figures");

    // A cut-off response is no different: the next round sends the same again.
    let garbage = |_: Vec<u8>| Ok(b"\x00\x01 not deflate".to_vec());
    let client = SyncClient::new(replica.clone(), Arc::new(garbage));
    assert!(client.sync_now().is_err());
    assert_eq!(client.status().unwrap().pending_changes, 1);

    // Each kind of answer says what it needs; the status keeps the latest.
    let answer = |status: u16| {
        move |_: Vec<u8>| {
            let body = format!(r#"{{"error":"e","message":"said {status}"}}"#);
            Err(TransportError::from_response(status, body.as_bytes()))
        }
    };
    for (status, problem) in [
        (401, SyncProblem::NotAuthorized),
        (403, SyncProblem::NotAuthorized),
        (404, SyncProblem::NotFound),
        (426, SyncProblem::UpdateRequired),
        (400, SyncProblem::Rejected),
        (503, SyncProblem::Offline),
    ] {
        let client = SyncClient::new(replica.clone(), Arc::new(answer(status)));
        assert_eq!(client.sync_now().unwrap_err().problem(), problem, "{status}");
        let seen = client.status().unwrap();
        assert_eq!(seen.last_problem, Some(problem), "{status}");
        assert!(seen.last_error.unwrap().ends_with(&format!("said {status}")), "{status}");
        assert_eq!(SyncProblem::parse(problem.as_str()), Some(problem));
    }
}

#[test]
fn a_response_commits_the_cursor_and_more_means_another_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut tech = crew(dir.path(), &[Role::Technician]).remove(0);
    tech.join_project(PROJECT).unwrap();
    let replica = Arc::new(Mutex::new(tech));
    let cursors = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = cursors.clone();
    let pages = move |body: Vec<u8>| {
        let req: SyncRequest = protocol::decode(&body).unwrap();
        let mut log = log.lock().unwrap();
        log.push(req.cursor.clone());
        let n = log.len();
        Ok(protocol::encode(&response(&format!("c:{n}"), n < 3)))
    };
    let client = SyncClient::new(replica.clone(), Arc::new(pages));
    let report = client.sync_now().unwrap();
    assert_eq!(report.rounds, 3);
    assert_eq!(*cursors.lock().unwrap(), ["", "c:1", "c:2"]);
    let status = client.status().unwrap();
    assert!(status.last_success_ms.is_some());
    // Each round's figures, for the app to show what the link is worth.
    assert_eq!(status.recent_rounds.len(), 3);
    assert_eq!(status.recent_rounds.iter().map(|r| r.bytes_sent).sum::<u64>(), report.bytes_sent);
    assert_eq!(status.recent_rounds.iter().map(|r| r.bytes_received).sum::<u64>(), report.bytes_received);
    assert!(status.recent_rounds.iter().all(|r| r.at_ms > 0 && r.bytes_sent > 0 && r.bytes_received > 0));
    // The next sync starts from the committed cursor.
    client.sync_now().unwrap();
    assert_eq!(cursors.lock().unwrap().last().unwrap(), "c:3");
    // Only the last few rounds are kept.
    for _ in 0..RECENT_ROUNDS {
        client.sync_now().unwrap();
    }
    assert_eq!(client.status().unwrap().recent_rounds.len(), RECENT_ROUNDS);
}

#[test]
fn background_sync_compacts_what_the_server_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    office.join_project(PROJECT).unwrap();
    let id = office.create_section(PROJECT, "North", &route()).unwrap();
    for i in 0..fieldsync_core::COMPACT_THRESHOLD + 10 {
        office.rename_section(&id, &format!("North {i}")).unwrap();
    }
    let rows = |r: &fieldsync_core::Replica| -> i64 {
        r.connection().query_row("SELECT count(*) FROM changes WHERE section = ?1", [&id], |x| x.get(0)).unwrap()
    };
    let view = office.section(&id).unwrap();
    assert!(rows(&office) > fieldsync_core::COMPACT_THRESHOLD as i64);
    let replica = Arc::new(Mutex::new(office));
    let accept_all = |_: Vec<u8>| Ok(protocol::encode(&response("c:1", false)));
    let client = Arc::new(SyncClient::new(replica.clone(), Arc::new(accept_all)));
    let (updates, heard) = std::sync::mpsc::channel();
    let bg = fieldsync_core::BackgroundSync::start(
        client,
        fieldsync_core::SyncConfig::default(),
        Box::new(move |u| {
            let _ = updates.send(u);
        }),
    );
    let first = heard.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
    assert!(matches!(first, fieldsync_core::SyncUpdate::Synced(_)), "{first:?}");
    bg.stop();
    let r = replica.lock().unwrap();
    assert_eq!(rows(&r), 0, "confirmed and folded into the snapshot");
    assert_eq!(r.section(&id).unwrap(), view);
    assert_eq!(r.outbox_stats().unwrap().0, 0);
}

#[test]
fn a_response_whose_receipt_times_do_not_match_its_changes_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    office.join_project(PROJECT).unwrap();
    let id = office.create_section(PROJECT, "North", &route()).unwrap();
    office.record_progress(&id, 5).unwrap();
    let prepared = office.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    assert_eq!(prepared.sent.len(), 2);
    let wrong = SyncResponse { upload_received: vec![7], ..response("c:2", false) };
    assert!(office.commit_round(PROJECT, &prepared.sent, wrong).is_err());
    assert_eq!(office.sync_status().unwrap().pending_changes, 2, "nothing confirmed");
    // One receipt per uploaded change: confirmed, each write with its receipt.
    let right = SyncResponse { upload_received: vec![7, 7], ..response("c:2", false) };
    office.commit_round(PROJECT, &prepared.sent, right).unwrap();
    assert_eq!(office.sync_status().unwrap().pending_changes, 0);
    assert!(office.audit(&id).unwrap().iter().all(|e| e.received_ms == Some(7)));
}

#[test]
fn a_cancelled_sync_stops_before_its_next_round_and_keeps_what_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut tech = crew(dir.path(), &[Role::Technician]).remove(0);
    tech.join_project(PROJECT).unwrap();
    let replica = Arc::new(Mutex::new(tech));
    // The server has three pages; the app cancels while the first one travels.
    let client_slot: Arc<std::sync::OnceLock<std::sync::Weak<SyncClient>>> = Default::default();
    let (slot, served) = (client_slot.clone(), Arc::new(Mutex::new(Vec::<String>::new())));
    let log = served.clone();
    let pages = move |body: Vec<u8>| {
        let req: SyncRequest = protocol::decode(&body).unwrap();
        let mut log = log.lock().unwrap();
        log.push(req.cursor.clone());
        if log.len() == 1 {
            slot.get().and_then(std::sync::Weak::upgrade).unwrap().cancel();
        }
        let n = log.len();
        Ok(protocol::encode(&response(&format!("c:{n}"), n < 3)))
    };
    let client = Arc::new(SyncClient::new(replica.clone(), Arc::new(pages)));
    client_slot.set(Arc::downgrade(&client)).unwrap();
    let cancelled = client.sync_now().unwrap_err();
    assert!(matches!(cancelled, fieldsync_core::SyncError::Cancelled), "{cancelled}");
    assert_eq!(*served.lock().unwrap(), [""], "no round after the cancel");
    // The answer on the wire was committed: the next sync goes on from its cursor.
    let report = client.sync_now().unwrap();
    assert_eq!(report.rounds, 2);
    assert_eq!(*served.lock().unwrap(), ["", "c:1", "c:2"]);
    assert!(client.status().unwrap().last_error.is_none(), "a cancel is no failure");
}

#[test]
fn a_sync_stopped_before_it_began_sends_nothing_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    office.join_project(PROJECT).unwrap();
    office.create_section(PROJECT, "North", &route()).unwrap();
    let replica = Arc::new(Mutex::new(office));
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = rounds.clone();
    let server = move |_: Vec<u8>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(protocol::encode(&response("c:1", false)))
    };
    let client = SyncClient::new(replica.clone(), Arc::new(server));
    // The coroutine was cancelled as its blocking call started: its own stop is already set.
    let stop = std::sync::atomic::AtomicBool::new(true);
    let stopped = client.sync_until(&mut |_| {}, &stop).unwrap_err();
    assert!(matches!(stopped, fieldsync_core::SyncError::Cancelled), "{stopped}");
    assert_eq!(rounds.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing sent");
    assert_eq!(client.status().unwrap().pending_changes, 1, "the edit waits, kept");
    // A stop belongs to its sync: the next one runs, as does one after a client-wide cancel with nothing running.
    client.cancel();
    let report = client.sync_until(&mut |_| {}, &std::sync::atomic::AtomicBool::new(false)).unwrap();
    assert_eq!((report.rounds, report.confirmed), (1, 1));
}
