//! Crash safety: a process working on a store is killed with SIGKILL, over
//! and over, at points chosen by how far its work has got (never by a timer,
//! so a slow or busy machine changes nothing but the test's duration). Its
//! work covers every kind of transaction a device commits: local writes,
//! merges of another device's changes, and sync rounds (changes,
//! confirmations, cursor, roster and whole documents in one response).
//!
//! The worker reports each step on stdout: `try …` before it, with what the
//! step carries, and `ok …` once it returned. The parent reads the lines and
//! kills the worker as soon as it has read a number of them chosen at random,
//! so the kill lands somewhere in or after the next step. After every kill:
//! SQLite's integrity check passes; every edit and change the worker saw
//! returned, and every change it saw merged, is stored; the cursor and
//! confirmations of every round it saw committed are stored; a step cut off
//! by the kill is stored whole or not at all (a round's cursor, confirmations
//! and changes together); and each stored view is the view of the stored
//! document.
//!
//! The worker is [`child_worker`], a test of this same binary that does
//! nothing unless `FIELDSYNC_CRASH_CHILD` names a directory; the parent
//! re-executes the binary to run only it. The parent prints its seed; set
//! `FIELDSYNC_CRASH_SEED` to it to replay a run: the same random draws and
//! the same kill points, counted in lines (where exactly in a step a kill
//! lands still varies with timing, and with it what the next run finds).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fastrand::Rng;
use fieldsync_core::protocol::{self, RosterUpdate, SectionBatch, SectionDocument, SyncResponse};
use fieldsync_core::{
    ConstructionState, EditReceipt, FORWARD, GeoPoint, HistoryEntry, Member, PastPoint, ProjectConfig, Replica,
    ReplicaOptions, Role, SectionChange,
};

use crate::common::{PROJECT, route};

/// The directory of the stores, for the worker.
const CHILD_ENV: &str = "FIELDSYNC_CRASH_CHILD";
/// The worker's seed.
const CHILD_SEED_ENV: &str = "FIELDSYNC_CRASH_CHILD_SEED";
/// The parent's seed, to replay a run.
const SEED_ENV: &str = "FIELDSYNC_CRASH_SEED";
/// Marks the worker's own lines: with `--nocapture` the harness may print on the same line.
const MARK: &str = "@@ ";
/// A fresh pair of stores this many times (so the first run's setup is
/// killed too, and the documents stay small enough to check quickly)…
const STORES: usize = 5;
/// …each killed this many times: 250 kills in all.
const KILLS_PER_STORE: usize = 50;
/// A worker is killed after at most this many of its lines (the first is
/// `opening`: a kill after it lands while the stores open or are set up).
const MAX_LINES: usize = 36;

/// The store under test, its device and its section.
const DB: &str = "crash.db";
const DEVICE: &str = "crash-dev";
const OURS: &str = "our-section";
/// The other device (another store in the same directory) and its section.
const OTHER_DB: &str = "other.db";
const OTHER_DEVICE: &str = "other-dev";
const THEIRS: &str = "their-section";

fn options(device: &str) -> ReplicaOptions {
    ReplicaOptions { device: device.into(), ..Default::default() }
}

/// Hashes on one line: comma-separated, `-` for none.
fn list(hashes: &[String]) -> String {
    if hashes.is_empty() { "-".into() } else { hashes.join(",") }
}

fn unlist(words: &str) -> Vec<String> {
    if words == "-" { vec![] } else { words.split(',').map(str::to_owned).collect() }
}

/// The hashes of `section`'s changes in `r` (none if it lacks the section).
fn hashes_of(r: &mut Replica, section: &str) -> BTreeSet<String> {
    if r.section(section).is_err() {
        return BTreeSet::new();
    }
    r.history(section).unwrap().into_iter().map(|h| h.hash).collect()
}

/// A replica of the worker's, with the hashes of its sections' changes kept
/// as it goes (reading them from the store walks the whole document, which
/// would make the worker slower the longer the test runs).
struct Device {
    r: Replica,
    hashes: BTreeMap<&'static str, BTreeSet<String>>,
}

impl Device {
    fn open(dir: &Path, db: &str, device: &str) -> Device {
        Device { r: Replica::open(dir.join(db), options(device)).unwrap(), hashes: BTreeMap::new() }
    }

