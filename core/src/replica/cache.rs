//! The replica's parsed documents, least recently used dropped first. A
//! document is lent (`get`) or taken out while it is changed (`take`) and put
//! back only once the change is committed: a refused or failed write leaves
//! no trace in memory, and no hit copies a document.

use std::num::NonZeroUsize;

use automerge::ActorId;
use lru::LruCache;
use rusqlite::Connection;

use crate::domain::document::SectionDoc;
use crate::replica::ReplicaError;
use crate::store;

/// How many parsed documents a replica keeps in memory (and how many
/// sections a merge takes at a time).
pub(crate) const DOC_CACHE: usize = 32;

pub(crate) struct DocCache(LruCache<String, SectionDoc>);

impl DocCache {
    pub(crate) fn new() -> Self {
        DocCache(LruCache::new(NonZeroUsize::new(DOC_CACHE).expect("non-zero")))
    }

    /// The document of `id`, loaded from the store on a miss, lent.
    pub(crate) fn get(&mut self, conn: &Connection, actor: &ActorId, id: &str) -> Result<&SectionDoc, ReplicaError> {
        if !self.0.contains(id) {
            let doc = load(conn, actor, id)?;
            self.0.put(id.to_owned(), doc);
        }
        Ok(self.0.get(id).expect("just cached"))
    }

    /// The document of `id`, out of the cache, to change; `put` it back once
    /// the change is committed.
    pub(crate) fn take(&mut self, conn: &Connection, actor: &ActorId, id: &str) -> Result<SectionDoc, ReplicaError> {
        match self.0.pop(id) {
            Some(doc) => Ok(doc),
            None => load(conn, actor, id),
        }
    }

    /// A cached document, if any, without loading or refreshing it.
    pub(crate) fn peek(&self, id: &str) -> Option<&SectionDoc> {
        self.0.peek(id)
    }

    /// A cached document, out of the cache, if any.
    pub(crate) fn pop(&mut self, id: &str) -> Option<SectionDoc> {
        self.0.pop(id)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    /// Keep `doc` as the current state of `id`.
    pub(crate) fn put(&mut self, id: &str, doc: SectionDoc) {
        self.0.put(id.to_owned(), doc);
    }
}

fn load(conn: &Connection, actor: &ActorId, id: &str) -> Result<SectionDoc, ReplicaError> {
    let Some((_, snapshot, changes)) = store::load_doc(conn, id)? else {
        return Err(ReplicaError::UnknownSection(id.to_owned()));
    };
    let mut doc = SectionDoc::from_parts(snapshot.as_deref(), &changes)?;
    doc.set_actor(actor.clone());
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_refreshes_so_the_least_recently_used_goes_first() {
        let mut cache = DocCache::new();
        let actor = ActorId::random();
        for i in 0..DOC_CACHE {
            cache.put(&format!("s{i}"), SectionDoc::empty(actor.clone()));
        }
        let conn = Connection::open_in_memory().unwrap();
        // s0 is the oldest; a hit makes it the newest, so s1 goes instead.
        assert!(cache.get(&conn, &actor, "s0").is_ok());
        cache.put("new", SectionDoc::empty(actor.clone()));
        assert!(cache.contains("s0"));
        assert!(!cache.contains("s1"));
    }
}
