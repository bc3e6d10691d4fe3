//! What crews do: generated routes and sections, and random edits of every
//! kind, chosen by role. Every edit goes through the real `Replica` API; the
//! rules may refuse it on the device (a technician rolling progress back),
//! which is counted, not an error.

use fieldsync_core::FORWARD;
use fieldsync_core::{
    ConstructionState, GeoPoint, ProjectConfig, Replica, ReplicaError, Role, SectionView, Subscription,
};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// The depot the routes start from (rural southern Germany).
const DEPOT: GeoPoint = GeoPoint { lat: 47.95, lon: 9.65 };
/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;
/// Length of one section, metres.
const SECTION_M: f64 = 400.0;

/// A kind of edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditKind {
    /// Progress up, within the state's band.
    Progress,
    /// Progress down (a foreman's rollback; refused for a technician).
    Rollback,
    /// One step forward in the state machine.
    Step,
    /// Two steps forward (a foreman's skip; refused for a technician).
    Skip,
    /// One or two steps back (a foreman's rework; refused for a technician).
    Rework,
    /// Block with a reason.
    Block,
    /// Unblock back to where it was (foreman; refused for a technician).
    Unblock,
    /// An on-route GPS point.
    Location,
    /// An off-route GPS point (quarantined).
    OffRoute,
    /// Accept a quarantined point (foreman; refused for a technician).
    Accept,
    /// Splice the notes text.
    Notes,
    /// Attach a photo reference.
    Photo,
    /// Rename the section (office; refused for others).
    Rename,
    /// Move the planned route a little (office; refused for others).
    Route,
    /// Plan a new section (office only).
    NewSection,
}

impl EditKind {
    /// Every kind.
    pub const ALL: [EditKind; 15] = [
        EditKind::Progress,
        EditKind::Rollback,
        EditKind::Step,
        EditKind::Skip,
        EditKind::Rework,
        EditKind::Block,
        EditKind::Unblock,
        EditKind::Location,
        EditKind::OffRoute,
        EditKind::Accept,
        EditKind::Notes,
        EditKind::Photo,
        EditKind::Rename,
        EditKind::Route,
        EditKind::NewSection,
    ];

    /// Its snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EditKind::Progress => "progress",
            EditKind::Rollback => "rollback",
            EditKind::Step => "step",
            EditKind::Skip => "skip",
            EditKind::Rework => "rework",
            EditKind::Block => "block",
            EditKind::Unblock => "unblock",
            EditKind::Location => "location",
            EditKind::OffRoute => "off_route",
            EditKind::Accept => "accept",
            EditKind::Notes => "notes",
            EditKind::Photo => "photo",
            EditKind::Rename => "rename",
            EditKind::Route => "route",
            EditKind::NewSection => "new_section",
        }
    }

    /// How often each role attempts each kind (weights, in [`EditKind::ALL`] order).
    fn weights(role: Role) -> [u32; 15] {
        match role {
            //                     prog rb step skip rew blk unb loc off acc notes photo ren route new
            Role::Technician => [30, 4, 18, 3, 2, 3, 2, 20, 0, 2, 10, 6, 1, 0, 0],
            Role::Foreman => [15, 8, 12, 6, 5, 4, 6, 10, 0, 15, 10, 5, 1, 1, 0],
            Role::Office => [5, 2, 8, 4, 3, 2, 4, 2, 0, 10, 15, 2, 15, 12, 6],
        }
    }

    /// A kind for `role`; location reports are off route with probability `off_route`.
    pub fn draw(role: Role, off_route: f64, rng: &mut Rng) -> EditKind {
        match EditKind::ALL[rng.weighted(&EditKind::weights(role))] {
            EditKind::Location if rng.chance(off_route) => EditKind::OffRoute,
            k => k,
        }
    }
}

/// A section as the office planned it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSection {
    /// Its id.
    pub id: String,
    /// The route (crew) it lies on.
    pub route: usize,
    /// Its planned line.
    pub points: Vec<GeoPoint>,
}

