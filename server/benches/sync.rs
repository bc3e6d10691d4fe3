//! Sync benchmark (issue 3): FieldSync's protocol against Automerge's own sync
//! protocol, side by side, on the same changes over the same in-process link.
//!
//! Workload: 1,000 sections; after a day offline the phone has 20 local
//! changes on each of 200 sections, and the server has 5 changes from another
//! device on each of 200 other sections. Each protocol runs over an in-process
//! link that counts message bytes each way and round trips; a fixed simulated
//! RTT is *counted* per round trip (not slept) and added to the measured
//! compute time. Then: an idle sync of 10,000 sections.
//!
//! ```sh
//! cargo bench -p fieldsync-server --bench sync
//! FIELDSYNC_BENCH_QUICK=1 cargo bench -p fieldsync-server --bench sync   # small sizes, targets not judged
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};
use fieldsync_core::pack;
use fieldsync_core::{
    ConstructionState, GeoPoint, Replica, ReplicaOptions, Role, SyncClient, Transport, TransportError,
};
use fieldsync_server::Hub;

const PROJECT: &str = "p1";
const RTT: Duration = Duration::from_millis(300);

/// The in-process link for FieldSync: `Hub::sync`, the production path, with
/// every byte and round trip counted.
struct Link {
    hub: Arc<Hub>,
    token: String,
    up: AtomicU64,
    down: AtomicU64,
    trips: AtomicU64,
    /// Time spent in `Hub::sync`, ns.
    hub_ns: AtomicU64,
}

impl Link {
    fn new(hub: &Arc<Hub>, token: &str) -> Arc<Link> {
        Arc::new(Link {
            hub: Arc::clone(hub),
            token: token.to_owned(),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            hub_ns: AtomicU64::new(0),
        })
    }

    /// Round trips, bytes up, bytes down and the hub's time since the last call.
    fn take(&self) -> (u64, u64, u64, Duration) {
        (
            self.trips.swap(0, Ordering::SeqCst),
            self.up.swap(0, Ordering::SeqCst),
            self.down.swap(0, Ordering::SeqCst),
            Duration::from_nanos(self.hub_ns.swap(0, Ordering::SeqCst)),
        )
    }
}

impl Transport for Link {
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.up.fetch_add(request.len() as u64, Ordering::SeqCst);
        let t = Instant::now();
        let answer = self
            .hub
            .sync(&self.token, &request, fieldsync_server::now_ms())
            .map_err(|e| TransportError::Server { status: e.status().0, body: e.body() })?;
        self.hub_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::SeqCst);
        self.down.fetch_add(answer.len() as u64, Ordering::SeqCst);
        Ok(answer)
    }
}

struct Phone {
    replica: Arc<Mutex<Replica>>,
    client: SyncClient,
    link: Arc<Link>,
}

fn phone(hub: &Arc<Hub>, dir: &std::path::Path, user: &str) -> Phone {
    let e = hub.enroll_device(user, user).unwrap();
    let mut r =
        Replica::open(dir.join(format!("{user}.db")), ReplicaOptions { device: e.device_id, ..Default::default() })
            .unwrap();
    r.join_project(PROJECT).unwrap();
    let replica = Arc::new(Mutex::new(r));
    let link = Link::new(hub, &e.token);
    let client = SyncClient::new(Arc::clone(&replica), link.clone()); // Default budgets.
    Phone { replica, client, link }
}

fn route() -> Vec<GeoPoint> {
    vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.015 }]
}

fn deflated(bytes: &[u8]) -> usize {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).unwrap();
    z.finish().unwrap().len()
}

/// Changes of `doc` that are not in `base`, raw, concatenated.
fn new_changes(doc: &Automerge, base: &[ChangeHash]) -> Vec<Vec<u8>> {
    doc.get_changes(base).into_iter().map(|c| c.raw_bytes().to_vec()).collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    trips: u64,
    up: u64,
    down: u64,
    compute: Duration,
}

