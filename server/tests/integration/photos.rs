//! Photo bytes through the real server: core's photo lane sends a phone's
//! photos in chunks after its edits (an edit made meanwhile goes first),
//! a cut costs one chunk and the upload goes on from the last acknowledged
//! byte, the server keeps only bytes that match their hash, and only members
//! of the photo's project fetch it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldsync_core::{
    FullSizePhotos, HttpTransport, PhotoChunk, PhotoState, PhotoTransport, PhotoUploadState, ProjectConfig, Replica,
    Role, SyncClient, SyncProblem, Transport, TransportError,
};

use crate::common::*;

/// A 640 × 480 PNG header and `extra` bytes: all a photo needs to be taken.
pub fn png(extra: usize) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&640u32.to_be_bytes());
    b.extend_from_slice(&480u32.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b.extend((0..extra).map(|i| (i * 7 % 251) as u8));
    b
}

/// What crossed the link, in order.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Round,
    Chunk(u64),
}

type Hook = Box<dyn FnOnce() + Send>;

/// The phone's link: the real HTTP transport, logging every request, with a
/// hook run while a given chunk travels and an answer that can be lost.
struct Link {
    http: HttpTransport,
    log: Mutex<Vec<Sent>>,
    chunks: AtomicUsize,
    /// Run while this chunk (by its number) is on the wire.
    during_chunk: Mutex<Option<(usize, Hook)>>,
    /// The answer to this chunk is lost (the server stored it).
    lose_answer_of: Mutex<Option<usize>>,
    /// The photo of each chunk sent, in order.
    chunk_photos: Mutex<Vec<String>>,
    /// The offsets of the chunks fetched, and the one whose answer is lost.
    fetched: Mutex<Vec<u64>>,
    lose_fetch_at: Mutex<Option<u64>>,
}

impl Link {
    fn new(server: &TestServer, token: &str) -> Arc<Link> {
        let url = format!("http://{}", server.addr);
        Arc::new(Link {
            http: HttpTransport::new(&url, token, Duration::from_secs(20)).unwrap(),
            log: Mutex::default(),
            chunks: AtomicUsize::new(0),
            during_chunk: Mutex::default(),
            lose_answer_of: Mutex::default(),
            chunk_photos: Mutex::default(),
            fetched: Mutex::default(),
            lose_fetch_at: Mutex::default(),
        })
    }

    fn sent(&self) -> Vec<Sent> {
        self.log.lock().unwrap().clone()
    }
}

impl Transport for Link {
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.log.lock().unwrap().push(Sent::Round);
        self.http.round_trip(request)
    }
}

