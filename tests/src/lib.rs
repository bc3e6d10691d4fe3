//! FieldSync's deterministic network simulator: crews of real replicas and
//! the real hub on simulated rural links, with faults, workloads and
//! invariants. The test suite (`tests/sim/`) runs it over hundreds of seeds;
//! `fieldsync simulate` runs one scenario and prints its report; an app team
//! can run its own scenario with [`run_simulation`].
//!
//! Nothing in the simulated path reimplements production code:
//! - every device is a real [`fieldsync_core::Replica`] on a SQLite file,
//!   edited through its API and synced by the real
//!   [`fieldsync_core::SyncClient`] (on a thread of its own whose transport
//!   blocks until the event loop delivers the answer, see [`device`]),
//!   scheduled by the real [`fieldsync_core::SyncEngine`];
//! - the server is the real [`fieldsync_server::Hub`] on a SQLite data dir,
//!   called with the raw request body as its HTTP route calls it;
//! - time is virtual (a discrete-event loop, [`sim`]); each device has a
//!   clock of its own ([`device::Phone`], a `fieldsync_core::ManualClock`
//!   its replica is opened with) that the loop sets to the virtual time plus
//!   its skew before it acts, and new ids come from a sequence of its own
//!   (`fieldsync_core::SeededIds`, seeded from the run's seed and its
//!   index), so the same seed gives the same run, byte for byte.
//!
//! Module guide:
//! - [`config`]: [`SimConfig`], [`Workload`], [`FaultConfig`], [`InjectedBug`].
//! - [`profile`]: [`Profile`]s (`3g`, `edge`, `2g-rural`, `offline-day`) and their links.
//! - [`link`]: a device's link in virtual time (token buckets, loss, outages, partitions).
//! - [`photos`]: photos in the day: [`PhotoWorkload`], the sessions' photo transport, [`PhotoReport`].
//! - [`device`]: sync sessions on their own threads; killing and reopening an app.
//! - [`server`]: one or two hubs on one data dir; restarts; the live channel.
//! - [`workload`]: routes, sections, and edits of every kind by role.
//! - [`hostile`]: a tampered member's device: rule-breaking and malformed requests.
//! - [`sim`]: the event loop and [`run_simulation`].
//! - [`invariants`]: the checks after the network heals.
//! - [`report`]: [`SimReport`], [`SimProgress`], [`Invariant`], [`Violation`].
//! - [`seeds`]: the seed window, replays, the regression list, running many seeds.
//! - [`fuzz`]: the action fuzzer's model ([`fuzz::Action`], [`fuzz::run_actions`]).
//!
//! ```
//! use fieldsync_tests::{FaultConfig, Profile, SimConfig, run_simulation};
//!
//! let mut config = SimConfig::new(42, Profile::edge());
//! config.workload.devices = 5;
//! config.workload.sections = 4;
//! config.workload.day_hours = 2.0;
//! config.faults = FaultConfig { cut_responses: 0.2, ..FaultConfig::none() };
//! let report = run_simulation(config.clone(), |p| eprintln!("{:?} {} s", p.phase, p.simulated_ms / 1000));
//! assert!(report.converged, "{:#?}", report.violations);
//! assert!(report.edits > 0 && report.round_trips > 0);
//! // The same seed gives the same run.
//! assert_eq!(run_simulation(config, |_| {}).deterministic_part(), report.deterministic_part());
//! ```

pub mod config;
pub mod device;
pub mod fuzz;
pub mod hostile;
pub mod invariants;
pub mod link;
pub mod photos;
pub mod profile;
pub mod report;
pub mod rng;
pub mod seeds;
pub mod server;
pub mod sim;
pub mod workload;

pub use config::{FaultConfig, InjectedBug, ScopeWorkload, SimConfig, Workload};
pub use photos::{PhotoReport, PhotoWorkload};
pub use profile::{LinkProfile, Profile};
pub use report::{
    EFFICIENCY_LIMIT, FaultCounts, Invariant, Latency, Phase, ScopeFigures, SimProgress, SimReport, Violation,
};
pub use rng::Rng;
pub use sim::run_simulation;
