//! Core benchmarks (issue 2): a plain `main` (no criterion) that prints one line per figure and a
//! Markdown summary table at the end.
//!
//! ```text
//! cargo bench -p fieldsync-core --bench core                 # everything
//! cargo bench -p fieldsync-core --bench core -- edit merge   # a subset: edit, merge, open, automerge
//! FIELDSYNC_BENCH_QUICK=1 cargo bench -p fieldsync-core --bench core   # smaller sizes (smoke run)
//! ```
//!
//! Every store is an SQLite file on disk, in a temporary directory.
//!
//! - `edit`: latency of local edits (`record_progress` / `report_location`) until committed, with
//!   `Durability::Normal` and `Durability::Full`.
//! - `merge`: `apply_changes` of 5 remote changes on each of 1,000 sections into a freshly reopened
//!   replica, against bare Automerge loading the same documents and applying the same changes;
//!   then the WAL checkpoint that merge leaves to the replica's checkpoint thread.
//! - `open`: open a store of 10,000 sections, page through the list, read sections; run in a child
//!   process so its resident memory figures are its own.
//! - `automerge`: small map-heavy transactions on Automerge directly (automerge issue 1387).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{Automerge, Change, ObjType, ROOT, ReadDoc};
use fieldsync_core::{
    ConstructionState, Durability, Edit, EditValue, GeoPoint, Hlc, Member, ProjectConfig, Replica, ReplicaOptions,
    Role, Roster, SectionChange, SectionInput, validate,
};

const GROUPS: [&str; 5] = ["edit", "merge", "open", "automerge", "rules"];
/// Set in the child process that measures `open` (holds the store's path).
const CHILD_ENV: &str = "FIELDSYNC_BENCH_OPEN_CHILD";
const PROJECT: &str = "p1";

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        open_child(Path::new(&path));
        return;
    }
    let quick = std::env::var("FIELDSYNC_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    // `cargo bench` passes `--bench`; anything else starting with `-` is ignored too.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if let Some(bad) = wanted.iter().find(|w| !GROUPS.contains(&w.as_str())) {
        eprintln!("unknown benchmark group `{bad}`; choose among: {}", GROUPS.join(", "));
        std::process::exit(2);
    }
    let run = |g: &str| wanted.is_empty() || wanted.iter().any(|w| w == g);
    let mut figures = Figures { quick, rows: Vec::new() };
    println!(
        "fieldsync-core benchmarks{} (groups: {})",
        if quick { " — QUICK mode: reduced sizes, targets not judged" } else { "" },
        GROUPS.iter().copied().filter(|g| run(g)).collect::<Vec<_>>().join(", ")
    );
    if run("edit") {
        bench_edit(&mut figures);
    }
    if run("merge") {
        bench_merge(&mut figures);
    }
    if run("open") {
        bench_open(&mut figures);
    }
    if run("automerge") {
        bench_automerge(&mut figures);
    }
    if run("rules") {
        bench_rules(&mut figures);
    }
    figures.summary();
}

// ---------------------------------------------------------------------------------------------
// Reporting

struct Row {
    name: String,
    value: String,
    target: String,
    verdict: &'static str,
}

struct Figures {
    quick: bool,
    rows: Vec<Row>,
}

impl Figures {
    /// Print one figure; `target` is (description, met?) when the figure has one.
    fn add(&mut self, name: &str, value: String, target: Option<(&str, bool)>) {
        let verdict = match target {
            None => "",
            Some(_) if self.quick => "not judged (quick)",
            Some((_, true)) => "MET",
            Some((_, false)) => "MISSED",
        };
        let target_text = target.map_or(String::new(), |(t, _)| t.to_owned());
        if target.is_some() {
            println!("  {name:<58} {value}   [target {target_text}: {verdict}]");
        } else {
            println!("  {name:<58} {value}");
        }
        self.rows.push(Row { name: name.to_owned(), value, target: target_text, verdict });
    }

