//! `fieldsync bench load`: capacity, measured. Real devices against a real
//! `fieldsync serve` over loopback: each device a `Replica` in a SQLite file,
//! syncing with core's `SyncClient` over `HttpTransport` and woken by its
//! `LiveChannel`, exactly as an app is. Crews edit at their pace (the
//! simulator's edit kinds by role), some edits in conflicting pairs, and the
//! bench reports edit → visible on another device, rounds per second, the
//! hub's phase latencies from its own metrics, and the server's CPU and
//! memory. `--idle-channels N` instead holds N idle live channels and reports
//! what they cost the server.
//!
//! One machine plays thousands of phones ([`crate::load_devices`]), so a
//! phone's own threads are not all there: a pool of `--workers` threads runs
//! the devices' rounds (a device is never in two rounds at once), and one
//! thread makes the edits. Every device still has its own store, HTTP
//! connection, live channel and token.
//!
//! "Visible": a device has merged the change holding the edit, checked
//! exactly: every change the bench's devices make is kept with the heads it
//! was made on, so a device has a change once its section's heads descend
//! from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use fieldsync_core::{LiveChannel, LiveConfig, ReplicaError, Role};
use fieldsync_server::pg_store::PgOptions;
use fieldsync_server::{Hub, PgHubStore};
use fieldsync_tests::Rng;
use fieldsync_tests::workload::{EditKind, Plan, perform};
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::load_devices::{Samples, Scheduler, Shared, Track, lock, open_devices, settle};
use crate::load_layout::{Enrolled, Layout};
use crate::load_server::{self, Quantiles, Scrape, ServerProcess, Store};

/// Devices in one crew (they share sections, and so conflicts).
const CREW: usize = 5;
/// Sections planned per crew.
const SECTIONS_PER_CREW: usize = 4;
/// Idle live channels one child process holds (two descriptors each).
const CHANNELS_PER_HOLDER: usize = 4000;
/// How long live channels may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// Files one device keeps open in this process (counted in /proc/<pid>/fd):
/// its store (database, WAL, shared memory), its HTTP client's runtime (two
/// epolls, an eventfd) and connection, its live channel's socket and the
/// clone kept to close it, and one more socket.
const FILES_PER_DEVICE: u64 = 10;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Devices, each a replica on disk with its live channel open.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..))]
    devices: u64,
    /// Devices per project.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(2..))]
    project_size: u64,
    /// Put this many of the devices in one large project first (0: none).
    #[arg(long, value_name = "N", default_value_t = 0)]
    large_project: u64,
    /// Seconds of editing measured (after setup; idle channels: seconds held).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Mean seconds between one device's edits (a busy crew: a progress
    /// report, a GPS point, a photo or a note every few minutes).
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    edit_every: f64,
    /// Share of edits made as a conflicting pair: two devices of a crew raise
    /// the same section's progress without having seen each other's.
    #[arg(long, value_name = "SHARE", default_value_t = 0.1)]
    conflicts: f64,
    /// Threads running the devices' sync rounds.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    workers: u64,
    /// Seconds to wait after the last edit for every device to have it.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    drain: u64,
    /// Serve from this PostgreSQL database instead of a temporary data
    /// directory (projects and devices are added under a fresh prefix, so a
    /// database can be reused). Prefer the environment variable.
    #[arg(long, value_name = "URL", env = "FIELDSYNC_BENCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// `fieldsync serve` processes, devices spread over them (more than one needs
    /// --database-url; default: 2 with it, 1 without).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=16))]
    processes: Option<u64>,
    /// Instead of editing: hold this many idle live channels for --seconds and
    /// report the server's memory.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    idle_channels: Option<u64>,
    /// Seed of the workload (who edits what, when).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Internal: hold the live channels listed in FILE (`server\ttoken\tproject`
    /// lines) until stdin closes; how --idle-channels spreads its channels.
    #[arg(long, value_name = "FILE", hide = true)]
    hold_channels: Option<PathBuf>,
    /// Internal: be one of several load generator processes, for the devices in
    /// FILE (JSON); say `ready`, edit on `go`, print the figures.
    #[arg(long, value_name = "FILE", hide = true)]
    generator: Option<PathBuf>,
    /// Devices one load generator process holds at most (default: what its
    /// open-file limit allows); more devices are spread over child processes.
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u64).range(2..))]
    devices_per_process: Option<u64>,
}

