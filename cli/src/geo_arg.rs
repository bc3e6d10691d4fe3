//! WGS84 points and routes from the command line (`lat,lon;lat,lon;…`).

use fieldsync_core::GeoPoint;

/// A planned route from the command line.
#[derive(Debug, Clone)]
pub struct RouteArg(pub Vec<GeoPoint>);

/// A point as `lat,lon` (WGS84 degrees), checked.
pub fn parse_point(s: &str) -> Result<GeoPoint, String> {
    let (lat, lon) = s.split_once(',').ok_or_else(|| format!("`{s}` is not `lat,lon`"))?;
    let num = |v: &str| v.trim().parse::<f64>().map_err(|_| format!("`{}` is not a number (in `{s}`)", v.trim()));
    GeoPoint::new(num(lat)?, num(lon)?).map_err(|e| e.to_string())
}

/// Points as `lat,lon;lat,lon;…`.
pub fn parse_points(s: &str) -> Result<Vec<GeoPoint>, String> {
    s.split(';').filter(|p| !p.trim().is_empty()).map(parse_point).collect()
}

pub fn parse_route(s: &str) -> Result<RouteArg, String> {
    let points = parse_points(s)?;
    if points.len() < 2 {
        return Err("a route needs at least two points: `lat,lon;lat,lon`".into());
    }
    Ok(RouteArg(points))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_points_parse_and_are_checked() {
        let r = parse_route("48.0,11.0; 48.0,11.01;").unwrap();
        assert_eq!(r.0, vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }]);
        assert_eq!(parse_point("-33.9,18.4").unwrap(), GeoPoint { lat: -33.9, lon: 18.4 });
        assert!(parse_route("48.0,11.0").unwrap_err().contains("two points"));
        assert!(parse_point("48.0").unwrap_err().contains("lat,lon"));
        assert!(parse_point("91,0").unwrap_err().contains("WGS84"));
        assert!(parse_point("x,0").unwrap_err().contains("not a number"));
    }
}