    fn hashes(&mut self, section: &'static str) -> &BTreeSet<String> {
        self.hashes.entry(section).or_insert_with(|| hashes_of(&mut self.r, section))
    }

    /// Note changes stored since the hashes were read.
    fn stored(&mut self, section: &'static str, hashes: impl IntoIterator<Item = String>) {
        if let Some(known) = self.hashes.get_mut(section) {
            known.extend(hashes);
        }
    }

    /// A write on one of its sections.
    fn write(&mut self, section: &'static str, rng: &mut Rng) -> EditReceipt {
        let receipt = write(&mut self.r, section, rng);
        self.stored(section, [receipt.change_hash.clone()]);
        receipt
    }

    /// A change to a section's notes; returns its hash.
    fn add_notes(&mut self, section: &'static str, text: &str, replace: bool) -> String {
        if replace {
            self.r.set_notes(section, text).unwrap();
        } else {
            let end = self.r.section(section).unwrap().notes.chars().count();
            self.r.splice_notes(section, end, 0, text).unwrap();
        }
        // A local change builds on every head: it is the only one after it.
        let heads = self.r.section(section).unwrap().heads;
        assert_eq!(heads.len(), 1);
        self.stored(section, heads.clone());
        heads[0].clone()
    }
}

/// The changes of `section` that `from` holds and `to` lacks, and their hashes.
fn lacking(from: &mut Device, to: &mut Device, section: &'static str) -> (Vec<String>, Vec<Vec<u8>>) {
    let theirs = to.hashes(section).clone();
    let (known, new): (Vec<String>, Vec<String>) =
        from.hashes(section).iter().cloned().partition(|h| theirs.contains(h));
    if new.is_empty() {
        return (vec![], vec![]);
    }
    // `to`'s part of the document is closed under dependencies: what is not below it is new.
    let changes = from.r.changes_of(section, &known).unwrap();
    assert_eq!(changes.len(), new.len());
    (new, changes)
}

/// One valid write on `section`: progress within the state's band, the next
/// state (completed sections go back to trenched, as for rework), or a point
/// on the route.
fn write(r: &mut Replica, section: &str, rng: &mut Rng) -> EditReceipt {
    let view = r.section(section).unwrap();
    let band = ProjectConfig::default().band(view.state);
    let next_state = match view.state {
        ConstructionState::Completed => ConstructionState::Trenched,
        s => FORWARD[s.step().expect("never blocked") + 1],
    };
    match rng.u32(0..10) {
        0..=4 if view.state == ConstructionState::Completed || view.progress == band.max => {
            r.transition(section, next_state, None).unwrap()
        }
        // After rework the office rolls progress back into the band.
        0..=4 if view.progress > band.max => r.record_progress(section, i64::from(band.min)).unwrap(),
        0..=4 => {
            let p = (view.progress + rng.u8(1..=5)).clamp(band.min, band.max);
            r.record_progress(section, i64::from(p)).unwrap()
        }
        5..=7 => {
            let lon = 11.0 + f64::from(rng.u32(0..1000)) * 0.000_015;
            r.report_location(section, GeoPoint { lat: 48.0, lon }).unwrap()
        }
        _ => r.transition(section, next_state, None).unwrap(),
    }
}

/// The other device's work: mostly writes on its own section, now and then
/// (having caught up with ours) a line added to our section's notes.
fn other_work(ours: &mut Device, other: &mut Device, rng: &mut Rng, steps: usize) {
    for _ in 0..steps {
        if rng.u32(0..4) == 0 {
            let (hashes, changes) = lacking(ours, other, OURS);
            let changes: Vec<SectionChange> =
                changes.into_iter().map(|bytes| SectionChange { section: OURS.into(), bytes }).collect();
            other.r.apply_changes(&changes).unwrap();
            other.stored(OURS, hashes);
            if other.r.section(OURS).is_ok() {
                other.add_notes(OURS, &format!(" [other {}]", rng.u32(..)), false);
            }
        } else {
            other.write(THEIRS, rng);
        }
    }
}

