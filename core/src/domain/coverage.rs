//! Which sections a device holds (partial sync): its [`Scope`], made of
//! [`Subscription`]s by area, by id and by crew, and what of a section they
//! are judged on ([`Coverage`]: where its route runs, which crew it is
//! assigned to). The hub and every replica judge with these same functions,
//! so both sides agree on what a device holds.

use geo::{Intersects, LineString, Rect, coord};
use serde::{Deserialize, Serialize};

use crate::domain::route::{GeoPoint, distance_to_route_m};

/// The most subscriptions one scope may hold.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// The most points one corridor may have.
pub const MAX_CORRIDOR_POINTS: usize = 1_000;
/// The widest buffer around a corridor, in metres.
pub const MAX_BUFFER_M: u32 = 50_000;
/// The most section ids one scope may name.
pub const MAX_NAMED_SECTIONS: usize = 10_000;
/// The longest crew name, in bytes.
pub const MAX_CREW_BYTES: usize = 64;

/// Metres in a degree of latitude (and of longitude at the equator).
const METRES_PER_DEGREE: f64 = 111_320.0;

/// What a device holds of its project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum Scope {
    /// Every section (an office's or a foreman's device, and every device
    /// that subscribes to nothing).
    #[default]
    Everything,
    /// The sections any of these subscriptions covers.
    Only(#[serde(deserialize_with = "crate::budget::counted")] Vec<Subscription>),
}

/// One way a device asks for sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Subscription {
    /// Sections whose route comes within `buffer_m` metres of this polyline.
    Corridor {
        /// The corridor's line, in order (sent as micro-degrees, to the decimetre).
        #[serde(with = "micro_degrees")]
        points: Vec<GeoPoint>,
        /// How far either side of the line, in metres.
        buffer_m: u32,
    },
    /// Sections whose route enters this box.
    Area(Bounds),
    /// These sections, by id.
    Sections(#[serde(deserialize_with = "crate::budget::counted")] Vec<String>),
    /// Sections assigned to this crew.
    Crew(String),
}

/// A box of latitudes and longitudes (not across the antimeridian).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Southern edge, degrees.
    pub south: f64,
    /// Western edge, degrees.
    pub west: f64,
    /// Northern edge, degrees.
    pub north: f64,
    /// Eastern edge, degrees.
    pub east: f64,
}

/// What subscriptions judge a section on: its route and its crew, as the
/// rules decided them (the office's latest accepted writes).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Coverage {
    /// The planned route.
    pub route: Vec<GeoPoint>,
    /// The crew the section is assigned to.
    pub crew: Option<String>,
}

/// A scope that cannot be held, and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid subscription: {0}")]
pub struct InvalidScope(pub String);

impl Bounds {
    /// The box around `points`; `None` for none.
    pub fn around(points: &[GeoPoint]) -> Option<Bounds> {
        let first = points.first()?;
        let start = Bounds { south: first.lat, west: first.lon, north: first.lat, east: first.lon };
        Some(points.iter().fold(start, |b, p| Bounds {
            south: b.south.min(p.lat),
            west: b.west.min(p.lon),
            north: b.north.max(p.lat),
            east: b.east.max(p.lon),
        }))
    }

    /// This box grown by `metres` on every side (longitude degrees measured
    /// at the latitude farthest from the equator, so it never falls short).
    pub fn grown(self, metres: f64) -> Bounds {
        let dlat = metres / METRES_PER_DEGREE;
        let widest = self.south.abs().max(self.north.abs()).min(89.0) + dlat;
        let dlon = metres / (METRES_PER_DEGREE * widest.min(89.9).to_radians().cos());
        Bounds {
            south: (self.south - dlat).max(-90.0),
            west: (self.west - dlon).max(-180.0),
            north: (self.north + dlat).min(90.0),
            east: (self.east + dlon).min(180.0),
        }
    }

    /// Whether the two boxes share a point.
    pub fn meets(&self, other: &Bounds) -> bool {
        self.south <= other.north && other.south <= self.north && self.west <= other.east && other.west <= self.east
    }

    fn rect(&self) -> Rect<f64> {
        Rect::new(coord! { x: self.west, y: self.south }, coord! { x: self.east, y: self.north })
    }

    fn check(&self) -> Result<(), InvalidScope> {
        let ok = [self.south, self.north].iter().all(|l| (-90.0..=90.0).contains(l))
            && [self.west, self.east].iter().all(|l| (-180.0..=180.0).contains(l))
            && self.south <= self.north
            && self.west <= self.east;
        if ok {
            Ok(())
        } else {
            Err(InvalidScope(format!(
                "box {},{},{},{} is not south,west,north,east in degrees with south ≤ north and west ≤ east",
                self.south, self.west, self.north, self.east
            )))
        }
    }
}

impl Coverage {
    /// The box around the route; `None` when it has no route.
    pub fn bounds(&self) -> Option<Bounds> {
        Bounds::around(&self.route)
    }
}

