//! `fieldsync bench partial`: a new phone bootstrapping one crew's corridor
//! of a large project, against bootstrapping all of it, through the hub's
//! own round (the bodies measured are the bytes on the wire, HTTP heads
//! aside), with the 2g-rural link's time worked out from its profile
//! (latency and bandwidth each way; no loss); and an idle round under the
//! subscription while the office works elsewhere.

use std::time::Instant;

use clap::Args;
use fieldsync_core::protocol::{self, SyncResponse};
use fieldsync_core::{Durability, GeoPoint, Replica, ReplicaOptions, Role, Scope, Subscription};
use fieldsync_server::Hub;
use fieldsync_tests::profile::Profile;
use serde::Serialize;

use crate::error::CliError;

const PROJECT: &str = "bench-partial";
/// Sections on one line of the grid (a crew's corridor holds one line).
const PER_LINE: u32 = 300;
/// Degrees between lines (5.5 km: far beyond any buffer).
const LINE_GAP: f64 = 0.05;
/// Each section's length, in degrees of longitude (about 150 m at 48° N).
const SECTION_DEG: f64 = 0.002;

/// `fieldsync bench partial`.
#[derive(Debug, Args)]
pub struct PartialBenchArgs {
    /// Sections in the project.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(300..=200_000))]
    sections: u32,
    /// Metres either side of the crew's corridor.
    #[arg(long, default_value_t = 500)]
    buffer: u32,
}

/// One phone's bootstrap.
#[derive(Debug, Serialize)]
pub struct Bootstrap {
    sections_held: usize,
    rounds: u32,
    bytes_up: u64,
    bytes_down: u64,
    /// Wall time in the hub, this machine.
    hub_s: f64,
    /// On 2g-rural: each round's two latencies plus its bytes at the link's rates.
    on_2g_rural_s: f64,
}

/// What `bench partial` measured (`--json`).
#[derive(Debug, Serialize)]
pub struct PartialBench {
    sections: u32,
    corridor: Bootstrap,
    everything: Bootstrap,
    /// The corridor's sections' own compacted documents (`Automerge::save`).
    corridor_documents_bytes: u64,
    /// Corridor bootstrap bytes down over its documents' own size (target ≤ 1.25).
    corridor_overhead: f64,
    /// An idle round under the corridor while the office wrote elsewhere.
    idle_round_bytes_up: u64,
    idle_round_bytes_down: u64,
}

fn line(n: u32) -> f64 {
    48.0 + f64::from(n) * LINE_GAP
}

fn route(i: u32) -> Vec<GeoPoint> {
    let lon = 11.0 + f64::from(i % PER_LINE) * SECTION_DEG;
    let lat = line(i / PER_LINE);
    vec![GeoPoint { lat, lon }, GeoPoint { lat, lon: lon + SECTION_DEG * 0.9 }]
}

fn replica(dir: &std::path::Path, name: &str) -> Result<Replica, CliError> {
    let options = ReplicaOptions {
        device: name.into(),
        durability: Durability::Normal,
        encryption_key: None,
        ..Default::default()
    };
    let mut r = Replica::open(dir.join(format!("{name}.db")), options)?;
    r.join_project(PROJECT)?;
    Ok(r)
}

/// Rounds until the hub has no more; the bytes each way and the rounds.
fn sync(hub: &Hub, token: &str, r: &mut Replica, profile: &Profile) -> Result<Bootstrap, CliError> {
    let started = Instant::now();
    let (mut rounds, mut up, mut down) = (0u32, 0u64, 0u64);
    loop {
        let prepared = r.prepare_round(PROJECT, profile.upload_budget, profile.response_budget)?;
        let body = protocol::encode(&prepared.request);
        let answer = hub.sync(token, &body, fieldsync_server::now_ms())?;
        let response: SyncResponse =
            protocol::decode(&answer).map_err(|e| CliError::Failed(format!("the hub's answer: {e}")))?;
        let more = response.more;
        r.commit_round(PROJECT, &prepared.sent, response)?;
        (rounds, up, down) = (rounds + 1, up + body.len() as u64, down + answer.len() as u64);
        if !more && !prepared.more_to_send {
            break;
        }
    }
    let link = &profile.link;
    let on_2g = f64::from(rounds) * (link.up_latency_ms + link.down_latency_ms) as f64 / 1e3
        + up as f64 * 8.0 / (link.up_kbps as f64 * 1e3)
        + down as f64 * 8.0 / (link.down_kbps as f64 * 1e3);
    Ok(Bootstrap {
        sections_held: r.holdings(PROJECT)?.len(),
        rounds,
        bytes_up: up,
        bytes_down: down,
        hub_s: started.elapsed().as_secs_f64(),
        on_2g_rural_s: on_2g,
    })
}

