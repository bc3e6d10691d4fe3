//! One sync driven a step at a time with no transport at all: the state
//! machine ([`SyncRun`]) is told what came back, and when, and says what to
//! do next. Each test plays a day the network or the server misbehaves.

use fieldsync_core::protocol::{self, ErrorBody, StillToSend, SyncRequest};
use fieldsync_core::{
    AnswerTime, DeviceTime, Replica, Role, RoundLimits, RoundTicket, RunStep, SyncActivity, SyncError, SyncProblem,
    SyncRun, TransportError,
};

use crate::common::{PROJECT, crew, response, route};

const LIMITS: RoundLimits = RoundLimits { upload: 1 << 20, response: 1 << 20, rounds: 3 };

/// An answer that came at `wall_ms` by the device's clock, 7 ms after its request left.
fn at(wall_ms: u64) -> AnswerTime {
    AnswerTime { now: DeviceTime::wall(wall_ms), latency_ms: 7 }
}

/// The request a step says to send.
fn request(step: RunStep) -> (SyncRequest, RoundTicket) {
    match step {
        RunStep::Send { body, round } => (protocol::decode(&body).unwrap(), round),
        other => panic!("expected a request to send, got {other:?}"),
    }
}

fn server_says(status: u16, error: &str) -> Result<Vec<u8>, TransportError> {
    let body =
        ErrorBody { error: error.into(), message: format!("said {error}"), refusals: vec![], retry_after_s: None };
    Err(TransportError::Server { status, body })
}

fn answer(cursor: &str, more: bool) -> Result<Vec<u8>, TransportError> {
    Ok(protocol::encode(&response(cursor, more)))
}

/// An office device in `PROJECT` with one unsent section, and in a second project.
fn office_with_an_edit(dir: &std::path::Path) -> Replica {
    let mut office = crew(dir, &[Role::Office]).remove(0);
    office.join_project(PROJECT).unwrap();
    office.join_project("p2").unwrap();
    office.create_section(PROJECT, "North", &route()).unwrap();
    office
}

#[test]
fn each_project_runs_its_rounds_in_turn_and_a_lost_answer_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = office_with_an_edit(dir.path());

    // The link is cut after the request left: the run is dropped, nothing changed.
    let mut run = SyncRun::start(&mut replica, LIMITS, false).unwrap();
    let (lost, _) = request(run.next(&mut replica).unwrap());
    drop(run);
    assert_eq!(replica.sync_status().unwrap().pending_changes, 1);

    let mut run = SyncRun::start(&mut replica, LIMITS, false).unwrap();
    let (first, round) = request(run.next(&mut replica).unwrap());
    assert_eq!(first, lost, "the same request goes again");
    let mut seen = vec![(first.project.clone(), first.cursor.clone(), first.upload.len())];
    // The server has more for this project: another round of it, from the new cursor.
    let (second, round) = request(run.answered(&mut replica, round, answer("c:1", true), at(1_000)).unwrap());
    seen.push((second.project.clone(), second.cursor.clone(), second.upload.len()));
    let (third, round) = request(run.answered(&mut replica, round, answer("c:2", false), at(2_000)).unwrap());
    seen.push((third.project.clone(), third.cursor.clone(), third.upload.len()));
    let done = run.answered(&mut replica, round, answer("c:9", false), at(3_000)).unwrap();
    assert_eq!(done, RunStep::Done);
    // Projects run in the replica's order (by name), the edit with its own.
    let want = [
        (PROJECT.to_owned(), String::new(), 1),
        (PROJECT.to_owned(), "c:1".into(), 0),
        ("p2".into(), String::new(), 0),
    ];
    assert_eq!(seen, want);

    let report = run.into_report();
    assert_eq!((report.rounds, report.confirmed), (3, 1));
    let status = replica.sync_status().unwrap();
    assert_eq!(status.pending_changes, 0);
    // The figures carry the time the runtime passed in, not the machine's clock.
    let when: Vec<i64> = status.recent_rounds.iter().map(|r| r.at_ms).collect();
    assert_eq!(when, [1_000, 2_000, 3_000]);
    assert!(status.recent_rounds.iter().all(|r| r.latency_ms == 7));
}

