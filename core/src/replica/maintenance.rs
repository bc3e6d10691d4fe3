//! Upkeep of the store: compaction.

use crate::replica::{Replica, ReplicaError};
use crate::store;

impl Replica {
    /// Fold loose changes of up to `limit` sections with more than
    /// `threshold` of them into snapshots. Safe to run from a background
    /// thread on its own replica handle: it drops only the rows it folded.
    pub fn compact(&mut self, threshold: usize, limit: usize) -> Result<usize, ReplicaError> {
        let ids = store::sections_to_compact(&self.conn, threshold, limit)?;
        let mut n = 0;
        for id in ids {
            let tx = self.begin()?;
            n += usize::from(store::compact(&tx, &id)?);
            tx.commit()?;
        }
        Ok(n)
    }
}