impl PhotoTransport for Link {
    fn put_chunk(
        &self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<PhotoUploadState, TransportError> {
        let n = self.chunks.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(Sent::Chunk(offset));
        self.chunk_photos.lock().unwrap().push(sha256.to_owned());
        let hook = self.during_chunk.lock().unwrap().take_if(|(at, _)| *at == n);
        if let Some((_, hook)) = hook {
            hook();
        }
        let answer = self.http.put_chunk(project, sha256, size, offset, bytes);
        if self.lose_answer_of.lock().unwrap().take_if(|at| *at == n).is_some() {
            return Err(TransportError::Unreachable("the link dropped the answer".into()));
        }
        answer
    }

    fn get_chunk(&self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<PhotoChunk, TransportError> {
        self.fetched.lock().unwrap().push(offset);
        let answer = self.http.get_chunk(project, sha256, offset, length);
        if self.lose_fetch_at.lock().unwrap().take_if(|at| *at == offset).is_some() {
            return Err(TransportError::Unreachable("the link dropped the answer".into()));
        }
        answer
    }
}

/// A phone whose sync client carries photos over `link`, 4 KiB a chunk.
fn phone_on(link: &Arc<Link>, device: Device) -> (Arc<Mutex<Replica>>, SyncClient) {
    let mut replica = device.replica;
    replica.join_project(PROJECT).unwrap();
    let replica = Arc::new(Mutex::new(replica));
    let mut client = SyncClient::new(Arc::clone(&replica), Arc::clone(link) as Arc<dyn Transport>)
        .with_photos(Arc::clone(link) as Arc<dyn PhotoTransport>);
    client.photo_chunk_bytes = 4096;
    client.photo_chunk_time = None;
    (replica, client)
}

/// A phone of the project: its replica, its sync client and its link.
struct Phone {
    replica: Arc<Mutex<Replica>>,
    sync: SyncClient,
    link: Arc<Link>,
}

/// Olga's office phone, which created the section "north" (returned) and
/// synced it, and tina's technician phone, not yet synced.
fn olga_and_tina(server: &TestServer, dir: &std::path::Path) -> (Phone, Phone, String) {
    let olga_device = Device::enroll(&server.hub, dir, "olga");
    let olga_link = Link::new(server, &olga_device.token);
    let (olga, olga_sync) = phone_on(&olga_link, olga_device);
    olga_sync.sync_now().unwrap();
    let section = olga.lock().unwrap().create_section(PROJECT, "north", &route()).unwrap();
    olga_sync.sync_now().unwrap();
    let tina_device = Device::enroll(&server.hub, dir, "tina");
    let tina_link = Link::new(server, &tina_device.token);
    let (tina, tina_sync) = phone_on(&tina_link, tina_device);
    let phone = |replica, sync, link| Phone { replica, sync, link };
    (phone(olga, olga_sync, olga_link), phone(tina, tina_sync, tina_link), section)
}

fn state_of(replica: &Mutex<Replica>, section: &str) -> PhotoState {
    let r = replica.lock().unwrap();
    let photo = r.section(section).unwrap().photos.remove(0);
    r.photo_state(&photo).unwrap()
}

#[test]
fn a_photo_goes_up_after_the_edits_resumes_after_a_cut_and_only_members_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]);
    hub.create_project("p2", fieldsync_core::ProjectConfig::default()).unwrap();
    hub.add_member("p2", "pete", Role::Office).unwrap();
    let server = TestServer::start(hub);
    let (olga, tina, section) = olga_and_tina(&server, dir.path());
    let Phone { replica: olga, sync: olga_sync, link: olga_link } = olga;
    let Phone { replica: tina, sync: tina_sync, link: tina_link } = tina;
    tina_sync.sync_now().unwrap();
    tina_link.log.lock().unwrap().clear();

    let photo = png(20_000); // 20,033 bytes: five chunks of 4 KiB.
    let sha = {
        let mut r = tina.lock().unwrap();
        r.add_photo_bytes(&section, &photo, Some("splice closure")).unwrap();
        r.section(&section).unwrap().photos[0].blob.clone().unwrap().sha256
    };
    assert_eq!(state_of(&tina, &section), PhotoState::OnThisDeviceOnly);

    // While the second chunk travels, tina records progress; the answer to
    // the third chunk is lost on the way back.
    let editing = Arc::clone(&tina);
    let edited = section.clone();
    *tina_link.during_chunk.lock().unwrap() =
        Some((1, Box::new(move || drop(editing.lock().unwrap().record_progress(&edited, 10).unwrap()))));
    *tina_link.lose_answer_of.lock().unwrap() = Some(2);
    let cut = tina_sync.sync_now().unwrap_err();
    assert_eq!(cut.problem(), SyncProblem::Offline, "{cut}");
    assert_eq!(state_of(&tina, &section), PhotoState::Uploading { sent: 8192, size: photo.len() as u64 });
    let report = tina_sync.sync_now().unwrap();
    assert_eq!((report.photos_sent, report.confirmed), (1, 0));
    assert_eq!(state_of(&tina, &section), PhotoState::OnServer);

    let chunk = |k: u64| Sent::Chunk(k * 4096);
    assert_eq!(
        tina_link.sent(),
        vec![
            Sent::Round, // the photo's record goes first
            chunk(0),
            chunk(1),    // the edit is made while this one travels...
            Sent::Round, // ...and goes up before the next chunk
            chunk(2),    // its answer is lost: the sync fails
            Sent::Round, // the next sync: nothing to send, nothing new
            chunk(2),    // sent again: the server had it, and says where it stands
            chunk(3),    // on from there: no acknowledged chunk is sent again
            chunk(4),
        ]
    );
    assert_eq!(server.hub.photos_held(PROJECT, &[&sha]).unwrap(), 1);
    assert_eq!(server.hub.section_view(&section).unwrap().unwrap().progress, 10);

    // Olga, a member, sees the record and fetches the bytes; they are the photo.
    olga_sync.sync_now().unwrap();
    assert_eq!(state_of(&olga, &section), PhotoState::NotFetched);
    // The link drops the third chunk's answer: the fetch goes on from there next time.
    *olga_link.lose_fetch_at.lock().unwrap() = Some(8192);
    let photo_id = olga.lock().unwrap().section(&section).unwrap().photos[0].id.clone();
    assert!(olga_sync.fetch_photo(&photo_id, &mut |_, _| {}).is_err());
    assert_eq!(state_of(&olga, &section), PhotoState::Downloading { received: 8192, size: photo.len() as u64 });
    let mut seen = Vec::new();
    let file = olga_sync.fetch_photo(&sha, &mut |got, of| seen.push((got, of))).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), photo);
    assert_eq!(*olga_link.fetched.lock().unwrap(), [0, 4096, 8192, 8192, 12288, 16384]);
    assert_eq!(seen.len(), 3, "one step per chunk: {seen:?}");
    assert_eq!(seen.last(), Some(&(photo.len() as u64, photo.len() as u64)));
    assert_eq!(state_of(&olga, &section), PhotoState::Available);
    assert_eq!(olga_sync.fetch_photo(&sha, &mut |_, _| {}).unwrap(), file, "fetched once");
    assert_eq!(olga_link.fetched.lock().unwrap().len(), 6);

    // Olga removed from the project: her device gets no photo any more.
    server.hub.remove_member(PROJECT, "olga").unwrap();
    let removed = olga_link.http.get_chunk(PROJECT, &sha, 0, 4096).unwrap_err();
    assert!(matches!(&removed, TransportError::Server { status: 403, .. }), "{removed}");

    // A device of someone outside the project, or in another project, gets nothing.
    for outsider in ["mallory", "pete"] {
        let e = server.hub.enroll_device(outsider, "phone").unwrap();
        let http = HttpTransport::new(&format!("http://{}", server.addr), &e.token, Duration::from_secs(20)).unwrap();
        let refused = http.get_chunk(PROJECT, &sha, 0, 4096).unwrap_err();
        assert!(matches!(&refused, TransportError::Server { status: 403, .. }), "{outsider}: {refused}");
        let refused = http.put_chunk(PROJECT, &sha, 10, 0, b"0123456789").unwrap_err();
        assert!(matches!(&refused, TransportError::Server { status: 403, .. }), "{outsider}: {refused}");
    }
}

