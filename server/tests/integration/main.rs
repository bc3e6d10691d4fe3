//! fieldsync-server's one integration-test binary (one link, many modules):
//! the real server on loopback, driven with real HTTP and real replicas.

mod client;
mod common;
mod converge;
mod faults;
mod fuzz;
mod http_limits;
mod limits;
mod live;
mod live_client;
mod live_limits;
mod ops;
mod pg;
mod photos;
mod proxy;
mod refusals;
mod scope;
mod store;
mod sync;
mod tokens;
mod trust;
mod wire;
