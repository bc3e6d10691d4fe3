//! A hostile device: a member's enrolled phone (a technician, `mallory`)
//! whose app was tampered with. Its honest side is a real `Replica` that
//! syncs like any device (binding its actor, fetching the documents); its
//! attacks are requests built by hand and sent through the hub's API
//! (`Hub::sync` with an encoded body, as the HTTP route calls it):
//!
//! - well-formed changes that break the rules (a technician writing the
//!   route or the name, skipping states, rolling progress back, accepting an
//!   off-route point): the hub must store them and show them as rejections,
//!   like every replica;
//! - malformed ones (a record stamped as another actor, a change rewriting
//!   someone else's record, another device's change relayed, syncing as
//!   another device's actor, garbage bytes): the hub must refuse them with a
//!   4xx and change nothing.
//!
//! The changes are built with `fieldsync_core::SectionDoc` (and raw
//! Automerge for the rewrite), as `server/tests/integration/refusals.rs` does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use automerge::ReadDoc;
use automerge::transaction::Transactable;
use fieldsync_core::protocol::{self, SectionBatch, SyncRequest};
use fieldsync_core::{
    ConstructionState, Decision, EditValue, FORWARD, Field, GeoPoint, Hlc, ProjectConfig, Replica, Roster, Rule,
    SectionDoc, validate,
};

use crate::device::Phone;
use crate::rng::Rng;
use crate::sim::{FNV_START, fnv};

/// The hostile member's user name.
pub const USER: &str = "mallory";

/// The hostile device.
pub struct Hostile {
    /// Its bearer token.
    pub token: String,
    /// Its clocks and ids.
    pub phone: Phone,
    /// Its honest side.
    pub replica: Arc<Mutex<Replica>>,
    /// Its Automerge actor (hex), bound to it by its first round.
    pub actor: String,
    /// Its crafted changes the hub stored, by section: the next crafted
    /// change of a section builds on them (the feed does not send a device
    /// its own changes back).
    pub stored: BTreeMap<String, Vec<Vec<u8>>>,
    /// Its randomness.
    pub rng: Rng,
    counter: u32,
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hostile").field("actor", &self.actor).finish_non_exhaustive()
    }
}

/// A well-formed change that breaks a rule.
#[derive(Debug, Clone)]
pub struct RuleBreak {
    /// Its section.
    pub section: String,
    /// The write's id (its stamp).
    pub edit_id: String,
    /// Hex hash of its change.
    pub hash: String,
    /// The change.
    pub bytes: Vec<u8>,
    /// The rule the rules over the merge reject it under, as the device predicts.
    pub rule: Rule,
    /// What it is, in words.
    pub what: &'static str,
}

/// A malformed request and what the hub must answer.
#[derive(Debug, Clone)]
pub struct Malformed {
    /// What it is, in words.
    pub what: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// The status the hub must answer.
    pub status: u16,
    /// For a 422: the rule each refusal names (`None`: a structural refusal, no rule).
    pub rule: Option<Option<&'static str>>,
}

fn lock(r: &Arc<Mutex<Replica>>) -> std::sync::MutexGuard<'_, Replica> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hostile {
    /// The device, once its replica is open.
    pub fn new(token: String, phone: Phone, replica: Arc<Mutex<Replica>>, rng: Rng) -> Hostile {
        let actor = lock(&replica).actor();
        Hostile { token, phone, replica, actor, stored: BTreeMap::new(), rng, counter: 0 }
    }

    /// A stamp at the hub's time `now_ms`, unique among this device's writes.
    pub fn stamp(&mut self, now_ms: u64) -> Hlc {
        self.counter += 1;
        Hlc { physical_ms: now_ms, counter: self.counter, actor: self.actor.clone() }
    }

    /// `section` as the device knows it: the document its replica holds,
    /// plus its own crafted changes the hub stored.
    pub fn document(&self, section: &str) -> Result<SectionDoc, String> {
        let saved = lock(&self.replica).export(section).map_err(|e| e.to_string())?;
        let mine = self.stored.get(section).cloned().unwrap_or_default();
        let mut doc = SectionDoc::from_parts(Some(&saved), &mine).map_err(|e| e.to_string())?;
        doc.set_actor(actor_id(&self.actor)?);
        Ok(doc)
    }

    /// The request this device would send now, without an upload.
    pub fn request(&self, project: &str) -> Result<SyncRequest, String> {
        let prepared = lock(&self.replica).prepare_round(project, 0, 64 * 1024).map_err(|e| e.to_string())?;
        let mut request = prepared.request;
        request.upload.clear();
        Ok(request)
    }

    /// The roster its replica holds.
    pub fn roster(&self, project: &str) -> Result<Roster, String> {
        lock(&self.replica).roster(project).map_err(|e| e.to_string())
    }
}

