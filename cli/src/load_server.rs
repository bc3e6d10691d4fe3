//! What `fieldsync bench load` observes of the servers it runs: each a real
//! `fieldsync serve` child process (this very binary), its CPU time and
//! memory from `/proc`, and its Prometheus metrics scraped over plain HTTP.
//! No HTTP client crate: one `GET /metrics` on a `TcpStream` does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::CliError;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on every Linux build).
const TICKS_PER_SECOND: f64 = 100.0;
/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a server keeps its data.
#[derive(Debug, Clone)]
pub enum Store {
    /// A data directory (SQLite).
    Data(std::path::PathBuf),
    /// A PostgreSQL database, given to the child in its environment (never on its command line).
    Postgres(String),
}

/// A `fieldsync serve` child process.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    metrics_addr: String,
    stdout_rest: Option<JoinHandle<String>>,
    stderr_file: std::path::PathBuf,
}

/// How a server stopped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exit {
    /// Exit code 0 after SIGTERM, and its closing line printed.
    pub clean: bool,
    /// The exit status, in words.
    pub status: String,
}

impl ServerProcess {
    /// Start `fieldsync serve` on a free loopback port with metrics on another,
    /// and wait until it says where it listens. Its log (warnings and worse) goes
    /// to `log_dir`.
    pub fn start(store: &Store, max_connections: usize, log_dir: &Path, name: &str) -> Result<Self, CliError> {
        let exe = std::env::current_exe()
            .map_err(|e| CliError::Failed(format!("cannot find this program to start `serve`: {e}")))?;
        let stderr_file = log_dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&stderr_file)?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--max-connections", &max_connections.to_string()])
            // One log line per request would cost the server more than some rounds.
            .args(["--log-level", "warn"])
            .env_remove("FIELDSYNC_DATA_DIR")
            .env_remove("FIELDSYNC_DATABASE_URL")
            .env_remove("FIELDSYNC_JSON")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        match store {
            Store::Data(dir) => {
                cmd.arg("--data").arg(dir);
            }
            Store::Postgres(url) => {
                cmd.env("FIELDSYNC_DATABASE_URL", url);
            }
        }
        let mut child = cmd.spawn().map_err(|e| CliError::Failed(format!("cannot start `fieldsync serve`: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| CliError::Failed("internal: serve has no stdout".into()))?;
        let mut lines = BufReader::new(stdout);
        let (mut url, mut metrics_addr) = (None, None);
        let mut line = String::new();
        while url.is_none() {
            line.clear();
            if lines.read_line(&mut line)? == 0 {
                let _ = child.wait();
                let log = std::fs::read_to_string(&stderr_file).unwrap_or_default();
                return Err(CliError::Failed(format!("`fieldsync serve` stopped before listening: {}", log.trim())));
            }
            if let Some(rest) = line.trim().strip_prefix("metrics on http://") {
                metrics_addr = Some(rest.trim_end_matches("/metrics").to_owned());
            } else if let Some(rest) = line.trim().strip_prefix("fieldsync server listening on ") {
                url = Some(rest.to_owned());
            }
        }
        let metrics_addr = metrics_addr
            .ok_or_else(|| CliError::Failed("`fieldsync serve` did not say where its metrics are".into()))?;
        // The rest (its closing line) is read until it exits, so it never blocks on a full pipe.
        let stdout_rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = lines.read_to_string(&mut rest);
            rest
        });
        Ok(ServerProcess {
            child,
            url: url.unwrap_or_default(),
            metrics_addr,
            stdout_rest: Some(stdout_rest),
            stderr_file,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    /// Resident memory now and at its peak (VmRSS, VmHWM), in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        memory_kib(&format!("/proc/{}/status", self.pid()))
    }

    /// Its metrics now.
    pub fn scrape(&self) -> Result<Scrape, CliError> {
        Scrape::parse(&http_get(&self.metrics_addr, "/metrics")?)
    }

    /// SIGTERM, then wait for it to finish its rounds and exit.
    pub fn stop(mut self) -> Exit {
        // `Child::kill` is SIGKILL; the clean stop is SIGTERM, sent by the system's `kill`.
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let rest = self.stdout_rest.take().and_then(|t| t.join().ok()).unwrap_or_default();
        match status {
            Some(s) => {
                let said_stopped = rest.contains("stopped; every acknowledged change is on disk");
                let mut words = s.to_string();
                if !s.success() {
                    let log = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
                    words = format!("{words}: {}", log.lines().last().unwrap_or(""));
                }
                Exit { clean: s.success() && said_stopped, status: words }
            }
            None => Exit { clean: false, status: format!("still running {STOP_TIMEOUT:?} after SIGTERM; killed") },
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only when `stop` was not reached (an error on the way): never leave a server behind.
        if self.stdout_rest.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU seconds of the process whose `stat` file is `path`.
pub fn cpu_seconds(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    // The command name may hold spaces and parentheses: fields are counted after its last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / TICKS_PER_SECOND
}

/// (VmRSS, VmHWM) in KiB of the process whose `status` file is `path`.
pub fn memory_kib(path: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The whole machine's CPU time so far: (busy, total) seconds over every core.
pub fn machine_cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0.0, 0.0) };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    ((total - idle) as f64 / TICKS_PER_SECOND, total as f64 / TICKS_PER_SECOND)
}

/// The soft limit on open files of this process (`ulimit -n`), if readable.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `GET path` on `addr` over HTTP/1.1, the body (chunked or not).
fn http_get(addr: &str, path: &str) -> Result<String, CliError> {
    let failed = |e: std::io::Error| CliError::Failed(format!("cannot read the metrics at {addr}{path}: {e}"));
    let mut stream = TcpStream::connect(addr).map_err(failed)?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(failed)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(failed)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(failed)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| CliError::Failed(format!("the metrics at {addr} answered no HTTP")))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(CliError::Failed(format!("the metrics at {addr} answered {}", head.lines().next().unwrap_or(""))));
    }
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok(body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    Ok(out)
}

/// One scrape: every sample by series (name and sorted labels, `le` apart).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

/// A sample's series name plus its labels but `le`, and its `le`.
fn series_key(name: &str, labels: &BTreeMap<&str, &str>) -> String {
    let labels: Vec<String> = labels.iter().filter(|(k, _)| **k != "le").map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

impl Scrape {
    fn parse(text: &str) -> Result<Scrape, CliError> {
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("fieldsync_")) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels: BTreeMap<&str, &str> = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim_matches('"')))
                .collect();
            let mut key = series_key(name, &labels);
            if let Some(le) = labels.get("le") {
                key.push_str(&format!(" le={le}"));
            }
            samples.insert(key, value);
        }
        if samples.is_empty() {
            return Err(CliError::Failed("the server's metrics hold no fieldsync_ series".into()));
        }
        Ok(Scrape { samples })
    }

    /// Every sample of `self` minus `earlier`'s (counters and buckets over an interval).
    pub fn since(&self, earlier: &Scrape) -> Scrape {
        let samples =
            self.samples.iter().map(|(k, v)| (k.clone(), v - earlier.samples.get(k).copied().unwrap_or(0.0))).collect();
        Scrape { samples }
    }

    /// Two processes' scrapes as one (what `sum by (le)` does).
    pub fn plus(&self, other: &Scrape) -> Scrape {
        let mut samples = self.samples.clone();
        for (k, v) in &other.samples {
            *samples.entry(k.clone()).or_insert(0.0) += v;
        }
        Scrape { samples }
    }

    /// The sum of every series of `name` whose key contains `filter`.
    pub fn sum(&self, name: &str, filter: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.samples.iter().filter(|(k, _)| k.starts_with(&prefix) && k.contains(filter)).map(|(_, v)| v).sum()
    }

    /// The values `label` takes in the series of `name` (`operation` of the store's histogram).
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let prefix = format!("{name}{{{label}=");
        let mut values: Vec<String> = self
            .samples
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split(['}', ',']).next().unwrap_or("").to_owned())
            .collect();
        values.dedup();
        values
    }

    /// A histogram over the interval: its count and its P50/P90/P99 in ms,
    /// read from the buckets as Prometheus' `histogram_quantile` does.
    /// `labels` is `phase=detection`, or empty for an unlabelled histogram.
    pub fn histogram(&self, name: &str, labels: &str) -> Quantiles {
        let series = format!("{name}_bucket{{{labels}}} le=");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&series)?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = buckets.last().map_or(0.0, |b| b.1);
        let at = |q: f64| -> Option<f64> {
            if count <= 0.0 {
                return None;
            }
            let rank = q * count;
            let mut lower = (0.0, 0.0);
            for &(le, cumulative) in &buckets {
                if cumulative >= rank {
                    if le.is_infinite() {
                        return Some(lower.0 * 1000.0);
                    }
                    let share = if cumulative > lower.1 { (rank - lower.1) / (cumulative - lower.1) } else { 1.0 };
                    return Some((lower.0 + (le - lower.0) * share) * 1000.0);
                }
                lower = (le, cumulative);
            }
            None
        };
        Quantiles { count: count as u64, p50_ms: at(0.50), p90_ms: at(0.90), p99_ms: at(0.99) }
    }
}

