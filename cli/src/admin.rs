//! `fieldsync admin --data DIR …` (or `--database-url URL`): the hub's admin
//! calls on its store. SQLite (or PostgreSQL) serializes them with a running
//! server's rounds, so they work while `fieldsync serve` runs on the same store.

use clap::{Args, Subcommand};
use fieldsync_core::{FullSizePhotos, ProjectConfig, Role};
use serde_json::json;

use crate::error::CliError;
use crate::hub_store::StoreArgs;
use crate::output::{self, short};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a project.
    CreateProject {
        /// Project id.
        id: String,
        /// Points farther than this from a section's planned route are quarantined (metres; default 100).
        #[arg(long, value_name = "METRES", env = "FIELDSYNC_MAX_ROUTE_DISTANCE")]
        max_route_distance: Option<f64>,
        /// When the project's full-size photos go up: `always`, or `on-unmetered-links`
        /// (a crew on 2G sends thumbnails, full sizes wait for Wi-Fi); default always.
        #[arg(long, value_name = "WHEN", value_parser = parse_full_size_photos, env = "FIELDSYNC_FULL_SIZE_PHOTOS")]
        full_size_photos: Option<FullSizePhotos>,
    },
    /// Change a project's configuration; its devices learn it at their next sync.
    Configure {
        /// Project id.
        id: String,
        /// Points farther than this from a section's planned route are quarantined (metres).
        #[arg(long, value_name = "METRES", env = "FIELDSYNC_MAX_ROUTE_DISTANCE")]
        max_route_distance: Option<f64>,
        /// When the project's full-size photos go up: `always`, or `on-unmetered-links`.
        #[arg(long, value_name = "WHEN", value_parser = parse_full_size_photos, env = "FIELDSYNC_FULL_SIZE_PHOTOS")]
        full_size_photos: Option<FullSizePhotos>,
    },
    /// Add a user to a project with a role (or change their role).
    AddUser {
        /// User name.
        user: String,
        /// Project id.
        #[arg(long, env = "FIELDSYNC_PROJECT")]
        project: String,
        /// technician, foreman or office.
        #[arg(long, env = "FIELDSYNC_ROLE")]
        role: Role,
    },
    /// Remove a user from a project: their devices stop syncing it; what they
    /// wrote before keeps the role it was written under.
    RemoveUser {
        /// User name.
        user: String,
        /// Project id.
        #[arg(long, env = "FIELDSYNC_PROJECT")]
        project: String,
    },
    /// Enroll a device for a user; prints its token once (only its hash is kept).
    Enroll {
        /// User the device belongs to.
        #[arg(long, env = "FIELDSYNC_USER")]
        user: String,
        /// A name to recognize it by.
        #[arg(long, default_value = "device", env = "FIELDSYNC_DEVICE_NAME")]
        name: String,
        /// The token stops working after this long (`90s`, `30m`, `12h`, `7d`); never if not given.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, env = "FIELDSYNC_TOKEN_EXPIRES_IN")]
        expires_in: Option<u64>,
    },
    /// A fresh token for an enrolled device (its previous one stops working at
    /// once): what an app's backend hands the app's credentials connector.
    IssueToken {
        /// Device id (from `enroll` or `devices`).
        device: String,
        /// The token stops working after this long (`90s`, `30m`, `12h`, `7d`; `0s`: at once); never if not given.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, env = "FIELDSYNC_TOKEN_EXPIRES_IN")]
        expires_in: Option<u64>,
    },
    /// Revoke a device: its token stops working at once; its past changes stay.
    Revoke {
        /// Device id (from `devices`).
        device: String,
    },
    /// List projects with their members.
    Projects,
    /// List devices with their actors.
    Devices,
    /// A project's roster: every device actor with its user and role.
    Roster {
        /// Project id.
        #[arg(long, env = "FIELDSYNC_PROJECT")]
        project: String,
    },
    /// The server's validated view of a section, and how many of its photos' bytes it holds.
    Section {
        /// Section id.
        id: String,
    },
    /// Remove the photo uploads that no section names any more (a record the
    /// rules refused, an upload whose record never came); `serve` does it hourly.
    CollectPhotos {
        /// Only those begun at least this many hours ago.
        #[arg(long, value_name = "HOURS", default_value_t = 7 * 24)]
        grace_hours: u64,
    },
    /// The server's conflict records of a project.
    Conflicts {
        /// Project id.
        #[arg(long, env = "FIELDSYNC_PROJECT")]
        project: String,
    },
}

