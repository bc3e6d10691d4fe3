//! Crash safety: a writer process is killed with SIGKILL at random moments,
//! many times over one store. After every kill the database must pass
//! SQLite's integrity check and hold every edit the writer saw returned, with
//! the stored view matching the stored document.
//!
//! The writer is [`child_writer`], a test of this same binary that does
//! nothing unless `FIELDSYNC_CRASH_CHILD` names a database; the parent test
//! re-executes the binary to run only it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fieldsync_core::{
    ConstructionState, FORWARD, GeoPoint, Member, PastPoint, ProjectConfig, Replica, ReplicaOptions, Role,
};

use crate::common::{PROJECT, route};

const CHILD_ENV: &str = "FIELDSYNC_CRASH_CHILD";
const SEED_ENV: &str = "FIELDSYNC_CRASH_SEED";
const DEVICE: &str = "crash-dev";
/// Marks the writer's own lines: with `--nocapture` the harness may print on the same line.
const MARK: &str = "@@ ";
const ITERATIONS: u64 = 30;

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

fn options() -> ReplicaOptions {
    ReplicaOptions { device: DEVICE.into(), ..Default::default() }
}

/// The writer. Runs only when re-executed by [`a_writer_killed_at_random_moments_loses_nothing_it_reported`].
#[test]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let seed: u64 = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let out = std::io::stdout();
    let say = |line: &str| {
        let mut out = out.lock();
        writeln!(out, "\n{MARK}{line}").unwrap();
        out.flush().unwrap();
    };
    let mut r = Replica::open(&path, options()).unwrap();
    if r.role_in(PROJECT).unwrap() != Some(Role::Office) {
        r.set_roster(PROJECT, &[Member { actor: r.actor(), user: "crash".into(), role: Role::Office }]).unwrap();
    }
    let id = match r.list_sections(Some(PROJECT), None, 1).unwrap().pop() {
        Some(s) => s.id,
        None => r.create_section(PROJECT, "crash test", &route()).unwrap(),
    };
    say(&format!("ready {id}"));
    let config = ProjectConfig::default();
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let latest_local = |r: &Replica| -> String {
        r.connection()
            .query_row("SELECT hash FROM changes WHERE local = 1 ORDER BY seq DESC LIMIT 1", [], |row| row.get(0))
            .unwrap()
    };
    let next_state = |s: ConstructionState| match s {
        ConstructionState::Completed => ConstructionState::Trenched,
        s => FORWARD[s.step().expect("never blocked") + 1],
    };
    for n in 0u64.. {
        let roll = xorshift(&mut rng) % 20;
        let view = r.section(&id).unwrap();
        let band = config.band(view.state);
        match roll {
            0..=6 => {
                let receipt = if view.state == ConstructionState::Completed || view.progress == band.max {
                    r.transition(&id, next_state(view.state), None).unwrap()
                } else if view.progress > band.max {
                    // After rework the office rolls progress back into the band.
                    r.record_progress(&id, i64::from(band.min)).unwrap()
                } else {
                    let step = 1 + xorshift(&mut rng) % 5;
                    let p = (u64::from(view.progress) + step).max(u64::from(band.min)).min(u64::from(band.max));
                    r.record_progress(&id, p as i64).unwrap()
                };
                say(&format!("ok edit {} {}", receipt.edit_id, receipt.change_hash));
            }
            7..=10 => {
                let lon = 11.0 + (xorshift(&mut rng) % 1000) as f64 * 0.000_015;
                let receipt = r.report_location(&id, GeoPoint { lat: 48.0, lon }).unwrap();
                say(&format!("ok edit {} {}", receipt.edit_id, receipt.change_hash));
            }
            11..=12 => {
                let receipt = r.transition(&id, next_state(view.state), None).unwrap();
                say(&format!("ok edit {} {}", receipt.edit_id, receipt.change_hash));
            }
            13..=14 => {
                r.set_notes(&id, &format!("crew note {seed}/{n}: {}", "gravel ".repeat((n % 7) as usize))).unwrap();
                say(&format!("ok notes {}", latest_local(&r)));
            }
            15..=16 => {
                let len = view.notes.chars().count();
                r.splice_notes(&id, len, 0, &format!(" +{n}")).unwrap();
                say(&format!("ok notes {}", latest_local(&r)));
            }
            17 => {
                // As if the server acknowledged everything sent so far.
                let hashes: Vec<String> = r.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect();
                say("try confirm");
                r.confirm(&hashes).unwrap();
                say(&format!("ok confirm {}", hashes.len()));
            }
            _ => {
                let folded = r.compact(0, 100).unwrap();
                say(&format!("ok compact {folded}"));
            }
        }
    }
}

/// What the writer reported, over every run.
#[derive(Default)]
struct Reported {
    edits: BTreeSet<String>,
    hashes: BTreeSet<String>,
    /// Reported since the last reported confirm: must still be in the outbox.
    unconfirmed: BTreeSet<String>,
    compactions: usize,
    confirms: usize,
    latest_edit: Option<String>,
}

/// Run the writer once against `db`, kill it after `delay`, and return its lines.
fn run_and_kill(db: &Path, seed: u64, delay: Duration, wait_for_ready: bool, err_log: &Path) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash::child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .env(SEED_ENV, seed.to_string())
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
    if wait_for_ready {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lines.last().is_some_and(|l: &String| l.starts_with("ready")) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => lines.push(l),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("writer not ready ({e}): {}", std::fs::read_to_string(err_log).unwrap_or_default());
                }
            }
        }
    }
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().unwrap() {
        panic!("the writer stopped by itself ({status}): {}", std::fs::read_to_string(err_log).unwrap_or_default());
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    lines
}

