//! Partial sync as the app sees it: the [`Scope`] a project is to hold, made
//! of [`Subscription`]s (a corridor, a box, ids, a crew's assignments), which
//! sections the device holds and why ([`SectionHolding`], [`HeldBecause`]),
//! and the office's crew assignments subscriptions follow. Mirrors of core's
//! types with `From` conversions; whether a subscription covers a section,
//! and the limits a scope must keep (an invalid one fails `InvalidInput`),
//! are core's (`core/src/domain/coverage.rs`).

use fieldsync_core as core;

use crate::domain::GeoPoint;
use crate::error::FieldSyncError;
use crate::merge::EditReceipt;
use crate::query::GeoBounds;
use crate::replica::Replica;

/// What a device holds of its project.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Scope {
    /// Every section (the default: an office's or a foreman's device, and
    /// every device that subscribes to nothing).
    Everything,
    /// The sections any of these subscriptions covers.
    Only {
        /// The subscriptions, in order (a holding's `Subscription` reason names one by its index).
        subscriptions: Vec<Subscription>,
    },
}

/// One way a device asks for sections.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum Subscription {
    /// Sections whose route comes within `buffer_m` metres of this line
    /// (1 to 1,000 points; at most 50,000 m either side).
    Corridor {
        /// The corridor's line, in order (kept to the decimetre).
        points: Vec<GeoPoint>,
        /// How far either side of the line, in metres.
        buffer_m: u32,
    },
    /// Sections whose route enters this box (south ≤ north, west ≤ east).
    Area {
        /// The box, in degrees.
        bounds: GeoBounds,
    },
    /// These sections, by id (at most 10,000 named in a scope).
    Sections {
        /// Section ids.
        ids: Vec<String>,
    },
    /// Sections the office assigned to this crew (`assign_crew`).
    Crew {
        /// The crew's name (1 to 64 bytes).
        crew: String,
    },
}

/// Why the device holds a section.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum HeldBecause {
    /// The project's scope is everything.
    Everything,
    /// A subscription of the scope covers it.
    Subscription {
        /// Its index in the scope's list (`Replica::scope`).
        index: u32,
    },
    /// It has local edits the server has not taken: kept until it has.
    UnsyncedEdits,
    /// The scope changed and the next sync settles whether it stays.
    ScopeChanging,
}

/// A section the device holds, and why.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SectionHolding {
    /// Section id.
    pub section: String,
    /// Every reason that holds (at least one).
    pub reasons: Vec<HeldBecause>,
}

impl From<GeoBounds> for core::Bounds {
    fn from(b: GeoBounds) -> Self {
        core::Bounds { south: b.south, west: b.west, north: b.north, east: b.east }
    }
}

impl From<core::Bounds> for GeoBounds {
    fn from(b: core::Bounds) -> Self {
        GeoBounds { south: b.south, west: b.west, north: b.north, east: b.east }
    }
}

impl From<Subscription> for core::Subscription {
    fn from(s: Subscription) -> Self {
        match s {
            Subscription::Corridor { points, buffer_m } => {
                core::Subscription::Corridor { points: points.into_iter().map(Into::into).collect(), buffer_m }
            }
            Subscription::Area { bounds } => core::Subscription::Area(bounds.into()),
            Subscription::Sections { ids } => core::Subscription::Sections(ids),
            Subscription::Crew { crew } => core::Subscription::Crew(crew),
        }
    }
}

impl From<core::Subscription> for Subscription {
    fn from(s: core::Subscription) -> Self {
        match s {
            core::Subscription::Corridor { points, buffer_m } => {
                Subscription::Corridor { points: points.into_iter().map(Into::into).collect(), buffer_m }
            }
            core::Subscription::Area(bounds) => Subscription::Area { bounds: bounds.into() },
            core::Subscription::Sections(ids) => Subscription::Sections { ids },
            core::Subscription::Crew(crew) => Subscription::Crew { crew },
        }
    }
}

impl From<Scope> for core::Scope {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Everything => core::Scope::Everything,
            Scope::Only { subscriptions } => core::Scope::Only(subscriptions.into_iter().map(Into::into).collect()),
        }
    }
}

impl From<core::Scope> for Scope {
    fn from(s: core::Scope) -> Self {
        match s {
            core::Scope::Everything => Scope::Everything,
            core::Scope::Only(list) => Scope::Only { subscriptions: list.into_iter().map(Into::into).collect() },
        }
    }
}

