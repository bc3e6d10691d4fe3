//! Photos on the simulated network (issue 14): the crews take photos during
//! the day and their sessions carry them over the same simulated links as
//! their rounds. After the heal every photo is on the hub with its
//! thumbnail first, the thumbnails are on every device holding the section,
//! no chunk went again after its acknowledgement, a non-member gets no
//! bytes (the photo invariants, in `SimReport::violations`); and the edits'
//! time to reach every device is compared with the same seeds' day without
//! photos (virtual time: the figures do not depend on the machine).
//!
//! The CI run is a small photo day; `FIELDSYNC_PHOTO_DAY=full` runs the
//! figure of BENCHMARKS.md ("Photos on the simulated network"): 30 photos
//! of 2–4 MB per crew per day, 20 devices.
//!
//! ```sh
//! FIELDSYNC_PHOTO_DAY=full cargo test --release -p fieldsync-tests --test sim -- photos --nocapture
//! ```
//!
//! `FIELDSYNC_PHOTO_PROFILES=3g,offline-day` runs the days on other link
//! profiles (default: 2g-rural and edge), `FIELDSYNC_PHOTO_SEEDS=1,2` on
//! other seeds.

use fieldsync_tests::{FaultConfig, PhotoWorkload, Profile, SimConfig, SimReport};

/// The P99 of the edits' time to every device with photos may be this much
/// of the same day's without (issue 14).
const P99_LIMIT: f64 = 1.2;

struct Day {
    per_crew: u32,
    devices: usize,
    sections: usize,
    seeds: Vec<u64>,
}

fn day() -> Day {
    let mut day = match std::env::var("FIELDSYNC_PHOTO_DAY").as_deref() {
        Ok("full") => Day { per_crew: 30, devices: 20, sections: 30, seeds: vec![1, 2] },
        // An office device and one crew of a foreman and three technicians.
        _ => Day { per_crew: 6, devices: 5, sections: 8, seeds: vec![1, 2] },
    };
    // `FIELDSYNC_PHOTO_SEEDS=1,2,…`: other seeds.
    if let Ok(list) = std::env::var("FIELDSYNC_PHOTO_SEEDS") {
        day.seeds = list.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    }
    day
}

/// The link profiles of the photo days: 2g-rural and edge, or
/// `FIELDSYNC_PHOTO_PROFILES=3g,offline-day,…`.
fn profiles() -> Vec<Profile> {
    match std::env::var("FIELDSYNC_PHOTO_PROFILES") {
        Ok(list) => list
            .split(',')
            .map(|name| Profile::by_name(name.trim()).unwrap_or_else(|| panic!("no profile `{name}`")))
            .collect(),
        Err(_) => vec![Profile::rural_2g(), Profile::edge()],
    }
}

