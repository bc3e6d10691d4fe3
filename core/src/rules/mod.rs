//! The rules over the merge and what they produce: the validated view, every
//! write's decision, and conflict records — a pure function of the merged
//! document, the roster and the project's config.

pub mod conflict;
pub mod mutation;
pub mod validate;
pub mod view;