/// A real JPEG of `width` × `height` (noisy, so it does not shrink to nothing).
pub fn jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let v = (x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed).wrapping_mul(2_654_435_761) >> 24;
        image::Rgb([v as u8, (x % 256) as u8, (y % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
    out
}

#[test]
fn thumbnails_go_first_full_sizes_wait_for_an_unmetered_link_and_fetched_photos_keep_to_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let (olga, tina, section) = olga_and_tina(&server, dir.path());
    let Phone { replica: olga, sync: mut olga_sync, .. } = olga;
    let Phone { replica: tina, sync: mut tina_sync, link: tina_link } = tina;
    // Larger chunks for these larger photos (4 KiB ones would pass the request rate).
    (tina_sync.photo_chunk_bytes, olga_sync.photo_chunk_bytes) = (256 * 1024, 256 * 1024);
    tina_sync.full_size_photos = FullSizePhotos::OnUnmeteredLinks;
    tina_sync.set_metered(true);
    tina_sync.sync_now().unwrap();

    let photos = [jpeg(1600, 1200, 1), jpeg(1200, 1600, 2)];
    let records: Vec<_> = photos
        .iter()
        .map(|p| {
            let mut r = tina.lock().unwrap();
            r.add_photo_bytes(&section, p, None).unwrap();
            r.section(&section).unwrap().photos.into_iter().find(|x| x.blob.as_ref().unwrap().size == p.len() as u64)
        })
        .map(Option::unwrap)
        .collect();
    let thumbs: Vec<_> = records.iter().map(|r| r.thumbnail.clone().expect("a JPEG gets a thumbnail")).collect();
    assert_eq!((thumbs[0].width, thumbs[0].height, thumbs[1].width), (320, 240, 240));
    assert!(thumbs.iter().all(|t| t.size < 40_000), "{thumbs:?}");

    // On mobile data: the thumbnails go, the full sizes wait.
    let report = tina_sync.sync_now().unwrap();
    assert_eq!(report.photos_sent, 0);
    let sent: Vec<String> = std::mem::take(&mut *tina_link.chunk_photos.lock().unwrap());
    assert!(sent.iter().all(|s| thumbs.iter().any(|t| &t.sha256 == s)), "only thumbnails: {sent:?}");
    let state = |replica: &Mutex<Replica>, i: usize| {
        let r = replica.lock().unwrap();
        let photo = r.section(&section).unwrap().photos.into_iter().find(|p| p.id == records[i].id).unwrap();
        r.photo_state(&photo).unwrap()
    };
    assert_eq!(state(&tina, 0), PhotoState::OnThisDeviceOnly);

    // The office's next sync brings the records and their thumbnails.
    let office = olga_sync.sync_now().unwrap();
    assert_eq!(office.thumbnails_fetched, 2);
    assert_eq!((state(&olga, 0), state(&olga, 1)), (PhotoState::ThumbnailOnly, PhotoState::ThumbnailOnly));
    let thumb_file = olga.lock().unwrap().photo_file(&thumbs[0].sha256).unwrap();
    let thumb = image::load_from_memory(&std::fs::read(thumb_file).unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));
    assert!(!server.hub.section_view(&section).unwrap().unwrap().photos.is_empty());
    assert_eq!(olga_sync.fetch_photo(&records[0].id, &mut |_, _| {}).unwrap_err().problem(), SyncProblem::NotFound);

    // On Wi-Fi the full sizes go, the thumbnails not again.
    tina_sync.set_metered(false);
    assert_eq!(tina_sync.sync_now().unwrap().photos_sent, 2);
    let sent = tina_link.chunk_photos.lock().unwrap().clone();
    assert!(sent.iter().all(|s| thumbs.iter().all(|t| &t.sha256 != s)), "no thumbnail again: {sent:?}");
    assert_eq!(state(&tina, 1), PhotoState::OnServer);

    // The office keeps one full size at a time: the least recently used goes.
    olga_sync.photo_budget_bytes = photos[0].len().max(photos[1].len()) as u64 + 1;
    olga_sync.fetch_photo(&records[0].id, &mut |_, _| {}).unwrap();
    assert_eq!(state(&olga, 0), PhotoState::Available);
    olga_sync.fetch_photo(&records[1].id, &mut |_, _| {}).unwrap();
    assert_eq!((state(&olga, 0), state(&olga, 1)), (PhotoState::ThumbnailOnly, PhotoState::Available));
    let again = olga_sync.fetch_photo(&records[0].id, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(again).unwrap(), photos[0]);
    assert_eq!(state(&olga, 1), PhotoState::ThumbnailOnly);

    // Tina's own photos, on the server now, leave under a small budget too; her thumbnails stay.
    tina_sync.photo_budget_bytes = 1;
    tina_sync.fetch_photo(&records[0].id, &mut |_, _| {}).unwrap();
    assert_eq!(state(&tina, 1), PhotoState::ThumbnailOnly);
    assert!(tina.lock().unwrap().photo_file(&thumbs[1].sha256).is_some());
}