/// What `ours` lacks of `other`'s changes: by section, their hashes and the changes.
type News = Vec<(&'static str, Vec<String>, Vec<Vec<u8>>)>;

fn news(ours: &mut Device, other: &mut Device) -> News {
    [OURS, THEIRS]
        .into_iter()
        .map(|section| {
            let (hashes, changes) = lacking(other, ours, section);
            (section, hashes, changes)
        })
        .filter(|(_, hashes, _)| !hashes.is_empty())
        .collect()
}

/// All the hashes of `news`.
fn hashes(news: &News) -> Vec<String> {
    news.iter().flat_map(|(_, hashes, _)| hashes.iter().cloned()).collect()
}

/// The worker. Runs only when re-executed by [`a_process_killed_at_points_of_its_work_loses_nothing_it_reported`].
#[test]
fn child_worker() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = Path::new(&dir);
    let seed: u64 = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    let mut rng = Rng::with_seed(seed);
    let out = std::io::stdout();
    let say = |line: &str| {
        let mut out = out.lock();
        writeln!(out, "\n{MARK}{line}").unwrap();
        out.flush().unwrap();
    };
    say("opening");
    let mut ours = Device::open(dir, DB, DEVICE);
    let mut other = Device::open(dir, OTHER_DB, OTHER_DEVICE);
    let members = vec![
        Member { actor: ours.r.actor(), user: "crash".into(), role: Role::Office },
        Member { actor: other.r.actor(), user: "other".into(), role: Role::Office },
    ];
    for replica in [&mut ours.r, &mut other.r] {
        if replica.roster(PROJECT).unwrap().members().count() != members.len() {
            replica.set_roster(PROJECT, &members).unwrap();
        }
    }
    if ours.r.section(OURS).is_err() {
        ours.r.create_section_with_id(OURS, PROJECT, "crash test", &route()).unwrap();
    }
    if other.r.section(THEIRS).is_err() {
        other.r.create_section_with_id(THEIRS, PROJECT, "the other crew's", &route()).unwrap();
    }
    say("ready");
    for n in 0u64.. {
        match rng.u32(0..20) {
            0..=6 => {
                say("try edit");
                let receipt = ours.write(OURS, &mut rng);
                say(&format!("ok edit {} {}", receipt.edit_id, receipt.change_hash));
            }
            7..=8 => {
                say("try notes");
                let hash = if rng.bool() {
                    ours.add_notes(OURS, &format!("crew note {seed}/{n}: {}", "gravel ".repeat((n % 7) as usize)), true)
                } else {
                    ours.add_notes(OURS, &format!(" +{n}"), false)
                };
                say(&format!("ok notes {hash}"));
            }
            9 => {
                // As if the server acknowledged everything sent so far.
                let hashes: Vec<String> = ours.r.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect();
                say(&format!("try confirm {}", list(&hashes)));
                ours.r.confirm(&hashes).unwrap();
                say("ok confirm");
            }
            10 => {
                say("try compact");
                let folded = ours.r.compact(0, 100).unwrap();
                say(&format!("ok compact {folded}"));
            }
            11..=14 => {
                // Another device's changes, merged as they come (e.g. over a local link).
                let steps = rng.usize(1..=3);
                other_work(&mut ours, &mut other, &mut rng, steps);
                let news = news(&mut ours, &mut other);
                let changes: Vec<SectionChange> = news
                    .iter()
                    .flat_map(|(section, _, changes)| {
                        changes.iter().map(|bytes| SectionChange { section: (*section).into(), bytes: bytes.clone() })
                    })
                    .collect();
                say(&format!("try merge {}", list(&hashes(&news))));
                ours.r.apply_changes(&changes).unwrap();
                say("ok merge");
                for (section, hashes, _) in news {
                    ours.stored(section, hashes);
                }
            }
            _ => {
                // A sync round: the upload prepared, the server's response
                // (the other device's changes, sometimes as a whole document,
                // sometimes a roster) committed.
                let upload_budget = rng.usize(1..=16) * 1024;
                let prepared = ours.r.prepare_round(PROJECT, upload_budget, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
                let steps = rng.usize(0..=2);
                other_work(&mut ours, &mut other, &mut rng, steps);
                let news = news(&mut ours, &mut other);
                let merged = hashes(&news);
                let mut response = SyncResponse {
                    server_time_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64,
                    changes: vec![],
                    documents: vec![],
                    cursor: format!("c{seed:x}.{n}"),
                    more: false,
                    roster: (rng.u32(0..4) == 0).then(|| RosterUpdate {
                        version: prepared.request.roster_version + 1,
                        members: members.clone(),
                        history: vec![],
                        config: ProjectConfig::default(),
                    }),
                    upload_received: vec![],
                    evicted: vec![],
                    keep_only: None,
                    still_to_send: None,
                    full_size_photos: None,
                };
                for (section, _, changes) in &news {
                    if *section == THEIRS && rng.u32(0..4) == 0 {
                        let document = other.r.export(section).unwrap();
                        response.documents.push(SectionDocument {
                            section: (*section).into(),
                            document,
                            received: vec![],
                        });
                    } else {
                        response.changes.push(SectionBatch::upload(*section, changes.clone()));
                    }
                }
                say(&format!("try round {} {} {}", response.cursor, list(&prepared.sent), list(&merged)));
                ours.r.commit_round(PROJECT, &prepared.sent, response).unwrap();
                say("ok round");
                for (section, hashes, _) in news {
                    ours.stored(section, hashes);
                }
            }
        }
    }
}

/// A step the worker began and did not report done.
#[derive(Debug)]
enum Step {
    Confirm(Vec<String>),
    Merge(Vec<String>),
    Round {
        cursor: String,
        sent: Vec<String>,
        merged: Vec<String>,
    },
    /// A local write or a compaction: nothing to tell of it until it returns.
    Other,
}

/// What the worker reported, over every run.
#[derive(Default)]
struct Reported {
    /// Whether our section was reported created.
    ready: bool,
    /// Ids of the edits returned.
    edits: BTreeSet<String>,
    latest_edit: Option<String>,
    /// Hashes of our changes returned.
    local: BTreeSet<String>,
    /// Hashes of the other device's changes merged.
    merged: BTreeSet<String>,
    /// Ours, not confirmed: must still be in the outbox.
    unconfirmed: BTreeSet<String>,
    /// Confirmed: must never be in the outbox again.
    confirmed: BTreeSet<String>,
    /// The last committed round's cursor.
    cursor: String,
    /// Steps returned, by kind.
    done: BTreeMap<String, usize>,
    /// Steps cut off by a kill, by kind and whether they had committed.
    cut: BTreeMap<String, usize>,
}

impl Reported {
    fn confirm(&mut self, hashes: &[String]) {
        for h in hashes {
            self.unconfirmed.remove(h);
            self.confirmed.insert(h.clone());
        }
    }

    fn round(&mut self, cursor: &str, sent: &[String], merged: &[String]) {
        self.cursor = cursor.to_owned();
        self.confirm(sent);
        self.merged.extend(merged.iter().cloned());
    }

    /// Take in one run's lines; returns the step cut off by the kill, if any.
    fn read(&mut self, lines: &[String], at: &str) -> Option<Step> {
        let before = self.latest_edit.clone();
        let mut first_of_run = true;
        let mut open: Option<Step> = None;
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match (words.as_slice(), open.take()) {
                (["opening"], None) => {}
                (["ready"], None) => self.ready = true,
                (["try", "edit" | "notes" | "compact"], None) => open = Some(Step::Other),
                (&["try", "confirm", hashes], None) => open = Some(Step::Confirm(unlist(hashes))),
                (&["try", "merge", hashes], None) => open = Some(Step::Merge(unlist(hashes))),
                (&["try", "round", cursor, sent, merged], None) => {
                    open = Some(Step::Round { cursor: cursor.into(), sent: unlist(sent), merged: unlist(merged) })
                }
                (&["ok", "edit", edit_id, hash], Some(Step::Other)) => {
                    if first_of_run && let Some(before) = &before {
                        // The clock runs forward across crashes and reopens.
                        assert!(edit_id > before.as_str(), "{at}: {edit_id} not after {before}");
                    }
                    first_of_run = false;
                    self.latest_edit = Some(edit_id.to_owned());
                    self.edits.insert(edit_id.into());
                    self.local.insert(hash.into());
                    self.unconfirmed.insert(hash.into());
                }
                (&["ok", "notes", hash], Some(Step::Other)) => {
                    self.local.insert(hash.into());
                    self.unconfirmed.insert(hash.into());
                }
                (["ok", "compact", _], Some(Step::Other)) => {}
                (["ok", "confirm"], Some(Step::Confirm(hashes))) => self.confirm(&hashes),
                (["ok", "merge"], Some(Step::Merge(hashes))) => self.merged.extend(hashes),
                (["ok", "round"], Some(Step::Round { cursor, sent, merged })) => self.round(&cursor, &sent, &merged),
                (_, step) => panic!("{at}: unexpected line from the worker: {line:?} (after {step:?})"),
            }
            if words[0] == "ok" {
                *self.done.entry(words[1].to_owned()).or_default() += 1;
            }
        }
        open
    }
}