#[test]
fn a_refused_token_is_renewed_once_and_a_second_refusal_ends_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = office_with_an_edit(dir.path());

    let mut run = SyncRun::start(&mut replica, LIMITS, true).unwrap();
    let (_, round) = request(run.next(&mut replica).unwrap());
    let step = run.answered(&mut replica, round, server_says(401, "token_expired"), at(1)).unwrap();
    assert_eq!(step, RunStep::RenewToken, "ask the app's connector");
    let (_, round) = request(run.next(&mut replica).unwrap());
    let refused = run.answered(&mut replica, round, server_says(401, "token_expired"), at(2)).unwrap_err();
    assert_eq!(refused.problem(), SyncProblem::NotAuthorized);
    let status = replica.sync_status().unwrap();
    assert_eq!((status.last_problem, status.pending_changes), (Some(SyncProblem::NotAuthorized), 1));

    // A runtime with no connector: the first refusal ends the sync.
    let mut run = SyncRun::start(&mut replica, LIMITS, false).unwrap();
    let (_, round) = request(run.next(&mut replica).unwrap());
    let refused = run.answered(&mut replica, round, server_says(401, "unauthorized"), at(3)).unwrap_err();
    assert!(!refused.retryable());
}

#[test]
fn a_server_that_forgot_the_cursor_is_synced_from_the_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = crew(dir.path(), &[Role::Office]).remove(0);
    replica.join_project(PROJECT).unwrap();
    let mut run = SyncRun::start(&mut replica, LIMITS, false).unwrap();
    let (_, round) = request(run.next(&mut replica).unwrap());
    assert_eq!(run.answered(&mut replica, round, answer("c:5", false), at(1)).unwrap(), RunStep::Done);

    // The server's data was restored from a backup: it does not know "c:5".
    let mut run = SyncRun::start(&mut replica, LIMITS, false).unwrap();
    let (sent, round) = request(run.next(&mut replica).unwrap());
    assert_eq!(sent.cursor, "c:5");
    let (again, round) =
        request(run.answered(&mut replica, round, server_says(400, protocol::UNKNOWN_CURSOR), at(2)).unwrap());
    assert_eq!(again.cursor, "", "the feed starts over");
    // A server that still does not know it is not asked forever.
    let e = run.answered(&mut replica, round, server_says(400, protocol::UNKNOWN_CURSOR), at(3)).unwrap_err();
    assert_eq!(e.problem(), SyncProblem::Rejected);
    assert_eq!(replica.sync_status().unwrap().last_problem, Some(SyncProblem::Rejected));
}

#[test]
fn a_server_that_always_has_more_is_given_up_at_the_round_cap_and_the_rounds_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = office_with_an_edit(dir.path());
    let mut run = SyncRun::start(&mut replica, LIMITS, false).unwrap();
    let mut step = run.next(&mut replica).unwrap();
    let mut n = 0;
    let e = loop {
        let (_, round) = request(step);
        n += 1;
        match run.answered(&mut replica, round, answer(&format!("c:{n}"), true), at(n)) {
            Ok(next) => step = next,
            Err(e) => break e,
        }
    };
    assert!(matches!(e, SyncError::TooManyRounds(3)), "{e}");
    assert_eq!((n, run.report().rounds), (3, 3));
    assert!(e.retryable(), "it goes on next time, from where it stopped");
    let status = replica.sync_status().unwrap();
    assert_eq!(status.recent_rounds.len(), 3, "every answered round is kept");
    assert_eq!(status.last_problem, Some(SyncProblem::Offline));
}

#[test]
fn a_server_that_claims_an_absurd_backlog_gets_a_total_that_saturates_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = office_with_an_edit(dir.path());
    let mut run = SyncRun::start(&mut replica, LIMITS, false).unwrap();
    let (_, round) = request(run.next(&mut replica).unwrap());
    // A broken (or hostile) server says it holds u64::MAX of each after this page.
    let absurd = fieldsync_core::protocol::SyncResponse {
        still_to_send: Some(StillToSend { changes: u64::MAX, documents: u64::MAX }),
        ..response("c:1", true)
    };
    let next = run.answered(&mut replica, round, Ok(protocol::encode(&absurd)), at(1)).unwrap();
    assert!(matches!(next, RunStep::Send { .. }), "the sync goes on: {next:?}");
    let SyncActivity::Syncing(progress) = replica.sync_activity().unwrap() else { panic!("not syncing") };
    assert_eq!((progress.changes_to_download, progress.documents_to_download), (Some(u64::MAX), Some(u64::MAX)));
    assert_eq!(progress.download_fraction(), Some(0.0));
    assert_eq!(replica.sync_status().unwrap().pending_changes, 0, "the page itself was committed");
}
