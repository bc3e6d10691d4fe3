//! Who may do what: the roles of a project's roster, ordered by authority.

use serde::{Deserialize, Serialize};

/// A member's authority. Ordered: technician < foreman < office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Records progress, locations and one-step transitions.
    Technician,
    /// Also skips, reworks, unblocks, rolls progress back, accepts quarantined points.
    Foreman,
    /// Also plans routes and names sections.
    Office,
}

impl Role {
    /// The lowercase name used on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Technician => "technician",
            Role::Foreman => "foreman",
            Role::Office => "office",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "technician" => Ok(Role::Technician),
            "foreman" => Ok(Role::Foreman),
            "office" => Ok(Role::Office),
            other => Err(format!("unknown role `{other}`: use technician, foreman or office")),
        }
    }
}