/// Run the worker once on the stores in `dir`, kill it once `kill_after` of
/// its lines have been read, and return every line it wrote.
fn run_and_kill(dir: &Path, seed: u64, kill_after: usize, err_log: &Path) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash::child_worker", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(err_log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut short by the kill was never reported.
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    if let Some((_, ours)) = line.trim_end().split_once(MARK) {
                        let _ = tx.send(ours.to_owned());
                    }
                }
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < kill_after {
        // Only a guard against a hung worker: no kill waits on a clock.
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "the worker stopped reporting ({e}, {status}): {}",
                    std::fs::read_to_string(err_log).unwrap_or_default()
                );
            }
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}: {}", std::fs::read_to_string(err_log).unwrap_or_default());
    reader.join().unwrap();
    // Lines written before the kill landed were reported too.
    lines.extend(rx.try_iter());
    lines
}

/// Open the store after a kill, settle the step the kill cut off (stored
/// whole or not at all), and check the store against what was reported.
fn check_store(db: &Path, reported: &mut Reported, cut: Option<Step>, at: &str) {
    {
        let raw = rusqlite::Connection::open(db).unwrap();
        let check: Vec<String> = raw
            .prepare("PRAGMA integrity_check")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(check, ["ok"], "{at}");
    }
    let mut r = Replica::open(db, options(DEVICE)).unwrap_or_else(|e| panic!("{at}: {e}"));
    let sections: Vec<String> = r.list_sections(None, None, 10).unwrap().into_iter().map(|s| s.id).collect();
    assert!(sections.iter().all(|s| s == OURS || s == THEIRS), "{at}: {sections:?}");
    assert!(!reported.ready || sections.iter().any(|s| s == OURS), "{at}: our section is gone");
    let histories: Vec<(String, Vec<HistoryEntry>)> =
        sections.into_iter().map(|s| (s.clone(), r.history(&s).unwrap())).collect();
    let in_doc: BTreeSet<String> = histories.iter().flat_map(|(_, h)| h.iter().map(|e| e.hash.clone())).collect();
    let outbox: BTreeSet<String> = r.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect();
    let cursor = r.prepare_round(PROJECT, 0, 0).unwrap().request.cursor;

    let all_or_none = |what: &str, hashes: &[String], stored: &BTreeSet<String>| -> bool {
        let n = hashes.iter().filter(|h| stored.contains(*h)).count();
        assert!(n == 0 || n == hashes.len(), "{at}: {n} of the {} changes of a cut-off {what} stored", hashes.len());
        n == hashes.len() && n > 0
    };
    let kind = match cut {
        None => None,
        Some(Step::Other) => Some("write or compaction"),
        Some(Step::Confirm(hashes)) => {
            // Confirmed all together or not at all.
            let still = hashes.iter().filter(|h| outbox.contains(*h)).count();
            assert!(still == 0 || still == hashes.len(), "{at}: a cut-off confirm left {still} in the outbox");
            if still == 0 {
                reported.confirm(&hashes);
                Some("confirm, committed")
            } else {
                Some("confirm, not committed")
            }
        }
        Some(Step::Merge(hashes)) => {
            if all_or_none("merge", &hashes, &in_doc) {
                reported.merged.extend(hashes);
                Some("merge, committed")
            } else {
                Some("merge, not committed")
            }
        }
        Some(Step::Round { cursor: new, sent, merged }) => {
            // Cursor, confirmations and changes together, or none of them.
            let committed = cursor == new;
            assert!(committed || cursor == reported.cursor, "{at}: cursor {cursor:?}, neither old nor new");
            let still_sent = sent.iter().filter(|h| outbox.contains(*h)).count();
            let merged_stored = merged.iter().filter(|h| in_doc.contains(*h)).count();
            if committed {
                assert_eq!((still_sent, merged_stored), (0, merged.len()), "{at}: a committed round, partly");
                reported.round(&new, &sent, &merged);
                Some("round, committed")
            } else {
                assert_eq!((still_sent, merged_stored), (sent.len(), 0), "{at}: an uncommitted round, partly");
                Some("round, not committed")
            }
        }
    };
    if let Some(kind) = kind {
        *reported.cut.entry(kind.into()).or_default() += 1;
    }

    let lost: Vec<_> = reported.local.union(&reported.merged).filter(|h| !in_doc.contains(*h)).collect();
    assert!(lost.is_empty(), "{at}: reported changes lost: {lost:?}");
    let gone: Vec<_> = reported.unconfirmed.difference(&outbox).collect();
    assert!(gone.is_empty(), "{at}: unconfirmed changes left the outbox: {gone:?}");
    let back: Vec<_> = reported.confirmed.intersection(&outbox).collect();
    assert!(back.is_empty(), "{at}: confirmed changes back in the outbox: {back:?}");
    assert_eq!(cursor, reported.cursor, "{at}: the cursor of the last committed round");

    for (s, history) in &histories {
        let audit = r.audit(s).unwrap();
        if s == OURS {
            let ids: BTreeSet<&str> = audit.iter().map(|a| a.edit_id.as_str()).collect();
            let lost: Vec<_> = reported.edits.iter().filter(|e| !ids.contains(e.as_str())).collect();
            assert!(lost.is_empty(), "{at}: reported edits lost: {lost:?}");
        }
        // Each section has one writer, who validated each write before storing it.
        let refused: Vec<_> = audit.iter().filter(|a| !a.decision.applied()).collect();
        assert!(refused.is_empty(), "{at}: {refused:?}");

        // The stored view was committed with the changes: it is the view of the stored document.
        let hashes: BTreeSet<&str> = history.iter().map(|h| h.hash.as_str()).collect();
        let deps: BTreeSet<&str> = history.iter().flat_map(|h| h.deps.iter().map(String::as_str)).collect();
        let heads: BTreeSet<&str> = hashes.difference(&deps).copied().collect();
        let view = r.section(s).unwrap();
        assert_eq!(view.heads.iter().map(String::as_str).collect::<BTreeSet<_>>(), heads, "{at}: {s}");
        assert_eq!(r.view_at(s, &PastPoint::Heads(view.heads.clone())).unwrap(), view, "{at}: {s}");
    }
}