fn config(seed: u64, profile: Profile, day: &Day, photos: u32) -> SimConfig {
    let mut c = SimConfig::new(seed, profile);
    c.workload.devices = day.devices;
    c.workload.sections = day.sections;
    c.workload.photos = PhotoWorkload::per_crew(photos);
    c.faults = FaultConfig::default();
    c
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn minutes(ms: u64) -> f64 {
    ms as f64 / 60_000.0
}

fn print(label: &str, r: &SimReport) {
    let p = r.photos.clone().unwrap_or_default();
    println!(
        "{label:<7} seed {} {:<8}: rounds {:.2} MB on the wire; photos {} ({:.1} MB), {} on the hub ({} excused), \
         {} thumbnails on devices; photo traffic {:.1} MB up ({:.1} MB on mobile data) / {:.2} MB down in {} \
         requests ({} failed, {} chunks repeated); last photo on the hub at {:.1} h; edit → every device P50 {:.1} / P90 {:.1} / P99 {:.1} min; \
         {:.1} h simulated, {} ms wall",
        r.seed,
        r.profile,
        mb(r.bytes_up + r.bytes_down),
        p.added,
        mb(p.added_bytes),
        p.held_on_hub,
        p.excused,
        p.thumbnails_held,
        mb(p.bytes_up),
        mb(p.bytes_up_metered),
        mb(p.bytes_down),
        p.requests,
        p.failed_requests,
        p.repeated_chunks,
        p.last_photo_ms as f64 / 3_600_000.0,
        minutes(r.edit_to_everyone.p50_ms),
        minutes(r.edit_to_everyone.p90_ms),
        minutes(r.edit_to_everyone.p99_ms),
        r.simulated_ms as f64 / 3_600_000.0,
        r.wall_ms,
    );
}

/// Each seed on each profile without photos, then with them (in parallel).
fn run_days(day: &Day) -> Vec<(SimReport, SimReport)> {
    let mut configs = Vec::new();
    for profile in profiles() {
        for &seed in &day.seeds {
            configs.push(config(seed, profile.clone(), day, 0));
            configs.push(config(seed, profile.clone(), day, day.per_crew));
        }
    }
    let reports = fieldsync_tests::seeds::run_many(configs, fieldsync_tests::seeds::threads(), &|_| {});
    let mut pairs = Vec::new();
    let mut reports = reports.into_iter();
    while let (Some(plain), Some(photos)) = (reports.next(), reports.next()) {
        print("without", &plain);
        print("with", &photos);
        pairs.push((plain, photos));
    }
    pairs
}

/// The edits' P99 to every device with photos over the same seed's
/// without: the ratio, printed.
fn pace(plain: &SimReport, photos: &SimReport) -> f64 {
    let (with, without) = (photos.edit_to_everyone, plain.edit_to_everyone);
    let ratio = with.p99_ms as f64 / without.p99_ms.max(1) as f64;
    println!(
        "{} seed {}: edit → every device P50 {:.1} / P90 {:.1} / P99 {:.1} min with photos, \
         {:.1} / {:.1} / {:.1} min without (P99 {ratio:.2}×)",
        plain.profile,
        plain.seed,
        minutes(with.p50_ms),
        minutes(with.p90_ms),
        minutes(with.p99_ms),
        minutes(without.p50_ms),
        minutes(without.p90_ms),
        minutes(without.p99_ms),
    );
    ratio
}

#[test]
fn a_day_of_photos_arrives_thumbnails_first() {
    let day = day();
    let mut failures = Vec::new();
    for (plain, photos) in run_days(&day) {
        assert!(plain.photos.is_none(), "a day without photos reports none");
        for r in [&plain, &photos] {
            if !r.converged {
                failures.push(fieldsync_tests::seeds::failure_message(r));
            }
        }
        let p = photos.photos.clone().unwrap_or_default();
        assert!(p.added > 0 && p.held_on_hub + p.excused >= p.added, "{p:#?}");
        assert!(p.thumbnails_held >= p.held_on_hub, "{p:#?}");
        assert_eq!(p.resent_after_ack, 0);
        assert!(p.outsider_refused > 0, "the outsider asked for nothing: {p:#?}");
        pace(&plain, &photos);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 14's bar: the edits' P99 to every device within 1.2× of the same
/// days without photos, over the edits of ten days per link profile pooled
/// (about 400 edits each way). One day's P99 is over some forty edits, in
/// effect its slowest, and the two days of a seed differ in more than the
/// photos: a device's generator draws both its link's faults and its next
/// edits, so the photo requests shift the edits that follow. Day by day the
/// ratio ran from 0.47× (edge seed 10) to 1.38× (edge seed 2) on
/// 2026-12-03, most days 1.00×; pooled, the distribution is the day's, not
/// one edit's luck.
/// `FIELDSYNC_PHOTO_SEEDS=1,2,…` for other days.
#[test]
fn the_edits_keep_their_pace_with_photos() {
    let mut day = day();
    if std::env::var("FIELDSYNC_PHOTO_SEEDS").is_err() && std::env::var("FIELDSYNC_PHOTO_DAY").is_err() {
        day.seeds = (1..=10).collect();
    }
    let mut pooled: std::collections::BTreeMap<String, (Vec<u64>, Vec<u64>)> = Default::default();
    let mut failures = Vec::new();
    for (plain, photos) in run_days(&day) {
        pace(&plain, &photos);
        // Every invariant, `edits_first` among them, on these days too.
        for r in [&plain, &photos] {
            if !r.converged {
                failures.push(fieldsync_tests::seeds::failure_message(r));
            }
        }
        let (without, with) = pooled.entry(plain.profile.clone()).or_default();
        without.extend(&plain.edit_to_everyone_ms);
        with.extend(&photos.edit_to_everyone_ms);
    }
    for (profile, (without, with)) in pooled {
        let (without, with) = (fieldsync_tests::Latency::of(without), fieldsync_tests::Latency::of(with));
        let ratio = with.p99_ms as f64 / without.p99_ms.max(1) as f64;
        println!(
            "{profile}, {} days pooled: edit → every device P50 {:.1} / P90 {:.1} / P99 {:.1} min with photos ({} edits), \
             {:.1} / {:.1} / {:.1} min without ({} edits): P99 {ratio:.2}×",
            day.seeds.len(),
            minutes(with.p50_ms),
            minutes(with.p90_ms),
            minutes(with.p99_ms),
            with.samples,
            minutes(without.p50_ms),
            minutes(without.p90_ms),
            minutes(without.p99_ms),
            without.samples
        );
        assert!(with.samples >= 100 && without.samples >= 100, "too few edits pooled to judge a P99");
        if ratio > P99_LIMIT {
            failures.push(format!(
                "{profile}: the edits' pooled P99 to every device is {ratio:.2}× the day's without photos"
            ));
        }
    }
    assert!(failures.is_empty(), "over {P99_LIMIT}×:\n{}", failures.join("\n"));
}

/// Issue 14's day on a link that cannot carry it: the project holds full
/// sizes for an unmetered link, so on 2G (and edge) only the thumbnails go
/// during the day, beside the edits, and the full sizes go from the depot's
/// Wi-Fi at the end of the day. Every photo is on the hub after the heal,
/// its thumbnail first, none of its full size went on mobile data
/// (`full_size_held`), and every other invariant holds.
#[test]
fn a_project_on_2g_holds_full_sizes_for_the_depot_wifi() {
    let day = day();
    let mut configs = Vec::new();
    for profile in profiles() {
        for &seed in &day.seeds {
            let mut c = config(seed, profile.clone(), &day, day.per_crew);
            c.workload.photos.depot_wifi = true;
            configs.push(c);
        }
    }
    let reports = fieldsync_tests::seeds::run_many(configs, fieldsync_tests::seeds::threads(), &|_| {});
    let mut failures = Vec::new();
    for r in &reports {
        print("depot", r);
        if !r.converged {
            failures.push(fieldsync_tests::seeds::failure_message(r));
        }
        let p = r.photos.clone().unwrap_or_default();
        assert!(p.added > 0 && p.held_on_hub + p.excused >= p.added, "{p:#?}");
        assert!(p.thumbnails_held >= p.held_on_hub, "{p:#?}");
        assert!(
            p.last_photo_ms >= r.simulated_ms.saturating_sub(r.heal_ms),
            "the full sizes went at the depot: {p:#?}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_same_seed_gives_the_same_photo_day() {
    let mut c = SimConfig::new(3, Profile::edge());
    c.workload.devices = 5;
    c.workload.sections = 4;
    c.workload.day_hours = 2.0;
    c.workload.photos = PhotoWorkload { per_crew: 3, bytes: (200_000, 400_000), ..PhotoWorkload::default() };
    c.faults = FaultConfig { cut_responses: 0.2, ..FaultConfig::default() };
    let a = fieldsync_tests::run_simulation(c.clone(), |_| {});
    let b = fieldsync_tests::run_simulation(c, |_| {});
    assert!(a.converged, "{:#?}", a.violations);
    assert_eq!(a.deterministic_part(), b.deterministic_part());
    let p = a.photos.unwrap_or_default();
    assert!(p.added == 3 && p.held_on_hub == 3 && p.thumbnails_held > 0, "{p:#?}");
    assert!(p.repeated_chunks > 0, "with a fifth of the answers cut, some chunks go twice: {p:#?}");
}
