//! Sync with the hub: the wire format, changes packed on it, the transport,
//! when to sync and one sync's rounds (state machines without I/O), the
//! replica's side of a round and of a merge, the client that drives them,
//! and the live channel.

pub mod activity;
pub mod backoff;
pub mod client;
pub mod credentials;
pub mod engine;
#[cfg(feature = "http")]
pub mod live;
pub mod merge;
pub mod pack;
pub mod phase;
pub mod photo_wire;
pub mod protocol;
pub mod round;
pub mod run;
pub mod status;
pub mod transport;