/// A histogram's figures over an interval (`None`: nothing observed).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets_like_prometheus() {
        let text = "\
# HELP fieldsync_round_phase_duration_seconds phases
fieldsync_round_phase_duration_seconds_bucket{phase=\"detection\",le=\"0.001\"} 50
fieldsync_round_phase_duration_seconds_bucket{phase=\"detection\",le=\"0.002\"} 90
fieldsync_round_phase_duration_seconds_bucket{phase=\"detection\",le=\"0.004\"} 100
fieldsync_round_phase_duration_seconds_bucket{phase=\"detection\",le=\"+Inf\"} 100
fieldsync_round_phase_duration_seconds_count{phase=\"detection\"} 100
fieldsync_live_channels_open 7
";
        let now = Scrape::parse(text).unwrap();
        let q = now.histogram("fieldsync_round_phase_duration_seconds", "phase=detection");
        assert_eq!(q.count, 100);
        assert!((q.p50_ms.unwrap() - 1.0).abs() < 1e-9, "{q:?}");
        assert!((q.p90_ms.unwrap() - 2.0).abs() < 1e-9, "{q:?}");
        assert!((q.p99_ms.unwrap() - 3.8).abs() < 1e-9, "{q:?}");
        assert_eq!(now.sum("fieldsync_live_channels_open", ""), 7.0);
        assert_eq!(now.label_values("fieldsync_round_phase_duration_seconds_bucket", "phase"), ["detection"]);
        let none = now.since(&now).histogram("fieldsync_round_phase_duration_seconds", "phase=detection");
        assert_eq!((none.count, none.p99_ms), (0, None));
        assert_eq!(now.plus(&now).histogram("fieldsync_round_phase_duration_seconds", "phase=detection").count, 200);
    }

    #[test]
    fn this_process_is_visible_in_proc() {
        let (rss, peak) = memory_kib("/proc/self/status");
        assert!(rss > 0 && peak >= rss);
        assert!(cpu_seconds("/proc/self/stat") >= 0.0);
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
