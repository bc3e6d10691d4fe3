//! The live channel's limits: closed at a revocation, pinged and dropped when
//! silent, at most so many per device, small frames only. Events are counted;
//! timeouts are hang guards.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use fieldsync_core::Role;
use fieldsync_server::{Hub, ServeOptions};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::common::*;
use crate::live::{connect, next_text};

const HOUR: Duration = Duration::from_secs(3600);

fn server(options: ServeOptions) -> (tempfile::TempDir, TestServer, Device, Device) {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]), options);
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    tina.sync(&server);
    (dir, server, olga, tina)
}

/// Read until the server closes; the reason of its close frame.
fn closed_by_server(ws: &mut WebSocket<TcpStream>) -> String {
    ws.get_ref().set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Policy);
                return frame.reason.to_string();
            }
            Ok(Message::Close(None)) => return String::new(),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return String::new(),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                panic!("the server kept the channel open")
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_revoked_devices_live_channels_close_at_once() {
    // Pings an hour apart: only the revocation itself can close the channels.
    let (_dir, server, _olga, tina) = server(ServeOptions { live_ping_interval: HOUR, ..ServeOptions::default() });
    let mut channels: Vec<_> = (0..2).map(|_| connect(&server, &tina.token, PROJECT).unwrap()).collect();
    server.hub.revoke_device(&tina.id).unwrap();
    for ws in &mut channels {
        assert_eq!(closed_by_server(ws), "device revoked");
    }
    assert_eq!(connect(&server, &tina.token, PROJECT).err(), Some(401));
}

#[test]
fn a_revocation_by_another_process_closes_the_channel_within_a_second() {
    // Pings an hour apart: the server's look at the store every second closes it.
    let (dir, server, _olga, tina) = server(ServeOptions { live_ping_interval: HOUR, ..ServeOptions::default() });
    let mut ws = connect(&server, &tina.token, PROJECT).unwrap();
    // `fieldsync admin revoke` opens the same data directory with a hub of its own.
    Hub::open(dir.path()).unwrap().revoke_device(&tina.id).unwrap();
    let reason = closed_by_server(&mut ws);
    assert!(reason.contains("revoked"), "{reason}");
}

#[test]
fn a_silent_channel_is_closed_and_one_that_answers_pings_is_kept() {
    let options = ServeOptions {
        live_ping_interval: Duration::from_millis(50),
        live_idle_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let (_dir, server, mut olga, tina) = server(options);
    // A client that reads answers each ping with a pong (tungstenite does on read).
    let mut answering = connect(&server, &tina.token, PROJECT).unwrap();
    // One that never reads nor writes a byte after the handshake.
    let silent = connect(&server, &tina.token, PROJECT).unwrap();
    let mut pings = 0;
    while pings < 20 {
        match answering.read().unwrap() {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Twenty pings took longer than the idle timeout: the silent one is gone...
    let mut raw = silent.into_inner();
    raw.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("nothing heard"), "{bytes:?}");
    // ...and the answering one still brings news.
    olga.replica.create_section(PROJECT, "s", &route()).unwrap();
    olga.round(&server);
    assert_eq!(next_text(&mut answering), "1");
}

#[test]
fn a_device_holds_at_most_four_live_channels_and_a_fifth_replaces_the_oldest() {
    let (_dir, server, mut olga, tina) = server(ServeOptions::default());
    let mut oldest = connect(&server, &tina.token, PROJECT).unwrap();
    let mut newer: Vec<_> = (0..4).map(|_| connect(&server, &tina.token, PROJECT).unwrap()).collect();
    let reason = closed_by_server(&mut oldest);
    assert!(reason.contains("replaced by a newer live channel"), "{reason}");
    // Another device's channel is not touched; the four newer ones all hear of a round.
    let mut olgas = connect(&server, &olga.token, PROJECT).unwrap();
    olga.replica.create_section(PROJECT, "s", &route()).unwrap();
    olga.round(&server);
    for ws in newer.iter_mut().chain([&mut olgas]) {
        assert_eq!(next_text(ws), "1");
    }
}

#[test]
fn a_message_over_a_kilobyte_closes_the_channel() {
    let (_dir, server, mut olga, tina) = server(ServeOptions::default());
    // Small messages are ignored.
    let mut ws = connect(&server, &tina.token, PROJECT).unwrap();
    ws.send(Message::Text("x".repeat(100).into())).unwrap();
    olga.replica.create_section(PROJECT, "s", &route()).unwrap();
    olga.round(&server);
    assert_eq!(next_text(&mut ws), "1");
    // A large one ends the channel, unread: the next round's notice does not come on it.
    ws.send(Message::Binary(vec![0u8; 64 * 1024].into())).unwrap();
    olga.replica.create_section(PROJECT, "t", &route()).unwrap();
    olga.round(&server);
    ws.get_ref().set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("the channel goes on: {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                panic!("the server kept the channel open")
            }
            Err(_) => break, // Closed or reset.
        }
    }
}
