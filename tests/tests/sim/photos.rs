//! Photos on the simulated network (issue 14): the crews take photos during
//! the day and their sessions carry them over the same simulated links as
//! their rounds. After the heal every photo is on the hub with its
//! thumbnail first, the thumbnails are on every device holding the section,
//! no chunk went again after its acknowledgement, a non-member gets no
//! bytes (the photo invariants, in `SimReport::violations`), and the edits
//! reached every device about as fast as on the same day without photos.
//!
//! The CI run is a small photo day; `FIELDSYNC_PHOTO_DAY=full` runs the
//! figure of BENCHMARKS.md ("Photos on the simulated network"): 30 photos
//! of 2–4 MB per crew per day.
//!
//! ```sh
//! FIELDSYNC_PHOTO_DAY=full cargo test --release -p fieldsync-tests --test sim -- photos --nocapture
//! ```

use fieldsync_tests::{FaultConfig, PhotoWorkload, Profile, SimConfig, SimReport};

/// The P99 of the edits' time to every device with photos may be this much
/// of the same day's without.
const P99_LIMIT: f64 = 1.2;

struct Day {
    per_crew: u32,
    devices: usize,
    sections: usize,
    seeds: Vec<u64>,
}

fn day() -> Day {
    match std::env::var("FIELDSYNC_PHOTO_DAY").as_deref() {
        Ok("full") => Day { per_crew: 30, devices: 20, sections: 30, seeds: vec![1, 2] },
        _ => Day { per_crew: 6, devices: 9, sections: 12, seeds: vec![1, 2] },
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

fn print(label: &str, r: &SimReport) {
    let p = r.photos.clone().unwrap_or_default();
    println!(
        "{label:<8} seed {:>2} {:<8}: rounds {:.2} MB on the wire; photos {} ({:.1} MB) {} on the hub ({} excused), \
         {:.1} MB up / {:.2} MB down on the wire in {} requests ({} failed, {} chunks repeated), last photo at {:.1} h; \
         edit → every device P50 {:.1} min, P99 {:.1} min; {:.1} h simulated, {} ms wall",
        r.seed,
        r.profile,
        mb(r.bytes_up + r.bytes_down),
        p.added,
        mb(p.added_bytes),
        p.held_on_hub,
        p.excused,
        mb(p.bytes_up),
        mb(p.bytes_down),
        p.requests,
        p.failed_requests,
        p.repeated_chunks,
        p.last_photo_ms as f64 / 3_600_000.0,
        r.edit_to_everyone.p50_ms as f64 / 60_000.0,
        r.edit_to_everyone.p99_ms as f64 / 60_000.0,
        r.simulated_ms as f64 / 3_600_000.0,
        r.wall_ms,
    );
}

#[test]
fn a_day_of_photos_arrives_thumbnails_first_and_edits_keep_their_pace() {
    let day = day();
    let profiles = [Profile::rural_2g(), Profile::edge()];
    // Each seed on each profile without photos, then with them.
    let mut configs = Vec::new();
    for profile in &profiles {
        for &seed in &day.seeds {
            configs.push(config(seed, profile.clone(), &day, 0));
            configs.push(config(seed, profile.clone(), &day, day.per_crew));
        }
    }
    let reports = fieldsync_tests::seeds::run_many(configs, fieldsync_tests::seeds::threads(), &|_| {});
    let mut failures = Vec::new();
    for (profile, runs) in profiles.iter().zip(reports.chunks(2 * day.seeds.len())) {
        for pair in runs.chunks(2) {
            let [plain, photos] = pair else { unreachable!("pairs") };
            print("without", plain);
            print("with", photos);
            assert!(plain.photos.is_none(), "a day without photos reports none");
            for r in [plain, photos] {
                if !r.converged {
                    failures.push(fieldsync_tests::seeds::failure_message(r));
                }
            }
            let p = photos.photos.clone().unwrap_or_default();
            assert!(p.added > 0 && p.held_on_hub + p.excused >= p.added, "{p:#?}");
            assert_eq!(p.resent_after_ack, 0);
            assert!(p.outsider_refused > 0, "the outsider asked for nothing: {p:#?}");
            // The same seed: the same edits, faults and outages, plus the photos.
            let (with, without) = (photos.edit_to_everyone, plain.edit_to_everyone);
            println!(
                "{} seed {}: edit → every device P50 {:.1} / P90 {:.1} / P99 {:.1} min with photos, \
                 {:.1} / {:.1} / {:.1} min without (P99 {:.2}×)",
                profile.name,
                plain.seed,
                with.p50_ms as f64 / 60_000.0,
                with.p90_ms as f64 / 60_000.0,
                with.p99_ms as f64 / 60_000.0,
                without.p50_ms as f64 / 60_000.0,
                without.p90_ms as f64 / 60_000.0,
                without.p99_ms as f64 / 60_000.0,
                with.p99_ms as f64 / without.p99_ms.max(1) as f64
            );
            if with.p99_ms as f64 > P99_LIMIT * without.p99_ms as f64 {
                failures.push(format!(
                    "{} seed {}: the edits' P99 to every device is {} ms with photos, over {P99_LIMIT}× the {} ms without",
                    profile.name, plain.seed, with.p99_ms, without.p99_ms
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
