//! An action fuzzer in the style of loro's `crates/fuzz`: a sequence of
//! [`Action`]s (edits, syncs, lost and duplicated responses, crashes,
//! partitions, skewed clocks, server restarts, reinstalls) across a few
//! peers and one hub, then the network heals, everyone syncs, and the same
//! invariants as the simulator's are checked. A property-based test
//! generates the sequences and shrinks a failing one to a minimal list;
//! every minimal list found is kept as a fixture test.
//!
//! Unlike the simulator there is no network model: each sync is the real
//! `SyncClient::sync_now` over a transport calling `Hub::sync` at once, so a
//! sequence states exactly which interleaving it means.

use std::path::Path;
use std::sync::{Arc, Mutex};

use fieldsync_core::{DeviceTime, ProjectConfig, Replica, ReplicaError, Role, SyncClient, TransportError};
use fieldsync_server::Hub;
use serde::{Deserialize, Serialize};

use crate::device::{self, Phone};
use crate::invariants::{self, Ack, Subject};
use crate::rng::Rng;
use crate::server::transport_error;
use crate::sim::{EPOCH_MS, phone};
use crate::workload::{self, EditKind, Plan};

/// Peers: an office device, a foreman and two technicians.
pub const PEERS: usize = 4;
/// Sections the office plans.
pub const SECTIONS: usize = 3;
const PROJECT: &str = "fuzz";

/// One step of a fuzz case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `peer` attempts an edit of `kind` on `section`; `seed` draws its values.
    Edit {
        /// Which peer (modulo [`PEERS`]).
        peer: u8,
        /// Which section (modulo the sections there are).
        section: u8,
        /// What kind of edit.
        kind: EditKind,
        /// Seed for its values.
        seed: u16,
    },
    /// `peer` syncs.
    Sync {
        /// Which peer.
        peer: u8,
    },
    /// `peer` syncs, but the first response is lost after the server committed.
    SyncLostResponse {
        /// Which peer.
        peer: u8,
    },
    /// `peer` syncs, and its first request reaches the server twice.
    SyncDuplicated {
        /// Which peer.
        peer: u8,
    },
    /// `peer` syncs, but its first request is held back in the network (the
    /// device sees a timeout) until [`Action::ReleaseHeld`].
    SyncHeld {
        /// Which peer.
        peer: u8,
    },
    /// Every held request reaches the hub now, late; the answers go nowhere.
    ReleaseHeld,
    /// `peer`'s app is killed and reopened from its files.
    Crash {
        /// Which peer.
        peer: u8,
    },
    /// `peer` loses (or regains) the server: its syncs fail until toggled back.
    Partition {
        /// Which peer.
        peer: u8,
    },
    /// `peer`'s clock becomes `hours` wrong.
    Skew {
        /// Which peer.
        peer: u8,
        /// Hours off (negative: behind).
        hours: i8,
    },
    /// The hub is dropped and reopened on its data dir.
    RestartServer,
    /// `peer`'s app is reinstalled with an empty store (same token).
    Reinstall {
        /// Which peer.
        peer: u8,
    },
    /// Time passes.
    Wait {
        /// Minutes.
        minutes: u8,
    },
}

struct Peer {
    name: String,
    role: Role,
    token: String,
    install: u32,
    /// Its clock and ids, which every store it opens reads.
    phone: Phone,
    replica: Arc<Mutex<Replica>>,
    partitioned: bool,
    skew_ms: i64,
    acks: Vec<Ack>,
}

/// A request held back in the network: its token and body.
type Held = (String, Vec<u8>);

struct Fuzz {
    dir: std::path::PathBuf,
    hub: Arc<Hub>,
    peers: Vec<Peer>,
    plan: Plan,
    now: u64,
    /// Requests held back in the network.
    held: Arc<Mutex<Vec<Held>>>,
}

fn lock(r: &Arc<Mutex<Replica>>) -> std::sync::MutexGuard<'_, Replica> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

enum Delivery {
    Once,
    LoseFirstResponse,
    DuplicateFirst,
    HoldFirst,
}

impl Fuzz {
    fn clock(&self, p: usize) {
        // A wall clock only: the fuzzer's phones know no time since boot.
        let wall = (EPOCH_MS + self.now).saturating_add_signed(self.peers[p].skew_ms);
        self.peers[p].phone.clock.set(DeviceTime::wall(wall));
    }

    fn path(dir: &Path, name: &str, install: u32) -> std::path::PathBuf {
        dir.join(format!("{name}-{install}.db"))
    }

