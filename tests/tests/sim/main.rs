//! The simulation suite: one binary (link time), a module per concern.
//!
//! - `seeds`: the seed window (500 by default, moving with the commit) and
//!   every seed that ever failed (`tests/regressions.txt`).
//! - `fuzz`: the action fuzzer (proptest, shrunk on failure) and its fixtures.
//! - `api`: the simulator as a product: a small run, determinism, the report.
//! - `concurrency`: two hubs on one data dir serving at once, on real threads.
//! - `injected`: the suite catches the bugs the simulator can inject.
//! - `figures`: `#[ignore]`d runs that print the figures in BENCHMARKS.md.
//! - `scope`: partial replicas: crews with overlapping corridors that move
//!   during the day, and the invariants over what each holds.
//! - `photos`: a day of photos on 2g-rural and edge: the photo invariants, and
//!   the edits' pace against the same day without photos.

mod api;
mod concurrency;
mod figures;
mod fuzz;
mod injected;
mod photos;
mod scope;
mod seeds;