pub fn run(args: AdminArgs, json: bool) -> Result<(), CliError> {
    if let Some(data) = &args.store.data
        && !data.join(fieldsync_server::sqlite_store::DB_FILE).exists()
        && !matches!(args.command, AdminCommand::CreateProject { .. })
    {
        return Err(CliError::Failed(format!(
            "no server data in {}; start with `fieldsync admin --data {} create-project <id>` or `fieldsync serve --data {}`",
            data.display(),
            data.display(),
            data.display()
        )));
    }
    let hub = args.store.open()?;
    match args.command {
        AdminCommand::CreateProject { id, max_route_distance, full_size_photos } => {
            let config = configured(ProjectConfig::default(), max_route_distance, full_size_photos)?;
            hub.create_project(&id, config.clone())?;
            if json {
                output::json(&json!({ "project": id, "config": config }))
            } else {
                println!("created project {id} ({})", describe(&config));
                Ok(())
            }
        }
        AdminCommand::Configure { id, max_route_distance, full_size_photos } => {
            let Some(project) = hub.list_projects()?.into_iter().find(|p| p.id == id) else {
                return Err(fieldsync_server::HubError::UnknownProject(id).into());
            };
            let config = configured(project.config, max_route_distance, full_size_photos)?;
            hub.set_config(&id, config.clone())?;
            if json {
                output::json(&json!({ "project": id, "config": config }))
            } else {
                println!("project {id}: {} (its devices learn it at their next sync)", describe(&config));
                Ok(())
            }
        }
        AdminCommand::AddUser { user, project, role } => {
            hub.add_member(&project, &user, role)?;
            if json {
                output::json(&json!({ "project": project, "user": user, "role": role }))
            } else {
                println!("{user} is {} in {project}", role.as_str());
                Ok(())
            }
        }
        AdminCommand::RemoveUser { user, project } => {
            hub.remove_member(&project, &user)?;
            if json {
                output::json(&json!({ "project": project, "removed": user }))
            } else {
                println!("{user} is no longer a member of {project}");
                Ok(())
            }
        }
        AdminCommand::Enroll { user, name, expires_in } => {
            let expires_ms = expires_in.map(|ms| fieldsync_server::now_ms().saturating_add(ms));
            let e = hub.enroll_device_until(&user, &name, expires_ms)?;
            if json {
                let mut out = json!({ "device_id": e.device_id, "user": user, "name": name, "token": e.token });
                // Only when it expires: the shape without `--expires-in` stays as it was.
                if let Some(ms) = expires_ms {
                    out["expires_ms"] = json!(ms);
                }
                output::json(&out)
            } else {
                println!("enrolled device {} ({name}) for {user}", e.device_id);
                println!("token: {}", e.token);
                print_expiry(expires_ms);
                println!("(shown once: only its hash is kept)");
                Ok(())
            }
        }
        AdminCommand::IssueToken { device, expires_in } => {
            let expires_ms = expires_in.map(|ms| fieldsync_server::now_ms().saturating_add(ms));
            let e = hub.issue_token(&device, expires_ms)?;
            if json {
                output::json(&json!({ "device_id": e.device_id, "token": e.token, "expires_ms": expires_ms }))
            } else {
                println!("new token for device {} (its previous token no longer works)", e.device_id);
                println!("token: {}", e.token);
                print_expiry(expires_ms);
                Ok(())
            }
        }
        AdminCommand::Revoke { device } => {
            hub.revoke_device(&device)?;
            if json {
                output::json(&json!({ "device_id": device, "revoked": true }))
            } else {
                println!("revoked device {device}; its token no longer works, its past changes stay");
                Ok(())
            }
        }
        AdminCommand::Projects => {
            let projects = hub.list_projects()?;
            if json {
                return output::json(&json!({ "projects": projects }));
            }
            if projects.is_empty() {
                println!("no projects");
            }
            for p in projects {
                println!(
                    "{}  {} section(s), {} change(s), {}, roster version {}",
                    p.id,
                    p.sections,
                    p.changes,
                    describe(&p.config),
                    p.roster_version
                );
                for m in p.members {
                    println!("  {}  {}", m.user, m.role.as_str());
                }
            }
            Ok(())
        }
        AdminCommand::Devices => {
            let devices = hub.list_devices()?;
            if json {
                return output::json(&json!({ "devices": devices }));
            }
            if devices.is_empty() {
                println!("no devices");
            }
            for d in devices {
                let status = match (d.device.revoked_ms, d.device.expires_ms) {
                    (Some(ms), _) => format!("revoked {}", output::time(ms as i64)),
                    (None, Some(ms)) => format!("token until {}", output::time(ms as i64)),
                    (None, None) => "active".into(),
                };
                let actors: Vec<&str> = d.actors.iter().map(|a| short(a)).collect();
                println!(
                    "{}  {}  {:?}  enrolled {}  {status}  actors: {}",
                    d.device.id,
                    d.device.user,
                    d.device.name,
                    output::time(d.device.created_ms as i64),
                    if actors.is_empty() { "(none yet)".into() } else { actors.join(", ") }
                );
            }
            Ok(())
        }
        AdminCommand::Roster { project } => {
            if !hub.list_projects()?.iter().any(|p| p.id == project) {
                return Err(fieldsync_server::HubError::UnknownProject(project).into());
            }
            let members = hub.roster(&project)?;
            if json {
                return output::json(&json!({ "project": project, "members": members }));
            }
            for m in members {
                println!("{}  {}  {}", m.actor, m.user, m.role.as_str());
            }
            Ok(())
        }
        AdminCommand::Section { id } => {
            let Some(view) = hub.section_view(&id)? else {
                return Err(CliError::Failed(format!("the server has no section `{id}`")));
            };
            let hashes: Vec<&str> = view.photos.iter().filter_map(|p| Some(p.blob.as_ref()?.sha256.as_str())).collect();
            let on_server = hub.photos_held(&view.project, &hashes)?;
            if json {
                let mut out = serde_json::to_value(&view).map_err(|e| CliError::Failed(e.to_string()))?;
                // Only with photos: a view without them reads exactly as the device's.
                if !hashes.is_empty() {
                    out["photos_on_server"] = json!(on_server);
                }
                return output::json(&out);
            }
            let roster = fieldsync_core::Roster::new(hub.roster(&view.project)?);
            println!("{}", output::view(&view, &roster));
            if !hashes.is_empty() {
                println!("photo bytes on the server: {on_server} of {}", hashes.len());
            }
            Ok(())
        }
        AdminCommand::CollectPhotos { grace_hours } => {
            let removed = hub.collect_photos(fieldsync_server::now_ms(), grace_hours.saturating_mul(3_600_000))?;
            if json {
                return output::json(&json!({ "removed": removed }));
            }
            println!("{removed} unreferenced photo upload(s) removed");
            Ok(())
        }
        AdminCommand::Conflicts { project } => {
            let conflicts = hub.conflicts(&project)?;
            if json {
                return output::json(&json!({ "conflicts": conflicts }));
            }
            if conflicts.is_empty() {
                println!("no conflicts");
            }
            for c in conflicts {
                println!("{}", output::conflict(&c));
            }
            Ok(())
        }
    }
}

