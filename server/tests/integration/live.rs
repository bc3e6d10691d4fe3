//! The live channel: a WebSocket per project that says when the feed grew.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use fieldsync_core::Role;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::common::*;

pub fn connect(server: &TestServer, token: &str, project: &str) -> Result<WebSocket<TcpStream>, u16> {
    connect_to(server, token, &format!("/v1/live?project={project}")).map_err(|(status, _)| status)
}

/// A WebSocket handshake to `path`; a refusal as its status and body.
fn connect_to(server: &TestServer, token: &str, path: &str) -> Result<WebSocket<TcpStream>, (u16, Vec<u8>)> {
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("ws://{}{path}", server.addr).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    match tungstenite::client(req, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err((r.status().as_u16(), r.body().clone().unwrap_or_default()))
        }
        Err(e) => panic!("{e}"),
    }
}

pub fn next_text(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn an_upload_wakes_the_other_online_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    tina.sync(&server);
    let mut ws = connect(&server, &tina.token, PROJECT).unwrap();

    let started = Instant::now();
    let id = olga.replica.create_section(PROJECT, "s", &route()).unwrap();
    olga.round(&server);
    let seq: u64 = next_text(&mut ws).parse().unwrap();
    assert_eq!(seq, 1);
    // Woken, tina syncs and has the edit: two round trips after olga's.
    let r = tina.round(&server);
    assert_eq!(r.changes.len(), 1);
    assert_eq!(tina.replica.section(&id).unwrap().name, "s");
    println!("edit reached the other device in {:?} on loopback", started.elapsed());

    // A round that uploads nothing wakes nobody; the next upload does.
    olga.round(&server);
    olga.replica.rename_section(&id, "t").unwrap();
    olga.round(&server);
    assert_eq!(next_text(&mut ws), "2");
    ws.close(None).unwrap();
}

#[test]
fn a_new_device_in_the_roster_wakes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    tina.sync(&server);
    let mut ws = connect(&server, &tina.token, PROJECT).unwrap();
    // olga's first round binds her actor: the roster grows, the feed does not.
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    olga.round(&server);
    assert_eq!(next_text(&mut ws), "0");
    let r = tina.round(&server);
    assert!(r.roster && r.changes.is_empty(), "woken, tina learns of the new member");
    assert_eq!(tina.replica.roster(PROJECT).unwrap().members().count(), 2);
}

#[test]
fn the_live_channel_checks_the_token_and_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("tina", Role::Technician)]));
    let tina = Device::enroll(&server.hub, dir.path(), "tina");
    server.hub.create_project("p2", fieldsync_core::ProjectConfig::default()).unwrap();
    assert_eq!(connect(&server, "wrong", PROJECT).err(), Some(401));
    assert_eq!(connect(&server, &tina.token, "p2").err(), Some(403));
    assert_eq!(connect(&server, &tina.token, "nope").err(), Some(404));
    assert!(connect(&server, &tina.token, PROJECT).is_ok());
    // The project's id is percent-decoded (403: found, not hers); without one the request is malformed.
    server.hub.create_project("build out/3", fieldsync_core::ProjectConfig::default()).unwrap();
    assert_eq!(connect(&server, &tina.token, "build%20out%2F3").err(), Some(403));
    assert_eq!(connect(&server, &tina.token, "build+out%2f3").err(), Some(403));
    let (status, body) = connect_to(&server, &tina.token, "/v1/live").err().unwrap();
    let body: fieldsync_core::protocol::ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body.error.as_str()), (400, "malformed"));
    assert!(body.message.contains("/v1/live?project=<id>"), "{}", body.message);
    assert_eq!(connect_to(&server, &tina.token, "/v1/live?x=1").err().map(|e| e.0), Some(400));
    assert!(connect_to(&server, &tina.token, &format!("/v1/live?x=1&project={PROJECT}")).is_ok());
}

#[test]
fn shutting_down_closes_live_channels() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("tina", Role::Technician)]));
    let tina = Device::enroll(&server.hub, dir.path(), "tina");
    let mut ws = connect(&server, &tina.token, PROJECT).unwrap();
    server.stop(); // Returns only once the server has stopped, live channel included.
    match ws.read() {
        Ok(Message::Close(_)) | Err(_) => {}
        other => panic!("unexpected {other:?}"),
    }
}
