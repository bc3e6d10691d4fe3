//! The hub's disk fills: a real `fieldsync serve` on a small file system
//! (a tmpfs mounted for the test; the test command runs as root). A photo
//! that does not fit is answered 507 with what to do, the edits before it
//! are stored, the server keeps serving, and once there is room the same
//! sync finishes the photo: nothing is lost on either side.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A tmpfs of `size` mounted on a directory, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs needs root (the test command runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_owned())
    }

    /// Give it `size` in all (its files stay).
    fn grow(&self, size: &str) {
        let remount = format!("remount,size={size}");
        let status = Command::new("mount").args(["-o", &remount, self.0.to_str().unwrap()]).status().unwrap();
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the server may still hold its files open.
        let _ = Command::new("umount").args(["-l", self.0.to_str().unwrap()]).status();
    }
}

/// A PNG header (640 × 480) and `extra` bytes that do not compress.
fn big_png(extra: usize) -> Vec<u8> {
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&640u32.to_be_bytes());
    png.extend_from_slice(&480u32.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    png.extend((0..extra).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    png
}

#[test]
fn a_photo_the_servers_disk_cannot_hold_is_answered_507_and_goes_once_there_is_room() {
    let mut disk = None;
    let crew = Crew::prepared(
        |data| disk = Some(SmallDisk::mount(data, "6m")),
        |data, _| {
            let mut cmd = bin();
            cmd.args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
            cmd.env("FIELDSYNC_LOG_LEVEL", "warn").stderr(std::process::Stdio::piped());
            Server::spawn(cmd, data)
        },
    );
    let disk = disk.unwrap();
    for user in ["olga", "tina"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    crew.device_ok("olga", &["sync"]);
    crew.device_ok("tina", &["sync"]);
    let section = crew.device_json("olga", &["list"])["sections"][0]["id"].as_str().unwrap().to_owned();

    // An edit, then a photo larger than the server's disk.
    let photo = big_png(8 << 20);
    let file = Path::new(&crew.db("tina")).with_file_name("trench.png");
    std::fs::write(&file, &photo).unwrap();
    crew.device_json("tina", &["progress", "s1", "5"]);
    crew.device_json("tina", &["photo", "s1", file.to_str().unwrap()]);
    let r = crew.device("tina", &["sync"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("507") && r.stderr.contains("the server's disk is full"), "{}", r.stderr);
    assert!(r.stderr.contains("nothing of this request was lost"), "{}", r.stderr);
    // The edit went before the photo; the photo waits on the phone, part of it on the server.
    assert_eq!(ok_json(&["admin", "--data", &crew.data(), "section", &section])["progress"], 5);
    let status = crew.device_json("tina", &["status"]);
    assert_eq!(
        (status["pending_changes"].as_i64(), status["last_problem"].as_str()),
        (Some(0), Some("offline")),
        "{status}"
    );
    let mine = crew.device_json("tina", &["photos", "s1"]);
    assert_eq!(mine["photos"][0]["on_this_device"], true, "{mine}");
    assert_eq!(mine["photos"][0]["where"]["state"], "uploading", "{mine}");

    // The operator makes room; the next sync goes on from what the server
    // acknowledged and the office gets the very bytes.
    disk.grow("64m");
    crew.device_ok("tina", &["sync"]);
    assert_eq!(crew.device_json("tina", &["photos", "s1"])["photos"][0]["where"]["state"], "on_server");
    assert_eq!(ok_json(&["admin", "--data", &crew.data(), "section", &section])["photos_on_server"], 1);
    crew.device_ok("olga", &["sync"]);
    let sha = crew.device_json("olga", &["photos", "s1"])["photos"][0]["photo"]["blob"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let fetched = crew.device_json("olga", &["fetch-photo", &sha]);
    assert!(std::fs::read(fetched["file"].as_str().unwrap()).unwrap() == photo, "the office's copy is the photo");

    // The operator heard of it, and the server stops as it should.
    let mut server = crew.server;
    let mut log = String::new();
    let mut stderr = server.child.stderr.take().unwrap();
    let (code, _) = server.stop();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("the server's disk is full: answered 507"), "{log}");
}
