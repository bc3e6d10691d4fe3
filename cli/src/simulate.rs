//! `fieldsync simulate`: a crew's working day over a simulated rural network,
//! the demonstration a newcomer runs first. The engine is `fieldsync-tests`'
//! `run_simulation`: the real replicas (SQLite files) and the real hub, driven
//! in virtual time over simulated links with outages, loss and faults. This
//! file picks the scenario from the flags, shows the progress bar and prints
//! the report.

use std::collections::BTreeMap;

use clap::Args;
use fieldsync_tests::{Phase, Profile, SimConfig, SimProgress, SimReport, run_simulation};

use crate::error::CliError;
use crate::output;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Seed of the simulated day: the same seed plays the same day.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Devices: an office device, then crews of a foreman and three technicians (default 13: 3 crews).
    #[arg(long)]
    devices: Option<usize>,
    /// Sections the office plans along generated routes (default 200).
    #[arg(long)]
    sections: Option<usize>,
    /// Network profile: 3g, edge, 2g-rural or offline-day.
    #[arg(long, default_value = "2g-rural")]
    profile: String,
}

/// The scenario the flags describe: the field day of `SimConfig::field_day`.
fn config(args: &SimulateArgs) -> Result<SimConfig, CliError> {
    let profile = Profile::by_name(&args.profile).ok_or_else(|| {
        CliError::Usage(format!("unknown profile `{}`: choose among {}", args.profile, Profile::names().join(", ")))
    })?;
    let mut config = SimConfig::field_day(args.seed);
    config.profile = profile;
    if let Some(d) = args.devices {
        if d < 2 {
            return Err(CliError::Usage("--devices must be at least 2 (an office and a crew member)".into()));
        }
        config.workload.devices = d;
    }
    if let Some(s) = args.sections {
        if s == 0 {
            return Err(CliError::Usage("--sections must be at least 1".into()));
        }
        config.workload.sections = s;
    }
    Ok(config)
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Setup => "setting up",
        Phase::Day => "working day",
        Phase::Heal => "network healed, outboxes draining",
        Phase::Check => "checking convergence",
        Phase::Done => "done",
    }
}