impl Subscription {
    /// Whether this subscription takes section `id` with this coverage.
    pub fn covers(&self, id: &str, coverage: &Coverage) -> bool {
        match self {
            Subscription::Sections(ids) => ids.iter().any(|s| s == id),
            Subscription::Crew(crew) => coverage.crew.as_deref() == Some(crew),
            Subscription::Area(area) => match coverage.route.as_slice() {
                [] => false,
                [only] => area.meets(&Bounds { south: only.lat, west: only.lon, north: only.lat, east: only.lon }),
                route => area.rect().intersects(&line(route)),
            },
            Subscription::Corridor { points, buffer_m } => {
                let (Some(corridor), Some(route)) = (Bounds::around(points), coverage.bounds()) else {
                    return false;
                };
                let buffer = f64::from(*buffer_m);
                if !corridor.grown(buffer).meets(&route) {
                    return false;
                }
                if points.len() > 1 && coverage.route.len() > 1 && line(points).intersects(&line(&coverage.route)) {
                    return true;
                }
                // Two polylines that do not cross are nearest at a vertex of one of them.
                let near = |from: &[GeoPoint], to: &[GeoPoint]| {
                    from.iter().any(|p| distance_to_route_m(*p, to).is_some_and(|d| d <= buffer))
                };
                near(&coverage.route, points) || near(points, &coverage.route)
            }
        }
    }

    /// The box a section's route must meet to be covered (for a spatial
    /// index); `None` for a subscription by id or crew.
    pub fn search_bounds(&self) -> Option<Bounds> {
        match self {
            Subscription::Area(area) => Some(*area),
            Subscription::Corridor { points, buffer_m } => {
                Bounds::around(points).map(|b| b.grown(f64::from(*buffer_m)))
            }
            Subscription::Sections(_) | Subscription::Crew(_) => None,
        }
    }
}

impl Scope {
    /// Whether a device with this scope holds section `id` with this coverage.
    pub fn covers(&self, id: &str, coverage: &Coverage) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Only(subscriptions) => subscriptions.iter().any(|s| s.covers(id, coverage)),
        }
    }

    /// Check what a device (or an attacker) sent against the limits.
    pub fn check(&self) -> Result<(), InvalidScope> {
        let Scope::Only(subscriptions) = self else { return Ok(()) };
        let too_many = |what: &str, limit: usize| Err(InvalidScope(format!("more than {limit} {what}")));
        if subscriptions.len() > MAX_SUBSCRIPTIONS {
            return too_many("subscriptions", MAX_SUBSCRIPTIONS);
        }
        let mut named = 0;
        for s in subscriptions {
            match s {
                Subscription::Corridor { points, buffer_m } => {
                    if points.is_empty() || points.len() > MAX_CORRIDOR_POINTS {
                        return Err(InvalidScope(format!(
                            "a corridor has {} points; give 1 to {MAX_CORRIDOR_POINTS}",
                            points.len()
                        )));
                    }
                    if let Some(p) = points.iter().find(|p| !p.is_valid()) {
                        return Err(InvalidScope(format!("corridor point ({}, {}) is not on Earth", p.lat, p.lon)));
                    }
                    if *buffer_m > MAX_BUFFER_M {
                        return Err(InvalidScope(format!("a buffer of {buffer_m} m; give at most {MAX_BUFFER_M} m")));
                    }
                }
                Subscription::Area(area) => area.check()?,
                Subscription::Sections(ids) => {
                    named += ids.len();
                    if named > MAX_NAMED_SECTIONS {
                        return too_many("sections named", MAX_NAMED_SECTIONS);
                    }
                    if ids.iter().any(|id| id.is_empty() || id.len() > crate::domain::id::MAX_SECTION_ID_BYTES) {
                        return Err(InvalidScope("a section id is empty or too long".into()));
                    }
                }
                Subscription::Crew(crew) => {
                    if crew.is_empty() || crew.len() > MAX_CREW_BYTES {
                        return Err(InvalidScope(format!("a crew name must be 1 to {MAX_CREW_BYTES} bytes")));
                    }
                }
            }
        }
        Ok(())
    }
}

fn line(points: &[GeoPoint]) -> LineString<f64> {
    points.iter().map(|p| (p.lon, p.lat)).collect()
}

/// Points as whole micro-degrees, each given as the difference from the one
/// before: a corridor's neighbouring points are near, so most numbers take
/// two or three bytes on the wire.
mod micro_degrees {
    use serde::{Deserializer, Serialize, Serializer};

    use crate::domain::route::GeoPoint;

    const SCALE: f64 = 1e6;