    fn sync(&mut self, p: usize, delivery: Delivery) -> Result<(), String> {
        self.clock(p);
        let peer = &self.peers[p];
        if peer.partitioned {
            return Ok(());
        }
        let (hub, token, now) = (self.hub.clone(), peer.token.clone(), EPOCH_MS + self.now);
        let first = Mutex::new(true);
        let held = self.held.clone();
        let transport = move |body: Vec<u8>| -> Result<Vec<u8>, TransportError> {
            let is_first = std::mem::replace(&mut *first.lock().unwrap_or_else(|p| p.into_inner()), false);
            if is_first && matches!(delivery, Delivery::HoldFirst) {
                held.lock().unwrap_or_else(|p| p.into_inner()).push((token.clone(), body));
                return Err(TransportError::Unreachable("timed out".into()));
            }
            let answer = hub.sync(&token, &body, now).map_err(|e| transport_error(&e));
            match delivery {
                Delivery::LoseFirstResponse if is_first => Err(TransportError::Unreachable("response lost".into())),
                Delivery::DuplicateFirst if is_first => hub.sync(&token, &body, now).map_err(|e| transport_error(&e)),
                _ => answer,
            }
        };
        let client = SyncClient::new(peer.replica.clone(), Arc::new(transport));
        match client.sync_now() {
            Ok(_) | Err(fieldsync_core::SyncError::Transport(TransportError::Unreachable(_))) => Ok(()),
            Err(e) => Err(format!("{}: sync failed: {e}", peer.name)),
        }
    }

    fn apply(&mut self, action: Action) -> Result<(), String> {
        self.now += 30_000;
        let peer = |p: u8| p as usize % PEERS;
        match action {
            Action::Edit { peer: p, section, kind, seed } => {
                let p = peer(p);
                self.clock(p);
                let ids: Vec<String> = self.plan.sections.iter().map(|s| s.id.clone()).collect();
                let id = &ids[section as usize % ids.len()];
                let replica = self.peers[p].replica.clone();
                let mut r = lock(&replica);
                let Ok(view) = r.section(id) else { return Ok(()) };
                let name = self.peers[p].name.clone();
                let kind = if kind == EditKind::NewSection && self.peers[p].role != Role::Office {
                    EditKind::Notes
                } else {
                    kind
                };
                match workload::perform(kind, &mut r, &view, &mut self.plan, &name, &mut Rng::new(u64::from(seed))) {
                    Ok(Some(done)) => {
                        let install = self.peers[p].install;
                        self.peers[p].acks.push(Ack {
                            section: done.section,
                            hash: done.change_hash,
                            install,
                            wiped: false,
                        });
                    }
                    Ok(None) | Err(ReplicaError::Refused { .. } | ReplicaError::UnknownSection(_)) => {}
                    Err(e) => return Err(format!("{name}: {} failed: {e}", kind.as_str())),
                }
            }
            Action::Sync { peer: p } => self.sync(peer(p), Delivery::Once)?,
            Action::SyncLostResponse { peer: p } => self.sync(peer(p), Delivery::LoseFirstResponse)?,
            Action::SyncDuplicated { peer: p } => self.sync(peer(p), Delivery::DuplicateFirst)?,
            Action::SyncHeld { peer: p } => self.sync(peer(p), Delivery::HoldFirst)?,
            Action::ReleaseHeld => {
                let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
                for (token, body) in held {
                    let _ = self.hub.sync(&token, &body, EPOCH_MS + self.now);
                }
            }
            Action::Crash { peer: p } => {
                let p = peer(p);
                let path = lock(&self.peers[p].replica).path().to_owned();
                let name = self.peers[p].name.clone();
                let placeholder = self.peers[p]
                    .phone
                    .open(&self.dir.join("placeholder.db"), "placeholder")
                    .map_err(|e| e.to_string())?;
                let old = std::mem::replace(&mut self.peers[p].replica, placeholder);
                device::crash(old).map_err(|e| format!("{name}: crash: {e}"))?;
                self.clock(p);
                self.peers[p].replica =
                    self.peers[p].phone.open(&path, &name).map_err(|e| format!("{name}: reopen: {e}"))?;
            }
            Action::Partition { peer: p } => {
                let p = peer(p);
                self.peers[p].partitioned = !self.peers[p].partitioned;
            }
            Action::Skew { peer: p, hours } => self.peers[peer(p)].skew_ms = i64::from(hours) * 3_600_000,
            Action::RestartServer => {
                let dir = self.dir.join("hub");
                // Only the fuzzer holds the hub between calls.
                self.hub = Arc::new(Hub::open(&dir).map_err(|e| format!("hub restart: {e}"))?);
            }
            Action::Reinstall { peer: p } => {
                let p = peer(p);
                if p == 0 {
                    return Ok(()); // The office keeps its planning device.
                }
                let unsent: Vec<String> = lock(&self.peers[p].replica)
                    .outbox(usize::MAX)
                    .map(|o| o.into_iter().map(|c| c.hash).collect())
                    .unwrap_or_default();
                let install = self.peers[p].install;
                for a in self.peers[p].acks.iter_mut().filter(|a| a.install == install && unsent.contains(&a.hash)) {
                    a.wiped = true;
                }
                let name = self.peers[p].name.clone();
                let old_path = Fuzz::path(&self.dir, &name, install);
                let new_path = Fuzz::path(&self.dir, &name, install + 1);
                self.clock(p);
                let fresh = self.peers[p].phone.open(&new_path, &name).map_err(|e| e.to_string())?;
                lock(&fresh).join_project(PROJECT).map_err(|e| e.to_string())?;
                drop(std::mem::replace(&mut self.peers[p].replica, fresh));
                device::wipe(&old_path);
                self.peers[p].install += 1;
            }
            Action::Wait { minutes } => self.now += u64::from(minutes) * 60_000,
        }
        Ok(())
    }
}