fn actor_id(hex: &str) -> Result<automerge::ActorId, String> {
    automerge::ActorId::try_from(hex).map_err(|e| format!("actor {hex}: {e}"))
}

/// A change to `doc` (section `section`) that the rules reject: a
/// technician's route, name, skipped state, rollback or acceptance. The
/// rules over the document with the change, with `roster` and `config`,
/// predict its rejection; a kind they would accept (a "rollback" that is no
/// fall at its place in stamp order) falls back to a name, which only the
/// office may write.
pub fn rule_break(
    doc: &SectionDoc,
    section: &str,
    roster: &Roster,
    config: &ProjectConfig,
    hlc: &Hlc,
    rng: &mut Rng,
) -> Result<RuleBreak, String> {
    let view = validate(&doc.input(), roster, config).view;
    let head = view.events.last().map(|e| e.edit_id.clone());
    let mut kinds = vec![rng.below(5), 1];
    kinds.dedup();
    for kind in kinds {
        let (what, value, base) = match kind {
            0 => {
                let points = view.route.iter().map(|p| GeoPoint { lat: p.lat + 0.01, lon: p.lon }).collect::<Vec<_>>();
                let points = if points.len() >= 2 {
                    points
                } else {
                    vec![GeoPoint { lat: 48.0, lon: 9.6 }, GeoPoint { lat: 48.01, lon: 9.6 }]
                };
                ("a technician's route", EditValue::Route { points }, doc.latest_edit_of(Field::Route))
            }
            1 => (
                "a technician's name",
                EditValue::Name { name: format!("{} (renamed by mallory)", view.name) },
                doc.latest_edit_of(Field::Name),
            ),
            2 => {
                let to = match (view.state, view.state.step()) {
                    (ConstructionState::Blocked, _) => {
                        view.blocked.as_ref().map_or(ConstructionState::Planned, |b| b.resume_to)
                    }
                    (_, Some(s)) if s + 2 < FORWARD.len() => FORWARD[s + 2],
                    (_, Some(s)) if s >= 1 => FORWARD[s - 1],
                    _ => FORWARD[2],
                };
                let value = EditValue::Transition { from: view.state, to, reason: None };
                ("a technician's skip, rework or unblock", value, head.clone())
            }
            3 => {
                let percent = i64::from(view.progress) - 5 - rng.below(10) as i64;
                let value = EditValue::Progress { percent, at_state: view.state };
                ("a technician's rollback", value, doc.latest_edit_of(Field::Progress))
            }
            _ => {
                let point_edit = match view.quarantined.first() {
                    Some(q) => q.edit_id.clone(),
                    None => view.as_built.first().map_or_else(|| "no-such-point".into(), |p| p.edit_id.clone()),
                };
                ("a technician's acceptance", EditValue::Accept { point_edit }, doc.latest_edit_of(Field::Acceptance))
            }
        };
        let mut doc = doc.clone();
        let change = doc.write(hlc, base.as_deref(), &value).map_err(|e| e.to_string())?;
        let edit_id = hlc.to_string();
        let validated = validate(&doc.input(), roster, config);
        if let Some(Decision::Rejected { rule, .. }) = validated.decisions.get(&edit_id) {
            return Ok(RuleBreak {
                section: section.to_owned(),
                edit_id,
                hash: change.hash().to_string(),
                bytes: change.raw_bytes().to_vec(),
                rule: *rule,
                what,
            });
        }
    }
    Err(format!("section {section}: no rule-breaking write found (a name by a technician was accepted)"))
}