pub fn run(args: SimulateArgs, json: bool) -> Result<(), CliError> {
    let config = config(&args)?;
    let (devices, sections) = (config.workload.devices, config.workload.sections);
    let day_ms = (config.workload.day_hours * 3_600_000.0) as u64;
    let bar = if json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(day_ms) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:32}] {percent:>3}% of the day  {msg}")
            .map_err(|e| CliError::Failed(e.to_string()))?
            .progress_chars("=> "),
    );
    if !json {
        println!(
            "fieldsync simulate: seed {}, profile {}, {} devices, {} sections, a {}-hour day",
            config.seed,
            config.profile.name,
            config.workload.devices,
            config.workload.sections,
            config.workload.day_hours
        );
    }
    let report = run_simulation(config, |p: SimProgress| {
        if p.day_ms > 0 {
            bar.set_length(p.day_ms);
        }
        bar.set_position(p.simulated_ms.min(p.day_ms.max(1)));
        bar.set_message(format!("{}: {} edits, {} round trips", phase(p.phase), p.edits, p.round_trips));
    });
    bar.finish_and_clear();
    if json {
        output::json(&report)?;
    } else {
        print!("{}", human(&report));
        println!(
            "  replay         fieldsync simulate --seed {} --profile {} --devices {} --sections {}",
            args.seed, args.profile, devices, sections
        );
    }
    if report.converged {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} invariant(s) broken; replay with the command above (or: {})",
            report.violations.len(),
            report.replay
        )))
    }
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// The report for people.
pub fn human(r: &SimReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let conflicts: u64 = r.conflicts_by_kind.values().sum();
    let refused: u64 = r.refused_locally.values().sum();
    let wire = r.bytes_up + r.bytes_down;
    let _ = writeln!(s, "\nReport (seed {}, {}, {} devices, {} sections)", r.seed, r.profile, r.devices, r.sections);
    let _ = writeln!(s, "  edits          {} acknowledged: {}", r.edits, counts(&r.edits_by_kind));
    let _ = writeln!(s, "  refused        {refused} on the device before storing: {}", counts(&r.refused_locally));
    let _ = writeln!(s, "  conflicts      {conflicts} recorded: {}", counts(&r.conflicts_by_kind));
    let _ = writeln!(s, "    decided by   {}", counts(&r.conflicts_by_rule));
    let _ = writeln!(s, "  quarantined    {} point(s) off route, kept, awaiting a foreman", r.quarantined_points);
    let latency = |l: &fieldsync_tests::report::Latency| {
        let t = |ms: u64| format!("{:.1} min", ms as f64 / 60_000.0);
        format!("P50 {}, P90 {}, P99 {}, max {} over {}", t(l.p50_ms), t(l.p90_ms), t(l.p99_ms), t(l.max_ms), l.samples)
    };
    let _ = writeln!(s, "  edit → visible {} arrivals on another device (simulated)", latency(&r.edit_to_visible));
    let _ =
        writeln!(s, "  … on all       {} edits, until every device that got it had it", latency(&r.edit_to_everyone));
    let _ = writeln!(
        s,
        "  round trips    {} ({} failed; {} after the network healed)",
        r.round_trips, r.failed_round_trips, r.heal_round_trips
    );
    let _ = writeln!(
        s,
        "  on the wire    {} up + {} down = {} ({} of it repeats after cuts and losses)",
        output::bytes(r.bytes_up),
        output::bytes(r.bytes_down),
        output::bytes(wire),
        output::bytes(r.bytes_repeated)
    );
    let _ = writeln!(
        s,
        "  change floor   {} (each change deflated, up once and down to every other device): the wire is {:.2}× it",
        output::bytes(r.change_floor_bytes),
        wire as f64 / r.change_floor_bytes.max(1) as f64
    );
    let _ = writeln!(
        s,
        "  changes        {} on the server ({} raw, {} deflated)",
        r.changes,
        output::bytes(r.changes_raw_bytes),
        output::bytes(r.changes_deflated_bytes)
    );
    let f = &r.faults;
    let _ = writeln!(
        s,
        "  faults         {} outages, {} partitions, {} lost requests, {} lost and {} cut responses, {} duplicated requests,\n                 \
         {} apps killed mid-sync and {} mid-write, {} server restarts, {} skewed clocks, {} reinstalls, {} revocations,\n                 \
         {} role changes, {} members removed, {} hostile requests",
        f.outages,
        f.partitions,
        f.lost_requests,
        f.lost_responses,
        f.cut_responses,
        f.duplicated_requests,
        f.kills_mid_sync,
        f.kills_mid_write,
        f.server_restarts,
        f.skewed_clocks,
        f.reinstalls,
        f.revocations,
        f.role_changes,
        f.removals,
        f.hostile_requests
    );
    let _ = writeln!(
        s,
        "  trust          {} edit(s) on a stale roster; {} hostile change(s) stored as rejections, {} hostile request(s) \
         refused;\n                 {} honest change(s) refused; {} write(s) stamped ahead of the server ({} re-decided by a \
         role change, {} contest(s) they would have won by stamp);\n                 {} section(s) moved on by a \
         foreman's probe after the heal",
        r.stale_role_edits,
        r.hostile_stored,
        r.hostile_refused,
        r.refused_changes,
        r.writes_stamped_ahead,
        r.redecided_ahead,
        r.ahead_contests,
        r.probed_sections
    );
    let _ = writeln!(
        s,
        "  time           {:.1} h simulated (the heal took {:.0} min), {:.1} s real",
        r.simulated_ms as f64 / 3_600_000.0,
        r.heal_ms as f64 / 60_000.0,
        r.wall_ms as f64 / 1000.0
    );
    if r.converged {
        let _ = writeln!(
            s,
            "  verdict        CONVERGED: every device and the server hold the same changes, views and conflict records; \
             no acknowledged edit lost"
        );
    } else {
        let _ = writeln!(s, "  verdict        NOT CONVERGED: {} invariant(s) broken", r.violations.len());
        for v in &r.violations {
            let _ = writeln!(s, "    {}: {}", v.invariant.as_str(), v.detail);
        }
    }
    let _ = writeln!(s, "  state digest   {} (the same seed and flags give the same digest)", r.state_digest);
    s
}
