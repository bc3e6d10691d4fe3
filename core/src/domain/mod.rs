//! The domain, without storage or I/O: clocks, roles and projects,
//! construction states, routes, and how a write sits in a section document.

pub mod coverage;
pub mod device_clock;
pub mod document;
pub mod edit;
pub mod hlc;
pub mod id;
pub mod project;
pub mod role;
pub mod route;
pub mod state_machine;
