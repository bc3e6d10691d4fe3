//! What decoding one body may cost, and the budget of the decode under way:
//! every change, batch, document and member is charged before the memory it
//! takes is allocated, so no body expands past its limits (packed changes
//! grow when unpacked; a list of empty items is small on the wire and large
//! in memory). Shared by the wire format (`sync/protocol.rs`), unpacking
//! (`sync/pack.rs`) and the scopes a request carries (`domain/coverage.rs`),
//! apart from all three so that none imports another's guts; with the lists
//! that charge it as they decode (`counted`, `times`).

/// Largest compressed body either side accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest inflated body either side accepts (a hub accepts less in a
/// request: [`Limits::REQUEST`]).
pub const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;
/// Most changes one request may upload; a device sends more in further rounds.
pub const MAX_CHANGES_PER_REQUEST: usize = 10_000;
/// Most dependencies one change may have (a change depends on the heads its
/// writer had: one, or a few after concurrent edits).
pub const MAX_DEPS_PER_CHANGE: usize = 1_024;
/// What each item of a decoded body (a change, a batch, a document, a
/// member) is charged besides its bytes: its share of the memory it takes.
const ITEM_OVERHEAD: usize = 96;

/// What decoding one body may cost, each limit checked before the memory it
/// guards is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The compressed body.
    pub body_bytes: usize,
    /// The inflated body.
    pub inflated_bytes: usize,
    /// The decoded message after every expansion: the changes as unpacked,
    /// plus [`ITEM_OVERHEAD`] per change, batch, document and member.
    pub decoded_bytes: usize,
    /// Changes in the whole body.
    pub changes: usize,
    /// Dependencies of one change.
    pub deps_per_change: usize,
}

impl Limits {
    /// What a hub accepts in a [`SyncRequest`]: far more than a device's
    /// upload budget fills (1 MiB of changes by default).
    pub const REQUEST: Limits = Limits {
        body_bytes: MAX_BODY_BYTES,
        inflated_bytes: 16 * 1024 * 1024,
        decoded_bytes: 16 * 1024 * 1024,
        changes: MAX_CHANGES_PER_REQUEST,
        deps_per_change: MAX_DEPS_PER_CHANGE,
    };

    /// What a device accepts in a [`SyncResponse`] (and [`decode`]'s limits):
    /// a page of at most 8 MiB of changes, or a document of at most 8 MiB.
    pub const RESPONSE: Limits = Limits {
        body_bytes: MAX_BODY_BYTES,
        inflated_bytes: MAX_INFLATED_BYTES,
        decoded_bytes: MAX_INFLATED_BYTES,
        changes: 500_000,
        deps_per_change: MAX_DEPS_PER_CHANGE,
    };
}

/// Why a batch's wire form could not be unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// Not a wire form this code writes.
    #[error("{0}")]
    Malformed(String),
    /// Over a limit of [`Limits`], found before anything was allocated for it.
    #[error("{what}: more than {limit}")]
    OverLimit {
        /// What is counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

// The budget of the decode under way on this thread: what [`decode_with`]'s
// limits leave, charged by [`crate::sync::pack`]'s unpacking and by
// [`counted`] lists as they go (serde gives a deserializer no other place to
// keep it). Outside a decode, each batch gets [`Limits::RESPONSE`] of its own.
use std::cell::RefCell;

use serde::Deserialize;

struct State {
    limits: Limits,
    bytes: usize,
    changes: usize,
    error: Option<PackError>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// A decode's budget, in force until dropped.
pub(crate) struct Scope {
    previous: Option<State>,
}

impl Scope {
    /// Start a budget of `limits`.
    pub(crate) fn enter(limits: Limits) -> Scope {
        let state = State { limits, bytes: 0, changes: 0, error: None };
        Scope { previous: STATE.replace(Some(state)) }
    }

    /// Start a budget of `limits` unless one is in force.
    pub(crate) fn ensure(limits: Limits) -> Option<Scope> {
        if STATE.with_borrow(Option::is_some) { None } else { Some(Scope::enter(limits)) }
    }

    /// What stopped the decode, if a limit did or unpacking failed.
    pub(crate) fn take_error(&self) -> Option<PackError> {
        STATE.with_borrow_mut(|s| s.as_mut().and_then(|s| s.error.take()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        STATE.set(self.previous.take());
    }
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let _scope = Scope::ensure(Limits::RESPONSE);
    STATE.with_borrow_mut(|s| f(s.as_mut().expect("a budget is in force")))
}

/// Charge one item of `bytes` (besides its overhead).
pub(crate) fn charge(bytes: usize) -> Result<(), PackError> {
    charge_bytes(bytes.saturating_add(ITEM_OVERHEAD))
}

/// Charge `bytes` with no overhead (a number in a list).
pub(crate) fn charge_bytes(bytes: usize) -> Result<(), PackError> {
    with(|s| {
        s.bytes = s.bytes.saturating_add(bytes);
        if s.bytes > s.limits.decoded_bytes {
            return Err(PackError::OverLimit {
                what: "bytes of a body once its changes are unpacked",
                limit: s.limits.decoded_bytes,
            });
        }
        Ok(())
    })
}

/// Count one more change.
pub(crate) fn count_change() -> Result<(), PackError> {
    with(|s| {
        s.changes += 1;
        if s.changes > s.limits.changes {
            return Err(PackError::OverLimit { what: "changes in one body", limit: s.limits.changes });
        }
        Ok(())
    })
}

/// Check a change's number of dependencies.
pub(crate) fn check_deps(n: u64) -> Result<(), PackError> {
    with(|s| {
        if n > s.limits.deps_per_change as u64 {
            return Err(PackError::OverLimit { what: "dependencies of one change", limit: s.limits.deps_per_change });
        }
        Ok(())
    })
}

/// Record why the decode stops (the first reason counts).
pub(crate) fn fail(e: PackError) {
    STATE.with_borrow_mut(|s| {
        if let Some(s) = s.as_mut() {
            s.error.get_or_insert(e);
        }
    });
}

/// A list in a message, each item charged to the decode's budget before it is
/// decoded (an empty batch is two bytes on the wire and far more in memory).
pub(crate) fn counted<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    charged(d, || charge(0))
}

/// Receipt times, each charged as the 8 bytes it takes in memory (it may be
/// one byte on the wire).
pub(crate) fn times<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    charged(d, || charge_bytes(8))
}

fn charged<'de, D, T>(d: D, charge: fn() -> Result<(), PackError>) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Counted<T>(fn() -> Result<(), PackError>, std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Counted<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            loop {
                if let Err(e) = (self.0)() {
                    let message = e.to_string();
                    fail(e);
                    return Err(serde::de::Error::custom(message));
                }
                match seq.next_element()? {
                    Some(item) => out.push(item),
                    None => return Ok(out),
                }
            }
        }
    }

    d.deserialize_seq(Counted(charge, std::marker::PhantomData))
}