/// What a case did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// Edits acknowledged.
    pub edits: usize,
    /// Conflict records on the server at the end.
    pub conflicts: u64,
}

/// Run `actions` from a fresh hub and [`PEERS`] peers with [`SECTIONS`]
/// sections, heal, sync everyone, check the invariants. `Err` says which broke.
pub fn run_actions(actions: &[Action]) -> Result<FuzzOutcome, String> {
    let tmp = tempfile::Builder::new()
        .prefix("fieldsync-fuzz-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            Path::new("/dev/shm").to_owned()
        } else {
            std::env::temp_dir()
        })
        .map_err(|e| e.to_string())?;
    run_in(tmp.path(), actions)
}

fn run_in(dir: &Path, actions: &[Action]) -> Result<FuzzOutcome, String> {
    let hub_dir = dir.join("hub");
    std::fs::create_dir_all(&hub_dir).map_err(|e| e.to_string())?;
    let hub = Arc::new(Hub::open(&hub_dir).map_err(|e| e.to_string())?);
    hub.create_project(PROJECT, ProjectConfig::default()).map_err(|e| e.to_string())?;
    let people = [
        ("office", Role::Office),
        ("foreman", Role::Foreman),
        ("tech1", Role::Technician),
        ("tech2", Role::Technician),
    ];
    let mut peers = Vec::new();
    for (i, (name, role)) in people.into_iter().enumerate() {
        hub.add_member_at(PROJECT, name, role, EPOCH_MS).map_err(|e| e.to_string())?;
        let token = hub.enroll_device(name, name).map_err(|e| e.to_string())?.token;
        let phone = phone(0xF022, i as u64);
        phone.clock.set(DeviceTime::wall(EPOCH_MS));
        let replica = phone.open(&Fuzz::path(dir, name, 0), name).map_err(|e| e.to_string())?;
        lock(&replica).join_project(PROJECT).map_err(|e| e.to_string())?;
        peers.push(Peer {
            name: name.into(),
            role,
            token,
            install: 0,
            phone,
            replica,
            partitioned: false,
            skew_ms: 0,
            acks: Vec::new(),
        });
    }
    let plan = Plan::new(PROJECT, SECTIONS, 1, 0.0, &mut Rng::new(5));
    let mut f = Fuzz { dir: dir.to_owned(), hub, peers, plan, now: 0, held: Arc::default() };
    f.sync(0, Delivery::Once)?;
    f.clock(0);
    for s in f.plan.sections.clone() {
        lock(&f.peers[0].replica)
            .create_section_with_id(&s.id, PROJECT, &s.id, &s.points)
            .map_err(|e| e.to_string())?;
    }
    for _ in 0..2 {
        for p in 0..PEERS {
            f.sync(p, Delivery::Once)?;
        }
    }
    for a in actions {
        f.apply(*a)?;
    }
    // Heal: no partitions; everyone syncs until nothing moves (three passes suffice).
    f.now += 3_600_000;
    for p in &mut f.peers {
        p.partitioned = false;
    }
    f.apply(Action::ReleaseHeld)?;
    for _ in 0..3 {
        for p in 0..PEERS {
            f.sync(p, Delivery::Once)?;
        }
    }
    let subjects: Vec<Subject<'_>> = f
        .peers
        .iter()
        .map(|p| Subject { name: &p.name, replica: Some(&p.replica), revoked: false, removed: false, acks: &p.acks })
        .collect();
    let checked = invariants::check(Some(&f.hub), &hub_dir, PROJECT, &subjects, None, EPOCH_MS + f.now);
    if checked.violations.is_empty() {
        Ok(FuzzOutcome {
            edits: f.peers.iter().map(|p| p.acks.len()).sum(),
            conflicts: checked.conflicts_by_kind.values().sum(),
        })
    } else {
        Err(checked
            .violations
            .iter()
            .map(|v| format!("{}: {}", v.invariant.as_str(), v.detail))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
