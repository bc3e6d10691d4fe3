//! Property test: replicas with random roles and skewed clocks make random
//! edits of every kind and exchange changes in random orders, with
//! duplicates. Afterwards every replica shows identical views and conflict
//! sets, every write any replica made is still retrievable, every write a
//! replica refused was refused by a rule (nothing else fails), and the
//! outcome obeys the rules, checked here independently of core's code.

use std::collections::BTreeSet;

use fieldsync_core::{ConstructionState, Field, GeoPoint, Replica, ReplicaError, Role, SectionChange};
use proptest::prelude::*;

use crate::common::{PROJECT, crew, route};

const SECTIONS: usize = 2;
const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone)]
enum Action {
    Progress { who: usize, section: usize, percent: i64 },
    Transition { who: usize, section: usize, to: usize, reason: bool },
    Location { who: usize, section: usize, north_m: i32 },
    Accept { who: usize, section: usize },
    Notes { who: usize, section: usize, pos: usize, text: String },
    Rename { who: usize, section: usize, name: u8 },
    Sync { from: usize, to: usize, order: u8, duplicate: bool },
}

const STATES: [ConstructionState; 9] = [
    ConstructionState::Planned,
    ConstructionState::Surveyed,
    ConstructionState::Trenched,
    ConstructionState::ConduitLaid,
    ConstructionState::CablePulled,
    ConstructionState::Spliced,
    ConstructionState::Tested,
    ConstructionState::Completed,
    ConstructionState::Blocked,
];

fn action(replicas: usize) -> impl Strategy<Value = Action> {
    let who = 0..replicas;
    let section = 0..SECTIONS;
    prop_oneof![
        3 => (who.clone(), section.clone(), -5i64..=105).prop_map(|(who, section, percent)| Action::Progress { who, section, percent }),
        3 => (who.clone(), section.clone(), 0..STATES.len(), any::<bool>())
            .prop_map(|(who, section, to, reason)| Action::Transition { who, section, to, reason }),
        2 => (who.clone(), section.clone(), -300i32..300).prop_map(|(who, section, north_m)| Action::Location { who, section, north_m }),
        1 => (who.clone(), section.clone()).prop_map(|(who, section)| Action::Accept { who, section }),
        1 => (who.clone(), section.clone(), 0usize..20, "[a-z ]{1,6}")
            .prop_map(|(who, section, pos, text)| Action::Notes { who, section, pos, text }),
        1 => (who.clone(), section.clone(), any::<u8>()).prop_map(|(who, section, name)| Action::Rename { who, section, name }),
        4 => (who.clone(), who, any::<u8>(), any::<bool>())
            .prop_map(|(from, to, order, duplicate)| Action::Sync { from, to, order, duplicate }),
    ]
}

fn all_changes(r: &mut Replica) -> Vec<SectionChange> {
    (0..SECTIONS)
        .flat_map(|s| {
            let id = format!("s{s}");
            r.changes_of(&id, &[])
                .unwrap_or_default()
                .into_iter()
                .map(move |bytes| SectionChange { section: id.clone(), bytes })
        })
        .collect()
}

/// Deliver `from`'s changes to `to` one small batch at a time, in a scrambled
/// order (so dependencies often arrive after what depends on them).
fn deliver(replicas: &mut [Replica], from: usize, to: usize, order: u8, duplicate: bool) {
    if from == to {
        return;
    }
    let mut changes = all_changes(&mut replicas[from]);
    if changes.is_empty() {
        return;
    }
    let k = order as usize % changes.len();
    changes.rotate_left(k);
    if order % 2 == 1 {
        changes.reverse();
    }
    if duplicate {
        let again = changes[..changes.len().div_ceil(2)].to_vec();
        changes.extend(again);
    }
    for batch in changes.chunks(1 + order as usize % 3) {
        replicas[to].apply_changes(batch).unwrap();
    }
}

