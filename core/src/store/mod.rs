//! The local SQLite store. All of the store's SQL lives in this module:
//! the schema and its upgrades, the queries (writes take the `&Transaction`
//! they belong to, reads a `&Connection`), WAL checkpoints and encryption.

pub mod checkpoint;
pub mod encryption;
mod list;
pub mod schema;
mod scope;
mod sql;

pub use list::*;
pub(crate) use scope::*;
pub use sql::*;
