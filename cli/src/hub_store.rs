//! Where `serve` and `admin` keep the hub: a data directory (the embedded
//! SQLite store) or a PostgreSQL database, which several `fieldsync serve`
//! processes can share.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use fieldsync_server::pg_store::{self, Listener};
use fieldsync_server::{Hub, HubError, PgHubStore};

use crate::error::CliError;

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct StoreArgs {
    /// Data directory (holds hub.db; created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// A PostgreSQL database instead of a data directory
    /// (postgres://user:password@host:port/database; no TLS: a private network
    /// or local socket). Several servers may share it.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// The hub (for admin calls).
    pub fn open(&self) -> Result<Hub, CliError> {
        Ok(self.open_with_instance()?.0)
    }

    /// The hub to serve, and for PostgreSQL the listener that brings the other
    /// processes' rounds to this one's live channels (keep it while serving).
    pub fn open_to_serve(&self) -> Result<(Arc<Hub>, Option<Listener>), CliError> {
        let (hub, instance) = self.open_with_instance()?;
        let hub = Arc::new(hub);
        let listener = match (&self.database_url, instance) {
            (Some(url), Some(instance)) => {
                let weak = Arc::downgrade(&hub);
                Some(pg_store::listen(url, &instance, move |project, seq| {
                    if let Some(hub) = weak.upgrade() {
                        hub.notify(project, seq);
                    }
                }))
            }
            _ => None,
        };
        Ok((hub, listener))
    }

    fn open_with_instance(&self) -> Result<(Hub, Option<String>), CliError> {
        match (&self.data, &self.database_url) {
            (_, Some(url)) => {
                let store = PgHubStore::connect(url).map_err(|e| {
                    CliError::Failed(format!(
                        "cannot use the database at {}: {}; check --database-url and that PostgreSQL runs",
                        self.describe(),
                        HubError::from(e)
                    ))
                })?;
                let instance = store.instance().to_owned();
                Ok((Hub::new(store), Some(instance)))
            }
            (Some(dir), None) => Ok((Hub::open(dir)?, None)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let args = |url: &str| StoreArgs { data: None, database_url: Some(url.into()) };
        assert_eq!(
            args("postgres://hub:s3cr:et@db.internal:5432/fieldsync").describe(),
            "postgres://hub@db.internal:5432/fieldsync"
        );
        assert_eq!(args("postgres://hub@db/fs").describe(), "postgres://hub@db/fs");
        assert_eq!(args("postgres://db/fs").describe(), "postgres://db/fs");
    }
}