fn print_expiry(expires_ms: Option<u64>) {
    if let Some(ms) = expires_ms {
        println!("expires {}", output::time(ms as i64));
    }
}

/// `90s`, `30m`, `12h`, `7d` (a bare number is seconds) in ms; `0s`: expired
/// at once (the device must fetch a fresh token at its next round).
fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit_ms) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1_000),
        Some((i, 'm')) => (&text[..i], 60_000),
        Some((i, 'h')) => (&text[..i], 3_600_000),
        Some((i, 'd')) => (&text[..i], 86_400_000),
        _ => (text, 1_000),
    };
    match number.parse::<u64>() {
        // At most a century: the stores keep ms in a signed 64-bit integer.
        Ok(n) => n
            .checked_mul(unit_ms)
            .filter(|&ms| ms <= 36_500 * 86_400_000)
            .ok_or_else(|| format!("`{text}` is too long")),
        _ => Err(format!("`{text}` is not a duration such as 90s, 30m, 12h or 7d")),
    }
}

/// `config` with what the command line changes, checked.
fn configured(
    mut config: ProjectConfig,
    max_route_distance: Option<f64>,
    full_size_photos: Option<FullSizePhotos>,
) -> Result<ProjectConfig, CliError> {
    if let Some(m) = max_route_distance {
        if !(m.is_finite() && m > 0.0) {
            return Err(CliError::Usage(format!("--max-route-distance must be a positive number of metres, not {m}")));
        }
        config.max_route_distance_m = m;
    }
    if let Some(f) = full_size_photos {
        config.full_size_photos = f;
    }
    Ok(config)
}

/// A project's configuration, as a person reads it.
fn describe(config: &ProjectConfig) -> String {
    let photos = match config.full_size_photos {
        FullSizePhotos::Always => "full-size photos go on any link",
        FullSizePhotos::OnUnmeteredLinks => "full-size photos wait for an unmetered link, thumbnails go on any",
    };
    format!("points farther than {} m from the route are quarantined; {photos}", config.max_route_distance_m)
}

fn parse_full_size_photos(s: &str) -> Result<FullSizePhotos, String> {
    match s {
        "always" => Ok(FullSizePhotos::Always),
        "on-unmetered-links" => Ok(FullSizePhotos::OnUnmeteredLinks),
        _ => Err(format!("`{s}`: say `always` or `on-unmetered-links`")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("12h"), Ok(43_200_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("5"), Ok(5_000));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("99999999d").is_err());
    }
}
