//! core's live channel (`LiveChannel`) driving core's background sync
//! (`BackgroundSync`) against the real server, as an app wires them: an edit
//! on one online device reaches another online device without waiting for
//! the periodic sync, and the channel comes back after a server restart.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use fieldsync_core::{BackgroundSync, LiveChannel, LiveConfig, Role, SyncConfig, SyncEvent, SyncUpdate};

use crate::common::*;
use crate::proxy::Proxy;

/// Generous: this asserts that the edit arrives, not how fast (that is printed).
const ARRIVES_WITHIN: Duration = Duration::from_secs(30);

struct Online {
    phone: Phone,
    bg: BackgroundSync,
    live: LiveChannel,
    updates: mpsc::Receiver<SyncUpdate>,
}

fn online(phone: Phone, url: &str) -> Online {
    // The periodic sync is an hour away: only the live channel (or a local
    // edit) makes these devices sync during the test.
    let config = SyncConfig { interval_ms: 3_600_000, edit_debounce_ms: 10, min_backoff_ms: 50, max_backoff_ms: 500 };
    let (tx, updates) = mpsc::channel();
    let bg = BackgroundSync::start(
        std::sync::Arc::clone(&phone.client),
        config,
        Box::new(move |u| {
            let _ = tx.send(u);
        }),
    );
    let nudge = bg.notifier();
    let live_config = LiveConfig {
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..LiveConfig::default()
    };
    let live =
        LiveChannel::connect_with(url, &phone.token, PROJECT, live_config, move || nudge.notify(SyncEvent::Nudge))
            .unwrap();
    Online { phone, bg, live, updates }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < ARRIVES_WITHIN, "{what}: not within {ARRIVES_WITHIN:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

/// Wait for the background syncs in flight to settle.
fn drain(o: &Online) -> usize {
    let mut n = 0;
    while o.updates.recv_timeout(Duration::from_millis(300)).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn an_edit_reaches_the_other_online_device_through_the_live_channel() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let proxy = Proxy::start(server.addr);
    let url = proxy.url();
    let olga = online(Phone::enroll(&server, &url, dir.path(), "olga"), &url);
    let tina = online(Phone::enroll(&server, &url, dir.path(), "tina"), &url);
    wait_until("both live channels open", || olga.live.connected() && tina.live.connected());
    drain(&olga);
    drain(&tina);
    assert!(tina.phone.r().role_in(PROJECT).unwrap().is_some(), "the first background round ran");

    let started = Instant::now();
    let id = olga.phone.r().create_section(PROJECT, "live", &route()).unwrap();
    olga.bg.notify(SyncEvent::LocalEdit);
    let latency = wait_until("the edit reaches tina", || tina.phone.r().section(&id).is_ok());
    println!(
        "edit on olga → visible on tina in {latency:?} over loopback \
         (olga's debounced upload round, the live message, tina's round)"
    );
    let rounds = drain(&tina);
    println!("tina's background rounds for it: {rounds} (the nudge; a second one if a message arrived mid-round)");
    assert!(started.elapsed() < ARRIVES_WITHIN);

    // The server restarts (on a new port behind the same URL): the channel
    // reconnects by itself and nudges once, and the next edit arrives too.
    let hub_dir = dir.path().to_path_buf();
    server.stop();
    wait_until("the live channel notices the restart", || !tina.live.connected());
    let server = TestServer::start(std::sync::Arc::new(fieldsync_server::Hub::open(&hub_dir).unwrap()));
    proxy.retarget(server.addr);
    wait_until("both live channels reconnect", || olga.live.connected() && tina.live.connected());
    drain(&olga);
    drain(&tina);
    olga.phone.r().rename_section(&id, "after the restart").unwrap();
    olga.bg.notify(SyncEvent::LocalEdit);
    let latency =
        wait_until("the second edit reaches tina", || tina.phone.r().section(&id).unwrap().name == "after the restart");
    println!("after the server restart, edit → other device in {latency:?}");
    assert_eq!(server.hub.section_view(&id).unwrap().unwrap(), tina.phone.r().section(&id).unwrap());

    // Dropping the channel and background sync stops them promptly.
    let stopping = Instant::now();
    drop(tina.live);
    tina.bg.stop();
    println!("live channel + background sync stopped in {:?}", stopping.elapsed());
}

#[test]
fn wss_to_a_server_without_tls_fails_closed_and_retries() {
    // The TLS path (rustls, ring, the platform verifier) runs against a
    // server that speaks plain HTTP: no connection, no callback, and dropping
    // the channel stops it at once.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("tina", Role::Technician)]));
    let tina = Device::enroll(&server.hub, dir.path(), "tina");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let config = LiveConfig { min_backoff: Duration::from_millis(20), ..LiveConfig::default() };
    let url = format!("https://{}", server.addr);
    let live = LiveChannel::connect_with(&url, &tina.token, PROJECT, config, move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!live.connected());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    let stopping = Instant::now();
    drop(live);
    assert!(stopping.elapsed() < Duration::from_secs(5));
}