/// A project over 2G holds every device's full sizes for Wi-Fi (issue 14:
/// "a project's policy"), though each device's own setting says always:
/// the hub sends the policy with the roster, the device's next sync obeys it.
#[test]
fn a_projects_policy_holds_full_sizes_on_mobile_data_whatever_the_device_says() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let (_, tina, section) = olga_and_tina(&server, dir.path());
    let Phone { replica: tina, sync: mut tina_sync, link: tina_link } = tina;
    tina_sync.photo_chunk_bytes = 256 * 1024;
    assert_eq!(tina_sync.full_size_photos, FullSizePhotos::Always, "the device's own setting");
    tina_sync.set_metered(true);
    tina_sync.sync_now().unwrap();

    let held = ProjectConfig { full_size_photos: FullSizePhotos::OnUnmeteredLinks, ..ProjectConfig::default() };
    server.hub.set_config(PROJECT, held).unwrap();
    let photo = jpeg(800, 600, 3);
    tina.lock().unwrap().add_photo_bytes(&section, &photo, None).unwrap();
    // One sync: its round brings the policy, its photo lane obeys it.
    let report = tina_sync.sync_now().unwrap();
    assert_eq!(report.photos_sent, 0, "the full size waits for Wi-Fi");
    let sent = std::mem::take(&mut *tina_link.chunk_photos.lock().unwrap());
    assert!(!sent.is_empty() && !sent.contains(&hex_sha(&photo)), "only the thumbnail went: {sent:?}");
    assert_eq!(server.hub.photos_held(PROJECT, &[hex_sha(&photo).as_str()]).unwrap(), 0);

    tina_sync.set_metered(false);
    assert_eq!(tina_sync.sync_now().unwrap().photos_sent, 1, "on Wi-Fi it goes");
    assert_eq!(server.hub.photos_held(PROJECT, &[hex_sha(&photo).as_str()]).unwrap(), 1);

    // The office lifts the policy: full sizes go on mobile data again.
    server.hub.set_config(PROJECT, ProjectConfig::default()).unwrap();
    tina_sync.set_metered(true);
    let second = jpeg(800, 600, 4);
    tina.lock().unwrap().add_photo_bytes(&section, &second, None).unwrap();
    assert_eq!(tina_sync.sync_now().unwrap().photos_sent, 1);
}