/// Open the store after a kill and check it against what the writer reported.
fn check_store(db: &Path, reported: &Reported, killed_in_confirm: bool, iteration: u64) {
    {
        let raw = rusqlite::Connection::open(db).unwrap();
        let check: Vec<String> = raw
            .prepare("PRAGMA integrity_check")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(check, ["ok"], "iteration {iteration}");
    }
    let mut r = Replica::open(db, options()).unwrap_or_else(|e| panic!("iteration {iteration}: {e}"));
    let Some(section) = r.list_sections(Some(PROJECT), None, 2).unwrap().pop() else {
        assert!(reported.hashes.is_empty(), "iteration {iteration}: edits reported but no section");
        return;
    };
    assert_eq!(r.list_sections(None, None, 10).unwrap().len(), 1, "iteration {iteration}");
    let id = section.id;

    let history = r.history(&id).unwrap();
    let in_doc: BTreeSet<&str> = history.iter().map(|h| h.hash.as_str()).collect();
    let missing: Vec<&String> = reported.hashes.iter().filter(|h| !in_doc.contains(h.as_str())).collect();
    assert!(missing.is_empty(), "iteration {iteration}: reported changes lost: {missing:?}");

    let audit = r.audit(&id).unwrap();
    let edit_ids: BTreeSet<&str> = audit.iter().map(|a| a.edit_id.as_str()).collect();
    let lost: Vec<&String> = reported.edits.iter().filter(|e| !edit_ids.contains(e.as_str())).collect();
    assert!(lost.is_empty(), "iteration {iteration}: reported edits lost: {lost:?}");
    // The only writer validated each write before storing it.
    let refused: Vec<_> = audit.iter().filter(|a| !a.decision.applied()).collect();
    assert!(refused.is_empty(), "iteration {iteration}: {refused:?}");

    if !killed_in_confirm {
        let outbox: BTreeSet<String> = r.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect();
        let gone: Vec<&String> = reported.unconfirmed.difference(&outbox).collect();
        assert!(gone.is_empty(), "iteration {iteration}: unconfirmed changes left the outbox: {gone:?}");
    }

    // The stored view was committed with the changes: it is the view of the stored document.
    let view = r.section(&id).unwrap();
    let deps: BTreeSet<&str> = history.iter().flat_map(|h| h.deps.iter().map(String::as_str)).collect();
    let heads: BTreeSet<&str> = in_doc.difference(&deps).copied().collect();
    assert_eq!(view.heads.iter().map(String::as_str).collect::<BTreeSet<_>>(), heads, "iteration {iteration}");
    assert_eq!(r.view_at(&id, &PastPoint::Heads(view.heads.clone())).unwrap(), view, "iteration {iteration}");
}

#[test]
fn a_writer_killed_at_random_moments_loses_nothing_it_reported() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // We are the writer's process.
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let started = Instant::now();
    let mut reported = Reported::default();
    let mut killed_mid_stream = 0;
    for i in 0..ITERATIONS {
        let mut rng = (i + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let delay = Duration::from_millis(2 + xorshift(&mut rng) % 100);
        // Most runs are killed while editing; every fifth possibly while still opening.
        let wait_for_ready = i % 5 != 4;
        let err_log = dir.path().join(format!("writer-{i}.stderr"));
        let lines = run_and_kill(&db, i, delay, wait_for_ready, &err_log);

        let before = reported.latest_edit.clone();
        let mut first_of_run = true;
        let mut killed_in_confirm = false;
        for line in &lines {
            let words: Vec<&str> = line.split(' ').collect();
            killed_in_confirm = false;
            match words[..] {
                ["ready", _] => {}
                ["ok", "edit", edit_id, hash] => {
                    if first_of_run && let Some(before) = &before {
                        // The clock runs forward across crashes and reopens.
                        assert!(edit_id > before.as_str(), "iteration {i}: {edit_id} not after {before}");
                    }
                    first_of_run = false;
                    reported.latest_edit = Some(edit_id.to_owned());
                    reported.edits.insert(edit_id.into());
                    reported.hashes.insert(hash.into());
                    reported.unconfirmed.insert(hash.into());
                }
                ["ok", "notes", hash] => {
                    reported.hashes.insert(hash.into());
                    reported.unconfirmed.insert(hash.into());
                }
                ["try", "confirm"] => killed_in_confirm = true,
                ["ok", "confirm", _] => {
                    reported.confirms += 1;
                    reported.unconfirmed.clear();
                }
                ["ok", "compact", _] => reported.compactions += 1,
                _ => panic!("unexpected line from the writer: {line:?}"),
            }
        }
        if lines.len() > 1 {
            killed_mid_stream += 1;
        }
        check_store(&db, &reported, killed_in_confirm, i);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "crash test: {ITERATIONS} kills ({killed_mid_stream} mid-stream), {} edits, {} changes, {} confirms, {} compactions reported, in {elapsed:?}",
        reported.edits.len(),
        reported.hashes.len(),
        reported.confirms,
        reported.compactions
    );
    assert!(killed_mid_stream >= ITERATIONS as usize / 2, "too few kills landed while the writer was editing");
    assert!(reported.edits.len() >= 100, "too few edits to mean much: {}", reported.edits.len());
    assert!(reported.compactions > 0 && reported.confirms > 0);
}
