//! The rules over the merge.
//!
//! [`validate`] is a pure function of the merged document's writes, the
//! roster and the project config: no clock, no arrival order, no replica
//! identity. Any two replicas holding the same changes compute the same view,
//! the same decisions and the same conflict records.
//!
//! Writes are weighed in causal order, then by when they count: the stamp,
//! bounded by when the hub received the write (ADR 0019). Writes of one field
//! that share a `base` (the latest write of that field their writer had seen)
//! were made without knowing of each other: that is a contest, recorded as such.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::document::SectionInput;
use crate::domain::edit::{Edit, EditId, EditValue, Field};
use crate::domain::hlc::Hlc;
use crate::domain::project::{ProjectConfig, Roster};
use crate::domain::role::Role;
use crate::domain::route::{GeoPoint, distance_to_route_m};
use crate::domain::state_machine::{ConstructionState, DomainEventKind, check_transition};
use crate::rules::conflict::{Candidate, ConflictKind, ConflictRecord, Rule};
use crate::rules::mutation::{self, Mutation};
use crate::rules::view::{AuditEntry, Blocked, Decision, DomainEvent, PointRecord, QuarantinedPoint, SectionView};

/// Everything the rules conclude about a section.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// What every replica shows.
    pub view: SectionView,
    /// Contests and rejections, ordered by id.
    pub conflicts: Vec<ConflictRecord>,
    /// What became of each write, keyed by edit id.
    pub decisions: BTreeMap<EditId, Decision>,
    /// When each write counts (server ms; its author's role is the one held
    /// then), keyed by edit id, for the writes that do not count at their stamp.
    pub counted_at: BTreeMap<EditId, u64>,
}

impl Validated {
    /// When `e` counts (its stamp for a write the rules did not see).
    pub fn counted_at(&self, e: &Edit) -> u64 {
        self.counted_at.get(&e.id).copied().unwrap_or(e.hlc.physical_ms)
    }

    /// Each write with its decision, in HLC order: the section's audit trail.
    pub fn audit(&self, input: &SectionInput, roster: &Roster) -> Vec<AuditEntry> {
        input
            .edits
            .iter()
            .map(|e| {
                let c = Candidate::of(e, roster, self.counted_at(e));
                AuditEntry {
                    edit_id: e.id.clone(),
                    field: e.value.field(),
                    value: c.value,
                    author: c.author,
                    user: c.user,
                    role: c.role,
                    change_hash: c.change_hash,
                    received_ms: input.received.get(&e.change_hash).copied().filter(|&ms| ms > 0),
                    decision: self.decisions.get(&e.id).cloned().unwrap_or(Decision::Rejected {
                        rule: Rule::UnknownTarget,
                        winner: None,
                        reason: "a write of a kind this version does not know; kept as written".into(),
                    }),
                }
            })
            .collect()
    }
}

struct Validator<'a> {
    input: &'a SectionInput,
    roster: &'a Roster,
    config: &'a ProjectConfig,
    times: Times<'a>,
    decisions: BTreeMap<EditId, Decision>,
    conflicts: Vec<ConflictRecord>,
}

