//! Network profiles: what a link is like (latency, bandwidth, loss) and how a
//! crew's day goes on it.
//!
//! | profile | one-way latency (up/down) | bandwidth down/up | loss | day |
//! | --- | --- | --- | --- | --- |
//! | `3g` | 100/100 ms | 780/330 kbit/s | 0 | online, with outages |
//! | `edge` | 440/400 ms | 240/200 kbit/s | 1 % | online, with outages |
//! | `2g-rural` | 650/650 ms | 20/18 kbit/s | 2 % | online, with outages |
//! | `offline-day` | as `3g` | as `3g` | 0 | crews offline from the morning sync until evening |

use serde::{Deserialize, Serialize};

/// One device's link to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkProfile {
    /// One-way latency device → server, ms.
    pub up_latency_ms: u64,
    /// One-way latency server → device, ms.
    pub down_latency_ms: u64,
    /// Up to this much is added to each one-way trip, ms (uniform).
    pub jitter_ms: u64,
    /// Downlink, kbit/s (= bits per ms).
    pub down_kbps: u64,
    /// Uplink, kbit/s.
    pub up_kbps: u64,
    /// Packet loss: each lost packet costs a retransmission (one round trip),
    /// and a whole request or response is lost with this probability.
    pub loss: f64,
    /// Bytes a link can send at once before the token bucket throttles it.
    pub burst_bytes: u64,
    /// The client's request timeout, ms: longer round trips fail (after the
    /// server may have committed).
    pub timeout_ms: u64,
}

impl LinkProfile {
    /// The depot's Wi-Fi (unmetered): 10 ms one-way, 20/10 Mbit/s, no loss.
    /// Where crews are at the end of a photo day whose project holds full
    /// sizes for an unmetered link.
    pub fn depot_wifi() -> LinkProfile {
        let (latency, kbps) = (10, 10_000);
        LinkProfile {
            up_latency_ms: latency,
            down_latency_ms: latency,
            jitter_ms: latency / 2,
            down_kbps: 2 * kbps,
            up_kbps: kbps,
            burst_bytes: 256 * 1024,
            // No loss, and 3G's timeout.
            ..Profile::three_g().link
        }
    }
}

/// A network profile: the link every device has, the app's sync budgets for
/// it, and whether crews spend the day offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// `3g`, `edge`, `2g-rural`, `offline-day`, or a name of your own.
    pub name: String,
    /// The link.
    pub link: LinkProfile,
    /// Bytes of changes one request uploads at most (`SyncClient::upload_budget`):
    /// on a slow, lossy link, small pages keep what a cut costs small.
    pub upload_budget: usize,
    /// Bytes of changes one response may carry (`SyncClient::response_budget`).
    pub response_budget: u32,
    /// Crews (everyone but the office) are offline from shortly after the
    /// morning sync until the end of the day.
    pub crews_offline_all_day: bool,
}

impl Profile {
    /// 3G: 100 ms one-way, 780/330 kbit/s.
    pub fn three_g() -> Profile {
        Profile {
            name: "3g".into(),
            link: LinkProfile {
                up_latency_ms: 100,
                down_latency_ms: 100,
                jitter_ms: 30,
                down_kbps: 780,
                up_kbps: 330,
                loss: 0.0,
                burst_bytes: 32 * 1024,
                timeout_ms: 60_000,
            },
            upload_budget: 256 * 1024,
            response_budget: 256 * 1024,
            crews_offline_all_day: false,
        }
    }

    /// EDGE, lossy: 440 ms up / 400 ms down, 1 % loss, 240/200 kbit/s.
    pub fn edge() -> Profile {
        Profile {
            name: "edge".into(),
            link: LinkProfile {
                up_latency_ms: 440,
                down_latency_ms: 400,
                jitter_ms: 150,
                down_kbps: 240,
                up_kbps: 200,
                loss: 0.01,
                burst_bytes: 16 * 1024,
                timeout_ms: 60_000,
            },
            upload_budget: 128 * 1024,
            response_budget: 128 * 1024,
            crews_offline_all_day: false,
        }
    }

    /// Rural 2G: 650 ms one-way, 2 % loss, 20/18 kbit/s.
    pub fn rural_2g() -> Profile {
        Profile {
            name: "2g-rural".into(),
            link: LinkProfile {
                up_latency_ms: 650,
                down_latency_ms: 650,
                jitter_ms: 300,
                down_kbps: 20,
                up_kbps: 18,
                loss: 0.02,
                burst_bytes: 4 * 1024,
                timeout_ms: 120_000,
            },
            upload_budget: 32 * 1024,
            response_budget: 32 * 1024,
            crews_offline_all_day: false,
        }
    }

    /// A 3G link, but crews are offline the whole working day.
    pub fn offline_day() -> Profile {
        Profile { name: "offline-day".into(), crews_offline_all_day: true, ..Profile::three_g() }
    }

    /// Every built-in profile.
    pub fn all() -> Vec<Profile> {
        vec![Profile::three_g(), Profile::edge(), Profile::rural_2g(), Profile::offline_day()]
    }

    /// A built-in profile by name (`3g`, `edge`, `2g-rural`, `offline-day`).
    pub fn by_name(name: &str) -> Option<Profile> {
        Profile::all().into_iter().find(|p| p.name == name)
    }

    /// The names of the built-in profiles.
    pub fn names() -> Vec<String> {
        Profile::all().into_iter().map(|p| p.name).collect()
    }
}

/// A perfect link: the depot's Wi-Fi in the morning, and the network after
/// it heals in the evening.
pub fn wifi() -> LinkProfile {
    LinkProfile {
        up_latency_ms: 10,
        down_latency_ms: 10,
        jitter_ms: 5,
        down_kbps: 20_000,
        up_kbps: 10_000,
        loss: 0.0,
        burst_bytes: 1024 * 1024,
        timeout_ms: 60_000,
    }
}
