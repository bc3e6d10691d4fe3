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

/// A member's role from a moment on, as the server ordered it: `role: None`
/// is a removal. Every replica learns the same changes, so a write is judged
/// under the role its author had when it was made, whatever the roster says
/// today: a role change never re-decides history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// The person.
    pub user: String,
    /// The role from `at_ms` on; `None`: no longer a member.
    pub role: Option<Role>,
    /// Server time of the change, ms since the epoch.
    pub at_ms: u64,
}

/// The roster of one project: actor → member, and each member's role history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    members: BTreeMap<String, Member>,
    /// user → (from ms, role), in the server's order. A user without history
    /// has held their member role for ever.
    history: BTreeMap<String, Vec<(u64, Option<Role>)>>,
}

impl Roster {
    /// A roster from its members (a later entry for the same actor wins).
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        Roster { members: members.into_iter().map(|m| (m.actor.clone(), m)).collect(), history: BTreeMap::new() }
    }

    /// The same roster with the role history `changes` (in the server's order).
    pub fn with_history(mut self, changes: impl IntoIterator<Item = RoleChange>) -> Self {
        for c in changes {
            self.history.entry(c.user).or_default().push((c.at_ms, c.role));
        }
        for h in self.history.values_mut() {
            h.sort_by_key(|(at, _)| *at); // Stable: the server's order among equal times.
        }
        self
    }

    /// The member writing as `actor`, if the roster knows it (removed members
    /// included: their past writes keep their author).
    pub fn member(&self, actor: &str) -> Option<&Member> {
        self.members.get(actor)
    }

    /// Every member, ordered by actor.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The role history, user by user, each in time order.
    pub fn history(&self) -> Vec<RoleChange> {
        self.history
            .iter()
            .flat_map(|(user, h)| {
                h.iter().map(|(at_ms, role)| RoleChange { user: user.clone(), role: *role, at_ms: *at_ms })
            })
            .collect()
    }

    /// The role `actor`'s user held at `at_ms` (`None`: not a member then).
    /// A moment before the user's first change counts as that first role (a
    /// clock behind the server's, before the device ever synced).
    pub fn role_at(&self, actor: &str, at_ms: u64) -> Option<Role> {
        let member = self.members.get(actor)?;
        match self.history.get(&member.user).filter(|h| !h.is_empty()) {
            None => Some(member.role),
            Some(h) => {
                let i = h.partition_point(|(at, _)| *at <= at_ms);
                h[i.saturating_sub(1)].1
            }
        }
    }

    /// The role `actor`'s user holds now (`None`: not, or no longer, a member).
    pub fn current_role(&self, actor: &str) -> Option<Role> {
        self.role_at(actor, u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_read_at_the_moment_of_the_write() {
        let roster = Roster::new([Member { actor: "a1".into(), user: "fred".into(), role: Role::Foreman }])
            .with_history([
                RoleChange { user: "fred".into(), role: Some(Role::Foreman), at_ms: 100 },
                RoleChange { user: "fred".into(), role: Some(Role::Technician), at_ms: 200 },
                RoleChange { user: "fred".into(), role: None, at_ms: 300 },
            ]);
        assert_eq!(roster.role_at("a1", 50), Some(Role::Foreman));
        assert_eq!(roster.role_at("a1", 199), Some(Role::Foreman));
        assert_eq!(roster.role_at("a1", 200), Some(Role::Technician));
        assert_eq!(roster.role_at("a1", 300), None);
        assert_eq!(roster.current_role("a1"), None);
        assert_eq!(roster.member("a1").map(|m| m.user.as_str()), Some("fred"));
        assert_eq!(roster.role_at("nobody", 150), None);
        let plain = Roster::new([Member { actor: "a2".into(), user: "olga".into(), role: Role::Office }]);
        assert_eq!(plain.role_at("a2", 0), Some(Role::Office));
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
    /// When the project's full-size photos go up (thumbnails always go): a
    /// project over 2G holds them for an unmetered link, whatever each
    /// device's own setting. Stores written before it read as `Always`.
    #[serde(default)]
    pub full_size_photos: FullSizePhotos,
}

/// When full-size photos go up (thumbnails always go): a device's own
/// setting, and its project's. The stricter of the two holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullSizePhotos {
    /// On any link.
    #[default]
    Always,
    /// Only while the app says the link is not metered (`SyncClient::set_metered`).
    OnUnmeteredLinks,
}

impl FullSizePhotos {
    /// Whether full sizes go now, on a link that is `metered` or not.
    pub fn allows(self, metered: bool) -> bool {
        !(metered && self == FullSizePhotos::OnUnmeteredLinks)
    }
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
            full_size_photos: FullSizePhotos::Always,
        }
    }
}

impl ProjectConfig {
    /// The band `state` allows.
    pub fn band(&self, state: ConstructionState) -> ProgressBand {
        self.progress_bands.get(&state).copied().unwrap_or(ProgressBand { min: 0, max: 100 })
    }
}