impl From<core::HeldBecause> for HeldBecause {
    fn from(h: core::HeldBecause) -> Self {
        match h {
            core::HeldBecause::Everything => HeldBecause::Everything,
            // A scope holds at most 64 subscriptions (core's limit).
            core::HeldBecause::Subscription { index } => HeldBecause::Subscription { index: index as u32 },
            core::HeldBecause::UnsyncedEdits => HeldBecause::UnsyncedEdits,
            core::HeldBecause::ScopeChanging => HeldBecause::ScopeChanging,
        }
    }
}

impl From<core::SectionHolding> for SectionHolding {
    fn from(h: core::SectionHolding) -> Self {
        SectionHolding { section: h.section, reasons: h.reasons.into_iter().map(Into::into).collect() }
    }
}

#[uniffi::export]
impl Replica {
    /// The scope `project` is to hold (`Everything` unless set).
    pub fn scope(&self, project: String) -> Result<Scope, FieldSyncError> {
        self.read(|r| r.scope(&project)).map(Into::into)
    }

    /// Hold only what `scope` covers of `project`, from the next sync on
    /// (kept across restarts; it can change offline). Sections leaving it
    /// are dropped once the server has their local edits; sections entering
    /// it arrive whole. A scope over the limits fails `InvalidInput`.
    pub fn set_scope(&self, project: String, scope: Scope) -> Result<(), FieldSyncError> {
        self.write(|r| r.set_scope(&project, scope.into()))
    }

    /// Add `subscription` to `project`'s scope (a scope of everything
    /// becomes this subscription alone); returns the new scope.
    pub fn subscribe(&self, project: String, subscription: Subscription) -> Result<Scope, FieldSyncError> {
        self.write(|r| r.subscribe(&project, subscription.into())).map(Into::into)
    }

    /// The sections of `project` this device holds, each with why.
    pub fn holdings(&self, project: String) -> Result<Vec<SectionHolding>, FieldSyncError> {
        Ok(self.read(|r| r.holdings(&project))?.into_iter().map(Into::into).collect())
    }

    /// Assign a section to a crew (office only), whose `Crew` subscriptions then hold it.
    pub fn assign_crew(&self, section: String, crew: String) -> Result<EditReceipt, FieldSyncError> {
        self.write(|r| r.assign_crew(&section, &crew)).map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Member, Role};

    #[test]
    fn a_scope_goes_in_and_comes_back_and_holdings_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let office =
            Replica::open(dir.path().join("office.db").display().to_string(), "office-1".into(), None).unwrap();
        office
            .set_roster("p1".into(), vec![Member { actor: office.actor(), user: "olga".into(), role: Role::Office }])
            .unwrap();
        let route = vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
        let id = office.create_section("p1".into(), "Hauptstraße".into(), route.clone()).unwrap();
        assert_eq!(office.section(id.clone()).unwrap().crew, None);
        office.assign_crew(id.clone(), "north".into()).unwrap();
        assert_eq!(office.section(id.clone()).unwrap().crew.as_deref(), Some("north"));
        assert_eq!(office.scope("p1".into()).unwrap(), Scope::Everything);
        assert_eq!(
            office.holdings("p1".into()).unwrap()[0].reasons,
            [HeldBecause::Everything, HeldBecause::UnsyncedEdits]
        );

        let corridor = Subscription::Corridor { points: route, buffer_m: 500 };
        let area = Subscription::Area { bounds: GeoBounds { south: 47.0, west: 10.0, north: 47.5, east: 10.5 } };
        let crew = Subscription::Crew { crew: "north".into() };
        office.set_scope("p1".into(), Scope::Only { subscriptions: vec![corridor.clone(), area.clone()] }).unwrap();
        let scope = office.subscribe("p1".into(), crew.clone()).unwrap();
        assert_eq!(scope, Scope::Only { subscriptions: vec![corridor, area, crew] });
        assert_eq!(office.scope("p1".into()).unwrap(), scope);
        let holding = office.holdings("p1".into()).unwrap().pop().unwrap();
        assert_eq!(holding.section, id);
        let by = |index| holding.reasons.contains(&HeldBecause::Subscription { index });
        assert!(by(0) && !by(1) && by(2), "{:?}", holding.reasons);

        let wide = Subscription::Corridor { points: vec![GeoPoint { lat: 48.0, lon: 11.0 }], buffer_m: 9_000_000 };
        let refused = office.subscribe("p1".into(), wide).unwrap_err();
        assert!(
            matches!(&refused, FieldSyncError::InvalidInput { detail } if detail.contains("50000 m")),
            "{refused:?}"
        );
        assert!(matches!(office.assign_crew(id, String::new()), Err(FieldSyncError::InvalidInput { .. })));
        assert_eq!(office.scope("p1".into()).unwrap(), scope, "a refused scope changes nothing");
    }
}
