//! Tokens that expire: a `401 token_expired` apart from an unknown or revoked
//! token, a fresh token for the same device, and core's sync client renewing
//! its token through the app's connector. Expiry is set in the past rather
//! than waited for: no test sleeps.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldsync_core::protocol;
use fieldsync_core::{
    CredentialsConnector, CredentialsError, DeviceToken, HttpTransport, Replica, ReplicaOptions, Role, SyncClient,
    SyncError, SyncProblem,
};
use fieldsync_server::{Hub, HubError};

use crate::common::*;

/// An expiry already past: the token is expired the moment it is issued.
const PAST: Option<u64> = Some(1);

fn enroll_until(hub: &Hub, dir: &std::path::Path, user: &str, expires_ms: Option<u64>) -> Device {
    let e = hub.enroll_device_until(user, &format!("{user}'s phone"), expires_ms).unwrap();
    let path = dir.join(format!("{user}-{}.db", &e.device_id[..8]));
    let replica = Replica::open(path, ReplicaOptions { device: e.device_id.clone(), ..Default::default() }).unwrap();
    Device { replica, token: e.token, id: e.device_id }
}

#[test]
fn an_expired_token_is_refused_401_token_expired_and_a_fresh_one_syncs_the_same_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office)]));
    let an_hour = fieldsync_server::now_ms() + 3_600_000;
    let mut olga = enroll_until(&server.hub, dir.path(), "olga", Some(an_hour));
    assert_eq!(server.hub.list_devices().unwrap()[0].device.expires_ms, Some(an_hour));
    assert!(olga.round(&server).roster, "a token before its expiry syncs");
    let id = olga.replica.create_section(PROJECT, "north", &route()).unwrap();
    assert_eq!(olga.round(&server).report.confirmed, 1, "its first write binds its actor");

    let first = olga.token.clone();
    olga.token = server.hub.issue_token(&olga.id, PAST).unwrap().token;
    let (status, body) = olga.try_round(&server, protocol::DEFAULT_RESPONSE_BUDGET).unwrap_err();
    assert_eq!((status, body.error.as_str()), (401, protocol::TOKEN_EXPIRED), "{}", body.message);
    // The token it replaced is unknown now, which is another answer.
    let reply = post_sync(server.addr, &first, b"");
    assert_eq!((reply.status, reply.error().error.as_str()), (401, "unauthorized"));
    // The live channel is refused the same way.
    assert!(matches!(server.hub.authorize_live(&olga.token, PROJECT), Err(HubError::TokenExpired(_))));

    // A fresh token for the same device: its actor is still its own, so its next write goes up.
    olga.token = server.hub.issue_token(&olga.id, None).unwrap().token;
    olga.replica.record_progress(&id, 5).unwrap();
    assert_eq!(olga.round(&server).report.confirmed, 1);
    assert_eq!(server.hub.section_view(&id).unwrap().unwrap().progress, 5);

    // A revoked device gets no fresh token, and is told why; an unknown one is unknown.
    server.hub.revoke_device(&olga.id).unwrap();
    let refused = server.hub.issue_token(&olga.id, None).unwrap_err();
    assert!(matches!(&refused, HubError::Forbidden(m) if m.contains("revoked") && m.contains("enroll")), "{refused}");
    assert!(matches!(server.hub.issue_token("no-such-device", None), Err(HubError::UnknownDevice(_))));
}

/// The app's backend: asks the hub for a fresh token for its device, each
/// expiring at `expires_ms` (0: never), and counts the calls.
struct Backend {
    hub: Arc<Hub>,
    device: String,
    expires_ms: AtomicU64,
    calls: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

impl CredentialsConnector for Backend {
    fn fetch_credentials(&self) -> Result<String, CredentialsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(CredentialsError::Unavailable("the backend is down".into()));
        }
        let expires_ms = Some(self.expires_ms.load(Ordering::SeqCst)).filter(|&ms| ms > 0);
        match self.hub.issue_token(&self.device, expires_ms) {
            Ok(e) => Ok(e.token),
            Err(e) => Err(CredentialsError::Refused(e.to_string())),
        }
    }
}

#[test]
fn the_sync_client_asks_its_connector_once_on_a_401_and_syncs_on_with_the_fresh_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office)]));
    // Enrolled with a token that has expired already.
    let device = enroll_until(&server.hub, dir.path(), "olga", PAST);
    let backend = Arc::new(Backend {
        hub: Arc::clone(&server.hub),
        device: device.id.clone(),
        expires_ms: AtomicU64::new(0),
        calls: AtomicUsize::new(0),
        down: Default::default(),
    });
    let token = DeviceToken::new(&device.token);
    let url = format!("http://{}", server.addr);
    let transport = HttpTransport::new(&url, token.clone(), Duration::from_secs(10)).unwrap();
    let mut replica = device.replica;
    replica.join_project(PROJECT).unwrap();
    let replica = Arc::new(Mutex::new(replica));
    let client = SyncClient::new(Arc::clone(&replica), Arc::new(transport))
        .with_credentials(token.clone(), Arc::clone(&backend) as Arc<dyn CredentialsConnector>);

    let report = client.sync_now().unwrap();
    assert_eq!((report.rounds, backend.calls.load(Ordering::SeqCst)), (2, 1), "refused, asked, synced");
    assert_ne!(token.get(), device.token, "the fresh token is in use");
    // While it holds, nobody is asked.
    let id = replica.lock().unwrap().create_section(PROJECT, "north", &route()).unwrap();
    assert_eq!(client.sync_now().unwrap().confirmed, 1);
    assert_eq!(server.hub.section_view(&id).unwrap().unwrap().name, "north");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 1);

    // The token expires and the backend can only hand out expired ones: asked
    // once, the round refused again, the sync fails as not authorized.
    token.set(&server.hub.issue_token(&backend.device, PAST).unwrap().token);
    backend.expires_ms.store(1, Ordering::SeqCst);
    let failed = client.sync_now().unwrap_err();
    assert_eq!((failed.problem(), failed.retryable()), (SyncProblem::NotAuthorized, false), "{failed}");
    assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
    let status = client.status().unwrap();
    assert_eq!(status.last_problem, Some(SyncProblem::NotAuthorized));

    // A backend that cannot be reached: the sync is offline, worth retrying.
    backend.down.store(true, Ordering::SeqCst);
    let failed = client.sync_now().unwrap_err();
    assert!(matches!(failed, SyncError::Credentials(CredentialsError::Unavailable(_))), "{failed}");
    assert_eq!((failed.problem(), failed.retryable()), (SyncProblem::Offline, true));

    // Back up, issuing tokens that hold: the next sync renews and goes on.
    backend.down.store(false, Ordering::SeqCst);
    backend.expires_ms.store(fieldsync_server::now_ms() + 3_600_000, Ordering::SeqCst);
    replica.lock().unwrap().record_progress(&id, 8).unwrap();
    assert_eq!(client.sync_now().unwrap().confirmed, 1);
    assert_eq!(backend.calls.load(Ordering::SeqCst), 4);
    assert_eq!(server.hub.section_view(&id).unwrap().unwrap().progress, 8);
}