/// The figures of a load run (`--json`).
#[derive(Debug, Serialize)]
struct LoadReport {
    mode: &'static str,
    store: &'static str,
    processes: usize,
    /// Load generator processes (more than one when one cannot open every device's files).
    generator_processes: usize,
    devices: usize,
    projects: usize,
    largest_project: usize,
    seconds: f64,
    edit_every_s: f64,
    edits: Edits,
    /// From a local edit's return to another device's round that merged it (every arrival).
    edit_to_visible_ms: Latency,
    /// From a local edit's return to the last of its project's other devices having it.
    edit_to_every_device_ms: Latency,
    /// From a local edit's return to its author's round that uploaded it.
    edit_to_acknowledged_ms: Latency,
    /// Arrivals still missing when the drain ended.
    unseen_arrivals: u64,
    rounds: u64,
    rounds_per_second: f64,
    failed_syncs: u64,
    failures: Vec<String>,
    hub: HubFigures,
    server: ServerFigures,
    load_generator_cpu_percent: f64,
    machine_cpu_percent: f64,
    cores: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Edits {
    made: u64,
    conflict_pairs: u64,
    refused_on_device: u64,
}

/// A latency distribution, ms.
#[derive(Debug, Default, Serialize)]
struct Latency {
    count: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(samples: &mut [f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Latency { count: samples.len() as u64, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1.0) }
    }
}

/// What the hubs' own metrics say over the measured interval (every process summed).
#[derive(Debug, Serialize)]
struct HubFigures {
    round: Quantiles,
    detection: Quantiles,
    resolution: Quantiles,
    commit: Quantiles,
    /// The hub's own edit → visible (commit to a woken device's round, same process only).
    edit_to_visible: Quantiles,
    changes_accepted: u64,
    conflicts_recorded: u64,
    /// Each store call (`commit_round`, `feed_page`, …): where a round's time goes.
    store_operations: Vec<StoreOperation>,
}

#[derive(Debug, Serialize)]
struct StoreOperation {
    operation: String,
    #[serde(flatten)]
    latency: Quantiles,
}

#[derive(Debug, Serialize)]
struct ServerFigures {
    /// CPU over the measured interval, % of one core, every process summed.
    cpu_percent: f64,
    /// Resident memory at the end of the interval, every process summed.
    rss_mib: f64,
    /// Each process's peak resident memory (VmHWM), summed.
    peak_rss_mib: f64,
    exited_cleanly: bool,
    exits: Vec<load_server::Exit>,
}

/// The figures of an idle-channel run (`--json`).
#[derive(Debug, Serialize)]
struct IdleReport {
    mode: &'static str,
    store: &'static str,
    processes: usize,
    channels: usize,
    /// Live channels the servers counted open once all had connected.
    open: u64,
    seconds_to_open: f64,
    /// Servers' resident memory before the channels, with them, and at its peak (summed).
    rss_before_mib: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    /// (RSS with the channels − RSS before) / channels open.
    per_channel_kib: f64,
    exited_cleanly: bool,
    exits: Vec<load_server::Exit>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(args: LoadArgs, json: bool) -> Result<(), CliError> {
    if let Some(list) = &args.hold_channels {
        return hold_channels(list);
    }
    if let Some(spec) = &args.generator {
        return generator(&args, spec);
    }
    let processes = match (args.processes, &args.database_url) {
        (Some(n), None) if n > 1 => {
            return Err(CliError::Usage(
                "--processes above 1 needs --database-url: one server per SQLite data directory".into(),
            ));
        }
        (Some(n), _) => n as usize,
        (None, Some(_)) => 2,
        (None, None) => 1,
    };
    if !(args.edit_every > 0.0 && args.edit_every.is_finite()) {
        return Err(CliError::Usage("--edit-every must be a positive number of seconds".into()));
    }
    if !(0.0..=1.0).contains(&args.conflicts) {
        return Err(CliError::Usage("--conflicts is a share between 0 and 1".into()));
    }
    if args.large_project == 1 || args.large_project > args.devices {
        return Err(CliError::Usage(format!(
            "--large-project must be 0 or between 2 and --devices ({}), not {}",
            args.devices, args.large_project
        )));
    }
    let note = |s: &str| {
        if !json {
            eprintln!("{s}");
        }
    };
    let scratch = tempfile::Builder::new().prefix("fieldsync-load-").tempdir()?;
    let store = match &args.database_url {
        Some(url) => Store::Postgres(url.clone()),
        None => Store::Data(scratch.path().join("hub")),
    };
    let store_name = if args.database_url.is_some() { "postgresql" } else { "sqlite" };
    // Names no earlier run on the same database used.
    let run_id = format!("{:x}", (fieldsync_server::now_ms() % 0xff_ffff) ^ u64::from(std::process::id()));
    match args.idle_channels {
        Some(channels) => {
            let channels = channels as usize;
            check_open_files(256, channels as u64 / processes as u64 + 256, 1, "channel")?;
            let layout = Layout::new(channels, args.project_size as usize, 0);
            note(&format!("enrolling {channels} devices in {} projects…", layout.projects.len()));
            let enrolled = provision(&store, &layout, &run_id)?;
            let report = idle(&args, &store, store_name, processes, &enrolled, scratch.path(), &note)?;
            if json {
                return crate::output::json(&report);
            }
            print_idle(&report);
            Ok(())
        }
        None => {
            let devices = args.devices as usize;
            // The load generator spreads its devices over processes as its limit requires.
            check_open_files(0, devices as u64 * 2 / processes as u64 + args.workers + 256, 2, "device")?;
            let layout = Layout::new(devices, args.project_size as usize, args.large_project as usize);
            note(&format!(
                "provisioning {devices} devices in {} projects ({}) on {store_name}…",
                layout.projects.len(),
                layout.describe()
            ));
            let enrolled = provision(&store, &layout, &run_id)?;
            let report = load(&args, &store, store_name, processes, &layout, enrolled, scratch.path(), &note)?;
            if json {
                return crate::output::json(&report);
            }
            print_load(&report, &args);
            Ok(())
        }
    }
}

/// Refuse early, with the fix, a run this process or a server could not open
/// the files of; `per_unit` names what each file is for, to say how many fit.
fn check_open_files(generator: u64, server: u64, per_unit: u64, unit: &str) -> Result<(), CliError> {
    let Some(limit) = load_server::open_files_limit() else { return Ok(()) };
    let need = generator.max(server);
    if need > limit {
        return Err(CliError::Failed(format!(
            "this run needs about {need} open files in one process ({per_unit} per {unit}) and the limit is {limit}: \
             raise it first (`ulimit -n {}`; past the hard limit only as root with CAP_SYS_RESOURCE), \
             or run at most about {} {unit}s",
            need.next_power_of_two(),
            limit.saturating_sub(256) / per_unit
        )));
    }
    Ok(())
}

/// Projects, members and devices, added through the hub's library before any server runs
/// (SQLite) or beside them (PostgreSQL).
fn provision(store: &Store, layout: &Layout, run_id: &str) -> Result<Vec<Enrolled>, CliError> {
    let hub = match store {
        Store::Data(dir) => Hub::open(dir)?,
        Store::Postgres(url) => Hub::new(PgHubStore::connect_with(url, PgOptions::default()).map_err(|e| {
            CliError::Failed(format!(
                "cannot use the database of --database-url: {}",
                fieldsync_server::HubError::from(e)
            ))
        })?),
    };
    let mut enrolled = Vec::new();
    for (p, &size) in layout.projects.iter().enumerate() {
        let project_id = format!("load-{run_id}-p{p:04}");
        hub.create_project(&project_id, Default::default())?;
        for member in 0..size {
            let user = format!("{project_id}-u{member:03}");
            hub.add_member(&project_id, &user, Layout::role(member))?;
            let token = hub.enroll_device(&user, &format!("load device {member}"))?.token;
            enrolled.push(Enrolled { project: p, project_id: project_id.clone(), member, user, token });
        }
    }
    Ok(enrolled)
}

/// Start `processes` servers on `store`.
fn start_servers(
    store: &Store,
    processes: usize,
    connections: usize,
    dir: &Path,
) -> Result<Vec<ServerProcess>, CliError> {
    (0..processes)
        .map(|i| ServerProcess::start(store, connections / processes + 256, dir, &format!("serve-{i}")))
        .collect()
}

fn stop_servers(servers: Vec<ServerProcess>) -> Vec<load_server::Exit> {
    servers.into_iter().map(ServerProcess::stop).collect()
}

fn scrape_all(servers: &[ServerProcess]) -> Result<Scrape, CliError> {
    let mut total = Scrape::default();
    for s in servers {
        total = total.plus(&s.scrape()?);
    }
    Ok(total)
}

fn memory_all(servers: &[ServerProcess]) -> (u64, u64) {
    servers.iter().map(ServerProcess::memory_kib).fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

// ---------------------------------------------------------------------------
// Idle live channels.

fn idle(
    args: &LoadArgs,
    store: &Store,
    store_name: &'static str,
    processes: usize,
    enrolled: &[Enrolled],
    dir: &Path,
    note: &dyn Fn(&str),
) -> Result<IdleReport, CliError> {
    let servers = start_servers(store, processes, enrolled.len() + 64, dir)?;
    let (rss_before, _) = memory_all(&servers);
    note(&format!("opening {} live channels…", enrolled.len()));
    let started = Instant::now();
    // Each channel holds two descriptors here (its socket, and the clone that
    // closes it): the channels are held by child processes of a few thousand each.
    let mut holders = Vec::new();
    for (k, chunk) in enrolled.chunks(CHANNELS_PER_HOLDER).enumerate() {
        let list = dir.join(format!("channels-{k}.tsv"));
        let lines: String = chunk
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let server = &servers[(k * CHANNELS_PER_HOLDER + i) % servers.len()].url;
                format!("{server}\t{}\t{}\n", e.token, e.project_id)
            })
            .collect();
        std::fs::write(&list, lines)?;
        let exe = std::env::current_exe()
            .map_err(|e| CliError::Failed(format!("cannot find this program to hold channels: {e}")))?;
        let holder = std::process::Command::new(exe)
            .args(["bench", "load", "--hold-channels"])
            .arg(&list)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| CliError::Failed(format!("cannot start a channel holder: {e}")))?;
        holders.push(holder);
    }
    let want = enrolled.len() as f64;
    let open = loop {
        let open = scrape_all(&servers)?.sum("fieldsync_live_channels_open", "");
        if open >= want || started.elapsed() > CONNECT_TIMEOUT {
            break open;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let seconds_to_open = started.elapsed().as_secs_f64();
    note(&format!("{open} open after {seconds_to_open:.1} s; holding them {} s…", args.seconds));
    let hold_until = Instant::now() + Duration::from_secs(args.seconds);
    let mut rss = 0;
    while Instant::now() < hold_until {
        std::thread::sleep(Duration::from_secs(1).min(hold_until.saturating_duration_since(Instant::now())));
        rss = rss.max(memory_all(&servers).0);
    }
    let (rss_end, peak) = memory_all(&servers);
    let open_end = scrape_all(&servers)?.sum("fieldsync_live_channels_open", "");
    for mut holder in holders {
        // Its stdin closed is its cue to close its channels and exit.
        drop(holder.stdin.take());
        let _ = holder.wait();
    }
    let exits = stop_servers(servers);
    let rss = rss.max(rss_end);
    Ok(IdleReport {
        mode: "idle",
        store: store_name,
        processes,
        channels: enrolled.len(),
        open: open.min(open_end) as u64,
        seconds_to_open,
        rss_before_mib: mib(rss_before),
        rss_mib: mib(rss),
        peak_rss_mib: mib(peak),
        per_channel_kib: if open > 0.0 { rss.saturating_sub(rss_before) as f64 / open } else { 0.0 },
        exited_cleanly: exits.iter().all(|e| e.clean),
        exits,
    })
}

/// A channel holder (`--hold-channels FILE`): open every channel listed, keep
/// them until stdin closes.
fn hold_channels(list: &Path) -> Result<(), CliError> {
    use std::io::Read as _;
    let text = std::fs::read_to_string(list)
        .map_err(|e| CliError::Failed(format!("cannot read the channel list {}: {e}", list.display())))?;
    let config = LiveConfig { connect_timeout: Duration::from_secs(60), ..LiveConfig::default() };
    let mut channels = Vec::new();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (Some(server), Some(token), Some(project)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(CliError::Usage(format!("{}: a line is not `server\\ttoken\\tproject`", list.display())));
        };
        let channel = LiveChannel::connect_with(server, token, project, config, || {})
            .map_err(|e| CliError::Failed(format!("cannot open a live channel: {e}")))?;
        channels.push(channel);
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(channels);
    Ok(())
}

fn print_idle(r: &IdleReport) {
    println!(
        "fieldsync bench load --idle-channels: {} channels on {} ({} server process{})",
        r.channels,
        r.store,
        r.processes,
        if r.processes == 1 { "" } else { "es" }
    );
    println!("  {:<44} {:>10}", "live channels open", r.open);
    println!("  {:<44} {:>10.1} s", "time to open them all", r.seconds_to_open);
    println!("  {:<44} {:>10.1} MiB", "server RSS before the channels", r.rss_before_mib);
    println!("  {:<44} {:>10.1} MiB", "server RSS holding them", r.rss_mib);
    println!("  {:<44} {:>10.1} MiB", "server peak RSS (VmHWM)", r.peak_rss_mib);
    println!("  {:<44} {:>10.1} KiB", "RSS per channel", r.per_channel_kib);
    println!("  {:<44} {:>10}", "server exited cleanly", if r.exited_cleanly { "yes" } else { "NO" });
}

// ---------------------------------------------------------------------------
// The load run.

/// The devices of one generator process, set up and online.
struct Fleet {
    shared: Arc<Shared>,
    channels: Vec<LiveChannel>,
    workers: Vec<std::thread::JoinHandle<()>>,
    plans: Vec<Plan>,
    members: Vec<Vec<usize>>,
    rng: Rng,
    failed_in_setup: u64,
}

/// What one generator's devices measured (a `--generator` child's last line, JSON).
#[derive(Debug, Default, Serialize, Deserialize)]
struct FleetFigures {
    edits: Edits,
    visible_ms: Vec<f64>,
    every_device_ms: Vec<f64>,
    acknowledged_ms: Vec<f64>,
    unseen: u64,
    rounds: u64,
    failed: u64,
    failed_in_setup: u64,
    failures: Vec<(String, u64)>,
}

impl FleetFigures {
    fn merge(&mut self, other: FleetFigures) {
        self.edits.made += other.edits.made;
        self.edits.conflict_pairs += other.edits.conflict_pairs;
        self.edits.refused_on_device += other.edits.refused_on_device;
        self.visible_ms.extend(other.visible_ms);
        self.every_device_ms.extend(other.every_device_ms);
        self.acknowledged_ms.extend(other.acknowledged_ms);
        self.unseen += other.unseen;
        self.rounds += other.rounds;
        self.failed += other.failed;
        self.failed_in_setup += other.failed_in_setup;
        self.failures.extend(other.failures);
    }
}

/// What a `--generator` child is given: the servers, and its projects' devices.
#[derive(Debug, Serialize, Deserialize)]
struct GeneratorSpec {
    urls: Vec<String>,
    /// Device count of each of its projects.
    sizes: Vec<usize>,
    /// Its devices, `project` counted among its own projects.
    enrolled: Vec<Enrolled>,
    /// Its first device's index among all, so devices spread over the servers as one.
    offset: usize,
}

/// Open `enrolled`'s replicas, plan and bootstrap their projects, open their live channels.
fn start_fleet(
    args: &LoadArgs,
    sizes: &[usize],
    enrolled: Vec<Enrolled>,
    urls: &[String],
    offset: usize,
    dir: &Path,
    note: &dyn Fn(&str),
) -> Result<Fleet, CliError> {
    let devices_n = enrolled.len();
    let replicas_dir: PathBuf = dir.join(format!("devices-{offset}"));
    std::fs::create_dir_all(&replicas_dir)?;
    note(&format!("opening {devices_n} replicas…"));
    let mut project_ids: Vec<String> = vec![String::new(); sizes.len()];
    for e in &enrolled {
        project_ids[e.project].clone_from(&e.project_id);
    }
    let devices = open_devices(enrolled, urls, offset, &replicas_dir, args.workers as usize)?;
    let mut rng = Rng::new(args.seed);
    // Each project's plan: crews of five, four sections each, section ids unique on the hub.
    let plans: Vec<Plan> = sizes
        .iter()
        .zip(&project_ids)
        .map(|(&size, id)| {
            let crews = size.div_ceil(CREW);
            let mut plan = Plan::new(id, crews * SECTIONS_PER_CREW, crews, 0.25, &mut rng);
            for s in &mut plan.sections {
                s.id = format!("{id}-{}", s.id);
            }
            for crew in &mut plan.crew_sections {
                for s in crew.iter_mut() {
                    *s = format!("{id}-{s}");
                }
            }
            plan
        })
        .collect();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); sizes.len()];
    for (i, d) in devices.iter().enumerate() {
        members[d.project].push(i);
    }
    let shared = Arc::new(Shared {
        tracks: sizes.iter().map(|&n| Mutex::new(Track::new(n))).collect(),
        devices,
        scheduler: Scheduler::new(devices_n),
        samples: Mutex::new(Samples::default()),
        rounds: AtomicU64::new(0),
        syncs: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        failures: Mutex::new(HashMap::new()),
    });
    let workers: Vec<_> = (0..args.workers)
        .map(|_| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || shared.work())
        })
        .collect();

    // Every device learns its roster; the office plans each project's sections
    // and uploads them; then every device bootstraps them.
    note("planning sections and bootstrapping every device…");
    for d in 0..devices_n {
        shared.scheduler.request(d);
    }
    settle(&shared, Duration::from_secs(3600));
    for (p, plan) in plans.iter().enumerate() {
        let office = &shared.devices[members[p][0]];
        let mut replica = lock(&office.replica);
        for s in &plan.sections {
            let name = format!("Route {} section {}", s.route + 1, s.id);
            replica.create_section_with_id(&s.id, &plan.project, &name, &s.points)?;
        }
    }
    for project in &members {
        shared.scheduler.request(project[0]);
    }
    settle(&shared, Duration::from_secs(3600));
    for d in 0..devices_n {
        shared.scheduler.request(d);
    }
    settle(&shared, Duration::from_secs(3600));

    note(&format!("opening {devices_n} live channels…"));
    let config = LiveConfig { connect_timeout: Duration::from_secs(60), ..LiveConfig::default() };
    let mut channels = Vec::with_capacity(devices_n);
    for (d, device) in shared.devices.iter().enumerate() {
        let url = &urls[(offset + d) % urls.len()];
        let waker = Arc::clone(&shared);
        let channel = LiveChannel::connect_with(url, &device.token, &project_ids[device.project], config, move || {
            waker.scheduler.request(d)
        })
        .map_err(|e| CliError::Failed(format!("cannot open a live channel: {e}")))?;
        channels.push(channel);
    }
    let opening = Instant::now();
    while channels.iter().any(|c| !c.connected()) {
        if opening.elapsed() > CONNECT_TIMEOUT {
            let open = channels.iter().filter(|c| c.connected()).count();
            return Err(CliError::Failed(format!(
                "only {open} of {devices_n} live channels opened in {CONNECT_TIMEOUT:?}; see the server's limits"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    settle(&shared, Duration::from_secs(600));
    let failed_in_setup = shared.failed.load(Ordering::Relaxed);
    Ok(Fleet { shared, channels, workers, plans, members, rng, failed_in_setup })
}

impl Fleet {
    /// The measured interval: edits for `--seconds`; what was made, and the rounds run meanwhile.
    fn edit(&mut self, args: &LoadArgs) -> (Edits, u64) {
        let rounds_before = self.shared.rounds.load(Ordering::Relaxed);
        let edits = edit(&self.shared, &mut self.plans, &self.members, args, &mut self.rng);
        (edits, self.shared.rounds.load(Ordering::Relaxed) - rounds_before)
    }

    /// Let every device catch up before counting what never arrived; then close everything.
    fn finish(self, args: &LoadArgs, edits: Edits, rounds: u64) -> FleetFigures {
        let shared = self.shared;
        let drain_until = Instant::now() + Duration::from_secs(args.drain);
        while Instant::now() < drain_until && !(shared.scheduler.idle() && shared.unseen() == 0) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let unseen = shared.unseen();
        drop(self.channels);
        shared.scheduler.stop();
        for w in self.workers {
            let _ = w.join();
        }
        let samples = std::mem::take(&mut *shared.samples());
        let ms = |v: Vec<Duration>| v.into_iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let failures =
            shared.failures.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        FleetFigures {
            edits,
            visible_ms: ms(samples.visible),
            every_device_ms: ms(samples.every_device),
            acknowledged_ms: ms(samples.acknowledged),
            unseen,
            rounds,
            failed: shared.failed.load(Ordering::Relaxed),
            failed_in_setup: self.failed_in_setup,
            failures,
        }
    }
}

/// A `--generator` child: set up its devices, say `ready`, edit on `go`, print its figures.
fn generator(args: &LoadArgs, spec: &Path) -> Result<(), CliError> {
    use std::io::{BufRead as _, Write as _};
    let text = std::fs::read_to_string(spec)
        .map_err(|e| CliError::Failed(format!("cannot read the generator's spec {}: {e}", spec.display())))?;
    let spec: GeneratorSpec = serde_json::from_str(&text)?;
    let scratch = tempfile::Builder::new().prefix("fieldsync-load-generator-").tempdir()?;
    let mut fleet = start_fleet(args, &spec.sizes, spec.enrolled, &spec.urls, spec.offset, scratch.path(), &|_| {})?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go)?;
    if go.trim() != "go" {
        // The parent is gone (or gave up): nothing to measure for.
        return Err(CliError::Failed("the load bench stopped before the edits began".into()));
    }
    let (edits, rounds) = fleet.edit(args);
    let figures = fleet.finish(args, edits, rounds);
    writeln!(out, "{}", serde_json::to_string(&figures)?)?;
    out.flush()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn load(
    args: &LoadArgs,
    store: &Store,
    store_name: &'static str,
    processes: usize,
    layout: &Layout,
    enrolled: Vec<Enrolled>,
    dir: &Path,
    note: &dyn Fn(&str),
) -> Result<LoadReport, CliError> {
    let devices_n = enrolled.len();
    // Each device holds an HTTP connection and a live channel.
    let servers = start_servers(store, processes, devices_n * 2 + 64, dir)?;
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let groups = generator_groups(&layout.projects, per_process(args))?;
    let before;
    let started;
    let mut children = Vec::new();
    let mut fleet = None;
    if groups.len() == 1 {
        let mut one = start_fleet(args, &layout.projects, enrolled, &urls, 0, dir, note)?;
        note(&edit_note(args));
        before = snapshot(&servers, &[])?;
        started = Instant::now();
        let (edits, rounds) = one.edit(args);
        fleet = Some((one, edits, rounds));
    } else {
        note(&format!("{} load generator processes, a project's devices all in one…", groups.len()));
        let mut rest = enrolled.into_iter().peekable();
        let mut offset = 0;
        for (k, projects) in groups.iter().enumerate() {
            let sizes: Vec<usize> = layout.projects[projects.clone()].to_vec();
            let count: usize = sizes.iter().sum();
            let mine: Vec<Enrolled> = rest
                .by_ref()
                .take(count)
                .map(|mut e| {
                    e.project -= projects.start;
                    e
                })
                .collect();
            let spec = GeneratorSpec { urls: urls.clone(), sizes, enrolled: mine, offset };
            offset += count;
            let path = dir.join(format!("generator-{k}.json"));
            std::fs::write(&path, serde_json::to_vec(&spec)?)?;
            children.push(spawn_generator(args, &path, k)?);
        }
        note("setting up the devices in each…");
        for child in &mut children {
            child.expect("ready")?;
        }
        note(&edit_note(args));
        let pids: Vec<u32> = children.iter().map(|c| c.child.id()).collect();
        before = snapshot(&servers, &pids)?;
        started = Instant::now();
        for child in &mut children {
            child.send("go")?;
        }
        std::thread::sleep(Duration::from_secs(args.seconds));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let pids: Vec<u32> = children.iter().map(|c| c.child.id()).collect();
    let after = snapshot(&servers, &pids)?;
    let (rss, peak) = memory_all(&servers);
    note("draining…");
    let mut figures = FleetFigures::default();
    if let Some((one, edits, rounds)) = fleet {
        figures = one.finish(args, edits, rounds);
    }
    for child in children {
        figures.merge(child.figures()?);
    }
    let exits = stop_servers(servers);

    let interval = after.metrics.since(&before.metrics);
    let hist = |name: &str, labels: &str| interval.histogram(name, labels);
    let phase = "fieldsync_round_phase_duration_seconds";
    let mut failures = std::mem::take(&mut figures.failures);
    failures.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_cpu: f64 = after.server_cpu.iter().zip(&before.server_cpu).map(|(a, b)| a - b).sum();
    let failed_in_setup = figures.failed_in_setup;
    Ok(LoadReport {
        mode: "load",
        store: store_name,
        processes,
        generator_processes: groups.len(),
        devices: devices_n,
        projects: layout.projects.len(),
        largest_project: layout.projects.iter().copied().max().unwrap_or(0),
        seconds: elapsed,
        edit_every_s: args.edit_every,
        edit_to_visible_ms: Latency::of(&mut figures.visible_ms),
        edit_to_every_device_ms: Latency::of(&mut figures.every_device_ms),
        edit_to_acknowledged_ms: Latency::of(&mut figures.acknowledged_ms),
        edits: figures.edits,
        unseen_arrivals: figures.unseen,
        rounds: figures.rounds,
        rounds_per_second: figures.rounds as f64 / elapsed,
        failed_syncs: figures.failed,
        failures: failures
            .into_iter()
            .map(|(why, n)| format!("{n} × {why}"))
            .chain((failed_in_setup > 0).then(|| format!("({failed_in_setup} of them during setup)")))
            .collect(),
        hub: HubFigures {
            round: hist("fieldsync_round_duration_seconds", ""),
            detection: hist(phase, "phase=detection"),
            resolution: hist(phase, "phase=resolution"),
            commit: hist(phase, "phase=commit"),
            edit_to_visible: hist("fieldsync_edit_to_visible_seconds", ""),
            changes_accepted: interval.sum("fieldsync_changes_accepted_total", "") as u64,
            conflicts_recorded: interval.sum("fieldsync_conflicts_recorded_total", "kind=contest") as u64,
            store_operations: {
                let store = "fieldsync_store_operation_duration_seconds";
                let mut ops: Vec<StoreOperation> = interval
                    .label_values(&format!("{store}_bucket"), "operation")
                    .into_iter()
                    .map(|op| StoreOperation { latency: hist(store, &format!("operation={op}")), operation: op })
                    .filter(|op| op.latency.count > 0)
                    .collect();
                ops.sort_by_key(|op| std::cmp::Reverse(op.latency.count));
                ops
            },
        },
        server: ServerFigures {
            cpu_percent: server_cpu / elapsed * 100.0,
            rss_mib: mib(rss),
            peak_rss_mib: mib(peak),
            exited_cleanly: exits.iter().all(|e| e.clean),
            exits,
        },
        load_generator_cpu_percent: (after.generator_cpu - before.generator_cpu) / elapsed * 100.0,
        machine_cpu_percent: {
            let (busy, total) =
                (after.machine_cpu.0 - before.machine_cpu.0, after.machine_cpu.1 - before.machine_cpu.1);
            if total > 0.0 { busy / total * 100.0 } else { 0.0 }
        },
        cores,
    })
}

fn edit_note(args: &LoadArgs) -> String {
    format!(
        "editing for {} s: one edit per device every {} s on average, {}% in conflicting pairs…",
        args.seconds,
        args.edit_every,
        args.conflicts * 100.0
    )
}

/// The servers' metrics and CPU seconds, the load generator's CPU seconds
/// (this process and its child generators), the machine's (busy, total).
struct Snapshot {
    metrics: Scrape,
    server_cpu: Vec<f64>,
    generator_cpu: f64,
    machine_cpu: (f64, f64),
}

fn snapshot(servers: &[ServerProcess], generators: &[u32]) -> Result<Snapshot, CliError> {
    Ok(Snapshot {
        metrics: scrape_all(servers)?,
        server_cpu: servers.iter().map(ServerProcess::cpu_seconds).collect(),
        generator_cpu: load_server::cpu_seconds("/proc/self/stat")
            + generators.iter().map(|pid| load_server::cpu_seconds(&format!("/proc/{pid}/stat"))).sum::<f64>(),
        machine_cpu: load_server::machine_cpu_seconds(),
    })
}

/// Devices one generator process may hold: what its open-file limit allows, or `--devices-per-process`.
fn per_process(args: &LoadArgs) -> usize {
    match args.devices_per_process {
        Some(n) => n as usize,
        None => load_server::open_files_limit()
            .map_or(usize::MAX, |limit| (limit.saturating_sub(256) / FILES_PER_DEVICE) as usize)
            .max(2),
    }
}

/// Consecutive projects per generator process, none over `per_process` devices.
fn generator_groups(projects: &[usize], per_process: usize) -> Result<Vec<std::ops::Range<usize>>, CliError> {
    let mut groups = Vec::new();
    let (mut start, mut devices) = (0, 0);
    for (p, &size) in projects.iter().enumerate() {
        if size > per_process {
            return Err(CliError::Failed(format!(
                "a project of {size} devices does not fit in one load generator process ({per_process} at most, \
                 from its open-file limit): raise `ulimit -n` or make the project smaller"
            )));
        }
        if devices + size > per_process {
            groups.push(start..p);
            (start, devices) = (p, 0);
        }
        devices += size;
    }
    groups.push(start..projects.len());
    Ok(groups)
}

/// A `--generator` child process and the pipes to it.
struct GeneratorProcess {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    name: String,
}

fn spawn_generator(args: &LoadArgs, spec: &Path, k: usize) -> Result<GeneratorProcess, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Failed(format!("cannot find this program to start a generator: {e}")))?;
    let mut child = std::process::Command::new(exe)
        .args(["bench", "load", "--generator"])
        .arg(spec)
        .args(["--seconds", &args.seconds.to_string(), "--edit-every", &args.edit_every.to_string()])
        .args(["--conflicts", &args.conflicts.to_string(), "--workers", &args.workers.to_string()])
        .args(["--drain", &args.drain.to_string(), "--seed", &(args.seed + k as u64).to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| CliError::Failed(format!("cannot start a load generator: {e}")))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(CliError::Failed("internal: a load generator without pipes".into()));
    };
    Ok(GeneratorProcess { child, stdin, stdout: std::io::BufReader::new(stdout), name: format!("load generator {k}") })
}

impl GeneratorProcess {
    fn line(&mut self) -> Result<String, CliError> {
        use std::io::BufRead as _;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(CliError::Failed(format!("{} stopped early ({status}); see its error above", self.name)));
        }
        Ok(line.trim().to_owned())
    }

    fn expect(&mut self, what: &str) -> Result<(), CliError> {
        match self.line()? {
            line if line == what => Ok(()),
            line => Err(CliError::Failed(format!("{} said `{line}`, not `{what}`", self.name))),
        }
    }

    fn send(&mut self, what: &str) -> Result<(), CliError> {
        use std::io::Write as _;
        writeln!(self.stdin, "{what}")?;
        Ok(self.stdin.flush()?)
    }

    fn figures(mut self) -> Result<FleetFigures, CliError> {
        let line = self.line()?;
        let _ = self.child.wait();
        serde_json::from_str(&line)
            .map_err(|e| CliError::Failed(format!("{} answered no figures ({e}): {line}", self.name)))
    }
}

/// Make edits for `--seconds` at the crews' pace; what was made.
fn edit(shared: &Shared, plans: &mut [Plan], members: &[Vec<usize>], args: &LoadArgs, rng: &mut Rng) -> Edits {
    let mut edits = Edits::default();
    let n = shared.devices.len();
    let mean_gap = args.edit_every / n as f64;
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut next = Instant::now();
    loop {
        next += Duration::from_secs_f64(rng.exp(mean_gap));
        if next >= end {
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            break;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let d = rng.below(n as u64) as usize;
        let device = &shared.devices[d];
        let plan = &mut plans[device.project];
        let crew = (device.member / CREW).min(plan.crew_sections.len() - 1);
        let sections = if device.role == Role::Office {
            plan.sections.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
        } else {
            plan.crew_sections[crew].clone()
        };
        let section = rng.pick(&sections).clone();
        let crew_mates: Vec<usize> = members[device.project]
            .iter()
            .copied()
            .filter(|&m| m != d && shared.devices[m].member / CREW == device.member / CREW)
            .collect();
        if rng.chance(args.conflicts) && !crew_mates.is_empty() {
            // Both raise progress before either has synced: concurrent writes, a contest at the hub.
            let mate = *rng.pick(&crew_mates);
            let mut made = 0;
            for who in [d, mate] {
                made += u64::from(make(shared, who, plan, &section, EditKind::Progress, rng, &mut edits));
            }
            if made == 2 {
                edits.conflict_pairs += 1;
            }
            shared.scheduler.request(d);
            shared.scheduler.request(mate);
        } else {
            let kind = loop {
                match EditKind::draw(device.role, 0.05, rng) {
                    // New sections would take ids the plan cannot make unique.
                    EditKind::NewSection => continue,
                    k => break k,
                }
            };
            if make(shared, d, plan, &section, kind, rng, &mut edits) {
                shared.scheduler.request(d);
            }
        }
    }
    edits
}

/// Device `d` makes one edit of `kind` on `section`; whether a change was made.
fn make(
    shared: &Shared,
    d: usize,
    plan: &mut Plan,
    section: &str,
    kind: EditKind,
    rng: &mut Rng,
    edits: &mut Edits,
) -> bool {
    let device = &shared.devices[d];
    let mut replica = lock(&device.replica);
    let Ok(view) = replica.section(section) else { return false };
    match perform(kind, &mut replica, &view, plan, &device.user, rng) {
        Ok(Some(done)) => {
            // Registered before the replica is let go, so no round can carry it before it is known.
            shared.track(device.project).made(
                device.member,
                &done.section,
                done.change_hash,
                view.heads,
                Instant::now(),
            );
            edits.made += 1;
            true
        }
        Ok(None) => false,
        Err(ReplicaError::Refused { .. }) => {
            edits.refused_on_device += 1;
            false
        }
        Err(_) => false,
    }
}

fn print_load(r: &LoadReport, args: &LoadArgs) {
    println!(
        "fieldsync bench load: {} devices in {} projects (largest {}), {} with {} server process{}, {:.0} s, \
         one edit per device every {} s{}",
        r.devices,
        r.projects,
        r.largest_project,
        r.store,
        r.processes,
        if r.processes == 1 { "" } else { "es" },
        r.seconds,
        args.edit_every,
        if r.generator_processes > 1 {
            format!(", {} load generator processes", r.generator_processes)
        } else {
            String::new()
        }
    );
    println!("  {:<46} {:>8} {:>9} {:>9} {:>9} {:>9}", "ms", "count", "p50", "p90", "p99", "max");
    let row = |name: &str, l: &Latency| {
        println!("  {:<46} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1}", name, l.count, l.p50, l.p90, l.p99, l.max);
    };
    row("edit → visible on another device", &r.edit_to_visible_ms);
    row("edit → visible on every device of its project", &r.edit_to_every_device_ms);
    row("edit → acknowledged (its upload round)", &r.edit_to_acknowledged_ms);
    let q = |name: &str, q: &Quantiles| {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        println!("  {:<46} {:>8} {:>9} {:>9} {:>9} {:>9}", name, q.count, f(q.p50_ms), f(q.p90_ms), f(q.p99_ms), "");
    };
    q("hub: round (metrics)", &r.hub.round);
    q("hub: detection", &r.hub.detection);
    q("hub: resolution", &r.hub.resolution);
    q("hub: commit", &r.hub.commit);
    q("hub: edit → visible (its own measure)", &r.hub.edit_to_visible);
    for op in &r.hub.store_operations {
        q(&format!("hub: store {}", op.operation), &op.latency);
    }
    println!("  {:<46} {:>8.1}", "rounds per second", r.rounds_per_second);
    println!(
        "  {:<46} {:>8.0} % of one core ({} cores; load generator {:.0} %, machine {:.0} % busy)",
        "server CPU", r.server.cpu_percent, r.cores, r.load_generator_cpu_percent, r.machine_cpu_percent
    );
    println!("  {:<46} {:>8.1} MiB (peak {:.1} MiB)", "server RSS", r.server.rss_mib, r.server.peak_rss_mib);
    println!(
        "  edits {} (conflicting pairs {}, refused on the device {}); contests the hub recorded {}; unseen arrivals {}; failed syncs {}",
        r.edits.made,
        r.edits.conflict_pairs,
        r.edits.refused_on_device,
        r.hub.conflicts_recorded,
        r.unseen_arrivals,
        r.failed_syncs
    );
    for f in &r.failures {
        println!("    {f}");
    }
    println!("  server exited cleanly: {}", if r.server.exited_cleanly { "yes" } else { "NO" });
}
