//! A TCP relay on loopback between clients and the test server, for faults
//! a real network makes: it can cut the next response after part of its body
//! (the server has committed the round, the device never sees the answer),
//! and it can be pointed at a restarted server, so devices keep one URL.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    target: Mutex<SocketAddr>,
    /// Body bytes after which the next HTTP response is cut (usize::MAX: none).
    cut_next: AtomicUsize,
    /// Responses cut so far.
    cuts: AtomicUsize,
    stop: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            cut_next: AtomicUsize::new(usize::MAX),
            cuts: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let target = *s.target.lock().unwrap();
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut open = s.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump_up(c2, s2));
                let s3 = Arc::clone(&s);
                std::thread::spawn(move || pump_down(server, client, &s3));
            }
        });
        Proxy { addr, shared, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Point new connections at another server (one restarted on a new port),
    /// and close the connections to the old one.
    pub fn retarget(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = target;
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Cut the next response after `body_bytes` bytes of its body.
    pub fn cut_next_response(&self, body_bytes: usize) {
        self.shared.cut_next.store(body_bytes, Ordering::SeqCst);
    }

    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(self.addr); // Wake the accept loop.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pump_up(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Server → client. When a cut is armed, the next response is forwarded
/// with its head and only part of its body (the armed number of bytes, or
/// half the body if that is smaller); then both sides are closed.
fn pump_down(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    let mut head: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let limit = shared.cut_next.load(Ordering::SeqCst);
        if limit == usize::MAX {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            continue;
        }
        // A cut is armed: this is the start of the response to cut.
        head.extend_from_slice(&buf[..n]);
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok()))
            .unwrap_or(usize::MAX);
        let keep = limit.min(length / 2);
        // Wait until that much of the body has arrived, then forward it and cut.
        while head.len() < end + 4 + keep {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let upto = (end + 4 + keep).min(head.len());
        let _ = to.write_all(&head[..upto]);
        let _ = to.flush();
        shared.cut_next.store(usize::MAX, Ordering::SeqCst);
        shared.cuts.fetch_add(1, Ordering::SeqCst);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
        return;
    }
    let _ = to.shutdown(Shutdown::Write);
}