/// The day's plan: sections along one route per crew, and who works where.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The project id.
    pub project: String,
    /// The project's rule configuration.
    pub config: ProjectConfig,
    /// Every planned section, in id order of creation.
    pub sections: Vec<PlannedSection>,
    /// Section ids each crew works on (its route, plus the start of the next one's).
    pub crew_sections: Vec<Vec<String>>,
    routes: usize,
    per_route: Vec<usize>,
}

fn offset(p: GeoPoint, north_m: f64, east_m: f64) -> GeoPoint {
    GeoPoint { lat: p.lat + north_m / M_PER_DEG, lon: p.lon + east_m / (M_PER_DEG * p.lat.to_radians().cos()) }
}

impl Plan {
    /// `sections` sections along `crews` routes fanning out from the depot;
    /// each crew also works on the first `overlap` share of the next route.
    pub fn new(project: &str, sections: usize, crews: usize, overlap: f64, rng: &mut Rng) -> Plan {
        let routes = crews.max(1);
        let mut plan = Plan {
            project: project.to_owned(),
            config: ProjectConfig::default(),
            sections: Vec::new(),
            crew_sections: vec![Vec::new(); routes],
            routes,
            per_route: vec![0; routes],
        };
        for i in 0..sections {
            plan.add_section(i % routes, rng);
        }
        for c in 0..routes {
            let next: Vec<String> =
                plan.sections.iter().filter(|s| s.route == (c + 1) % routes).map(|s| s.id.clone()).collect();
            let shared = ((next.len() as f64) * overlap).ceil() as usize;
            if routes > 1 {
                plan.crew_sections[c].extend(next.into_iter().take(shared));
            }
        }
        plan
    }

    /// Plan one more section at the end of `route`; returns it.
    pub fn add_section(&mut self, route: usize, rng: &mut Rng) -> PlannedSection {
        let route = route % self.routes;
        let heading = std::f64::consts::TAU * route as f64 / self.routes as f64 + 0.3;
        let k = self.per_route[route] as f64;
        let along = |d: f64, wiggle: f64| {
            offset(DEPOT, d * heading.cos() - wiggle * heading.sin(), d * heading.sin() + wiggle * heading.cos())
        };
        let start = 200.0 + k * SECTION_M;
        let bend = rng.range(0, 60) as f64 - 30.0;
        let points = vec![along(start, 0.0), along(start + SECTION_M / 2.0, bend), along(start + SECTION_M, 0.0)];
        let id = format!("sec-{:04}", self.sections.len() + 1);
        self.per_route[route] += 1;
        let s = PlannedSection { id: id.clone(), route, points };
        self.sections.push(s.clone());
        self.crew_sections[route].push(id);
        s
    }

    /// How many routes (one per crew).
    pub fn routes(&self) -> usize {
        self.routes
    }

    /// How many sections `route` has so far.
    pub fn sections_on(&self, route: usize) -> usize {
        self.per_route[route % self.routes]
    }

    /// The point `d` metres out along `route`'s straight line from the depot.
    pub fn along(&self, route: usize, d: f64) -> GeoPoint {
        let heading = std::f64::consts::TAU * (route % self.routes) as f64 / self.routes as f64 + 0.3;
        offset(DEPOT, d * heading.cos(), d * heading.sin())
    }

    /// A corridor along sections `from..=to` of `route` (by their place on
    /// it): a line from the middle of the first to the middle of the last,
    /// so that with a buffer under half a section it takes those sections
    /// and not their neighbours.
    pub fn corridor(&self, route: usize, from: usize, to: usize, buffer_m: u32) -> Subscription {
        let middle = |k: usize| 200.0 + k as f64 * SECTION_M + SECTION_M / 2.0;
        let points = if from == to {
            vec![self.along(route, middle(from) - 1.0), self.along(route, middle(to) + 1.0)]
        } else {
            vec![self.along(route, middle(from)), self.along(route, middle(to))]
        };
        Subscription::Corridor { points, buffer_m }
    }

    /// The planned section `id`.
    pub fn section(&self, id: &str) -> Option<&PlannedSection> {
        self.sections.iter().find(|s| s.id == id)
    }