#[test]
fn a_process_killed_at_points_of_its_work_loses_nothing_it_reported() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // We are the worker's process.
    }
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash test: seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = Rng::with_seed(seed);
    let started = Instant::now();
    let (mut lines_read, mut edits, mut local, mut merged, mut rounds) = (0, 0, 0, 0, 0);
    let mut done: BTreeMap<String, usize> = BTreeMap::new();
    let mut cut: BTreeMap<String, usize> = BTreeMap::new();
    for store in 0..STORES {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB);
        let mut reported = Reported::default();
        for i in 0..KILLS_PER_STORE {
            let at = format!("seed {seed}, store {store}, kill {i}");
            // Now and then while the stores open, mostly somewhere in the work.
            let kill_after = if rng.u32(0..10) == 0 { 1 } else { rng.usize(2..=MAX_LINES) };
            let err_log = dir.path().join(format!("worker-{i}.stderr"));
            let lines = run_and_kill(dir.path(), rng.u64(..), kill_after, &err_log);
            lines_read += lines.len();
            let step = reported.read(&lines, &at);
            check_store(&db, &mut reported, step, &at);
        }
        assert!(reported.ready, "seed {seed}, store {store}: the worker never got past opening");
        (edits, local, merged) =
            (edits + reported.edits.len(), local + reported.local.len(), merged + reported.merged.len());
        rounds += usize::from(!reported.cursor.is_empty());
        for (kind, n) in reported.done {
            *done.entry(kind).or_default() += n;
        }
        for (kind, n) in reported.cut {
            *cut.entry(kind).or_default() += n;
        }
    }
    let kills = STORES * KILLS_PER_STORE;
    eprintln!(
        "crash test: {kills} kills after {lines_read} lines in {:.1?}; steps returned {done:?}; cut off {cut:?}; \
         {edits} edits, {local} changes of ours and {merged} of the other device's stored",
        started.elapsed()
    );
    for kind in ["edit", "notes", "confirm", "compact", "merge", "round"] {
        assert!(done.get(kind).copied().unwrap_or(0) >= 5, "seed {seed}: too few {kind} steps: {done:?}");
    }
    assert!(edits >= 100 && merged >= 100, "seed {seed}: too little work to mean much: {edits} edits, {merged} merged");
    assert_eq!(rounds, STORES, "seed {seed}: a store without a committed round");
}
