//! `fieldsync bench photos`: photos through a real `fieldsync serve` over
//! loopback, with the real sync client and its photo lane (chunks sized to
//! the link): how long a photo's thumbnail takes to make, the upload and
//! download throughput, and the same bytes sent raw over a loopback TCP
//! socket as the link's own capacity.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use fieldsync_core::{
    Durability, GeoPoint, HttpTransport, PhotoTransport, Replica, ReplicaOptions, Role, SyncClient, Transport,
};
use fieldsync_server::Hub;
use serde::Serialize;

use crate::error::CliError;
use crate::load_server::{ServerProcess, Store};

const PROJECT: &str = "bench-photos";

/// `fieldsync bench photos`.
#[derive(Debug, Args)]
pub struct PhotoBenchArgs {
    /// Photos taken and sent.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    photos: u32,
    /// Size of each photo, in MB (a real JPEG padded to it).
    #[arg(long, default_value_t = 3.0)]
    size_mb: f64,
}

/// What `bench photos` measured (`--json`).
#[derive(Debug, Serialize)]
pub struct PhotoBench {
    photos: u32,
    photo_bytes: u64,
    thumbnail_bytes_each: u64,
    thumbnail_ms_each: f64,
    upload_s: f64,
    upload_mb_per_s: f64,
    photo_requests: u64,
    download_s: f64,
    download_mb_per_s: f64,
    raw_tcp_mb_per_s: f64,
    upload_share_of_raw: f64,
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

pub fn run(args: PhotoBenchArgs, json: bool) -> Result<(), CliError> {
    if !(0.01..=32.0).contains(&args.size_mb) {
        return Err(CliError::Usage("--size-mb is between 0.01 and 32 (the largest photo taken)".into()));
    }
    let scratch = tempfile::Builder::new().prefix("fieldsync-bench-photos-").tempdir()?;
    let data = scratch.path().join("hub");
    let (olga_token, tina_token) = {
        let hub = Hub::open(&data)?;
        hub.create_project(PROJECT, Default::default())?;
        hub.add_member(PROJECT, "olga", Role::Office)?;
        hub.add_member(PROJECT, "tina", Role::Technician)?;
        (hub.enroll_device("olga", "office")?.token, hub.enroll_device("tina", "phone")?.token)
    };
    let server = ServerProcess::start(&Store::Data(data), 64, scratch.path(), "serve")?;
    let phone = |name: &str, token: &str| -> Result<(Arc<Mutex<Replica>>, SyncClient), CliError> {
        let options = ReplicaOptions {
            device: name.into(),
            durability: Durability::Normal,
            encryption_key: None,
            ..Default::default()
        };
        let mut replica = Replica::open(scratch.path().join(format!("{name}.db")), options)?;
        replica.join_project(PROJECT)?;
        let replica = Arc::new(Mutex::new(replica));
        let http = Arc::new(
            HttpTransport::new(&server.url, token, Duration::from_secs(60))
                .map_err(|e| CliError::Failed(format!("cannot reach the server: {e}")))?,
        );
        let client = SyncClient::new(Arc::clone(&replica), Arc::clone(&http) as Arc<dyn Transport>)
            .with_photos(http as Arc<dyn PhotoTransport>);
        client.sync_now()?;
        Ok((replica, client))
    };
    let (olga, olga_sync) = phone("olga", &olga_token)?;
    let route = [GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
    let section = olga.lock().unwrap_or_else(|p| p.into_inner()).create_section(PROJECT, "photos", &route)?;
    olga_sync.sync_now()?;
    let (tina, tina_sync) = phone("tina", &tina_token)?;

    // Take the photos: each one's thumbnail is made as it is added.
    let size = (args.size_mb * 1e6) as usize;
    let mut thumbnail_time = Duration::ZERO;
    let mut ids = Vec::new();
    for i in 0..args.photos {
        let bytes = padded_jpeg(size, i);
        let started = Instant::now();
        ids.push(tina.lock().unwrap_or_else(|p| p.into_inner()).add_photo_bytes(&section, &bytes, None)?);
        thumbnail_time += started.elapsed();
    }
    let photo_bytes = u64::from(args.photos) * size as u64;
    let started = Instant::now();
    let sent = tina_sync.sync_now()?;
    let upload = started.elapsed();
    if sent.photos_sent != args.photos as usize {
        return Err(CliError::Failed(format!("{} of {} photos reached the server", sent.photos_sent, args.photos)));
    }
    let requests =
        server.scrape()?.sum("fieldsync_http_responses_total", "route=/v1/projects/{project}/photos/{sha256}/upload")
            as u64;

    // The office: thumbnails with its sync, then every full size.
    let office = olga_sync.sync_now()?;
    let started = Instant::now();
    for id in &ids {
        olga_sync.fetch_photo(id, &mut |_, _| {})?;
    }
    let download = started.elapsed();
    let thumbnail_bytes_each = office.photo_bytes_received / u64::from(args.photos);
    let raw = raw_tcp(photo_bytes)?;
    server.stop();

    let report = PhotoBench {
        photos: args.photos,
        photo_bytes,
        thumbnail_bytes_each,
        thumbnail_ms_each: thumbnail_time.as_secs_f64() * 1e3 / f64::from(args.photos),
        upload_s: upload.as_secs_f64(),
        upload_mb_per_s: mb_per_s(sent.photo_bytes_sent, upload),
        photo_requests: requests,
        download_s: download.as_secs_f64(),
        download_mb_per_s: mb_per_s(photo_bytes, download),
        raw_tcp_mb_per_s: mb_per_s(photo_bytes, raw),
        upload_share_of_raw: mb_per_s(sent.photo_bytes_sent, upload) / mb_per_s(photo_bytes, raw),
    };
    if json {
        return crate::output::json(&report);
    }
    println!(
        "fieldsync bench photos: {} photos of {:.1} MB through `fieldsync serve` on loopback",
        args.photos, args.size_mb
    );
    println!(
        "  thumbnail per photo        {:>9.1} ms, {} bytes",
        report.thumbnail_ms_each, report.thumbnail_bytes_each
    );
    println!(
        "  upload (thumbnails first)  {:>9.2} s, {:.1} MB/s, {} photo requests",
        report.upload_s, report.upload_mb_per_s, report.photo_requests
    );
    println!("  download (full sizes)      {:>9.2} s, {:.1} MB/s", report.download_s, report.download_mb_per_s);
    println!(
        "  raw loopback TCP           {:>9.1} MB/s (the upload is {:.0} % of it)",
        report.raw_tcp_mb_per_s,
        report.upload_share_of_raw * 100.0
    );
    Ok(())
}

/// A real JPEG (so a thumbnail is made) padded with noise to `size` bytes.
fn padded_jpeg(size: usize, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(1024, 768, |x, y| image::Rgb([(x ^ seed) as u8, y as u8, (x + y) as u8]));
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85).encode_image(&img);
    let mut state = u64::from(seed) | 1;
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size.max(bytes.len().min(size)));
    bytes
}

/// The time to send `bytes` raw over a loopback TCP socket.
fn raw_tcp(bytes: u64) -> Result<Duration, CliError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let chunk = vec![7u8; 1 << 16];
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(addr)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    drop(s);
    let got = reader.join().map_err(|_| CliError::Failed("the loopback reader failed".into()))??;
    let took = started.elapsed();
    if got != bytes {
        return Err(CliError::Failed(format!("loopback carried {got} of {bytes} bytes")));
    }
    Ok(took)
}
