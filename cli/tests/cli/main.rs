//! Black-box tests of the `fieldsync` binary: every test runs the built
//! command (`CARGO_BIN_EXE_fieldsync`) as a user or a script would.

mod admin;
mod bench;
mod cluster;
mod device;
mod disk_full;
mod hostile;
mod ops;
mod serve;
mod simulate;
mod snapshots;
mod support;
mod trust;