    /// A point near (`off_route == false`: within 40 m) or far from (300 m –
    /// 2 km) the planned line of `section`.
    pub fn point(&self, section: &PlannedSection, off_route: bool, rng: &mut Rng) -> GeoPoint {
        let i = rng.below(section.points.len() as u64 - 1) as usize;
        let (a, b) = (section.points[i], section.points[i + 1]);
        let t = rng.unit();
        let on = GeoPoint { lat: a.lat + (b.lat - a.lat) * t, lon: a.lon + (b.lon - a.lon) * t };
        let d = if off_route { rng.range(300, 2000) as f64 } else { rng.range(0, 40) as f64 };
        let side = if rng.chance(0.5) { 1.0 } else { -1.0 };
        // Perpendicular to the segment, in metres.
        let (dn, de) = ((b.lat - a.lat) * M_PER_DEG, (b.lon - a.lon) * M_PER_DEG * a.lat.to_radians().cos());
        let len = (dn * dn + de * de).sqrt().max(1e-9);
        offset(on, -de / len * d * side, dn / len * d * side)
    }
}

/// What an acknowledged edit produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Performed {
    /// The section.
    pub section: String,
    /// Hex hash of the change that holds it.
    pub change_hash: String,
}

fn band_of(config: &ProjectConfig, state: ConstructionState) -> (i64, i64) {
    let b = config.band(state);
    (i64::from(b.min), i64::from(b.max))
}

/// The change a local write just made: after a local commit the document has
/// exactly one head, the new change.
fn last_change(replica: &Replica, section: &str) -> Result<String, ReplicaError> {
    let heads = replica.section(section)?.heads;
    Ok(heads.first().cloned().unwrap_or_default())
}

/// Attempt one edit of `kind` on `view`'s section through `replica`.
/// `Ok(None)`: the kind does not apply to the section as it is (nothing
/// blocked to unblock, nothing quarantined to accept). Refusals by the rules
/// come back as `Err(ReplicaError::Refused { .. })`.
pub fn perform(
    kind: EditKind,
    replica: &mut Replica,
    view: &SectionView,
    plan: &mut Plan,
    who: &str,
    rng: &mut Rng,
) -> Result<Option<Performed>, ReplicaError> {
    use ConstructionState::*;
    let id = view.id.as_str();
    let done = |r: fieldsync_core::EditReceipt| Ok(Some(Performed { section: r.section, change_hash: r.change_hash }));
    let step = view.state.step();
    match kind {
        EditKind::Progress => {
            let (min, max) = band_of(&plan.config, view.state);
            let now = i64::from(view.progress);
            let v = if now >= max { max } else { (now + rng.range(1, 15) as i64).clamp(min, max) };
            done(replica.record_progress(id, v)?)
        }
        EditKind::Rollback => {
            let (min, _) = band_of(&plan.config, view.state);
            let now = i64::from(view.progress);
            let v = (now - rng.range(5, 30) as i64).max(min);
            done(replica.record_progress(id, if v == now { min.max(0) } else { v })?)
        }
        EditKind::Step => match (view.state, step) {
            (Blocked, _) => perform(EditKind::Unblock, replica, view, plan, who, rng),
            (_, Some(s)) if s + 1 < FORWARD.len() => done(replica.transition(id, FORWARD[s + 1], None)?),
            _ => Ok(None),
        },
        EditKind::Skip => match step {
            Some(s) if s + 2 < FORWARD.len() => done(replica.transition(id, FORWARD[s + 2], None)?),
            _ => Ok(None),
        },
        EditKind::Rework => match step {
            Some(s) if s >= 1 => {
                let back = rng.range(1, 2.min(s as u64)) as usize;
                done(replica.transition(id, FORWARD[s - back], None)?)
            }
            _ => Ok(None),
        },
        EditKind::Block => match view.state {
            Blocked | Completed => Ok(None),
            _ => {
                let reason = *rng.pick(&["rock in the trench", "landowner objects", "flooded", "missing permit"]);
                done(replica.transition(id, Blocked, Some(reason))?)
            }
        },
        EditKind::Unblock => match &view.blocked {
            Some(b) => done(replica.transition(id, b.resume_to, None)?),
            None => Ok(None),
        },
        EditKind::Location | EditKind::OffRoute => {
            let Some(planned) = plan.section(id).cloned() else { return Ok(None) };
            let point = plan.point(&planned, kind == EditKind::OffRoute, rng);
            done(replica.report_location(id, point)?)
        }
        EditKind::Accept => {
            if view.quarantined.is_empty() {
                return Ok(None);
            }
            let q = rng.pick(&view.quarantined).edit_id.clone();
            done(replica.accept_point(id, &q)?)
        }
        EditKind::Notes => {
            let len = view.notes.chars().count();
            let pos = rng.range(0, len as u64) as usize;
            let delete = if rng.chance(0.3) { rng.range(0, (len - pos).min(8) as u64) as usize } else { 0 };
            let text = format!("{who}: {} ", rng.pick(&["pole leaning", "duct full", "ok", "needs second visit"]));
            replica.splice_notes(id, pos, delete, &text)?;
            Ok(Some(Performed { section: id.to_owned(), change_hash: last_change(replica, id)? }))
        }
        EditKind::Photo => {
            let uri = format!("content://photos/{who}/{}.jpg", rng.below(1_000_000));
            replica.add_photo(id, &uri, Some("as built"))?;
            Ok(Some(Performed { section: id.to_owned(), change_hash: last_change(replica, id)? }))
        }
        EditKind::Rename => {
            let name = format!("{} (rev {})", view.name.split(" (rev").next().unwrap_or(""), rng.below(100));
            done(replica.rename_section(id, &name)?)
        }
        EditKind::Route => {
            let Some(planned) = plan.section(id).cloned() else { return Ok(None) };
            let (n, e) = (rng.range(0, 30) as f64 - 15.0, rng.range(0, 30) as f64 - 15.0);
            let moved: Vec<GeoPoint> = planned.points.iter().map(|p| offset(*p, n, e)).collect();
            done(replica.set_route(id, &moved)?)
        }
        EditKind::NewSection => {
            let route = rng.below(plan.routes as u64) as usize;
            let s = plan.add_section(route, rng);
            let name = format!("Route {} section {}", s.route + 1, s.id);
            let project = plan.project.clone();
            if let Err(e) = replica.create_section_with_id(&s.id, &project, &name, &s.points) {
                // Not planned after all: forget it, so that ids stay dense.
                plan.sections.pop();
                plan.crew_sections[route].pop();
                plan.per_route[route] -= 1;
                return Err(e);
            }
            Ok(Some(Performed { section: s.id.clone(), change_hash: last_change(replica, &s.id)? }))
        }
    }
}

