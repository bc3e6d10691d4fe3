//! Black-box tests of the `fieldsync` binary: every test runs the built
//! command (`CARGO_BIN_EXE_fieldsync`) as a user or a script would.

mod admin;
mod bench;
mod device;
mod hostile;
mod serve;
mod simulate;
mod snapshots;
mod support;
mod trust;
