//! fieldsync-server's one integration-test binary (one link, many modules):
//! the real server on loopback, driven with real HTTP and real replicas.

mod client;
mod common;
mod live;
mod refusals;
mod store;
mod sync;
mod wire;
