//! fieldsync-core's one integration-test binary (one link, many modules).

mod common;
mod convergence;
mod crash;
mod device_clock;
mod encryption;
mod feed;
mod fuzz;
mod replica;
mod rules;
mod salvage;
mod scope;
mod sync_client;
mod sync_run;