impl Figures {
    fn bytes(&self) -> u64 {
        self.up + self.down
    }
    fn time(&self) -> Duration {
        self.compute + RTT * self.trips as u32
    }
}

/// Automerge's sync protocol, one generate/receive loop per document,
/// pipelined: each round trip carries the messages of every document that
/// has one, up in one batch and down in one batch. Returns the figures, and
/// the raw bytes of each round's batches (deflated too, as if the link
/// compressed every batch).
fn automerge_loop(
    phone: &mut [Automerge],
    server: &mut [Automerge],
    phone_states: &mut [sync::State],
    server_states: &mut [sync::State],
) -> (Figures, u64) {
    let started = Instant::now();
    let mut f = Figures::default();
    let mut deflated_total = 0u64;
    loop {
        let mut up: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, doc) in phone.iter().enumerate() {
            if let Some(m) = doc.generate_sync_message(&mut phone_states[i]) {
                up.push((i, m.encode()));
            }
        }
        if up.is_empty() {
            // Nothing to say up; does the server still have something to say?
            let any = server
                .iter()
                .enumerate()
                .any(|(i, d)| d.generate_sync_message(&mut server_states[i].clone()).is_some());
            if !any {
                break;
            }
        }
        f.trips += 1;
        // A document id travels with each message (a 32-hex-char section id).
        let mut batch = Vec::new();
        for (i, m) in &up {
            f.up += (m.len() + 32) as u64;
            batch.extend_from_slice(m);
            let msg = sync::Message::decode(m).unwrap();
            server[*i].receive_sync_message(&mut server_states[*i], msg).unwrap();
        }
        deflated_total += deflated(&batch) as u64;
        let mut down: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, doc) in server.iter().enumerate() {
            if let Some(m) = doc.generate_sync_message(&mut server_states[i]) {
                down.push((i, m.encode()));
            }
        }
        let mut batch = Vec::new();
        for (i, m) in &down {
            f.down += (m.len() + 32) as u64;
            batch.extend_from_slice(m);
            let msg = sync::Message::decode(m).unwrap();
            phone[*i].receive_sync_message(&mut phone_states[*i], msg).unwrap();
        }
        deflated_total += deflated(&batch) as u64;
        assert!(f.trips < 100, "the Automerge loop does not end");
    }
    f.compute = started.elapsed();
    (f, deflated_total)
}