    pub fn serialize<S: Serializer>(points: &[GeoPoint], s: S) -> Result<S::Ok, S::Error> {
        let mut last = (0i64, 0i64);
        let mut deltas = Vec::with_capacity(points.len() * 2);
        for p in points {
            let here = ((p.lat * SCALE).round() as i64, (p.lon * SCALE).round() as i64);
            deltas.extend([here.0 - last.0, here.1 - last.1]);
            last = here;
        }
        deltas.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<GeoPoint>, D::Error> {
        let deltas: Vec<i64> = crate::budget::counted(d)?;
        if !deltas.len().is_multiple_of(2) {
            return Err(serde::de::Error::custom("corridor points come in pairs"));
        }
        let mut here = (0i64, 0i64);
        let points = deltas.chunks(2).map(|pair| {
            here = (here.0.saturating_add(pair[0]), here.1.saturating_add(pair[1]));
            GeoPoint { lat: here.0 as f64 / SCALE, lon: here.1 as f64 / SCALE }
        });
        Ok(points.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint { lat, lon }
    }

    fn route(points: &[GeoPoint]) -> Coverage {
        Coverage { route: points.to_vec(), crew: None }
    }

    #[test]
    fn a_corridor_takes_routes_within_its_buffer() {
        // A corridor due east along 48° N; 0.001° of latitude is about 111 m.
        let corridor = Subscription::Corridor { points: vec![p(48.0, 11.0), p(48.0, 11.1)], buffer_m: 500 };
        let parallel_400m = route(&[p(48.0036, 11.02), p(48.0036, 11.03)]);
        let parallel_600m = route(&[p(48.0054, 11.02), p(48.0054, 11.03)]);
        let crossing = route(&[p(47.99, 11.05), p(48.01, 11.05)]);
        let beyond_the_end = route(&[p(48.0, 11.105), p(48.0, 11.2)]);
        assert!(corridor.covers("a", &parallel_400m));
        assert!(!corridor.covers("b", &parallel_600m));
        assert!(corridor.covers("c", &crossing), "no vertex is near, yet it crosses");
        assert!(corridor.covers("d", &beyond_the_end), "its first point is 370 m east of the corridor's end");
        assert!(!corridor.covers("e", &route(&[])), "no route, no place");
        let box_ = corridor.search_bounds().unwrap();
        for r in [&parallel_400m, &crossing, &beyond_the_end] {
            assert!(box_.meets(&r.bounds().unwrap()), "the search box holds every covered route");
        }
    }

    #[test]
    fn areas_ids_and_crews_take_their_sections() {
        let area = Subscription::Area(Bounds { south: 48.0, west: 11.0, north: 48.1, east: 11.1 });
        assert!(area.covers("a", &route(&[p(47.9, 11.05), p(48.2, 11.05)])), "runs through the box");
        assert!(!area.covers("b", &route(&[p(48.2, 11.05), p(48.3, 11.05)])));
        assert!(Subscription::Sections(vec!["s1".into()]).covers("s1", &Coverage::default()));
        let crew = Coverage { route: vec![], crew: Some("north".into()) };
        assert!(Subscription::Crew("north".into()).covers("x", &crew));
        assert!(!Subscription::Crew("south".into()).covers("x", &crew));
        assert!(Scope::Everything.covers("any", &Coverage::default()));
        assert!(!Scope::Only(vec![]).covers("any", &crew));
    }

    #[test]
    fn corridors_go_on_the_wire_in_a_few_bytes_a_point() {
        let points: Vec<GeoPoint> =
            (0..50).map(|i| p(48.0 + f64::from(i) * 0.001, 11.0 + f64::from(i) * 0.0013)).collect();
        let scope = Scope::Only(vec![Subscription::Corridor { points: points.clone(), buffer_m: 500 }]);
        let bytes = postcard::to_allocvec(&scope).unwrap();
        assert!(bytes.len() < 300, "{} bytes for 50 points", bytes.len());
        let Scope::Only(back) = postcard::from_bytes::<Scope>(&bytes).unwrap() else { panic!() };
        let Subscription::Corridor { points: back, .. } = &back[0] else { panic!() };
        for (a, b) in points.iter().zip(back) {
            assert!((a.lat - b.lat).abs() < 1e-6 && (a.lon - b.lon).abs() < 1e-6);
        }
    }

    #[test]
    fn scopes_over_the_limits_are_refused_with_what_to_change() {
        let wide = Scope::Only(vec![Subscription::Corridor { points: vec![p(48.0, 11.0)], buffer_m: 60_000 }]);
        assert!(wide.check().unwrap_err().0.contains("at most 50000 m"));
        let off_earth = Scope::Only(vec![Subscription::Corridor { points: vec![p(91.0, 0.0)], buffer_m: 1 }]);
        assert!(off_earth.check().is_err());
        let flipped = Scope::Only(vec![Subscription::Area(Bounds { south: 1.0, west: 0.0, north: 0.0, east: 1.0 })]);
        assert!(flipped.check().is_err());
        assert!(Scope::Only(vec![Subscription::Crew(String::new())]).check().is_err());
        assert!(Scope::Only(vec![Subscription::Sections(vec!["s".into(); 10_001])]).check().is_err());
        assert!(Scope::Everything.check().is_ok());
    }
}
