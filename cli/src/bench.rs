//! `fieldsync bench`: the core's headline figures in a few seconds, on SQLite
//! files in a temporary directory, with the real hub in-process. The full,
//! recorded benchmarks are `cargo bench -p fieldsync-core --bench core`
//! (BENCHMARKS.md); this is the quick look an operator can take on a machine.
//! `fieldsync bench load` is the capacity run against a real server
//! ([`crate::load`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use fieldsync_core::{
    ConstructionState, Durability, GeoPoint, Replica, ReplicaOptions, Role, SectionChange, SyncClient, Transport,
    TransportError,
};
use fieldsync_server::Hub;
use serde::Serialize;

use crate::error::CliError;

const PROJECT: &str = "bench";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    quick: QuickArgs,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Capacity: many real devices against a real `fieldsync serve` over loopback
    /// (edit → visible, rounds per second, the server's CPU and memory).
    Load(crate::load::LoadArgs),
    /// Photos through a real `fieldsync serve` over loopback: thumbnails, upload and
    /// download throughput against the loopback's raw capacity.
    Photos(crate::bench_photos::PhotoBenchArgs),
    /// Partial sync: a new phone bootstrapping one crew's corridor of a large
    /// project against all of it (bytes, 2g-rural time), and an idle round.
    Partial(crate::bench_partial::PartialBenchArgs),
}

/// The quick figures (`fieldsync bench` without a subcommand).
#[derive(Debug, Args)]
struct QuickArgs {
    /// Sections in the stores measured.
    #[arg(long, default_value_t = 300)]
    sections: usize,
    /// Local edits timed.
    #[arg(long, default_value_t = 300)]
    edits: usize,
}

/// One measured figure (`--json`: `{"figures": [Figure…]}`).
#[derive(Debug, Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

struct Bench {
    json: bool,
    figures: Vec<Figure>,
    bar: indicatif::ProgressBar,
}

impl Bench {
    fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let f = Figure { name: name.into(), value, unit };
        if !self.json {
            // Printed on stdout whether or not the bar is drawn (it is not on a pipe).
            self.bar.suspend(|| println!("  {:<62} {:>10.3} {}", f.name, f.value, f.unit));
        }
        self.figures.push(f);
    }

    fn step(&self, what: &str) {
        self.bar.set_message(what.to_owned());
        self.bar.inc(1);
    }
}