fn main() {
    let quick = std::env::var_os("FIELDSYNC_BENCH_QUICK").is_some();
    let (sections, edited_local, edited_remote, idle_sections) =
        if quick { (100, 20, 20, 500) } else { (1_000, 200, 200, 10_000) };
    let (local_per, remote_per) = (20, 5);
    println!(
        "sync benchmark: {sections} sections, {edited_local}×{local_per} local and {edited_remote}×{remote_per} remote changes, RTT {RTT:?} counted per round trip"
    );

    let dir = tempfile::tempdir().unwrap();
    let hub = Arc::new(Hub::open(dir.path().join("hub")).unwrap());
    hub.create_project(PROJECT, fieldsync_core::ProjectConfig::default()).unwrap();
    for (user, role) in [("olga", Role::Office), ("fred", Role::Foreman), ("fiona", Role::Foreman)] {
        hub.add_member(PROJECT, user, role).unwrap();
    }

    // ---- setup: the office creates the sections; both foremen take them ----
    let setup = Instant::now();
    let office = phone(&hub, dir.path(), "olga");
    office.client.sync_now().unwrap();
    let ids: Vec<String> = {
        let mut r = office.replica.lock().unwrap();
        (0..sections).map(|i| r.create_section(PROJECT, &format!("section {i}"), &route()).unwrap()).collect()
    };
    office.client.sync_now().unwrap();
    let fred = phone(&hub, dir.path(), "fred"); // The phone measured.
    let fiona = phone(&hub, dir.path(), "fiona"); // The other device.
    fred.client.sync_now().unwrap();
    fiona.client.sync_now().unwrap();
    fred.client.sync_now().unwrap();
    // The base every side holds, for Automerge's side.
    let base: Vec<Vec<u8>> = {
        let mut r = fred.replica.lock().unwrap();
        ids.iter().map(|id| r.export(id).unwrap()).collect()
    };
    let base_heads: Vec<Vec<ChangeHash>> = base.iter().map(|b| Automerge::load(b).unwrap().get_heads()).collect();
    println!("setup (create, upload, bootstrap): {:.1} s", setup.elapsed().as_secs_f64());

    // ---- a day offline ----
    let offline = Instant::now();
    {
        let mut r = fred.replica.lock().unwrap();
        for id in &ids[..edited_local] {
            r.transition(id, ConstructionState::Surveyed, None).unwrap();
            for p in [5, 10, 15, 20] {
                r.record_progress(id, p).unwrap();
            }
            for k in 0..8 {
                r.report_location(id, GeoPoint { lat: 48.0001, lon: 11.0 + k as f64 * 0.0015 }).unwrap();
            }
            for k in 0..(local_per - 1 - 4 - 8 - 2) {
                let len = r.section(id).unwrap().notes.chars().count();
                r.splice_notes(id, len, 0, &format!("duct {k} laid at {} m. ", 12 * k + 3)).unwrap();
            }
            for k in 0..2 {
                r.add_photo(id, &format!("content://media/external/images/{k}"), Some("trench")).unwrap();
            }
        }
    }
    {
        let mut r = fiona.replica.lock().unwrap();
        for id in &ids[sections - edited_remote..] {
            r.record_progress(id, 5).unwrap();
            for k in 0..2 {
                r.report_location(id, GeoPoint { lat: 48.0002, lon: 11.001 + k as f64 * 0.002 }).unwrap();
            }
            r.splice_notes(id, 0, 0, "fiona: check the permit. ").unwrap();
            r.add_photo(id, "content://media/external/images/9", None).unwrap();
        }
    }
    fiona.client.sync_now().unwrap();
    fiona.link.take();
    println!("offline edits: {:.1} s", offline.elapsed().as_secs_f64());

    // The same new changes, for the floor and for Automerge's side.
    let (mut phone_docs, mut server_docs): (Vec<Automerge>, Vec<Automerge>) = (Vec::new(), Vec::new());
    let (mut up_raw, mut down_raw, mut n_up, mut n_down) = (Vec::new(), Vec::new(), 0, 0);
    let mut up_bundles = Vec::new();
    // The same changes packed as FieldSync's wire does (per section), without any framing.
    let (mut up_packed, mut down_packed) = (Vec::new(), Vec::new());
    {
        let mut fr = fred.replica.lock().unwrap();
        let mut fi = fiona.replica.lock().unwrap();
        for (i, id) in ids.iter().enumerate() {
            let mine = Automerge::load(&fr.export(id).unwrap()).unwrap();
            let theirs = Automerge::load(&fi.export(id).unwrap()).unwrap();
            let hashes: Vec<ChangeHash> = mine.get_changes(&base_heads[i]).iter().map(|c| c.hash()).collect();
            if !hashes.is_empty() {
                up_bundles.extend_from_slice(mine.bundle(hashes).unwrap().bytes());
            }
            let (m, t) = (new_changes(&mine, &base_heads[i]), new_changes(&theirs, &base_heads[i]));
            for c in &m {
                n_up += 1;
                up_raw.extend_from_slice(c);
            }
            for c in &t {
                n_down += 1;
                down_raw.extend_from_slice(c);
            }
            up_packed.extend(pack::pack(&m).concat());
            down_packed.extend(pack::pack(&t).concat());
            phone_docs.push(mine);
            server_docs.push(theirs);
        }
    }
    assert_eq!((n_up, n_down), (edited_local * local_per, edited_remote * remote_per));
    let floor_up = deflated(&up_raw);
    let floor_down = deflated(&down_raw);
    let floor = (floor_up + floor_down) as u64;
    println!(
        "for reference: the same up changes as one Automerge bundle per section (experimental columnar format): \
         {} B, {} B deflated together",
        up_bundles.len(),
        deflated(&up_bundles)
    );
    let (packed_up, packed_down) = (deflated(&up_packed), deflated(&down_packed));
    println!(
        "the same changes packed as on FieldSync's wire, no framing, deflated: {packed_up} B up, {packed_down} B down \
         ({} B together)",
        packed_up + packed_down
    );
    println!(
        "new changes: {n_up} up ({} B raw, {floor_up} B deflated), {n_down} down ({} B raw, {floor_down} B deflated)",
        up_raw.len(),
        down_raw.len()
    );

    // ---- FieldSync ----
    fred.link.take();
    let started = Instant::now();
    let report = fred.client.sync_now().unwrap();
    let compute = started.elapsed();
    let (trips, up, down, hub_time) = fred.link.take();
    let fs = Figures { trips, up, down, compute };
    let hub_ms = hub_time.as_secs_f64() * 1000.0;
    println!(
        "FieldSync compute {:.0} ms: the hub's round {hub_ms:.0} ms, the phone's side (prepare, commit) {:.0} ms",
        compute.as_secs_f64() * 1000.0,
        compute.as_secs_f64() * 1000.0 - hub_ms
    );
    assert_eq!(report.confirmed, n_up);
    assert_eq!(report.new_changes, n_down);

    // ---- Automerge's sync protocol, on the same documents and changes ----
    // Sync states as persisted after the last sync (shared heads = the base),
    // the most favourable start for it.
    let mut phone_states = Vec::new();
    let mut server_states = Vec::new();
    {
        let mut a: Vec<Automerge> = base.iter().map(|b| Automerge::load(b).unwrap()).collect();
        let mut s = a.clone();
        let mut ps: Vec<sync::State> = (0..sections).map(|_| sync::State::new()).collect();
        let mut ss: Vec<sync::State> = (0..sections).map(|_| sync::State::new()).collect();
        automerge_loop(&mut a, &mut s, &mut ps, &mut ss);
        for (p, s) in ps.iter().zip(&ss) {
            phone_states.push(sync::State::decode(&p.encode()).unwrap());
            server_states.push(sync::State::decode(&s.encode()).unwrap());
        }
    }
    // The same with fresh sync states (a new connection that kept no state:
    // heads, then Bloom filters of every change, then the changes).
    let (mut fresh_phone, mut fresh_server) = (phone_docs.clone(), server_docs.clone());
    let mut fp: Vec<sync::State> = (0..sections).map(|_| sync::State::new()).collect();
    let mut fsrv: Vec<sync::State> = (0..sections).map(|_| sync::State::new()).collect();
    let (am_fresh, am_fresh_deflated) = automerge_loop(&mut fresh_phone, &mut fresh_server, &mut fp, &mut fsrv);
    let (am, am_deflated) = automerge_loop(&mut phone_docs, &mut server_docs, &mut phone_states, &mut server_states);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(phone_docs[i].get_heads(), server_docs[i].get_heads(), "automerge converged on {id}");
    }

    // ---- idle sync of many sections ----
    let idle = idle_sync(&hub, dir.path(), idle_sections);

    // ---- report ----
    let ratio_floor = fs.bytes() as f64 / floor as f64;
    let vs_automerge = am.bytes() as f64 / fs.bytes() as f64;
    let vs_automerge_deflated = am_deflated as f64 / fs.bytes() as f64;
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let judge = |ok: bool| {
        if quick {
            "(quick: not judged)"
        } else if ok {
            "**met**"
        } else {
            "**missed**"
        }
    };
    println!();
    println!("| Figure | FieldSync | Automerge sync (pipelined) | Target | Met? |");
    println!("|---|---|---|---|---|");
    println!("| Round trips | {} | {} | 1 | {} |", fs.trips, am.trips, judge(fs.trips == 1));
    println!("| Bytes up (phone → server) | {} | {} | — | — |", fs.up, am.up);
    println!("| Bytes down (server → phone) | {} | {} | — | — |", fs.down, am.down);
    println!(
        "| Bytes total | {} | {} ({} if each batch were deflated) | ≥ 5× fewer than Automerge | {} ({:.1}×; {:.1}× vs deflated batches) |",
        fs.bytes(),
        am.bytes(),
        am_deflated,
        judge(vs_automerge >= 5.0),
        vs_automerge,
        vs_automerge_deflated
    );
    println!(
        "| Floor: new changes deflated (up + down) | {floor} ({floor_up} + {floor_down}) | | bytes ≤ 1.25× floor | {} ({ratio_floor:.3}×) |",
        judge(ratio_floor <= 1.25)
    );
    println!(
        "| Automerge with fresh sync states: round trips, bytes up + down | | {} trips, {} + {} = {} ({} deflated per batch; {:.1}× FieldSync) | — | — |",
        am_fresh.trips,
        am_fresh.up,
        am_fresh.down,
        am_fresh.bytes(),
        am_fresh_deflated,
        am_fresh.bytes() as f64 / fs.bytes() as f64
    );
    println!("| Compute (both sides, in-process) | {} | {} | — | — |", ms(fs.compute), ms(am.compute));
    println!("| Time incl. {} × RTT | {} | {} | — | — |", ms(RTT), ms(fs.time()), ms(am.time()));
    println!(
        "| Idle sync of {idle_sections} sections: request + response bytes | {} + {} = {} ({} round trip) | {} + {} = {} | ≤ 1 KB | {} |",
        idle.0.up,
        idle.0.down,
        idle.0.bytes(),
        idle.0.trips,
        idle.1.up,
        idle.1.down,
        idle.1.bytes(),
        judge(idle.0.bytes() <= 1024)
    );
}