/// Compute the validated view of a section.
pub fn validate(input: &SectionInput, roster: &Roster, config: &ProjectConfig) -> Validated {
    let times = Times::of(input);
    let mut v = Validator { input, roster, config, times, decisions: BTreeMap::new(), conflicts: Vec::new() };
    let screened = v.screen();
    // Each field's writes, in the order they count (one pass, then one sort per field).
    let mut fields: BTreeMap<Field, Vec<&Edit>> = BTreeMap::new();
    for e in screened {
        fields.entry(e.value.field().expect("screened")).or_default().push(e);
    }
    let fields: BTreeMap<Field, Vec<&Edit>> =
        fields.into_iter().map(|(f, edits)| (f, causal_order(edits, |e| v.times.bound(e)))).collect();
    let of = |f: Field| fields.get(&f).map_or(&[][..], Vec::as_slice);

    let name = v.office_only(of(Field::Name));
    let route = v.office_only(of(Field::Route));
    let crew = v.office_only(of(Field::Crew));
    let (state, blocked, events) = v.state(of(Field::State));
    // The states a writer can have seen: planned, and every state a
    // transition record of the section moves to (one that lost a race
    // included: progress recorded on it was honest).
    let passed: BTreeSet<ConstructionState> = of(Field::State)
        .iter()
        .filter_map(|e| match e.value {
            EditValue::Transition { to, .. } => Some(to),
            _ => None,
        })
        .chain([ConstructionState::Planned])
        .collect();
    let mut milestones = Vec::new();
    let progress = v.progress(of(Field::Progress), &passed, &mut milestones);
    let route_points = match route.map(|e| &e.value) {
        Some(EditValue::Route { points }) => points.clone(),
        _ => Vec::new(),
    };
    let acceptances = v.acceptances(of(Field::Acceptance));
    let (location, as_built, quarantined) = v.locations(of(Field::Location), &route_points, &acceptances);
    for f in [Field::Name, Field::Route, Field::Crew, Field::Progress, Field::Location] {
        v.contests(f, of(f));
    }

    let mut conflicts = v.conflicts;
    conflicts.sort_by(|a, b| a.id.cmp(&b.id));
    conflicts.dedup_by(|a, b| a.id == b.id);
    let view = SectionView {
        id: input.id.clone(),
        project: input.project.clone(),
        name: match name.map(|e| &e.value) {
            Some(EditValue::Name { name }) => name.clone(),
            _ => String::new(),
        },
        route: route_points,
        crew: match crew.map(|e| &e.value) {
            Some(EditValue::Crew { crew }) => Some(crew.clone()),
            _ => None,
        },
        state,
        blocked,
        progress,
        location,
        as_built,
        quarantined,
        notes: input.notes.clone(),
        photos: input.photos.clone(),
        events,
        milestones,
        conflict_count: conflicts.len(),
        heads: input.heads.clone(),
    };
    let counted_at = input
        .edits
        .iter()
        .filter(|e| v.times.counted(e) != e.hlc.physical_ms)
        .map(|e| (e.id.clone(), v.times.counted(e)))
        .collect();
    Validated { view, conflicts, decisions: v.decisions, counted_at }
}

/// When each write of a section counts (ADR 0019), by its index in the input.
struct Times<'a> {
    index: HashMap<&'a str, usize>,
    /// The latest the write can have been made: its stamp, or when the hub
    /// received it if that is earlier (a clock ahead does not push it into
    /// the future). What orders a field's writes.
    bound: Vec<u64>,
    /// Its bound, and never earlier than the write it was built on counts (a
    /// stamp backdated past what its writer had seen does not reach back to
    /// an older role). The moment its author's role is read at.
    counted: Vec<u64>,
}

impl<'a> Times<'a> {
    fn of(input: &'a SectionInput) -> Times<'a> {
        let edits = &input.edits;
        let index: HashMap<&str, usize> = edits.iter().enumerate().map(|(i, e)| (e.id.as_str(), i)).collect();
        let bounded = !mutation::active(Mutation::UnboundedStamps);
        // 0: a hub of protocol 2 stored it, without a receipt: like an unconfirmed write.
        let received: Vec<Option<u64>> =
            edits.iter().map(|e| input.received.get(&e.change_hash).copied().filter(|&ms| ms > 0 && bounded)).collect();
        let bound: Vec<u64> = edits
            .iter()
            .zip(&received)
            .map(|(e, r)| r.map_or(e.hlc.physical_ms, |r| r.min(e.hlc.physical_ms)))
            .collect();
        // A base counts if the hub received it no later than the write (an
        // unconfirmed write may build on anything): one named before it
        // reached the hub, by a tampered client, must not move a write the
        // hub already judged.
        let base: Vec<Option<usize>> = edits
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let b = *index.get(e.base.as_deref()?)?;
                let counts = match (received[b], received[i]) {
                    (_, None) => true,
                    (Some(rb), Some(ri)) => rb <= ri,
                    (None, Some(_)) => false,
                };
                (b != i && counts).then_some(b)
            })
            .collect();
        // Each write has at most one base: walk each chain down to a write
        // already done (or its end, or a hostile cycle, whose last link is
        // ignored), then fill it in on the way back. Every write once: O(n).
        let mut counted = vec![0u64; edits.len()];
        let mut done = vec![0u8; edits.len()]; // 0: not seen, 1: on this walk, 2: done.
        let mut chain = Vec::new();
        for start in 0..edits.len() {
            let (mut i, mut floor) = (start, 0);
            loop {
                match done[i] {
                    2 => floor = counted[i],
                    1 => {}
                    _ => {
                        done[i] = 1;
                        chain.push(i);
                        if let Some(b) = base[i] {
                            i = b;
                            continue;
                        }
                    }
                }
                break;
            }
            for j in chain.drain(..).rev() {
                counted[j] = bound[j].max(floor);
                floor = counted[j];
                done[j] = 2;
            }
        }
        Times { index, bound, counted }
    }

    fn bound(&self, e: &Edit) -> u64 {
        self.index.get(e.id.as_str()).map_or(e.hlc.physical_ms, |&i| self.bound[i])
    }

    fn counted(&self, e: &Edit) -> u64 {
        self.index.get(e.id.as_str()).map_or(e.hlc.physical_ms, |&i| self.counted[i])
    }
}