fn fail(what: &str) -> impl Fn(fieldsync_core::ReplicaError) -> CliError + '_ {
    move |e| CliError::Failed(format!("{what}: {e}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 * p / 100.0).ceil() as usize).clamp(1, samples.len()) - 1;
    ms(samples[i])
}

fn route(i: usize) -> [GeoPoint; 2] {
    let lat = 48.0 + i as f64 * 0.001;
    [GeoPoint { lat, lon: 11.0 }, GeoPoint { lat, lon: 11.01 }]
}

/// The real hub, called in-process as a transport.
fn hub_transport(hub: &Arc<Hub>, token: String) -> Arc<dyn Transport> {
    let hub = Arc::clone(hub);
    Arc::new(move |body: Vec<u8>| {
        hub.sync(&token, &body, fieldsync_server::now_ms())
            .map_err(|e| TransportError::Server { status: e.status().0, body: e.body() })
    })
}

pub fn run(args: BenchArgs, json: bool) -> Result<(), CliError> {
    match args.command {
        Some(BenchCommand::Load(load)) => crate::load::run(load, json),
        Some(BenchCommand::Photos(photos)) => crate::bench_photos::run(photos, json),
        Some(BenchCommand::Partial(partial)) => crate::bench_partial::run(partial, json),
        None => quick(args.quick, json),
    }
}

fn quick(args: QuickArgs, json: bool) -> Result<(), CliError> {
    if args.sections == 0 || args.edits == 0 {
        return Err(CliError::Usage("--sections and --edits must be at least 1".into()));
    }
    let dir = tempfile::Builder::new().prefix("fieldsync-bench-").tempdir()?;
    let bar = if json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(5) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .map_err(|e| CliError::Failed(e.to_string()))?,
    );
    if !json {
        println!(
            "fieldsync bench: {} sections, {} edits (quick figures; the full set: cargo bench -p fieldsync-core --bench core)",
            args.sections, args.edits
        );
    }
    let mut b = Bench { json, figures: Vec::new(), bar };
    let started = Instant::now();

    // Setup: the hub with an office and a technician device, each a replica on disk.
    b.step("setting up a hub and two replicas");
    let hub = Arc::new(Hub::open(dir.path().join("hub"))?);
    hub.create_project(PROJECT, Default::default())?;
    hub.add_member(PROJECT, "olga", Role::Office)?;
    hub.add_member(PROJECT, "tina", Role::Technician)?;
    let open = |name: &str| {
        Replica::open(
            dir.path().join(format!("{name}.db")),
            ReplicaOptions {
                device: name.into(),
                durability: Durability::Normal,
                encryption_key: None,
                ..Default::default()
            },
        )
    };
    let mut clients = Vec::new();
    for user in ["olga", "tina"] {
        let mut r = open(user)?;
        r.join_project(PROJECT).map_err(fail("join"))?;
        let shared = Arc::new(Mutex::new(r));
        let token = hub.enroll_device(user, user)?.token;
        let client = SyncClient::new(Arc::clone(&shared), hub_transport(&hub, token));
        client.sync_now()?;
        clients.push((shared, client));
    }
    let lock = |i: usize| clients[i].0.lock().unwrap_or_else(|p| p.into_inner());

    // Office plans every section; one sync takes them to the hub and one to the technician.
    let mut ids = Vec::with_capacity(args.sections);
    {
        let mut olga = lock(0);
        for i in 0..args.sections {
            ids.push(olga.create_section(PROJECT, &format!("section {i}"), &route(i)).map_err(fail("create"))?);
        }
    }
    let t = Instant::now();
    let up = clients[0].1.sync_now()?;
    let down = clients[1].1.sync_now()?;
    b.add(format!("sync: {} new sections up, then down (2 syncs)", args.sections), ms(t.elapsed()), "ms");
    b.add("sync: round trips for them", f64::from(up.rounds + down.rounds), "rounds");

    // Local edits: durable on return, view recomputed.
    b.step("timing local edits");
    let mut samples = Vec::with_capacity(args.edits);
    {
        let mut tina = lock(1);
        for (i, id) in ids.iter().cycle().take(args.edits).enumerate() {
            let t = Instant::now();
            if i < ids.len() {
                tina.transition(id, ConstructionState::Surveyed, None).map_err(fail("edit"))?;
            } else {
                tina.record_progress(id, (i / ids.len()).min(20) as i64).map_err(fail("edit"))?;
            }
            samples.push(t.elapsed());
        }
    }
    b.add("local edit → validated view, durable (p50)", percentile(&mut samples, 50.0), "ms");
    b.add("local edit → validated view, durable (p99)", percentile(&mut samples, 99.0), "ms");

    // Concurrent edits of the same field on two replicas: merge, detect, resolve.
    b.step("timing conflict detection and resolution");
    let contested = ids.len().min(100);
    let mut samples = Vec::with_capacity(contested);
    {
        let mut olga = lock(0);
        // Where both replicas agree (the synced plan), before either edits.
        let base: Vec<Vec<String>> = ids[..contested]
            .iter()
            .map(|id| olga.section(id).map(|v| v.heads))
            .collect::<Result<_, _>>()
            .map_err(fail("read"))?;
        for id in &ids[..contested] {
            olga.record_progress(id, 5).map_err(fail("edit"))?;
        }
        let mut tina = lock(1);
        let mut theirs = Vec::with_capacity(contested);
        for (id, base) in ids[..contested].iter().zip(&base) {
            // Made without knowing of Olga's write.
            tina.record_progress(id, 8).map_err(fail("edit"))?;
            let changes = tina.changes_of(id, base).map_err(fail("read"))?;
            theirs.push(
                changes.into_iter().map(|bytes| SectionChange { section: id.clone(), bytes }).collect::<Vec<_>>(),
            );
        }
        drop(tina);
        for batch in theirs {
            let t = Instant::now();
            let report = olga.apply_changes(&batch).map_err(fail("merge"))?;
            samples.push(t.elapsed());
            if report.new_changes == 0 {
                return Err(CliError::Failed("internal: the concurrent changes were not new".into()));
            }
        }
        let records = olga.conflicts(None).map_err(fail("conflicts"))?.len();
        b.add("merge of a section's concurrent edits → conflicts + view (p50)", percentile(&mut samples, 50.0), "ms");
        b.add("merge of a section's concurrent edits → conflicts + view (p99)", percentile(&mut samples, 99.0), "ms");
        b.add("conflict records after the merges", records as f64, "records");
    }

    // A sync after a day's edits: bytes on the wire against the raw changes.
    b.step("timing a sync of the day's edits");
    let pending = lock(1).outbox(usize::MAX).map_err(fail("outbox"))?;
    let raw: usize = pending.iter().map(|c| c.bytes.len()).sum();
    let t = Instant::now();
    let report = clients[1].1.sync_now()?;
    b.add(format!("sync: {} pending changes up, conflicts back", pending.len()), ms(t.elapsed()), "ms");
    b.add("sync: request bytes on the wire per raw change byte", report.bytes_sent as f64 / raw.max(1) as f64, "×");

    // Reopening a store: only metadata is read, no document is loaded.
    b.step("timing a cold open");
    drop(clients);
    let t = Instant::now();
    let tina = open("tina")?;
    let page = tina.list_sections(None, None, 50).map_err(fail("list"))?;
    b.add(format!("open a store of {} sections + list the first page", args.sections), ms(t.elapsed()), "ms");
    if page.is_empty() {
        return Err(CliError::Failed("internal: the reopened store lists no section".into()));
    }
    b.add("total time", started.elapsed().as_secs_f64(), "s");
    b.bar.finish_and_clear();
    if json {
        return crate::output::json(&serde_json::json!({ "figures": b.figures }));
    }
    Ok(())
}
