//! WGS84 points and how far one lies from a planned route.

use geo::{Closest, Distance, Geodesic, HaversineClosestPoint, LineString, Point};
use serde::{Deserialize, Serialize};

/// A WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, −90 to 90.
    pub lat: f64,
    /// Longitude, −180 to 180.
    pub lon: f64,
}

impl GeoPoint {
    /// A point, checked to be a real place on Earth.
    pub fn new(lat: f64, lon: f64) -> Result<Self, InvalidPoint> {
        let p = GeoPoint { lat, lon };
        if p.is_valid() { Ok(p) } else { Err(InvalidPoint { lat, lon }) }
    }

    /// Whether the coordinates are finite and in range.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }

    fn to_geo(self) -> Point<f64> {
        Point::new(self.lon, self.lat)
    }
}

/// Coordinates outside WGS84's range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("({lat}, {lon}) is not a WGS84 position: latitude must be within ±90 and longitude within ±180")]
pub struct InvalidPoint {
    /// The latitude given.
    pub lat: f64,
    /// The longitude given.
    pub lon: f64,
}

/// Geodesic distance in metres from `point` to the nearest place on `route`,
/// or `None` when there is no route to measure against.
pub fn distance_to_route_m(point: GeoPoint, route: &[GeoPoint]) -> Option<f64> {
    let p = point.to_geo();
    match route {
        [] => None,
        [only] => Some(Geodesic.distance(p, only.to_geo())),
        _ => {
            let line: LineString<f64> = route.iter().map(|g| (g.lon, g.lat)).collect();
            match line.haversine_closest_point(&p) {
                Closest::Intersection(c) | Closest::SinglePoint(c) => Some(Geodesic.distance(p, c)),
                Closest::Indeterminate => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_measured_to_the_nearest_segment() {
        // A route due east along the equator, 0.01° ≈ 1113 m long.
        let route = [GeoPoint { lat: 0.0, lon: 0.0 }, GeoPoint { lat: 0.0, lon: 0.01 }];
        let on = distance_to_route_m(GeoPoint { lat: 0.0, lon: 0.005 }, &route).unwrap();
        assert!(on < 0.01, "{on}");
        // 0.001° of latitude ≈ 110.6 m north of the middle of the segment.
        let off = distance_to_route_m(GeoPoint { lat: 0.001, lon: 0.005 }, &route).unwrap();
        assert!((off - 110.57).abs() < 0.5, "{off}");
        assert_eq!(distance_to_route_m(GeoPoint { lat: 0.0, lon: 0.0 }, &[]), None);
    }

    #[test]
    fn invalid_coordinates_are_refused() {
        assert!(GeoPoint::new(91.0, 0.0).is_err());
        assert!(GeoPoint::new(0.0, f64::NAN).is_err());
        assert!(GeoPoint::new(48.1, 11.5).is_ok());
    }
}