impl<'a> Validator<'a> {
    /// The role `e`'s author held when it counts (screened writes have one).
    fn role(&self, e: &Edit) -> Role {
        let at = if mutation::active(Mutation::RoleOfToday) { u64::MAX } else { self.times.counted(e) };
        self.roster.role_at(&e.author, at).unwrap_or(Role::Technician)
    }

    fn candidate(&self, e: &Edit) -> Candidate {
        Candidate::of(e, self.roster, self.times.counted(e))
    }

    fn decide(&mut self, e: &Edit, d: Decision) {
        self.decisions.insert(e.id.clone(), d);
    }

    /// Refuse `e` under `rule`, naming the write that stands instead.
    fn reject(&mut self, e: &Edit, field: Field, rule: Rule, standing: Option<&Edit>, reason: String) {
        let mut candidates = vec![self.candidate(e)];
        candidates.extend(standing.map(|s| self.candidate(s)));
        let winner = standing.map(|s| s.id.clone());
        self.conflicts.push(ConflictRecord::new(
            &self.input.id,
            field,
            ConflictKind::Rejection,
            rule,
            candidates,
            winner.clone(),
            reason.clone(),
        ));
        self.decide(e, Decision::Rejected { rule, winner, reason });
    }

    /// Accept `e` as the field's new current value, superseding `current`.
    fn accept(&mut self, e: &'a Edit, current: &mut Option<&'a Edit>) {
        if let Some(c) = current.replace(e) {
            self.decide(c, Decision::Superseded { by: e.id.clone() });
        }
        self.decide(e, Decision::Accepted);
    }

