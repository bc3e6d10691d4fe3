//! Running the built `fieldsync` binary: commands, a server child process,
//! a crew enrolled on it, and JSON redaction for snapshots.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PROJECT: &str = "build-out";

/// What a finished command left.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Its stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fieldsync"))
}

/// Run `fieldsync args…` to completion.
pub fn run(args: &[&str]) -> Run {
    Run::from(bin().args(args).stdin(Stdio::null()).output().expect("the fieldsync binary runs"))
}

/// Run `fieldsync args…` to completion with `envs` set.
pub fn run_env(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let out = bin().args(args).envs(envs.iter().copied()).stdin(Stdio::null()).output();
    Run::from(out.expect("the fieldsync binary runs"))
}

/// Run and insist on success.
pub fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert_eq!(r.code, 0, "`fieldsync {}` failed:\nstdout:\n{}\nstderr:\n{}", args.join(" "), r.stdout, r.stderr);
    r
}

/// Run with `--json` and insist on success; the parsed stdout.
pub fn ok_json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    ok(&all).json()
}

/// `fieldsync serve` as a child process.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The metrics listener's `/metrics` URL, when it was asked for.
    pub metrics_url: Option<String>,
    pub data: PathBuf,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Serve `data` on a free loopback port; the URL is parsed from what it prints.
    pub fn start(data: &Path) -> Server {
        Self::start_on(data, "127.0.0.1:0")
    }

    pub fn start_on(data: &Path, listen: &str) -> Server {
        Self::start_with(data, listen, &[])
    }

    /// With more flags (limits, say).
    pub fn start_with(data: &Path, listen: &str, flags: &[&str]) -> Server {
        let mut cmd = bin();
        cmd.args(["serve", "--data", data.to_str().unwrap(), "--listen", listen]).args(flags);
        // Its log on the test's stderr: failures only (ops.rs reads whole logs).
        cmd.env("FIELDSYNC_LOG_LEVEL", "warn");
        Self::spawn(cmd, data)
    }

    /// Run `cmd` (a `fieldsync serve …` with its flags, environment and
    /// stderr set; stderr is inherited unless set) until it says where it listens.
    pub fn spawn(mut cmd: Command, data: &Path) -> Server {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().expect("fieldsync serve starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut metrics_url = None;
        let url = loop {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "fieldsync serve exited before saying where it listens");
            if let Some(rest) = line.trim().strip_prefix("metrics on ") {
                metrics_url = Some(rest.to_owned());
            }
            if let Some(rest) = line.trim().strip_prefix("fieldsync server listening on ") {
                break rest.to_owned();
            }
        };
        Server { child, url, metrics_url, data: data.to_owned(), stdout }
    }

    /// The address without the scheme.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Send SIGTERM and wait; returns the exit code and the rest of stdout.
    pub fn stop(self) -> (i32, String) {
        self.stop_with("TERM")
    }

    /// Send `signal` (`TERM`, `INT`) and wait; returns the exit code and the rest of stdout.
    pub fn stop_with(mut self, signal: &str) -> (i32, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the server did not stop within 20 s of SIG{signal}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        (status.code().unwrap_or(-1), rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temporary directory with a server data dir, a project, users and device replicas.
pub struct Crew {
    pub dir: tempfile::TempDir,
    pub server: Server,
    /// user → token.
    pub tokens: BTreeMap<String, String>,
}

impl Crew {
    /// Project `build-out` (quarantine at 50 m) with olga (office), fred (foreman) and
    /// tina and tom (technicians), one device each; the server running.
    pub fn new() -> Crew {
        Crew::with_server(|data, _| Server::start(data))
    }

    /// The same crew, its server started by `start(data dir, crew dir)`.
    pub fn with_server(start: impl FnOnce(&Path, &Path) -> Server) -> Crew {
        Crew::prepared(|_| {}, start)
    }

    /// The same crew, its data dir made by `prepare(data dir)` before
    /// anything is in it (a small file system mounted there, say).
    pub fn prepared(prepare: impl FnOnce(&Path), start: impl FnOnce(&Path, &Path) -> Server) -> Crew {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("server");
        prepare(&data);
        let d = data.to_str().unwrap();
        ok(&["admin", "--data", d, "create-project", PROJECT, "--max-route-distance", "50"]);
        let mut tokens = BTreeMap::new();
        for (user, role) in [("olga", "office"), ("fred", "foreman"), ("tina", "technician"), ("tom", "technician")] {
            ok(&["admin", "--data", d, "add-user", user, "--project", PROJECT, "--role", role]);
            let e = ok_json(&["admin", "--data", d, "enroll", "--user", user, "--name", &format!("{user}'s phone")]);
            tokens.insert(user.to_owned(), e["token"].as_str().unwrap().to_owned());
        }
        let server = start(&data, dir.path());
        Crew { dir, server, tokens }
    }

    pub fn data(&self) -> String {
        self.server.data.to_str().unwrap().to_owned()
    }

    /// The replica file of `user`.
    pub fn db(&self, user: &str) -> String {
        self.dir.path().join(format!("{user}.db")).to_str().unwrap().to_owned()
    }

    /// `fieldsync device --db <user's> init …` (syncs once).
    pub fn init(&self, user: &str) -> Value {
        let db = self.db(user);
        ok_json(&[
            "device",
            "--db",
            &db,
            "init",
            "--server",
            &self.server.url,
            "--token",
            &self.tokens[user],
            "--project",
            PROJECT,
        ])
    }

    /// `fieldsync device --db <user's> args…`.
    pub fn device(&self, user: &str, args: &[&str]) -> Run {
        let db = self.db(user);
        let mut all = vec!["device", "--db", db.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Like [`Self::device`], insisting on success.
    pub fn device_ok(&self, user: &str, args: &[&str]) -> Run {
        let r = self.device(user, args);
        assert_eq!(
            r.code,
            0,
            "`{user}: device {}` failed:\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r
    }

    /// Like [`Self::device_ok`] with `--json`, parsed.
    pub fn device_json(&self, user: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.device_ok(user, &all).json()
    }

    /// Create the section `id` (as olga) along a 1.1 km east-west route.
    pub fn create_section(&self, id: &str, name: &str) {
        self.device_json("olga", &["create", "--id", id, "--name", name, "--route", "48.0,11.0;48.0,11.015"]);
    }
}

/// Replace what differs from run to run (ids, hashes, stamps, tokens,
/// times, byte counts, the server's port) with placeholders numbered by first appearance, so
/// equal ids stay visibly equal.
pub fn redact(value: &Value) -> Value {
    let mut names = BTreeMap::new();
    redact_in(value, None, &mut names)
}

fn redact_in(value: &Value, key: Option<&str>, names: &mut BTreeMap<String, String>) -> Value {
    match value {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), redact_in(v, Some(k), names))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|v| redact_in(v, key, names)).collect()),
        Value::Number(_) if key.is_some_and(|k| k.ends_with("_ms")) => Value::String("[ms]".into()),
        Value::Number(_) if key.is_some_and(|k| k.starts_with("bytes")) => Value::String("[bytes]".into()),
        Value::String(_) if key == Some("server") => Value::String("[server]".into()),
        Value::String(s) => Value::String(redact_str(s, names)),
        other => other.clone(),
    }
}

fn redact_str(s: &str, names: &mut BTreeMap<String, String>) -> String {
    let b = s.as_bytes();
    let hex_run =
        |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)).count();
    let digits = |from: usize, n: usize| b.len() >= from + n && b[from..from + n].iter().all(u8::is_ascii_digit);
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        // An HLC stamp: 13 digits, 5 digits, an actor.
        if boundary
            && digits(i, 13)
            && b.get(i + 13) == Some(&b'-')
            && digits(i + 14, 5)
            && b.get(i + 19) == Some(&b'-')
        {
            let actor = hex_run(i + 20);
            if actor >= 16 {
                let end = i + 20 + actor;
                out.push_str(&placeholder(&s[i..end], "edit", names));
                i = end;
                continue;
            }
        }
        let run = if boundary { hex_run(i) } else { 0 };
        if run >= 16 && b.get(i + run).is_none_or(|c| !c.is_ascii_alphanumeric()) {
            let kind = if run >= 64 { "hash" } else { "id" };
            out.push_str(&placeholder(&s[i..i + run], kind, names));
            i += run;
            continue;
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn placeholder(found: &str, kind: &str, names: &mut BTreeMap<String, String>) -> String {
    let n = names.values().filter(|v| v.starts_with(&format!("[{kind}-"))).count() + 1;
    names.entry(found.to_owned()).or_insert_with(|| format!("[{kind}-{n}]")).clone()
}

#[test]
fn redaction_keeps_equal_ids_equal() {
    let v = serde_json::json!({
        "a": "1795940569414-00000-60a49978ea98b58eecaa9f0a9b085162",
        "b": ["60a49978ea98b58eecaa9f0a9b085162", "accept point 1795940569414-00000-60a49978ea98b58eecaa9f0a9b085162"],
        "created_ms": 17, "bytes_sent": 3, "name": "s1", "progress": 40,
    });
    let r = redact(&v);
    assert_eq!(r["a"], "[edit-1]");
    assert_eq!(r["b"], serde_json::json!(["[id-1]", "accept point [edit-1]"]));
    assert_eq!((r["created_ms"].as_str(), r["bytes_sent"].as_str()), (Some("[ms]"), Some("[bytes]")));
    assert_eq!((r["name"].as_str(), r["progress"].as_i64()), (Some("s1"), Some(40)));
}