/// A malformed request about `doc` (section `section`), built on `request`;
/// `has_sent`: the hub stored a write of this device's before (its stamp
/// floor is at least that write's stamp).
pub fn malformed(
    doc: &SectionDoc,
    section: &str,
    roster: &Roster,
    request: &SyncRequest,
    hlc: &Hlc,
    has_sent: bool,
    rng: &mut Rng,
) -> Result<Malformed, String> {
    let me = hlc.actor.clone();
    let others: Vec<String> = roster.members().filter(|m| m.actor != me).map(|m| m.actor.clone()).collect();
    let upload = |bytes: Vec<u8>| {
        let mut r = request.clone();
        r.upload = vec![SectionBatch::upload(section.to_owned(), vec![bytes])];
        protocol::encode(&r)
    };
    let garbage = |rng: &mut Rng, n: usize| (0..n).map(|_| rng.below(256) as u8).collect::<Vec<u8>>();
    Ok(match rng.below(7) {
        0 if !others.is_empty() => {
            let mut doc = doc.clone();
            let forged = Hlc { actor: rng.pick(&others).clone(), ..hlc.clone() };
            let value = EditValue::Progress { percent: 5, at_state: ConstructionState::Planned };
            let change = doc.write(&forged, None, &value).map_err(|e| e.to_string())?;
            Malformed {
                what: "a record stamped as another actor",
                body: upload(change.raw_bytes().to_vec()),
                status: 422,
                rule: Some(Some(Rule::ForgedStamp.as_str())),
            }
        }
        1 => {
            let mut am = doc.automerge().clone().with_actor(actor_id(&me)?);
            let Ok(Some((_, edits))) = am.get(automerge::ROOT, "edits") else {
                return Err(format!("section {section} has no edits map"));
            };
            let theirs: Vec<automerge::ObjId> = am
                .map_range(&edits, ..)
                .map(|item| item.id())
                .filter(|rec| matches!(rec, automerge::ObjId::Id(_, actor, _) if actor.to_hex_string() != me))
                .collect();
            let Some(record) = theirs.first().cloned() else {
                return Err(format!("section {section} has no record of another writer"));
            };
            let mut tx = am.transaction();
            tx.put(&record, "base", "rewritten by mallory").map_err(|e| e.to_string())?;
            tx.commit();
            let change = am.get_last_local_change().ok_or("the rewrite made no change")?;
            Malformed {
                what: "a change rewriting someone else's record",
                body: upload(change.raw_bytes().to_vec()),
                status: 422,
                rule: Some(None),
            }
        }
        2 => {
            let theirs: Vec<Vec<u8>> = doc
                .automerge()
                .get_changes(&[])
                .iter()
                .filter(|c| c.actor_id().to_hex_string() != me)
                .map(|c| c.raw_bytes().to_vec())
                .collect();
            let Some(change) = theirs.last().cloned() else {
                return Err(format!("section {section} has no change of another writer"));
            };
            Malformed { what: "another device's change, relayed", body: upload(change), status: 403, rule: None }
        }
        3 if !others.is_empty() => {
            let mut r = request.clone();
            r.actor = rng.pick(&others).clone();
            Malformed { what: "a round as another device's actor", body: protocol::encode(&r), status: 403, rule: None }
        }
        5 if has_sent => {
            // A day before its last write: how a demoted member would claim the old role.
            let mut doc = doc.clone();
            let backdated = Hlc { physical_ms: hlc.physical_ms.saturating_sub(24 * 3_600_000), ..hlc.clone() };
            let value = EditValue::Progress { percent: 5, at_state: ConstructionState::Planned };
            let change = doc.write(&backdated, None, &value).map_err(|e| e.to_string())?;
            Malformed {
                what: "a record stamped a day before the device's last write",
                body: upload(change.raw_bytes().to_vec()),
                status: 422,
                rule: Some(Some(Rule::ForgedStamp.as_str())),
            }
        }
        4 => Malformed { what: "garbage bytes as a change", body: upload(garbage(rng, 64)), status: 400, rule: None },
        _ => Malformed { what: "a garbage body", body: garbage(rng, 300), status: 400, rule: None },
    })
}

/// A digest of everything the hub stores but its refusals' audit lines:
/// the feed, the documents' views and snapshots' positions, the conflict
/// records, actors, devices, members, role history and projects. A refused
/// request must leave it as it was.
pub fn hub_digest(hub_dir: &Path) -> Result<u64, String> {
    let conn = rusqlite::Connection::open(hub_dir.join("hub.db")).map_err(|e| e.to_string())?;
    let mut h = FNV_START;
    for sql in [
        "SELECT seq || ' ' || project || ' ' || section || ' ' || hash FROM feed ORDER BY seq",
        "SELECT id || ' ' || view FROM sections ORDER BY id",
        "SELECT id || ' ' || record FROM conflicts ORDER BY id",
        "SELECT actor || ' ' || device FROM actors ORDER BY actor",
        "SELECT id || ' ' || coalesce(revoked_ms, '') FROM devices ORDER BY id",
        "SELECT project || ' ' || user || ' ' || role FROM members ORDER BY project, user",
        "SELECT seq || ' ' || user || ' ' || coalesce(role, '-') || ' ' || at_ms FROM member_events ORDER BY seq",
        "SELECT id || ' ' || roster_version || ' ' || config FROM projects ORDER BY id",
    ] {
        let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| e.to_string())?;
        for row in rows {
            let row = row.map_err(|e| e.to_string())?;
            h = fnv(row.as_bytes(), fnv(b"\n", h));
        }
    }
    Ok(h)
}
