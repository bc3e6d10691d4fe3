//! A throwaway PostgreSQL server for `fieldsync serve --database-url` (the
//! machine's `initdb` and `pg_ctl`; the test command installs Debian's
//! `postgresql` when missing), which a test may stop and start again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A PostgreSQL cluster in a temporary directory, stopped on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Run a PostgreSQL tool as the user that owns the cluster: `postgres` when
/// the tests run as root (PostgreSQL refuses to run as root), else ourselves.
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> Output {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let program = bin.join(tool);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    cmd.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Run `openssl` with `args` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Cluster {
    pub fn start() -> Cluster {
        let cluster = Cluster::init();
        cluster.resume();
        cluster
    }

    /// A cluster that takes TLS connections only (`hostssl`), its server
    /// certificate (for 127.0.0.1) signed by a test CA; returns that CA's `ca.pem`.
    pub fn start_tls() -> (Cluster, PathBuf) {
        let cluster = Cluster::init();
        let dir = cluster.dir.path().to_owned();
        #[rustfmt::skip]
        let steps: [&[&str]; 3] = [
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
              "-keyout", "ca.key", "-out", "ca.pem"],
            &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
              "-out", "server.csr"],
            &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
              "-days", "2", "-extfile", "san.ext", "-out", "server.pem"],
        ];
        std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1, DNS:localhost\n").unwrap();
        for step in steps {
            openssl(&dir, step);
        }
        let data = dir.join("data");
        let conf =
            format!("\nssl = on\nssl_cert_file = '{0}/server.pem'\nssl_key_file = '{0}/server.key'\n", dir.display());
        let mut postgresql_conf = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut postgresql_conf, conf.as_bytes()).unwrap();
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n").unwrap();
        std::fs::set_permissions(dir.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status();
        cluster.resume();
        (cluster, dir.join("ca.pem"))
    }

    fn init() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).max()
            })
            .expect("PostgreSQL's server is not installed: `apt-get install postgresql` (scripts/test.sh does)");
        let dir = tempfile::Builder::new().prefix("fieldsync-cli-pg").tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status();
        let init =
            pg_tool(&bin, "initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Cluster { dir, bin, port }
    }

    /// The database's URL, with `password` in it (trust authentication ignores it).
    pub fn url_with_password(&self, password: &str) -> String {
        format!("postgres://postgres:{password}@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    /// Stop the server (its sessions are ended), as an outage would.
    pub fn stop(&self) {
        let stop = pg_tool(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(stop.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&stop.stderr));
    }

    /// Start it (again), on the same port.
    pub fn resume(&self) {
        let data = self.data();
        let options = format!("-p {} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", self.port);
        let log = self.dir.path().join("log");
        let start =
            pg_tool(&self.bin, "pg_ctl", &["-D", &data, "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
        assert!(
            start.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        pg_tool(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}
