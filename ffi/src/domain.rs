//! The domain's small types as they cross the FFI: points, states, roles,
//! roster members, fields. Each mirrors a core type with `From` both ways
//! where the app passes it in.

use fieldsync_core as core;

/// A WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct GeoPoint {
    /// Latitude, −90 to 90.
    pub lat: f64,
    /// Longitude, −180 to 180.
    pub lon: f64,
}

impl From<core::GeoPoint> for GeoPoint {
    fn from(p: core::GeoPoint) -> Self {
        GeoPoint { lat: p.lat, lon: p.lon }
    }
}

impl From<GeoPoint> for core::GeoPoint {
    fn from(p: GeoPoint) -> Self {
        core::GeoPoint { lat: p.lat, lon: p.lon }
    }
}

/// Where a section's construction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum ConstructionState {
    /// Planned by the office; nothing done yet.
    Planned,
    /// Surveyed on the ground.
    Surveyed,
    /// Trench dug.
    Trenched,
    /// Conduit laid in the trench.
    ConduitLaid,
    /// Fiber cable pulled through the conduit.
    CablePulled,
    /// Fibers spliced.
    Spliced,
    /// Link tested.
    Tested,
    /// Done and handed over.
    Completed,
    /// Work stopped for a reason; unblocking returns to the state it blocked.
    Blocked,
}

impl From<core::ConstructionState> for ConstructionState {
    fn from(s: core::ConstructionState) -> Self {
        use core::ConstructionState as C;
        match s {
            C::Planned => Self::Planned,
            C::Surveyed => Self::Surveyed,
            C::Trenched => Self::Trenched,
            C::ConduitLaid => Self::ConduitLaid,
            C::CablePulled => Self::CablePulled,
            C::Spliced => Self::Spliced,
            C::Tested => Self::Tested,
            C::Completed => Self::Completed,
            C::Blocked => Self::Blocked,
        }
    }
}

impl From<ConstructionState> for core::ConstructionState {
    fn from(s: ConstructionState) -> Self {
        use ConstructionState as F;
        match s {
            F::Planned => Self::Planned,
            F::Surveyed => Self::Surveyed,
            F::Trenched => Self::Trenched,
            F::ConduitLaid => Self::ConduitLaid,
            F::CablePulled => Self::CablePulled,
            F::Spliced => Self::Spliced,
            F::Tested => Self::Tested,
            F::Completed => Self::Completed,
            F::Blocked => Self::Blocked,
        }
    }
}

/// A member's authority. Technician < foreman < office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Role {
    /// Records progress, locations and one-step transitions.
    Technician,
    /// Also skips, reworks, unblocks, rolls progress back, accepts quarantined points.
    Foreman,
    /// Also plans routes and names sections.
    Office,
}

impl From<core::Role> for Role {
    fn from(r: core::Role) -> Self {
        match r {
            core::Role::Technician => Role::Technician,
            core::Role::Foreman => Role::Foreman,
            core::Role::Office => Role::Office,
        }
    }
}

impl From<Role> for core::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Technician => core::Role::Technician,
            Role::Foreman => core::Role::Foreman,
            Role::Office => core::Role::Office,
        }
    }
}

/// One roster entry: a device's actor id bound to a user and role. The
/// server distributes rosters; apps set one directly only in tests and dev.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Member {
    /// Hex actor id of the device (`Replica.actor()`).
    pub actor: String,
    /// The person behind the device.
    pub user: String,
    /// Their authority in the project.
    pub role: Role,
}

impl From<Member> for core::Member {
    fn from(m: Member) -> Self {
        core::Member { actor: m.actor, user: m.user, role: m.role.into() }
    }
}

/// The field of a section a write is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Field {
    /// The section's name (office only).
    Name,
    /// The planned route (office only).
    Route,
    /// The construction state.
    State,
    /// Progress percentage.
    Progress,
    /// Reported location / as-built GPS point.
    Location,
    /// A foreman's acceptance of a quarantined point.
    Acceptance,
    /// The crew the section is assigned to (office only).
    Crew,
}

impl From<core::Field> for Field {
    fn from(f: core::Field) -> Self {
        match f {
            core::Field::Name => Field::Name,
            core::Field::Route => Field::Route,
            core::Field::State => Field::State,
            core::Field::Progress => Field::Progress,
            core::Field::Location => Field::Location,
            core::Field::Acceptance => Field::Acceptance,
            core::Field::Crew => Field::Crew,
        }
    }
}