    fn summary(&self) {
        println!("\nSummary (Markdown):\n");
        println!("| Figure | Value | Target | Verdict |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            println!("| {} | {} | {} | {} |", r.name, r.value, r.target, r.verdict);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of `samples` (sorted in place).
fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// (VmRSS, VmHWM) of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn options(device: &str, durability: Durability) -> ReplicaOptions {
    ReplicaOptions { device: device.into(), durability, encryption_key: None, ..Default::default() }
}

fn member(r: &Replica, user: &str, role: Role) -> Member {
    Member { actor: r.actor(), user: user.into(), role }
}

/// A straight east-west route of about 740 m at `lat`.
fn route(lat: f64) -> [GeoPoint; 2] {
    [GeoPoint { lat, lon: 11.0 }, GeoPoint { lat, lon: 11.01 }]
}

fn section_id(i: usize) -> String {
    format!("sec-{i:06}")
}

fn create_sections(r: &mut Replica, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = section_id(i);
            let lat = 48.0 + (i % 1000) as f64 * 0.001;
            r.create_section_with_id(&id, PROJECT, &format!("Hauptstraße {i}"), &route(lat)).expect("create section");
            id
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Local edit → durable

fn bench_edit(f: &mut Figures) {
    let (sections, edits) = if f.quick { (10, 200) } else { (50, 2_000) };
    println!(
        "\n[edit] {edits} local edits round-robin over {sections} sections (alternating record_progress and report_location), SQLite WAL on disk"
    );
    if sections > 32 {
        println!("  (more sections than the replica's 32-document cache: every edit reloads its document from SQLite)");
    }
    for (label, durability) in [("NORMAL", Durability::Normal), ("FULL", Durability::Full)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = Replica::open(dir.path().join("edit.db"), options("bench-edit", durability)).expect("open");
        let me = member(&r, "olga", Role::Office);
        r.set_roster(PROJECT, &[me]).expect("roster");
        let ids = create_sections(&mut r, sections);
        let mut samples = Vec::with_capacity(edits);
        let started = Instant::now();
        for i in 0..edits {
            let id = &ids[i % sections];
            let round = i / sections;
            let t = Instant::now();
            if round % 2 == 0 {
                // Planned allows 0–10 %; rising, then holding at 10.
                r.record_progress(id, (round as i64 / 2).min(10)).expect("progress");
            } else {
                let lat = 48.0 + ((i % sections) % 1000) as f64 * 0.001;
                let point = GeoPoint { lat: lat + 0.00001, lon: 11.0 + (round % 40) as f64 * 0.00025 };
                r.report_location(id, point).expect("location");
            }
            samples.push(t.elapsed());
        }
        let total = started.elapsed();
        let mean = total / edits as u32;
        let p50 = pct(&mut samples, 50.0);
        let p99 = pct(&mut samples, 99.0);
        let max = *samples.last().expect("samples");
        f.add(
            &format!("edit → durable, synchronous={label}: p50 / p99"),
            format!("{:.3} ms / {:.3} ms (mean {:.3}, max {:.3})", ms(p50), ms(p99), ms(mean), ms(max)),
            (durability == Durability::Normal).then_some(("p99 ≤ 5 ms", ms(p99) <= 5.0)),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Merge + detect + resolve + persist

fn bench_merge(f: &mut Figures) {
    let n = if f.quick { 100 } else { 1_000 };
    let per = 5;
    let runs = 5;
    println!(
        "\n[merge] {n} sections × {per} remote changes arriving at a freshly reopened replica (median of {runs} runs, taking turns with bare Automerge)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let setup = Instant::now();
    let mut a = Replica::open(dir.path().join("a.db"), options("bench-a", Durability::Normal)).expect("open a");
    let b_path = dir.path().join("b.db");
    let mut b = Replica::open(&b_path, options("bench-b", Durability::Normal)).expect("open b");
    let roster = [member(&a, "olga", Role::Office), member(&b, "tom", Role::Technician)];
    a.set_roster(PROJECT, &roster).expect("roster a");
    b.set_roster(PROJECT, &roster).expect("roster b");
    let ids = create_sections(&mut a, n);
    let mut initial = Vec::new();
    let mut saved = BTreeMap::new();
    let mut heads = BTreeMap::new();
    for id in &ids {
        for bytes in a.changes_of(id, &[]).expect("changes") {
            initial.push(SectionChange { section: id.clone(), bytes });
        }
        saved.insert(id.clone(), a.export(id).expect("export"));
        heads.insert(id.clone(), a.section(id).expect("view").heads);
    }
    b.apply_changes(&initial).expect("initial sync");
    // A works on every section: 5 edits each.
    for (i, id) in ids.iter().enumerate() {
        let lat = 48.0 + (i % 1000) as f64 * 0.001;
        a.transition(id, ConstructionState::Surveyed, None).expect("transition");
        a.record_progress(id, 5).expect("progress");
        a.report_location(id, GeoPoint { lat, lon: 11.002 }).expect("location");
        a.record_progress(id, 15).expect("progress");
        a.report_location(id, GeoPoint { lat, lon: 11.004 }).expect("location");
    }
    let mut remote = Vec::with_capacity(n * per);
    for id in &ids {
        let changes = a.changes_of(id, &heads[id]).expect("changes");
        assert_eq!(changes.len(), per);
        remote.extend(changes.into_iter().map(|bytes| SectionChange { section: id.clone(), bytes }));
    }
    // B's documents as snapshots in SQLite (as after background compaction), then closed: the
    // timed merge loads every document from the file, not from the replica's cache.
    b.compact(0, usize::MAX).expect("compact");
    drop(b);
    println!("  (setup: {:.1} s)", setup.elapsed().as_secs_f64());

    // FieldSync and bare Automerge take turns, so a slow spell of this shared machine weighs on
    // both sides of a pair; the ratio reported is the median of the pairs' ratios.
    let (mut fieldsync, mut bare, mut ratios, mut checkpoints) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let copy = dir.path().join(format!("b-run{run}.db"));
        std::fs::copy(&b_path, &copy).expect("copy store");
        let mut b = Replica::open(&copy, options("bench-b", Durability::Normal)).expect("reopen b");
        let t = Instant::now();
        let report = b.apply_changes(&remote).expect("merge");
        let took = ms(t.elapsed());
        assert_eq!(report.new_changes, n * per);
        assert_eq!(report.sections_changed.len(), n);
        assert_eq!(b.section(&ids[0]).expect("view").progress, 15);
        // The checkpoint the merge's commit nudged the replica's thread into; FULL waits for it.
        let t = Instant::now();
        b.connection().query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(())).expect("checkpoint");
        checkpoints.push(ms(t.elapsed()));
        drop(b);
        let bare_took = bare_merge(&ids, &saved, &remote, &mut a);
        fieldsync.push(took);
        bare.push(bare_took);
        ratios.push(took / bare_took);
    }
    let (fs, am, ratio) = (median(fieldsync), median(bare), median(ratios));
    f.add(
        &format!("merge {n}×{per} changes: Replica::apply_changes"),
        format!("{fs:.1} ms ({:.3} ms per section)", fs / n as f64),
        Some(("≤ 250 ms", fs <= 250.0)),
    );
    f.add(
        &format!("merge {n}×{per} changes: bare Automerge load + apply"),
        format!("{am:.1} ms ({:.3} ms per section)", am / n as f64),
        None,
    );
    f.add(
        "merge: FieldSync / bare Automerge (median of the runs' ratios)",
        format!("{ratio:.2}×"),
        Some(("≤ 2×", ratio <= 2.0)),
    );
    f.add(
        "merge: its WAL checkpoint (on the replica's checkpoint thread, after the commit)",
        format!("{:.1} ms", median(checkpoints)),
        None,
    );
}

/// The merge's work on bare Automerge, in ms: per section, load the saved document, parse and
/// apply its changes, and let it go (as the replica does, beyond its 32-document cache).
fn bare_merge(ids: &[String], saved: &BTreeMap<String, Vec<u8>>, remote: &[SectionChange], a: &mut Replica) -> f64 {
    let mut heads_after = Vec::with_capacity(ids.len());
    let t = Instant::now();
    let mut rest = remote;
    for id in ids {
        let split = rest.iter().position(|c| &c.section != id).unwrap_or(rest.len());
        let (mine, tail) = rest.split_at(split);
        rest = tail;
        let mut doc = Automerge::load(&saved[id]).expect("load");
        let changes: Vec<Change> = mine.iter().map(|c| Change::from_bytes(c.bytes.clone()).expect("change")).collect();
        doc.apply_changes(changes).expect("apply");
        heads_after.push(doc.get_heads());
    }
    let took = ms(t.elapsed());
    for (id, heads) in ids.iter().zip(&heads_after) {
        let expected: Vec<String> = heads.iter().map(ToString::to_string).collect();
        assert_eq!(a.section(id).expect("view").heads, expected);
    }
    took
}

// ---------------------------------------------------------------------------------------------
// 3. Open a big store, list it, read sections (measured in a child process)

fn bench_open(f: &mut Figures) {
    let n = if f.quick { 1_000 } else { 10_000 };
    let runs = 3;
    println!(
        "\n[open] store of {n} sections; open, list 100 per page, read sections; child process, median of {runs} runs"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.db");
    let setup = Instant::now();
    {
        let mut r = Replica::open(&path, options("bench-big", Durability::Normal)).expect("open");
        let me = member(&r, "olga", Role::Office);
        r.set_roster(PROJECT, &[me]).expect("roster");
        create_sections(&mut r, n);
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "  (setup: {n} sections created one by one by one replica in {:.1} s; file {:.1} MB)",
        setup.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );

    let exe = std::env::current_exe().expect("current exe");
    let mut results: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        let out = Command::new(&exe).env(CHILD_ENV, &path).output().expect("spawn child");
        assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                results.entry(k.to_owned()).or_default().push(v.trim().parse().expect("number"));
            }
        }
    }
    let get = |k: &str| median(results.get(k).cloned().unwrap_or_else(|| panic!("child gave no `{k}`")));
    let max = |k: &str| results[k].iter().copied().fold(0.0, f64::max);
    assert_eq!(get("listed") as usize, n);
    f.add(
        &format!("open store of {n} sections (Replica::open)"),
        format!("{:.1} ms", get("open_ms")),
        Some(("≤ 300 ms", get("open_ms") <= 300.0)),
    );
    f.add(
        "list_sections, 100 per page: p50 / p99 per page",
        format!(
            "{:.3} ms / {:.3} ms ({} pages, all {:.1} ms)",
            get("page_p50_ms"),
            get("page_p99_ms"),
            get("pages"),
            get("list_all_ms")
        ),
        None,
    );
    let per_listed = get("list_all_ms") / n as f64;
    f.add(
        "list_sections: per section listed",
        format!("{per_listed:.4} ms"),
        Some(("≤ 5 ms per section", per_listed <= 5.0)),
    );
    f.add(
        "read one section (Replica::section): p50 / p99",
        format!("{:.3} ms / {:.3} ms ({} reads)", get("read_p50_ms"), get("read_p99_ms"), get("reads")),
        Some(("≤ 5 ms per section", get("read_p99_ms") <= 5.0)),
    );
    f.add(
        "first edit on a cold section (loads its document)",
        format!("{:.3} ms (1 per run)", get("cold_edit_ms")),
        None,
    );
    let mib = |k: &str| max(k) / 1024.0;
    f.add(
        "resident memory of the child: before open / after all",
        format!(
            "VmRSS {:.1} MiB → {:.1} MiB (+{:.1} MiB); after open only +{:.1} MiB",
            mib("rss_start_kib"),
            mib("rss_end_kib"),
            (max("rss_end_kib") - max("rss_start_kib")) / 1024.0,
            (max("rss_open_kib") - max("rss_start_kib")) / 1024.0
        ),
        None,
    );
    f.add(
        "peak resident memory of the child (VmHWM, whole process)",
        format!("{:.1} MiB", mib("hwm_end_kib")),
        Some(("≤ 50 MB", max("hwm_end_kib") * 1024.0 <= 50e6)),
    );
}

/// The child: prints `key=value` lines for the parent.
fn open_child(path: &Path) {
    let (rss_start, _) = memory_kib();
    let t = Instant::now();
    let mut r = Replica::open(path, options("bench-big", Durability::Normal)).expect("open");
    let open = t.elapsed();
    let (rss_open, _) = memory_kib();

    let mut pages = Vec::new();
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    let t = Instant::now();
    loop {
        let p = Instant::now();
        let page = r.list_sections(None, after.as_deref(), 100).expect("list");
        pages.push(p.elapsed());
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        ids.extend(page.into_iter().map(|s| s.id));
    }
    let list_all = t.elapsed();

    // Read 1,000 sections (or all, if fewer) spread over the store.
    let step = (ids.len() / 1000).max(1);
    let mut reads = Vec::new();
    for id in ids.iter().step_by(step) {
        let t = Instant::now();
        let view = r.section(id).expect("read");
        reads.push(t.elapsed());
        assert_eq!(&view.id, id);
    }
    let t = Instant::now();
    r.record_progress(&ids[ids.len() / 2], 5).expect("cold edit");
    let cold_edit = t.elapsed();
    let (rss_end, hwm_end) = memory_kib();

    println!("open_ms={}", ms(open));
    println!("pages={}", pages.len());
    println!("listed={}", ids.len());
    println!("list_all_ms={}", ms(list_all));
    println!("page_p50_ms={}", ms(pct(&mut pages, 50.0)));
    println!("page_p99_ms={}", ms(pct(&mut pages, 99.0)));
    println!("reads={}", reads.len());
    println!("read_p50_ms={}", ms(pct(&mut reads, 50.0)));
    println!("read_p99_ms={}", ms(pct(&mut reads, 99.0)));
    println!("cold_edit_ms={}", ms(cold_edit));
    println!("rss_start_kib={rss_start}");
    println!("rss_open_kib={rss_open}");
    println!("rss_end_kib={rss_end}");
    println!("hwm_end_kib={hwm_end}");
}

// ---------------------------------------------------------------------------------------------
// 4. Map-heavy small transactions on Automerge directly

fn bench_automerge(f: &mut Figures) {
    let (base, reps) = if f.quick { (1_000, 30) } else { (10_000, 200) };
    let version = "automerge 0.12";
    println!(
        "\n[automerge] {version} directly: 100-key transactions on a map holding {base} keys, {reps} transactions"
    );

    // (a) 100 new keys per transaction into a map that already holds `base` keys.
    let mut doc = Automerge::new();
    let map = {
        let mut tx = doc.transaction();
        let map = tx.put_object(ROOT, "files", ObjType::Map).expect("map");
        tx.commit();
        map
    };
    for chunk in 0..base / 100 {
        let mut tx = doc.transaction();
        for k in 0..100 {
            tx.put(&map, format!("key-{:06}", chunk * 100 + k), (chunk * 100 + k) as i64).expect("put");
        }
        tx.commit();
    }
    let mut samples = Vec::with_capacity(reps);
    for rep in 0..reps {
        let t = Instant::now();
        let mut tx = doc.transaction();
        for k in 0..100 {
            tx.put(&map, format!("new-{rep:04}-{k:03}"), k as i64).expect("put");
        }
        tx.commit();
        samples.push(t.elapsed());
    }
    assert_eq!(doc.length(&map), base + reps * 100);
    f.add(
        &format!("put 100 new keys in a {base}-key map: p50 / p99 per txn"),
        format!("{:.3} ms / {:.3} ms", ms(pct(&mut samples, 50.0)), ms(pct(&mut samples, 99.0))),
        None,
    );

    // (b) 100 existing keys overwritten per transaction.
    let mut samples = Vec::with_capacity(reps);
    for rep in 0..reps {
        let t = Instant::now();
        let mut tx = doc.transaction();
        for k in 0..100 {
            let key = (rep * 7919 + k * 97) % base;
            tx.put(&map, format!("key-{key:06}"), -(rep as i64)).expect("put");
        }
        tx.commit();
        samples.push(t.elapsed());
    }
    f.add(
        &format!("overwrite 100 keys of a {base}-key map: p50 / p99 per txn"),
        format!("{:.3} ms / {:.3} ms", ms(pct(&mut samples, 50.0)), ms(pct(&mut samples, 99.0))),
        None,
    );

    // (c) The shape of automerge issue 1387: one transaction per file entry, each a map of 10
    // scalars plus a nested `tags` map and an empty `chunks` list, under one root `files` map.
    let entries = if f.quick { 200 } else { 500 };
    let mut doc = Automerge::new();
    let files = {
        let mut tx = doc.transaction();
        let files = tx.put_object(ROOT, "files", ObjType::Map).expect("files");
        tx.commit();
        files
    };
    let mut samples = Vec::with_capacity(entries);
    let started = Instant::now();
    for e in 0..entries {
        let t = Instant::now();
        let mut tx = doc.transaction();
        let entry = tx.put_object(&files, format!("/data/file-{e:05}.bin"), ObjType::Map).expect("entry");
        for field in 0..10 {
            tx.put(&entry, format!("field{field}"), (e * 10 + field) as i64).expect("scalar");
        }
        let tags = tx.put_object(&entry, "tags", ObjType::Map).expect("tags");
        tx.put(&tags, "kind", "binary").expect("tag");
        tx.put_object(&entry, "chunks", ObjType::List).expect("chunks");
        tx.commit();
        samples.push(t.elapsed());
    }
    let per_sec = entries as f64 / started.elapsed().as_secs_f64();
    f.add(
        &format!("issue-1387 shape, {entries} entries: p50 / p99 per txn"),
        format!(
            "{:.3} ms / {:.3} ms ({per_sec:.0} entries/s; the issue reports ~120,000/s on 0.6.1, ~6,500/s on 0.7.3–0.9)",
            ms(pct(&mut samples, 50.0)),
            ms(pct(&mut samples, 99.0))
        ),
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// The rules on a hostile section

/// One section holding 100,000 transitions, each naming a base of its own
/// (a hostile device's doing): the rules must stay O(n log n) in the writes.
fn bench_rules(f: &mut Figures) {
    let n = if f.quick { 10_000 } else { 100_000 };
    println!("\nrules: validate one section of {n} transitions with distinct bases, and of {n} progress writes");
    let roster = Roster::new([
        Member { actor: "aa01".into(), user: "tina".into(), role: Role::Technician },
        Member { actor: "bb01".into(), user: "fred".into(), role: Role::Foreman },
    ]);
    let edit = |ms: u64, actor: &str, base: Option<String>, value: EditValue| {
        let hlc = Hlc { physical_ms: ms, counter: 0, actor: actor.into() };
        Edit { id: hlc.to_string(), hlc, author: actor.into(), base, change_hash: format!("h{ms}"), value }
    };
    let go = |from, to| EditValue::Transition { from, to, reason: None };
    let mut transitions = vec![edit(1, "bb01", None, go(ConstructionState::Planned, ConstructionState::Surveyed))];
    for i in 0..n as u64 {
        let value = go(ConstructionState::Surveyed, ConstructionState::Trenched);
        transitions.push(edit(10 + i, "aa01", Some(format!("no-such-base-{i}")), value));
    }
    let mut progress = Vec::with_capacity(n);
    let mut base: Option<String> = None;
    for i in 0..n as u64 {
        let e = edit(
            10 + i,
            "aa01",
            base.clone(),
            EditValue::Progress { percent: (i % 10) as i64, at_state: ConstructionState::Planned },
        );
        base = Some(e.id.clone());
        progress.push(e);
    }
    for (what, mut edits) in [("transitions", transitions), ("progress writes", progress)] {
        edits.sort_by(|a, b| a.id.cmp(&b.id));
        let input = SectionInput {
            id: "s".into(),
            project: PROJECT.into(),
            edits,
            notes: String::new(),
            photos: vec![],
            heads: vec![],
            received: Default::default(),
        };
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let v = validate(&input, &roster, &ProjectConfig::default());
            times.push(ms(t.elapsed()));
            std::hint::black_box(v);
        }
        let best = times.iter().copied().fold(f64::MAX, f64::min);
        f.add(
            &format!("validate {n} hostile {what} (best of 3)"),
            format!("{best:.0} ms"),
            Some(("< 1,000 ms", best < 1_000.0)),
        );
    }
}
