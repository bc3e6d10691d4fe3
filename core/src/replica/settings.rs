//! Small named settings an embedder keeps in the replica's own database
//! (the `fieldsync` CLI keeps its server URL, token and project here), so
//! they travel with the file and are written in a transaction like the rest.
//! Stored in the `meta` table under `setting.<key>`, apart from the keys the
//! store itself uses.

use crate::replica::{Replica, ReplicaError};
use crate::store;

const PREFIX: &str = "setting.";

impl Replica {
    /// The setting `key`, if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>, ReplicaError> {
        Ok(store::meta(&self.conn, &format!("{PREFIX}{key}"))?)
    }

    /// Set the setting `key` to `value` (durable on return).
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<(), ReplicaError> {
        let tx = self.begin()?;
        store::set_meta(&tx, &format!("{PREFIX}{key}"), value)?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Replica, ReplicaOptions};

    #[test]
    fn settings_persist_and_stay_apart_from_the_store_meta() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let options = ReplicaOptions { device: "d".into(), ..Default::default() };
        let mut r = Replica::open(&path, options.clone()).unwrap();
        assert_eq!(r.setting("device").unwrap(), None);
        r.set_setting("device", "x").unwrap();
        r.set_setting("server", "http://a").unwrap();
        r.set_setting("server", "http://b").unwrap();
        drop(r);
        let r = Replica::open(&path, options).unwrap();
        assert_eq!(r.device(), "d");
        assert_eq!(r.setting("device").unwrap().as_deref(), Some("x"));
        assert_eq!(r.setting("server").unwrap().as_deref(), Some("http://b"));
    }
}
