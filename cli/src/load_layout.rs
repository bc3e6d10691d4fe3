//! Who is where in a load run: the projects' sizes, each device's role, and
//! the devices the hub enrolled (shared by the run and its device workers).

use fieldsync_core::Role;
use serde::{Deserialize, Serialize};

/// Which device is in which project, with which role and crew.
pub(crate) struct Layout {
    /// Device count of each project.
    pub(crate) projects: Vec<usize>,
}

impl Layout {
    pub(crate) fn new(devices: usize, size: usize, large: usize) -> Layout {
        let mut projects = Vec::new();
        if large > 0 {
            projects.push(large);
        }
        let mut rest = devices - large;
        while rest > 0 {
            let n = rest.min(size);
            match projects.last_mut() {
                // A project of one has nobody to see its edits: it joins the one before.
                Some(last) if n < 2 => *last += n,
                _ => projects.push(n),
            }
            rest -= n;
        }
        Layout { projects }
    }

    pub(crate) fn describe(&self) -> String {
        let mut sizes: Vec<(usize, usize)> = Vec::new();
        for &n in &self.projects {
            match sizes.iter_mut().find(|(size, _)| *size == n) {
                Some((_, count)) => *count += 1,
                None => sizes.push((n, 1)),
            }
        }
        sizes.iter().map(|(size, count)| format!("{count} of {size}")).collect::<Vec<_>>().join(", ")
    }

    /// The role of the `member`-th device of a project: one office, a foreman per ten, technicians.
    pub(crate) fn role(member: usize) -> Role {
        match member {
            0 => Role::Office,
            m if m % 10 == 1 => Role::Foreman,
            _ => Role::Technician,
        }
    }
}

/// A device the hub knows.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Enrolled {
    pub(crate) project: usize,
    pub(crate) project_id: String,
    pub(crate) member: usize,
    pub(crate) user: String,
    pub(crate) token: String,
}
