//! The hub's limits on what a client controls, each checked before the work
//! it would cause (docs/protocol.md, "Limits"). What decoding a body may cost
//! (its bytes compressed, inflated and decoded, its changes, their
//! dependencies) is core's [`protocol::Limits::REQUEST`], checked while
//! decoding; these are checked on the decoded request and its changes.
//!
//! Sizes in a section document are judged by two measures: bytes, and
//! Automerge operations, because bytes alone understate what a document
//! costs in memory: one change of a million inserted characters deflates to
//! a few kilobytes and takes about 80 MB once applied.

use automerge::{Change, ReadDoc};
use fieldsync_core::SectionDoc;
use fieldsync_core::protocol::{self, SyncRequest};

use crate::error::HubError;
use crate::store::HubStore;

/// Longest project and section ids (bytes): the wire's, which replicas keep to as well.
pub use fieldsync_core::protocol::{MAX_PROJECT_ID_BYTES, MAX_SECTION_ID_BYTES};
/// Longest actor id (hex characters: 32 bytes; FieldSync's are 16).
pub const MAX_ACTOR_ID_CHARS: usize = 64;
/// Longest cursor (bytes): `b:<seq>:<section id>` with the longest section id fits.
pub const MAX_CURSOR_BYTES: usize = 256;
/// Most actors one device may sync as (each install of the app is one).
pub const MAX_ACTORS_PER_DEVICE: usize = 16;
/// Largest single change (bytes).
pub const MAX_CHANGE_BYTES: usize = 1024 * 1024;
/// Most operations in a single change (a character of notes is one).
pub const MAX_CHANGE_OPS: usize = 100_000;
/// Largest section document: the bytes the hub stores for it (snapshot and
/// changes since), which every load of it reads.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
/// Most operations in a section document.
pub const MAX_DOCUMENT_OPS: usize = 1_000_000;

fn too_large(what: &str, size: usize, limit: usize) -> Result<(), HubError> {
    if size > limit {
        return Err(HubError::TooLarge(format!("the {what} is {size} bytes, over the limit of {limit}")));
    }
    Ok(())
}

/// The request's ids, cursor and counts (`413 too_large`). Before anything
/// is looked up: error messages quote ids, which are short from here on.
pub fn check_request(request: &SyncRequest) -> Result<(), HubError> {
    too_large("project id", request.project.len(), MAX_PROJECT_ID_BYTES)?;
    too_large("actor id", request.actor.len(), MAX_ACTOR_ID_CHARS)?;
    too_large("cursor", request.cursor.len(), MAX_CURSOR_BYTES)?;
    for batch in &request.upload {
        too_large("section id", batch.section.len(), MAX_SECTION_ID_BYTES)?;
    }
    for scope in std::iter::once(&request.scope).chain(&request.held) {
        scope.check().map_err(|e| HubError::Malformed(format!("{e}; subscribe to less")))?;
    }
    let changes: usize = request.upload.iter().map(|b| b.changes.len()).sum();
    let most = protocol::MAX_CHANGES_PER_REQUEST;
    if changes > most || request.upload.len() > most {
        return Err(HubError::TooLarge(format!(
            "the request uploads {changes} changes in {} sections, over the limit of {most}; \
             upload the rest in further rounds",
            request.upload.len()
        )));
    }
    Ok(())
}

/// Whether `device` may sync as one more actor (`403 forbidden`).
pub fn check_new_actor(store: &mut dyn HubStore, device: &str) -> Result<(), HubError> {
    let bound = store.actor_count(device)?;
    if bound >= MAX_ACTORS_PER_DEVICE {
        return Err(HubError::Forbidden(format!(
            "device {device} already syncs as {bound} actors, the most one device may; \
             enroll this install as a new device"
        )));
    }
    Ok(())
}

/// Whether one uploaded change is within the limits of a single change; the
/// reason of its refusal otherwise (the device keeps it but stops sending it).
pub fn check_change(bytes: usize, change: &Change) -> Result<(), String> {
    if bytes > MAX_CHANGE_BYTES {
        return Err(format!(
            "the change is {bytes} bytes, over the limit of {MAX_CHANGE_BYTES} for one change; \
             it stays on the device but is not synced"
        ));
    }
    if change.len() > MAX_CHANGE_OPS {
        return Err(format!(
            "the change has {} operations, over the limit of {MAX_CHANGE_OPS} for one change; \
             it stays on the device but is not synced",
            change.len()
        ));
    }
    Ok(())
}

/// Whether a section document stays within the document limits once `new`
/// is applied to `doc`, which the hub stores in `stored_bytes`; the reason of
/// the refusal of every new change otherwise. Judged before applying them.
pub fn check_document(stored_bytes: usize, doc: &SectionDoc, new: &[Change]) -> Result<(), String> {
    let bytes = stored_bytes + new.iter().map(|c| c.raw_bytes().len()).sum::<usize>();
    let ops = doc.automerge().stats().num_ops as usize + new.iter().map(Change::len).sum::<usize>();
    if bytes > MAX_DOCUMENT_BYTES || ops > MAX_DOCUMENT_OPS {
        return Err(format!(
            "with this round's changes the section document would hold {bytes} bytes and {ops} operations, \
             over the limit of {MAX_DOCUMENT_BYTES} bytes and {MAX_DOCUMENT_OPS} operations; the section \
             takes no more changes (record further work in a new section); these changes stay on the \
             device but are not synced"
        ));
    }
    Ok(())
}
