//! Printing: JSON for scripts (shapes documented in docs/cli.md) and plain
//! text for people. Nothing here decides anything.

use std::fmt::Write as _;
use std::io::Write as _;

use fieldsync_core::{
    Candidate, ConflictKind, ConflictRecord, Decision, EditOutcome, EditReceipt, Reconciliation, Roster, SectionView,
};
use serde::Serialize;

use crate::error::CliError;

/// An edit's receipt: JSON, or what the rules decided in words.
pub fn receipt(as_json: bool, r: &EditReceipt, what: &str) -> Result<(), CliError> {
    if as_json {
        return json(r);
    }
    println!("{what}: {}  (section {}, edit {})", decision(&r.decision), short(&r.section), r.edit_id);
    if let Decision::Quarantined { .. } = r.decision {
        println!("a foreman or office can accept it: accept {} {}", short(&r.section), r.edit_id);
    }
    Ok(())
}

/// Print `value` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// The first 12 characters of an id: enough to tell ids apart on screen
/// (the commands accept unique prefixes of section ids).
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// ms since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (as a number of ms
/// outside the years -9999 to 9999, which only a broken clock writes).
pub fn time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{ms} ms since 1970"),
    }
}

/// Bytes in words: `812 B`, `3.40 KiB`, `1.20 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Who wrote as `actor`: `tina (technician)`, or the short actor id if the
/// roster does not know it.
pub fn who(roster: &Roster, actor: &str) -> String {
    match roster.member(actor) {
        Some(m) => format!("{} ({})", m.user, m.role.as_str()),
        None => format!("actor {}", short(actor)),
    }
}

fn candidate_who(c: &Candidate) -> String {
    match (&c.user, c.role) {
        (Some(u), Some(r)) => format!("{u} ({})", r.as_str()),
        (Some(u), None) => u.clone(),
        _ => format!("actor {}", short(&c.author)),
    }
}

/// What the rules made of a write, in words.
pub fn decision(d: &Decision) -> String {
    match d {
        Decision::Accepted => "accepted".into(),
        Decision::Superseded { by } => format!("superseded by {}", short(by)),
        Decision::Concurred { with } => format!("concurred with {}", short(with)),
        Decision::Rejected { rule, reason, .. } => format!("rejected by rule {}: {reason}", rule.as_str()),
        Decision::Quarantined { distance_m } => format!("quarantined: {distance_m:.1} m off the planned route"),
    }
}

/// A section's view, for people.
pub fn view(v: &SectionView, roster: &Roster) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "section   {}  {:?}  (project {})", v.id, v.name, v.project);
    let _ = write!(s, "state     {}", v.state.as_str());
    if let Some(b) = &v.blocked {
        let _ = write!(s, " (reason: {}; resumes at {})", b.reason, b.resume_to.as_str());
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "progress  {}%", v.progress);
    let route: Vec<String> = v.route.iter().map(|p| format!("{:.6},{:.6}", p.lat, p.lon)).collect();
    let _ = writeln!(s, "route     {}", if route.is_empty() { "(none)".into() } else { route.join(" → ") });
    match &v.location {
        Some(l) => {
            let _ = writeln!(s, "location  {:.6},{:.6}  by {}", l.point.lat, l.point.lon, who(roster, &l.author));
        }
        None => {
            let _ = writeln!(s, "location  (none)");
        }
    }
    let _ = writeln!(s, "as-built  {} point(s)", v.as_built.len());
    for q in &v.quarantined {
        let _ = writeln!(
            s,
            "quarantined  {:.6},{:.6}  {:.1} m off route  by {}  (accept with: accept {} {})",
            q.point.lat,
            q.point.lon,
            q.distance_m,
            who(roster, &q.author),
            short(&v.id),
            q.edit_id
        );
    }
    let _ = writeln!(s, "notes     {}", if v.notes.is_empty() { "(none)".into() } else { format!("{:?}", v.notes) });
    for p in &v.photos {
        let _ =
            writeln!(s, "photo     {}{}", p.uri, p.caption.as_ref().map(|c| format!("  {c:?}")).unwrap_or_default());
    }
    for e in v.events.iter().chain(&v.milestones) {
        let what = match e.milestone {
            Some(percent) => format!("{percent}% in {}", e.to.as_str()),
            None => format!("{} → {}", e.from.as_str(), e.to.as_str()),
        };
        let _ = writeln!(s, "event     {:?}  {what}  by {}", e.kind, who(roster, &e.author));
    }
    let _ = write!(s, "conflicts {}", v.conflict_count);
    s
}

/// A conflict record, for people.
pub fn conflict(c: &ConflictRecord) -> String {
    let kind = match c.kind {
        ConflictKind::Contest => "contest",
        ConflictKind::Rejection => "rejection",
        ConflictKind::Quarantine => "quarantine",
    };
    let mut s = format!(
        "{}  section {}  {}  {}  rule {}\n  {}",
        short(&c.id),
        short(&c.section),
        c.field.as_str(),
        kind,
        c.rule.as_str(),
        c.explanation
    );
    for cand in &c.candidates {
        let mark = if c.winner.as_ref() == Some(&cand.edit_id) { "*" } else { " " };
        let _ = write!(s, "\n  {mark} {}  by {}  ({})", cand.value, candidate_who(cand), cand.edit_id);
    }
    s
}

/// One line of the reconciliation report, for people.
pub fn reconciliation(r: &Reconciliation) -> String {
    let field = r.field.map_or("?", |f| f.as_str());
    match &r.outcome {
        EditOutcome::Stands => format!("  confirmed   section {}  {field}  (edit {})", short(&r.section), r.edit_id),
        EditOutcome::Refused { reason } => {
            format!(
                "  refused     section {}  {field}  by the server: {reason}  (edit {})",
                short(&r.section),
                r.edit_id
            )
        }
        EditOutcome::Overridden { by, rule, reason } => {
            let by = by.as_ref().map(|c| format!(" by {} from {}", c.value, candidate_who(c))).unwrap_or_default();
            format!(
                "  overridden  section {}  {field}{by}  under rule {}: {reason}  (edit {})",
                short(&r.section),
                rule.as_str(),
                r.edit_id
            )
        }
    }
}

/// Where a photo's bytes are, in words.
pub fn photo_state(state: &fieldsync_core::PhotoState) -> String {
    use fieldsync_core::PhotoState;
    let percent = |n: u64, of: u64| n.saturating_mul(100).checked_div(of).unwrap_or(0);
    match *state {
        PhotoState::OnThisDeviceOnly => "on this device only".into(),
        PhotoState::Uploading { sent, size } => format!("going up, {}%", percent(sent, size)),
        PhotoState::OnServer => "on the server".into(),
        PhotoState::NotFetched => "not on this device (`device fetch-photo`)".into(),
        PhotoState::ThumbnailOnly => "thumbnail here, full size on the server (`device fetch-photo`)".into(),
        PhotoState::Downloading { received, size } => format!("fetched {}% so far", percent(received, size)),
        PhotoState::Available => "fetched".into(),
        PhotoState::KeptByApp => "kept by the app".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(time(i64::MAX), format!("{} ms since 1970", i64::MAX));
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(3482), "3.40 KiB");
        assert_eq!(bytes(5 * 1_048_576), "5.00 MiB");
        assert_eq!(bytes(3 << 30), "3.00 GiB");
    }
}
