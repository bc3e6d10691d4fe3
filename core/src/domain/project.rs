//! What the rules need besides the document: who is who (the roster, which
//! only the server distributes) and the project's configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::role::Role;
use crate::domain::state_machine::ConstructionState;

/// One roster entry: an Automerge actor id bound to a user and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Hex Automerge actor id (one per device).
    pub actor: String,
    /// The person behind the device.
    pub user: String,
    /// Their authority in this project.
    pub role: Role,
}

/// The roster of one project: actor → member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    members: BTreeMap<String, Member>,
}

impl Roster {
    /// A roster from its members (a later entry for the same actor wins).
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        Roster { members: members.into_iter().map(|m| (m.actor.clone(), m)).collect() }
    }

    /// The member writing as `actor`, if the roster knows it.
    pub fn member(&self, actor: &str) -> Option<&Member> {
        self.members.get(actor)
    }

    /// Every member, ordered by actor.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
}

/// Progress band a state allows, inclusive percentages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressBand {
    /// Lowest allowed percentage.
    pub min: u8,
    /// Highest allowed percentage.
    pub max: u8,
}

/// Per-project configuration of the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectConfig {
    /// A reported point farther than this from the planned route is quarantined.
    pub max_route_distance_m: f64,
    /// Progress milestones: the band each state allows. States not listed allow 0–100.
    pub progress_bands: BTreeMap<ConstructionState, ProgressBand>,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        use ConstructionState::*;
        let band = |min, max| ProgressBand { min, max };
        ProjectConfig {
            max_route_distance_m: 100.0,
            progress_bands: [
                (Planned, band(0, 10)),
                (Surveyed, band(0, 20)),
                (Trenched, band(10, 50)),
                (ConduitLaid, band(30, 70)),
                (CablePulled, band(50, 85)),
                (Spliced, band(70, 95)),
                (Tested, band(85, 100)),
                (Completed, band(100, 100)),
            ]
            .into_iter()
            .collect(),
        }
    }
}

impl ProjectConfig {
    /// The band `state` allows.
    pub fn band(&self, state: ConstructionState) -> ProgressBand {
        self.progress_bands.get(&state).copied().unwrap_or(ProgressBand { min: 0, max: 100 })
    }
}