#[test]
fn photos_no_section_names_are_removed_after_the_grace_and_named_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office)]));
    let olga_device = Device::enroll(&server.hub, dir.path(), "olga");
    let link = Link::new(&server, &olga_device.token);
    let (olga, olga_sync) = phone_on(&link, olga_device);
    olga_sync.sync_now().unwrap();
    let photo = png(5000);
    let named = {
        let mut r = olga.lock().unwrap();
        let section = r.create_section(PROJECT, "north", &route()).unwrap();
        r.add_photo_bytes(&section, &photo, None).unwrap();
        hex_sha(&photo)
    };
    olga_sync.sync_now().unwrap();
    // Bytes no section names (the server takes none through its endpoints
    // now; a store written before it checked, or restored, may hold some).
    let orphan = png(6000);
    let orphan_sha = hex_sha(&orphan);
    let hour = 3_600_000;
    let now = fieldsync_server::now_ms();
    {
        use fieldsync_server::HubStore;
        let mut store = fieldsync_server::SqliteHubStore::open(dir.path()).unwrap();
        store.append_photo(PROJECT, &orphan_sha, orphan.len() as u64, 0, &orphan, now).unwrap();
        store.finish_photo(PROJECT, &orphan_sha, true).unwrap();
    }
    assert_eq!(server.hub.photos_held(PROJECT, &[&orphan_sha]).unwrap(), 1);
    assert_eq!(server.hub.collect_photos(now, hour).unwrap(), 0, "within the grace, nothing goes");
    assert_eq!(server.hub.collect_photos(now + 2 * hour, hour).unwrap(), 1);
    assert_eq!(server.hub.photos_held(PROJECT, &[&named, &orphan_sha]).unwrap(), 1);
    assert_eq!(server.hub.photos_held(PROJECT, &[&named]).unwrap(), 1, "a named photo stays");
    assert!(
        !dir.path()
            .join("photos")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|project| { project.path().join(&orphan_sha).exists() })
    );
}

