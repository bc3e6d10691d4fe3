//! The action fuzzer: arbitrary sequences of edits, syncs, lost and
//! duplicated responses, crashes, partitions, skewed clocks, server restarts
//! and reinstalls, shrunk to a minimal sequence on failure. Every minimal
//! sequence ever found stays below as a fixture test (loro's style).

use fieldsync_tests::fuzz::{Action, run_actions};
use fieldsync_tests::workload::EditKind;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn action() -> impl Strategy<Value = Action> {
    let peer = 0u8..4;
    prop_oneof![
        8 => (peer.clone(), 0u8..3, prop::sample::select(EditKind::ALL.to_vec()), any::<u16>())
            .prop_map(|(peer, section, kind, seed)| Action::Edit { peer, section, kind, seed }),
        4 => peer.clone().prop_map(|peer| Action::Sync { peer }),
        1 => peer.clone().prop_map(|peer| Action::SyncLostResponse { peer }),
        1 => peer.clone().prop_map(|peer| Action::SyncDuplicated { peer }),
        1 => peer.clone().prop_map(|peer| Action::SyncHeld { peer }),
        1 => Just(Action::ReleaseHeld),
        1 => peer.clone().prop_map(|peer| Action::Crash { peer }),
        1 => peer.clone().prop_map(|peer| Action::Partition { peer }),
        1 => (peer.clone(), -72i8..72).prop_map(|(peer, hours)| Action::Skew { peer, hours }),
        1 => Just(Action::RestartServer),
        1 => peer.prop_map(|peer| Action::Reinstall { peer }),
        1 => (1u8..120).prop_map(|minutes| Action::Wait { minutes }),
    ]
}

fn cases() -> u32 {
    std::env::var("FIELDSYNC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_action_sequences_converge(actions in prop::collection::vec(action(), 1..40)) {
        if let Err(e) = run_actions(&actions) {
            prop_assert!(false, "{e}\nactions: {actions:?}");
        }
    }
}

// ---- fixtures: sequences kept for good ----

use Action::*;

fn edit(peer: u8, section: u8, kind: EditKind, seed: u16) -> Action {
    Edit { peer, section, kind, seed }
}

/// Everything at once on one section: a lost response, a duplicate, a crash,
/// a partition healed late, a reinstall and a restart between the edits.
#[test]
fn fixture_every_fault_on_one_section() {
    let actions = [
        edit(2, 0, EditKind::Progress, 1),
        SyncLostResponse { peer: 2 },
        edit(3, 0, EditKind::Step, 2),
        Partition { peer: 3 },
        edit(1, 0, EditKind::Rollback, 3),
        SyncDuplicated { peer: 1 },
        Crash { peer: 2 },
        edit(2, 0, EditKind::Progress, 4),
        Sync { peer: 3 },
        RestartServer,
        edit(0, 0, EditKind::Route, 5),
        Reinstall { peer: 3 },
        Skew { peer: 1, hours: -48 },
        edit(1, 0, EditKind::Accept, 6),
        edit(2, 0, EditKind::OffRoute, 7),
        Sync { peer: 2 },
        edit(1, 0, EditKind::Accept, 8),
    ];
    let outcome = run_actions(&actions).unwrap();
    assert!(outcome.edits >= 4, "{outcome:?}");
}

/// Concurrent transitions by every role on a section nobody synced in between:
/// everyone steps (the same move: they concur), then, each on its own step,
/// the office blocks, the foreman skips and the technicians step again. Since
/// transitions fold along their causal chain, moves built on concurring writes
/// race in one group (identical skips would concur, with no conflict at all).
#[test]
fn fixture_concurrent_transitions() {
    let mut actions: Vec<Action> = (0..4).map(|p| edit(p, 1, EditKind::Step, u16::from(p))).collect();
    actions.push(edit(0, 1, EditKind::Block, 10));
    actions.push(edit(1, 1, EditKind::Skip, 11));
    actions.extend((2..4).map(|p| edit(p, 1, EditKind::Step, 10 + u16::from(p))));
    actions.extend((0..4).map(|p| Sync { peer: p }));
    let outcome = run_actions(&actions).unwrap();
    assert!(outcome.conflicts > 0, "{outcome:?}");
}

/// A request held in the network while its app is reinstalled with the same
/// token reaches the hub after the new install bootstrapped: its changes are
/// the device's own as far as the feed is concerned.
#[test]
fn fixture_a_late_request_from_before_a_reinstall() {
    let actions = [
        edit(2, 0, EditKind::Progress, 1),
        SyncHeld { peer: 2 },
        Reinstall { peer: 2 },
        Sync { peer: 2 },
        ReleaseHeld,
        edit(1, 0, EditKind::Notes, 2),
        Sync { peer: 1 },
        Sync { peer: 2 },
    ];
    run_actions(&actions).unwrap();
}