    /// Writes whose author the roster does not know, or whose stamp names
    /// another actor, are refused before any field rule looks at them.
    fn screen(&mut self) -> Vec<&'a Edit> {
        let mut kept = Vec::new();
        for e in &self.input.edits {
            let Some(field) = e.value.field() else { continue };
            if e.hlc.actor != e.author {
                let reason = format!("stamped as actor {} but written by {}", e.hlc.actor, e.author);
                self.reject(e, field, Rule::ForgedStamp, None, reason);
            } else if self.roster.member(&e.author).is_none() {
                let reason = format!("actor {} is not in the project's roster", e.author);
                self.reject(e, field, Rule::UnknownAuthor, None, reason);
            } else if self.roster.role_at(&e.author, self.times.counted(e)).is_none() {
                let user = self.roster.member(&e.author).map_or("", |m| m.user.as_str());
                let reason = format!("{user} was not a member of the project when this was written");
                self.reject(e, field, Rule::NotAMemberThen, None, reason);
            } else {
                kept.push(e);
            }
        }
        kept
    }

    /// Name, route and crew: office only, latest HLC wins.
    fn office_only(&mut self, edits: &[&'a Edit]) -> Option<&'a Edit> {
        let mut current = None;
        for &e in edits {
            let role = self.role(e);
            if role < Role::Office && !mutation::active(Mutation::AnyoneIsOffice) {
                let field = e.value.field().expect("screened");
                let reason =
                    format!("only office staff may change the {}; a {} wrote it", field.as_str(), role.as_str());
                self.reject(e, field, Rule::OfficeOnly, current, reason);
            } else {
                self.accept(e, &mut current);
            }
        }
        current
    }

    /// The state machine, folded in causal order: a transition's `base` is
    /// the transition that stood when its writer made it, so the section's
    /// history is a chain from "no transition yet". The transitions built on
    /// the chain's head race (ranked by role, then their bound, then HLC,
    /// which ends in the actor id); the winner becomes the head. Transitions
    /// built on a write that did not stand are stale. No stamp orders the chain, so a clock days ahead
    /// can neither freeze a section nor jump the queue; and each write is
    /// looked at once (O(n log n) in the transitions of a section).
    fn state(&mut self, edits: &[&'a Edit]) -> (ConstructionState, Option<Blocked>, Vec<DomainEvent>) {
        let mut state = ConstructionState::Planned;
        let mut blocked: Option<Blocked> = None;
        let mut events = Vec::new();
        let mut current: Option<&'a Edit> = None;
        let mut by_base: BTreeMap<Option<&'a str>, Vec<&'a Edit>> = BTreeMap::new();
        for &e in edits {
            by_base.entry(e.base.as_deref()).or_default().push(e);
        }
        // The next group: the transitions built on the head, or on a write
        // that concurred with it (the same move, made twice).
        let mut next = by_base.remove(&None).unwrap_or_default();
        while !next.is_empty() {
            let mut group = std::mem::take(&mut next);
            group.sort_by(|a, b| a.id.cmp(&b.id));
            let mut valid = Vec::new();
            for &e in &group {
                let EditValue::Transition { from, to, reason } = &e.value else { continue };
                let role = self.role(e);
                if *from != state {
                    let why = format!("the writer saw {} but the section was {}", from.as_str(), state.as_str());
                    self.reject(e, Field::State, Rule::StaleTransition, current, why);
                } else if let Err(err) =
                    check_transition(role, *from, *to, blocked.as_ref().map(|b| b.resume_to), reason.as_deref())
                {
                    self.reject(e, Field::State, Rule::TransitionNotAllowed, current, err.to_string());
                } else {
                    valid.push(e);
                }
            }
            let rank =
                |e: &Edit| if mutation::active(Mutation::TransitionsByStamp) { Role::Technician } else { self.role(e) };
            let bound = |e: &Edit| self.times.bound(e);
            let Some(&winner) =
                valid.iter().max_by(|a, b| (rank(a), bound(a), &a.hlc).cmp(&(rank(b), bound(b), &b.hlc)))
            else {
                break;
            };
            let EditValue::Transition { from, to, reason } = &winner.value else { unreachable!() };
            next.extend(by_base.remove(&Some(winner.id.as_str())).unwrap_or_default());
            for &loser in valid.iter().filter(|e| e.id != winner.id) {
                match &loser.value {
                    EditValue::Transition { to: t, .. } if t == to => {
                        next.extend(by_base.remove(&Some(loser.id.as_str())).unwrap_or_default());
                        self.decide(loser, Decision::Concurred { with: winner.id.clone() })
                    }
                    _ => {
                        let why = format!(
                            "a concurrent transition to {} by a {} stood (higher role, then later stamp)",
                            to.as_str(),
                            self.role(winner).as_str()
                        );
                        self.decide(
                            loser,
                            Decision::Rejected {
                                rule: Rule::TransitionPrecedence,
                                winner: Some(winner.id.clone()),
                                reason: why,
                            },
                        );
                    }
                }
            }
            self.contest(Field::State, Rule::TransitionPrecedence, &group, Some(winner));
            self.accept(winner, &mut current);
            blocked = match (to, &blocked) {
                (ConstructionState::Blocked, _) => {
                    Some(Blocked { reason: reason.clone().unwrap_or_default(), resume_to: *from })
                }
                _ => None,
            };
            events.push(DomainEvent {
                edit_id: winner.id.clone(),
                section: self.input.id.clone(),
                kind: DomainEventKind::for_transition(*from, *to),
                from: *from,
                to: *to,
                author: winner.author.clone(),
                milestone: None,
            });
            state = *to;
        }
        for (base, group) in by_base {
            for e in group {
                let why = format!(
                    "its writer built on transition {} which did not stand; the section is {}",
                    base.unwrap_or("(none)"),
                    state.as_str()
                );
                self.reject(e, Field::State, Rule::StaleTransition, current, why);
            }
        }
        (state, blocked, events)
    }

    /// Progress: 0–100, inside the band of the writer's state, and only
    /// rising unless a foreman or office writes it.
    ///
    /// The band is the one of the state the writer saw, which must be a state
    /// some transition of the section moved to (a writer cannot claim
    /// `completed` to record 100%). A foreman's or office's rollback stands over a lower role's
    /// concurrent raise (role before stamp), as for transitions.
    ///
    /// Accepted progress that rises to the top of its state's band (the
    /// project's milestone for that stage) raises a milestone event.
    fn progress(
        &mut self,
        edits: &[&'a Edit],
        passed: &BTreeSet<ConstructionState>,
        milestones: &mut Vec<DomainEvent>,
    ) -> u8 {
        let mut current: Option<&'a Edit> = None;
        let mut rollback = false;
        let value = |e: &Edit| match e.value {
            EditValue::Progress { percent, .. } => percent,
            _ => 0,
        };
        for &e in edits {
            let EditValue::Progress { percent, at_state } = e.value else { continue };
            let band = self.config.band(at_state);
            let role = self.role(e);
            if !(0..=100).contains(&percent) {
                self.reject(e, Field::Progress, Rule::ProgressRange, current, format!("{percent}% is outside 0–100"));
            } else if !passed.contains(&at_state) {
                let why =
                    format!("recorded as {} but the section has never been {}", at_state.as_str(), at_state.as_str());
                self.reject(e, Field::Progress, Rule::ProgressBand, current, why);
            } else if percent < i64::from(band.min) || percent > i64::from(band.max) {
                let why =
                    format!("{percent}% is outside {}–{}%, the band for {}", band.min, band.max, at_state.as_str());
                self.reject(e, Field::Progress, Rule::ProgressBand, current, why);
            } else if let Some(c) =
                current.filter(|c| rollback && c.base == e.base && self.role(c) > role && value(c) != percent)
            {
                let why = format!(
                    "a {}'s rollback to {}% made at the same time stands over a {}'s {percent}%",
                    self.role(c).as_str(),
                    value(c),
                    role.as_str()
                );
                self.reject(e, Field::Progress, Rule::ProgressRolePrecedence, Some(c), why);
            } else if let Some(c) = current
                .filter(|c| percent < value(c) && role < Role::Foreman && !mutation::active(Mutation::AnyoneRollsBack))
            {
                let why = format!(
                    "progress only rises: {percent}% is below {}%, and only a foreman or office may roll it back",
                    value(c)
                );
                self.reject(e, Field::Progress, Rule::ProgressOnlyRises, Some(c), why);
            } else {
                let before = current.map_or(0, value);
                rollback = percent < before;
                if before < i64::from(band.max) && percent >= i64::from(band.max) {
                    milestones.push(DomainEvent {
                        edit_id: e.id.clone(),
                        section: self.input.id.clone(),
                        kind: DomainEventKind::ProgressMilestone,
                        from: at_state,
                        to: at_state,
                        author: e.author.clone(),
                        milestone: Some(band.max),
                    });
                }
                self.accept(e, &mut current);
            }
        }
        current.map_or(0, |c| value(c) as u8)
    }

    /// Acceptances of quarantined points: foreman or office only.
    fn acceptances(&mut self, edits: &[&'a Edit]) -> BTreeMap<EditId, EditId> {
        let locations: BTreeSet<&str> = self
            .input
            .edits
            .iter()
            .filter(|e| e.value.field() == Some(Field::Location))
            .map(|e| e.id.as_str())
            .collect();
        let mut accepted = BTreeMap::new();
        for &e in edits {
            let EditValue::Accept { point_edit } = &e.value else { continue };
            if self.role(e) < Role::Foreman {
                let why = "only a foreman or office may accept an off-route point".to_owned();
                self.reject(e, Field::Acceptance, Rule::AcceptRequiresForeman, None, why);
            } else if !locations.contains(point_edit.as_str()) {
                let why = format!("no location write {point_edit} in this section");
                self.reject(e, Field::Acceptance, Rule::UnknownTarget, None, why);
            } else {
                self.decide(e, Decision::Accepted);
                accepted.entry(point_edit.clone()).or_insert_with(|| e.id.clone());
            }
        }
        accepted
    }

    /// Locations: valid points are last-writer-wins by HLC; off-route ones
    /// wait in quarantine unless accepted.
    fn locations(
        &mut self,
        edits: &[&'a Edit],
        route: &[GeoPoint],
        acceptances: &BTreeMap<EditId, EditId>,
    ) -> (Option<PointRecord>, Vec<PointRecord>, Vec<QuarantinedPoint>) {
        let mut current: Option<&'a Edit> = None;
        let mut as_built = Vec::new();
        let mut quarantined = Vec::new();
        for &e in edits {
            let EditValue::Location { point } = e.value else { continue };
            let accepted_by = acceptances.get(&e.id).cloned();
            if !point.is_valid() {
                let why = format!("({}, {}) is not a WGS84 position", point.lat, point.lon);
                self.reject(e, Field::Location, Rule::InvalidPoint, current, why);
                continue;
            }
            let distance = distance_to_route_m(point, route).map(|d| (d * 10.0).round() / 10.0);
            let quarantines = !mutation::active(Mutation::NoQuarantine);
            if let Some(d) =
                distance.filter(|d| quarantines && *d > self.config.max_route_distance_m && accepted_by.is_none())
            {
                let why = format!(
                    "{d} m from the planned route (limit {} m); held until a foreman accepts it",
                    self.config.max_route_distance_m
                );
                self.conflicts.push(ConflictRecord::new(
                    &self.input.id,
                    Field::Location,
                    ConflictKind::Quarantine,
                    Rule::OffRoute,
                    vec![self.candidate(e)],
                    None,
                    why,
                ));
                self.decide(e, Decision::Quarantined { distance_m: d });
                quarantined.push(QuarantinedPoint {
                    edit_id: e.id.clone(),
                    point,
                    distance_m: d,
                    author: e.author.clone(),
                });
                continue;
            }
            self.accept(e, &mut current);
            as_built.push(PointRecord { edit_id: e.id.clone(), point, author: e.author.clone(), accepted_by });
        }
        (as_built.last().cloned(), as_built, quarantined)
    }

    /// Record contests among writes of `field` that share a base and come
    /// from more than one author with more than one value.
    fn contests(&mut self, field: Field, edits: &[&'a Edit]) {
        let rule = match field {
            Field::Name | Field::Route | Field::Crew => Rule::LastWriterWins,
            Field::Progress => Rule::ProgressMaxWins,
            _ => Rule::LocationLastWriterWins,
        };
        let mut groups: BTreeMap<Option<&str>, Vec<&'a Edit>> = BTreeMap::new();
        for &e in edits {
            groups.entry(e.base.as_deref()).or_default().push(e);
        }
        for group in groups.values() {
            // The group's standing write: the last one in causal order that was applied.
            let winner = group.iter().rev().find(|e| self.decisions.get(&e.id).is_some_and(Decision::applied));
            // Progress is "highest wins", unless a higher role's rollback stood
            // over a higher value: name the rule that decided.
            let percent = |e: &Edit| match e.value {
                EditValue::Progress { percent, .. } => percent,
                _ => 0,
            };
            let rule = match winner {
                Some(w)
                    if field == Field::Progress
                        && group.iter().any(|e| {
                            percent(e) > percent(w)
                                && matches!(
                                    self.decisions.get(&e.id),
                                    Some(Decision::Superseded { .. })
                                        | Some(Decision::Rejected { rule: Rule::ProgressRolePrecedence, .. })
                                )
                        }) =>
                {
                    Rule::ProgressRolePrecedence
                }
                _ => rule,
            };
            self.contest(field, rule, group, winner.copied());
        }
    }

    fn contest(&mut self, field: Field, rule: Rule, group: &[&'a Edit], winner: Option<&'a Edit>) {
        let authors: BTreeSet<&str> = group.iter().map(|e| e.author.as_str()).collect();
        let values: BTreeSet<String> = group.iter().map(|e| e.value.describe()).collect();
        if authors.len() < 2 || values.len() < 2 {
            return;
        }
        let explanation = match winner {
            Some(w) => format!("{} writes raced; {} stood under {}", group.len(), w.value.describe(), rule.as_str()),
            None => format!("{} writes raced; none was valid", group.len()),
        };
        let candidates = group.iter().map(|e| self.candidate(e)).collect();
        self.conflicts.push(ConflictRecord::new(
            &self.input.id,
            field,
            ConflictKind::Contest,
            rule,
            candidates,
            winner.map(|w| w.id.clone()),
            explanation,
        ));
    }
}

/// Writes of one field in the order they count: by `bound` (the stamp, or
/// the hub's receipt if earlier), then stamp, except that a write counts no
/// later than any write built on it (whose `base` it is, directly or not).
/// So a stamp days ahead cannot outlast the writes made after it was seen,
/// nor those the hub received after it, and every replica orders alike.
/// O(n log n) in the writes; hostile `base` cycles are tolerated (their
/// members keep their own times).
fn causal_order(edits: Vec<&Edit>, bound: impl Fn(&Edit) -> u64) -> Vec<&Edit> {
    // The common case, honest clocks: the writes come sorted by stamp (their
    // ids), no stamp is past its receipt, and every base is older than what
    // is built on it, so stamp order is already the causal order. No allocation for it.
    let sorted = edits.windows(2).all(|w| w[0].id <= w[1].id);
    let is_in = |id: &str| edits.binary_search_by(|x| x.id.as_str().cmp(id)).is_ok();
    if sorted
        && edits
            .iter()
            .all(|e| bound(e) == e.hlc.physical_ms && e.base.as_deref().is_none_or(|b| b < e.id.as_str() || !is_in(b)))
    {
        return edits;
    }
    let index: HashMap<&str, usize> = edits.iter().enumerate().map(|(i, e)| (e.id.as_str(), i)).collect();
    let n = edits.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut has_parent = vec![false; n];
    for (i, e) in edits.iter().enumerate() {
        if let Some(&p) = e.base.as_deref().and_then(|b| index.get(b))
            && p != i
        {
            children[p].push(i);
            has_parent[i] = true;
        }
    }
    // The earliest time among a write and everything built on it.
    let mut effective: Vec<(u64, &Hlc)> = edits.iter().map(|e| (bound(e), &e.hlc)).collect();
    if mutation::active(Mutation::StampOrder) {
        children.iter_mut().for_each(Vec::clear);
    }
    // Depth along `base` links: of two writes that count at the same time,
    // the one built on the other comes after it.
    let mut depth = vec![0usize; n];
    // 0: not seen, 1: on the stack, 2: done. Post-order: children first.
    let mut seen = vec![0u8; n];
    let roots: Vec<usize> = (0..n).filter(|&i| !has_parent[i]).chain(0..n).collect();
    for root in roots {
        if seen[root] != 0 {
            continue;
        }
        seen[root] = 1;
        let mut stack = vec![(root, 0usize)];
        while let Some(&(i, next)) = stack.last() {
            if let Some(&c) = children[i].get(next) {
                stack.last_mut().expect("non-empty").1 += 1;
                if seen[c] == 0 {
                    seen[c] = 1;
                    depth[c] = stack.len();
                    stack.push((c, 0));
                }
            } else {
                for &c in &children[i] {
                    if seen[c] == 2 {
                        effective[i] = effective[i].min(effective[c]);
                    }
                }
                seen[i] = 2;
                stack.pop();
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Stamps are unique: only a write and one built on it can tie, and the
    // shallower (the one built on) comes first.
    order.sort_by(|&a, &b| (effective[a], depth[a]).cmp(&(effective[b], depth[b])));
    order.into_iter().map(|i| edits[i]).collect()
}