#[test]
fn bytes_that_are_not_their_photo_are_dropped_and_bad_requests_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let http =
        HttpTransport::new(&format!("http://{}", server.addr), olga.token.as_str(), Duration::from_secs(20)).unwrap();
    let status = |r: Result<PhotoUploadState, TransportError>| match r {
        Err(TransportError::Server { status, body }) => (status, body.error),
        other => panic!("{other:?}"),
    };
    // Olga's records of two photos reach the server; their bytes do not.
    let (photo, other) = (png(100), png(200));
    olga.sync(&server);
    let section = olga.replica.create_section(PROJECT, "north", &route()).unwrap();
    for p in [&photo, &other] {
        olga.replica.add_photo_bytes(&section, p, None).unwrap();
    }
    olga.sync(&server);

    // Bytes no section names are not taken: nobody fills the disk with photos of nothing.
    let text = b"not a photo at all".to_vec();
    let text_sha = hex_sha(&text);
    assert_eq!(status(http.put_chunk(PROJECT, &text_sha, 18, 0, &text)), (409, "photo_unreferenced".into()));
    // All the bytes arrive, and they are not the photo their name says: dropped.
    let (other_sha, m) = (hex_sha(&other), other.len() as u64);
    let forged: Vec<u8> = other.iter().map(|b| b ^ 1).collect();
    assert_eq!(status(http.put_chunk(PROJECT, &other_sha, m, 0, &forged)), (422, "photo_corrupt".into()));
    assert_eq!(server.hub.photos_held(PROJECT, &[&other_sha]).unwrap(), 0, "nothing is kept");
    assert!(http.put_chunk(PROJECT, &other_sha, m, 0, &other).unwrap().complete, "the true bytes go in after");

    let n = photo.len() as u64;
    let sha = hex_sha(&photo);
    assert_eq!(status(http.put_chunk(PROJECT, "../../etc/passwd", n, 0, &photo)).0, 404, "not even a route");
    assert_eq!(status(http.put_chunk(PROJECT, &sha.to_uppercase(), n, 0, &photo)), (400, "malformed".into()));
    let huge = vec![0u8; fieldsync_core::MAX_PHOTO_CHUNK_BYTES + 1];
    assert_eq!(status(http.put_chunk(PROJECT, &sha, n + huge.len() as u64, 0, &huge)), (413, "too_large".into()));
    assert_eq!(status(http.put_chunk(PROJECT, &sha, 1 << 40, 0, &photo)), (413, "too_large".into()));
    assert_eq!(status(http.put_chunk(PROJECT, &sha, n, 10, &photo)), (400, "malformed".into()), "past its size");
    assert_eq!(http.put_chunk(PROJECT, &sha, n, 0, &photo[..50]).unwrap().received, 50);
    assert_eq!(status(http.put_chunk(PROJECT, &sha, n + 1, 50, &photo[50..])), (409, "photo_conflict".into()));
    let unfinished = http.get_chunk(PROJECT, &sha, 0, 10).unwrap_err();
    assert!(matches!(&unfinished, TransportError::Server { status: 404, body } if body.error == "unknown_photo"));
    let done = http.put_chunk(PROJECT, &sha, n, 50, &photo[50..]).unwrap();
    assert_eq!((done.received, done.complete), (n, true));
    let piece = http.get_chunk(PROJECT, &sha, 10, 20).unwrap();
    assert_eq!((piece.size, piece.bytes.as_slice()), (n, &photo[10..30]));
    assert!(matches!(http.get_chunk("nowhere", &sha, 0, 10).unwrap_err(), TransportError::Server { status: 404, .. }));
}

pub fn hex_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