/// A phone holding `n` sections, fully synced, syncs again with nothing new
/// either way. Returns FieldSync's figures and Automerge's (one heads
/// message per document each way).
fn idle_sync(hub: &Arc<Hub>, dir: &std::path::Path, n: usize) -> (Figures, Figures) {
    let started = Instant::now();
    hub.create_project("big", fieldsync_core::ProjectConfig::default()).unwrap();
    hub.add_member("big", "otto", Role::Office).unwrap();
    let e = hub.enroll_device("otto", "otto").unwrap();
    let mut r =
        Replica::open(dir.join("otto.db"), ReplicaOptions { device: e.device_id, ..Default::default() }).unwrap();
    r.join_project("big").unwrap();
    let replica = Arc::new(Mutex::new(r));
    let link = Link::new(hub, &e.token);
    let client = SyncClient::new(Arc::clone(&replica), link.clone());
    client.sync_now().unwrap();
    let mut docs = Vec::with_capacity(n);
    {
        let mut r = replica.lock().unwrap();
        for i in 0..n {
            let id = r.create_section("big", &format!("s{i}"), &route()).unwrap();
            docs.push(Automerge::load(&r.export(&id).unwrap()).unwrap());
        }
    }
    client.sync_now().unwrap();
    println!("idle setup ({n} sections created and uploaded): {:.1} s", started.elapsed().as_secs_f64());
    link.take();
    let t = Instant::now();
    let report = client.sync_now().unwrap();
    let compute = t.elapsed();
    let (trips, up, down, _) = link.take();
    assert_eq!((report.confirmed, report.new_changes), (0, 0));
    let fs = Figures { trips, up, down, compute };

    // Automerge: both sides hold the same documents with persisted states.
    let mut server = docs.clone();
    let mut ps: Vec<sync::State> = (0..n).map(|_| sync::State::new()).collect();
    let mut ss: Vec<sync::State> = (0..n).map(|_| sync::State::new()).collect();
    automerge_loop(&mut docs, &mut server, &mut ps, &mut ss);
    let mut ps: Vec<sync::State> = ps.iter().map(|s| sync::State::decode(&s.encode()).unwrap()).collect();
    let mut ss: Vec<sync::State> = ss.iter().map(|s| sync::State::decode(&s.encode()).unwrap()).collect();
    let (am, _) = automerge_loop(&mut docs, &mut server, &mut ps, &mut ss);
    (fs, am)
}
