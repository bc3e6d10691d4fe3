//! The cursor into a project's feed. Opaque to devices; to the hub:
//!
//! - `""`: a new device, to be bootstrapped with whole documents;
//! - `b:<seq>:<section>`: bootstrapping, which started when the feed ended at
//!   `seq`, has sent every document up to and including `section` (by id);
//! - `c:<seq>`: the device holds everything in the feed up to `seq`.

use crate::error::HubError;

/// A parsed cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Nothing yet.
    Start,
    /// Whole documents sent up to `after` (by id); the feed to resume at ended at `seq`.
    Bootstrap {
        /// Feed seq when bootstrapping started.
        seq: u64,
        /// Last section sent.
        after: String,
    },
    /// Feed rows up to `seq` are held.
    Changes(u64),
}

impl Cursor {
    /// Parse what a device sent.
    pub fn parse(s: &str) -> Result<Cursor, HubError> {
        let bad = || HubError::UnknownCursor(format!("cursor `{s}` is not one this server gave; send an empty cursor"));
        if s.is_empty() {
            return Ok(Cursor::Start);
        }
        if let Some(rest) = s.strip_prefix("c:") {
            return rest.parse().map(Cursor::Changes).map_err(|_| bad());
        }
        if let Some(rest) = s.strip_prefix("b:") {
            let (seq, after) = rest.split_once(':').ok_or_else(bad)?;
            return Ok(Cursor::Bootstrap { seq: seq.parse().map_err(|_| bad())?, after: after.to_owned() });
        }
        Err(bad())
    }

    /// The feed seq the cursor stands at.
    pub fn seq(&self) -> u64 {
        match self {
            Cursor::Start => 0,
            Cursor::Bootstrap { seq, .. } | Cursor::Changes(seq) => *seq,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cursor::Start => Ok(()),
            Cursor::Bootstrap { seq, after } => write!(f, "b:{seq}:{after}"),
            Cursor::Changes(seq) => write!(f, "c:{seq}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for c in [
            Cursor::Start,
            Cursor::Changes(0),
            Cursor::Changes(123),
            Cursor::Bootstrap { seq: 7, after: "ab:cd".into() },
        ] {
            assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        }
        for bad in ["x", "c:", "c:-1", "b:1", "b:x:y"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever a device sends as its cursor: no panic, and every cursor
        /// the hub writes reads back as itself.
        #[test]
        fn any_cursor_parses_or_is_refused_without_panicking(
            s in prop_oneof!["\\PC*", "[bcx]?:?[0-9+-]{0,24}(:.{0,8})?"],
            seq in any::<u64>(),
            after in ".{0,16}",
        ) {
            let _ = Cursor::parse(&s);
            for c in [Cursor::Changes(seq), Cursor::Bootstrap { seq, after: after.clone() }] {
                prop_assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
            }
        }
    }
}