/// Distance in metres from `p` to the polyline `route` (a local flat
/// projection: good to well under 1 % over a few kilometres). The
/// invariants use it as an oracle independent of the production's `geo`.
pub fn distance_m(p: GeoPoint, route: &[GeoPoint]) -> Option<f64> {
    let first = route.first()?;
    let k = first.lat.to_radians().cos();
    let xy = |q: &GeoPoint| ((q.lon - first.lon) * M_PER_DEG * k, (q.lat - first.lat) * M_PER_DEG);
    let (px, py) = xy(&p);
    if route.len() == 1 {
        let (x, y) = xy(first);
        return Some(((px - x).powi(2) + (py - y).powi(2)).sqrt());
    }
    route
        .windows(2)
        .map(|w| {
            let ((ax, ay), (bx, by)) = (xy(&w[0]), xy(&w[1]));
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let t = if len2 == 0.0 { 0.0 } else { (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0) };
            ((px - ax - t * dx).powi(2) + (py - ay - t * dy).powi(2)).sqrt()
        })
        .reduce(f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_where_they_should_be() {
        let mut rng = Rng::new(3);
        let plan = Plan::new("p", 12, 3, 0.3, &mut rng);
        assert_eq!(plan.sections.len(), 12);
        assert!(plan.crew_sections.iter().all(|c| c.len() == 4 + 2), "{:?}", plan.crew_sections);
        for s in &plan.sections {
            for _ in 0..50 {
                let near = distance_m(plan.point(s, false, &mut rng), &s.points).unwrap();
                let far = distance_m(plan.point(s, true, &mut rng), &s.points).unwrap();
                assert!(near <= 41.0, "{near}");
                assert!(far >= 200.0, "{far}");
                let geo = fieldsync_core::distance_to_route_m(plan.point(s, false, &mut rng), &s.points);
                assert!(geo.unwrap() <= 41.0);
            }
        }
    }
}
