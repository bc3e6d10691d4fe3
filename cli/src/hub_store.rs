//! Where `serve` and `admin` keep the hub: a data directory (the embedded
//! SQLite store) or a PostgreSQL database, which several `fieldsync serve`
//! processes can share.

use std::fs::{File, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use fieldsync_server::pg_store::{self, Listener, PgOptions};
use fieldsync_server::{Hub, HubError, HubStore, SqliteHubStore};

use crate::error::CliError;

/// Exactly one of the two is used ([`StoreArgs::settle`]): clap's group
/// only insists on one at least, since a flag must win over the other's
/// environment variable.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct StoreArgs {
    /// Data directory (holds hub.db; created if missing).
    #[arg(long, visible_alias = "data-dir", value_name = "DIR", env = "FIELDSYNC_DATA_DIR")]
    pub data: Option<PathBuf>,
    /// A PostgreSQL database instead of a data directory
    /// (postgres://user:password@host:port/database; TLS with
    /// ?sslmode=verify-full&sslrootcert=ca.pem). Several servers may share it.
    /// Prefer the environment variable: it keeps the password off the command line.
    #[arg(long, value_name = "URL", env = "FIELDSYNC_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database connections the server opens at most: rounds of different
    /// projects run on as many at once.
    #[arg(long, value_name = "N", env = "FIELDSYNC_DATABASE_CONNECTIONS",
          default_value_t = fieldsync_server::hub::DEFAULT_POOL_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub database_connections: u32,
}

impl StoreArgs {
    /// Keep one store: a flag on the command line wins over the other's
    /// environment variable; both on the command line, or both in the
    /// environment, is a usage error. `matches` are the subcommand's.
    pub fn settle(&mut self, matches: &ArgMatches) -> Result<(), CliError> {
        let from_env = |id: &str| matches.value_source(id) == Some(ValueSource::EnvVariable);
        if self.data.is_none() || self.database_url.is_none() {
            return Ok(());
        }
        match (from_env("data"), from_env("database_url")) {
            (true, false) => self.data = None,
            (false, true) => self.database_url = None,
            (true, true) => {
                return Err(CliError::Usage(
                    "FIELDSYNC_DATA_DIR and FIELDSYNC_DATABASE_URL are both set; unset one".into(),
                ));
            }
            (false, false) => return Err(CliError::Usage("give --data DIR or --database-url URL, not both".into())),
        }
        Ok(())
    }

    /// The hub (for admin calls).
    pub fn open(&self) -> Result<Hub, CliError> {
        Ok(self.open_with_instance(PgOptions::default())?.0)
    }

    /// The hub to serve, and what to keep while serving: for a data directory
    /// its lock (one server per directory), for PostgreSQL the listener that
    /// brings the other processes' rounds to this one's live channels.
    pub fn open_to_serve(&self, options: PgOptions) -> Result<(Arc<Hub>, Serving), CliError> {
        let lock = self.data.as_deref().map(lock_data_dir).transpose()?;
        let (hub, instance) = self.open_with_instance(options)?;
        let hub = Arc::new(hub);
        let listener = match (&self.database_url, instance) {
            (Some(url), Some(instance)) => {
                let weak = Arc::downgrade(&hub);
                Some(pg_store::listen_with(url, options, &instance, move |project, seq| {
                    if let Some(hub) = weak.upgrade() {
                        hub.notify(project, seq);
                    }
                }))
            }
            _ => None,
        };
        Ok((hub, Serving { _lock: lock, _listener: listener }))
    }

    fn open_with_instance(&self, options: PgOptions) -> Result<(Hub, Option<String>), CliError> {
        match (&self.data, &self.database_url) {
            (_, Some(url)) => {
                let (hub, instance) =
                    Hub::on_postgres(url, options, self.database_connections as usize).map_err(|e| {
                        CliError::Failed(format!(
                            "cannot use the database at {}: {}; check --database-url and that PostgreSQL runs",
                            self.describe(),
                            HubError::from(e)
                        ))
                    })?;
                Ok((hub, Some(instance)))
            }
            (Some(dir), None) => {
                let dir = dir.clone();
                let open = move || Ok(Box::new(SqliteHubStore::open(&dir)?) as Box<dyn HubStore>);
                Ok((Hub::pooled(self.database_connections as usize, open).map_err(HubError::from)?, None))
            }
            (None, None) => Err(CliError::Usage("give --data DIR or --database-url URL".into())),
        }
    }

    /// Where the hub is, for people: the data file, or the database without its password.
    pub fn describe(&self) -> String {
        match (&self.data, &self.database_url) {
            (_, Some(url)) => {
                match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.rsplit_once('@')?))) {
                    Some((scheme, (user, host))) => {
                        format!("{scheme}://{}@{host}", user.split_once(':').map_or(user, |(name, _)| name))
                    }
                    None => url.clone(),
                }
            }
            (Some(dir), None) => dir.join(fieldsync_server::sqlite_store::DB_FILE).display().to_string(),
            (None, None) => String::new(),
        }
    }

    /// The flag that names this store, to repeat in hints.
    pub fn flag(&self) -> String {
        match (&self.data, &self.database_url) {
            (_, Some(_)) => format!("--database-url {}", self.describe()),
            (Some(dir), None) => format!("--data {}", dir.display()),
            (None, None) => String::new(),
        }
    }
}

/// What a serving process keeps until it stops.
pub struct Serving {
    _lock: Option<File>,
    _listener: Option<Listener>,
}

/// The lock file in a data directory, held by the `serve` process using it.
pub const LOCK_FILE: &str = "serve.lock";

/// Take the data directory's lock for this process's life (it is released
/// when the file is closed, at exit or crash alike), or say who holds it.
/// `admin` takes no lock: it works beside a running server, SQLite
/// serializing the two.
fn lock_data_dir(dir: &Path) -> Result<File, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Failed(format!("cannot create the data directory {}: {e}", dir.display())))?;
    let path = dir.join(LOCK_FILE);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| CliError::Failed(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the next one to say.
            let _ =
                file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id()));
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_owned(),
                pid => format!("another `fieldsync serve` (pid {pid})"),
            };
            Err(CliError::Failed(format!(
                "the data directory {} is in use by {holder}; one server per data directory \
                 (stop it first, or use --database-url for several servers)",
                dir.display()
            )))
        }
        Err(TryLockError::Error(e)) => {
            Err(CliError::Failed(format!("cannot lock the data directory {}: {e}", dir.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_is_locked_once() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        let e = lock_data_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())) && e.contains("in use"), "{e}");
        drop(held);
        lock_data_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let args = |url: &str| StoreArgs { data: None, database_url: Some(url.into()), database_connections: 1 };
        assert_eq!(
            args("postgres://hub:s3cr:et@db.internal:5432/fieldsync").describe(),
            "postgres://hub@db.internal:5432/fieldsync"
        );
        assert_eq!(args("postgres://hub@db/fs").describe(), "postgres://hub@db/fs");
        assert_eq!(args("postgres://db/fs").describe(), "postgres://db/fs");
    }
}
