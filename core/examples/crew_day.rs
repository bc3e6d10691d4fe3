//! A crew's day on the engine alone (no server yet): an office planner, a
//! foreman and two technicians each hold a replica in a SQLite file, work
//! offline on the same sections, then exchange their changes in whatever
//! order and end with identical views and conflict records.
//!
//! `cargo run --release -p fieldsync-core --example crew_day [DIR]`

use std::error::Error;

use fieldsync_core::{ConstructionState as S, GeoPoint, Member, Replica, ReplicaOptions, Role, SectionChange};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("fieldsync-crew-day-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let people =
        [("olga", Role::Office), ("fred", Role::Foreman), ("tina", Role::Technician), ("tom", Role::Technician)];
    let mut crew = Vec::new();
    for (name, _) in &people {
        let options = ReplicaOptions { device: format!("{name}-phone"), ..Default::default() };
        crew.push(Replica::open(dir.join(format!("{name}.db")), options)?);
    }
    let roster: Vec<Member> = crew
        .iter()
        .zip(&people)
        .map(|(r, (name, role))| Member { actor: r.actor(), user: name.to_string(), role: *role })
        .collect();
    for r in &mut crew {
        r.set_roster("build-out", &roster)?;
    }

    // Morning, in the office: three sections along a rural road.
    let mut sections = Vec::new();
    for i in 0..3 {
        let lon = 11.0 + 0.02 * f64::from(i);
        let route = [GeoPoint { lat: 48.0, lon }, GeoPoint { lat: 48.0, lon: lon + 0.015 }];
        sections.push(crew[0].create_section("build-out", &format!("Road K{} km {i}", 17), &route)?);
    }
    exchange(&mut crew, &sections)?;
    println!("{} sections planned and handed to {} phones in {}", sections.len(), crew.len(), dir.display());

    // All day offline: overlapping work on section 0, one off-route point.
    let s0 = &sections[0];
    crew[2].transition(s0, S::Surveyed, None)?;
    crew[2].record_progress(s0, 15)?;
    crew[3].transition(s0, S::Surveyed, None)?;
    crew[3].transition(s0, S::Trenched, None)?;
    crew[3].record_progress(s0, 30)?;
    crew[1].transition(s0, S::Blocked, Some("landowner closed the gate"))?;
    crew[2].report_location(s0, GeoPoint { lat: 48.0002, lon: 11.005 })?;
    crew[3].report_location(s0, GeoPoint { lat: 48.003, lon: 11.006 })?; // ≈ 330 m off the route
    crew[2].set_notes(s0, "Soil is rocky near the creek.")?;
    crew[3].set_notes(s0, "Gate code 4711.")?;
    match crew[2].transition(s0, S::Planned, None) {
        Err(e) => println!("refused at once on tina's phone: {e}"),
        Ok(_) => unreachable!("technicians cannot move a section back"),
    }

    // Evening: everyone is back in coverage.
    exchange(&mut crew, &sections)?;
    let view = crew[0].section(s0)?;
    println!(
        "section 0 after the merge: state {}, progress {}%, {} quarantined point(s), notes {:?}",
        view.state.as_str(),
        view.progress,
        view.quarantined.len(),
        view.notes
    );
    for c in crew[0].conflicts(Some(s0))? {
        println!("  conflict {} [{:?}/{}]: {}", &c.id[..8], c.kind, c.rule.as_str(), c.explanation);
    }
    let same = crew.iter().all(|r| {
        sections.iter().all(|s| {
            r.section(s).ok() == crew[0].section(s).ok() && r.conflicts(Some(s)).ok() == crew[0].conflicts(Some(s)).ok()
        })
    });
    println!("convergence: {}", if same { "every phone shows identical views and conflicts" } else { "DIVERGED" });
    if !same {
        std::process::exit(1);
    }
    Ok(())
}

/// Everyone sends everything they have to everyone else.
fn exchange(crew: &mut [Replica], sections: &[String]) -> Result<(), Box<dyn Error>> {
    for from in 0..crew.len() {
        let mut changes = Vec::new();
        for s in sections {
            changes.extend(
                crew[from].changes_of(s, &[])?.into_iter().map(|bytes| SectionChange { section: s.clone(), bytes }),
            );
        }
        for (to, r) in crew.iter_mut().enumerate() {
            if to != from {
                r.apply_changes(&changes)?;
            }
        }
    }
    Ok(())
}