pub fn run(args: PartialBenchArgs, json: bool) -> Result<(), CliError> {
    let scratch = tempfile::Builder::new().prefix("fieldsync-bench-partial-").tempdir()?;
    let hub = Hub::open(scratch.path().join("hub"))?;
    hub.create_project(PROJECT, Default::default())?;
    for (user, role) in [("olga", Role::Office), ("tina", Role::Technician), ("fred", Role::Foreman)] {
        hub.add_member(PROJECT, user, role)?;
    }
    let token = |user: &str| hub.enroll_device(user, "bench").map(|e| e.token);
    let (olga_token, tina_token, fred_token) = (token("olga")?, token("tina")?, token("fred")?);
    let fast = Profile::three_g();
    let rural = Profile::rural_2g();

    eprintln!("the office creates {} sections …", args.sections);
    let mut olga = replica(scratch.path(), "olga")?;
    sync(&hub, &olga_token, &mut olga, &fast)?;
    let ids: Vec<String> = (0..args.sections)
        .map(|i| {
            let id = format!("s{i:06}");
            olga.create_section_with_id(&id, PROJECT, &format!("section {i}"), &route(i)).map(|()| id)
        })
        .collect::<Result<_, _>>()?;
    let big = Profile { upload_budget: 4 << 20, ..fast.clone() };
    sync(&hub, &olga_token, &mut olga, &big)?;

    // The crew's corridor: the middle line of the grid.
    let middle = args.sections / PER_LINE / 2;
    let corridor_line = vec![
        GeoPoint { lat: line(middle), lon: 11.0 },
        GeoPoint { lat: line(middle), lon: 11.0 + f64::from(PER_LINE) * SECTION_DEG },
    ];
    let corridor = Subscription::Corridor { points: corridor_line, buffer_m: args.buffer };
    let corridor_ids: Vec<&String> =
        ids.iter().enumerate().filter(|(i, _)| *i as u32 / PER_LINE == middle).map(|(_, id)| id).collect();
    let mut corridor_documents_bytes = 0u64;
    for id in &corridor_ids {
        corridor_documents_bytes += olga.export(id)?.len() as u64;
    }

    eprintln!("a new phone bootstraps the corridor …");
    let mut tina = replica(scratch.path(), "tina")?;
    tina.set_scope(PROJECT, Scope::Only(vec![corridor]))?;
    let corridor_bootstrap = sync(&hub, &tina_token, &mut tina, &rural)?;
    eprintln!("a new phone bootstraps everything …");
    let mut fred = replica(scratch.path(), "fred")?;
    let everything = sync(&hub, &fred_token, &mut fred, &rural)?;

    // The office works elsewhere; the crew's next round is idle (after one
    // that brings the roster the third phone's first round changed).
    sync(&hub, &tina_token, &mut tina, &rural)?;
    for id in ids.iter().take(100) {
        olga.record_progress(id, 5)?;
    }
    sync(&hub, &olga_token, &mut olga, &fast)?;
    let idle = sync(&hub, &tina_token, &mut tina, &rural)?;

    let figures = PartialBench {
        sections: args.sections,
        corridor_overhead: corridor_bootstrap.bytes_down as f64 / corridor_documents_bytes.max(1) as f64,
        corridor: corridor_bootstrap,
        everything,
        corridor_documents_bytes,
        idle_round_bytes_up: idle.bytes_up,
        idle_round_bytes_down: idle.bytes_down,
    };
    if json {
        return crate::output::json(&figures);
    }
    let show = |what: &str, b: &Bootstrap| {
        println!(
            "{what:<22} {:>6} sections  {:>4} rounds  {:>10} B down  {:>8} B up  on 2g-rural {:>8.0} s  (hub here {:.1} s)",
            b.sections_held, b.rounds, b.bytes_down, b.bytes_up, b.on_2g_rural_s, b.hub_s
        );
    };
    println!("a project of {} sections; a new phone's bootstrap:", figures.sections);
    show("corridor of one line", &figures.corridor);
    show("everything", &figures.everything);
    println!(
        "corridor: {} B down for {} B of its documents' own compacted size: {:.2}× (target ≤ 1.25×)",
        figures.corridor.bytes_down, figures.corridor_documents_bytes, figures.corridor_overhead
    );
    println!(
        "idle round under the corridor while the office wrote elsewhere: {} B up, {} B down (bodies)",
        figures.idle_round_bytes_up, figures.idle_round_bytes_down
    );
    Ok(())
}