fn play(roles: &[Role], skews: &[i64], actions: &[Action]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = crew(dir.path(), roles);
    let now = fieldsync_core::wall_clock_ms() as i64;
    for (r, skew) in replicas.iter_mut().zip(skews) {
        r.observe_server_time((now + skew) as u64).unwrap();
    }
    for s in 0..SECTIONS {
        replicas[0].create_section_with_id(&format!("s{s}"), PROJECT, &format!("Section {s}"), &route()).unwrap();
    }
    for to in 1..replicas.len() {
        deliver(&mut replicas, 0, to, 0, false);
    }
    let mut written: Vec<(String, String)> = Vec::new();
    for a in actions {
        let receipt = match a.clone() {
            Action::Progress { who, section, percent } => {
                replicas[who].record_progress(&format!("s{section}"), percent)
            }
            Action::Transition { who, section, to, reason } => {
                let reason = reason.then_some("washed out");
                replicas[who].transition(&format!("s{section}"), STATES[to], reason)
            }
            Action::Location { who, section, north_m } => {
                let point = GeoPoint { lat: 48.0 + f64::from(north_m) / 111_000.0, lon: 11.005 };
                replicas[who].report_location(&format!("s{section}"), point)
            }
            Action::Accept { who, section } => {
                let id = format!("s{section}");
                match replicas[who].section(&id).unwrap().quarantined.first() {
                    Some(q) => replicas[who].accept_point(&id, &q.edit_id.clone()),
                    None => continue,
                }
            }
            Action::Notes { who, section, pos, text } => {
                let id = format!("s{section}");
                let len = replicas[who].section(&id).unwrap().notes.chars().count();
                replicas[who].splice_notes(&id, pos.min(len), 0, &text).unwrap();
                continue;
            }
            Action::Rename { who, section, name } => {
                replicas[who].rename_section(&format!("s{section}"), &format!("N{name}"))
            }
            Action::Sync { from, to, order, duplicate } => {
                deliver(&mut replicas, from, to, order, duplicate);
                continue;
            }
        };
        match receipt {
            Ok(r) => written.push((r.section, r.edit_id)),
            // A local refusal names its rule and stores nothing; nothing else may fail.
            Err(ReplicaError::Refused { rule, reason }) => {
                prop_assert!(!reason.is_empty(), "refused by {} without a reason", rule.as_str());
            }
            Err(e) => prop_assert!(false, "{:?} failed: {}", a, e),
        }
    }
    // Heal: everyone exchanges everything, twice round.
    for _ in 0..2 {
        for from in 0..replicas.len() {
            for to in 0..replicas.len() {
                deliver(&mut replicas, from, to, 1, false);
            }
        }
    }
    for s in 0..SECTIONS {
        let id = format!("s{s}");
        let view = replicas[0].section(&id).unwrap();
        let conflicts = replicas[0].conflicts(Some(&id)).unwrap();
        let audit = replicas[0].audit(&id).unwrap();
        for r in replicas.iter_mut().skip(1) {
            prop_assert_eq!(&r.section(&id).unwrap(), &view, "views differ for {}", id);
            prop_assert_eq!(&r.conflicts(Some(&id)).unwrap(), &conflicts, "conflicts differ for {}", id);
            prop_assert_eq!(&r.audit(&id).unwrap(), &audit, "audits differ for {}", id);
        }
    }
    // The rules, checked independently on the outcome every replica shares.
    for s in 0..SECTIONS {
        let id = format!("s{s}");
        let audit = replicas[0].audit(&id).unwrap();
        let role_of = |edit: &str| audit.iter().find(|e| e.edit_id == edit).and_then(|e| e.role);
        for e in audit.iter().filter(|e| e.decision.applied()) {
            match e.field {
                Some(Field::Name | Field::Route) => {
                    prop_assert_eq!(e.role, Some(Role::Office), "{} applied from a non-office writer", e.value)
                }
                Some(Field::Acceptance) => {
                    prop_assert!(e.role >= Some(Role::Foreman), "an acceptance applied from a {:?}", e.role)
                }
                _ => {}
            }
        }
        let view = replicas[0].section(&id).unwrap();
        prop_assert!(view.progress <= 100, "progress {}", view.progress);
        for ev in &view.events {
            let step = |st: ConstructionState| STATES.iter().position(|x| *x == st);
            let forward_one = matches!((step(ev.from), step(ev.to)), (Some(a), Some(b)) if b == a + 1 && b < 8);
            let technician = role_of(&ev.edit_id) == Some(Role::Technician);
            prop_assert!(
                !technician || forward_one || ev.to == ConstructionState::Blocked,
                "a technician's {:?} → {:?} applied",
                ev.from,
                ev.to
            );
        }
    }
    // Nothing lost: every write any replica made is in every replica's audit trail.
    for r in &mut replicas {
        let mut ids = BTreeSet::new();
        for s in 0..SECTIONS {
            ids.extend(r.audit(&format!("s{s}")).unwrap().into_iter().map(|e| (format!("s{s}"), e.edit_id)));
        }
        for w in &written {
            prop_assert!(ids.contains(w), "write {:?} missing on {}", w, r.device());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_order(
        extra in prop::collection::vec(prop_oneof![Just(Role::Technician), Just(Role::Foreman)], 2..=3),
        skews in prop::collection::vec(-3 * DAY_MS..3 * DAY_MS, 4),
        actions in prop::collection::vec(action(4), 10..60),
    ) {
        let mut roles = vec![Role::Office];
        roles.extend(extra);
        let actions: Vec<Action> = actions.into_iter().filter(|a| match a {
            Action::Progress { who, .. } | Action::Transition { who, .. } | Action::Location { who, .. }
            | Action::Accept { who, .. } | Action::Notes { who, .. } | Action::Rename { who, .. } => *who < roles.len(),
            Action::Sync { from, to, .. } => *from < roles.len() && *to < roles.len(),
        }).collect();
        play(&roles, &skews, &actions)?;
    }
}
