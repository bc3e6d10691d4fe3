//! `fieldsync device --db FILE …`: a full replica on a local SQLite file,
//! for support staff, scripts and tests. Every call is the core `Replica`
//! API the apps use; the server URL, token and project are kept in the
//! replica's own database (`Replica::set_setting`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Subcommand};
use fieldsync_core::{
    ConstructionState, Durability, GeoPoint, HttpTransport, OpenError, PastPoint, Replica, ReplicaError,
    ReplicaOptions, Roster, SyncClient, SyncError, SyncReport,
};
use serde::Serialize;
use serde_json::json;

use crate::error::CliError;
use crate::geo_arg::{RouteArg, parse_point, parse_route};
use crate::output::{self, short};

/// The device name a store made by this command is created with.
const DEFAULT_DEVICE: &str = "fieldsync-cli";
/// How long one round trip may take before sync gives up (rural links are slow).
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The replica's SQLite file (`init` creates it).
    #[arg(long, value_name = "FILE", env = "FIELDSYNC_DB")]
    db: PathBuf,
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Create (or re-point) the replica: remember server, token and project, then sync once to learn the roster.
    Init {
        /// Server URL, e.g. http://127.0.0.1:7878.
        #[arg(long, env = "FIELDSYNC_SERVER")]
        server: String,
        /// The device token `fieldsync admin enroll` printed. Prefer the environment
        /// variable: it keeps the token off the command line.
        #[arg(long, env = "FIELDSYNC_TOKEN", hide_env_values = true)]
        token: String,
        /// Project id.
        #[arg(long, env = "FIELDSYNC_PROJECT")]
        project: String,
        /// Device name recorded in a new store.
        #[arg(long, default_value = DEFAULT_DEVICE, env = "FIELDSYNC_DEVICE_NAME")]
        device: String,
        /// Do not sync now (the roster arrives with the first `sync`).
        #[arg(long, env = "FIELDSYNC_OFFLINE", value_parser = clap::builder::BoolishValueParser::new())]
        offline: bool,
    },
    /// Create a section with its planned route (office only).
    Create {
        /// The section's name.
        #[arg(long)]
        name: String,
        /// Planned route: `lat,lon;lat,lon;…` (WGS84 degrees).
        #[arg(long, value_parser = parse_route, allow_hyphen_values = true)]
        route: RouteArg,
        /// Choose the section id (default: random).
        #[arg(long)]
        id: Option<String>,
    },
    /// Record progress (percent).
    Progress {
        /// Section id (or a unique prefix).
        section: String,
        /// 0–100.
        percent: i64,
    },
    /// Move a section to another construction state.
    State {
        /// Section id (or a unique prefix).
        section: String,
        /// planned, surveyed, trenched, conduit_laid, cable_pulled, spliced, tested, completed or blocked.
        state: ConstructionState,
        /// Why work stopped (needed for `blocked`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Report the crew's position (an as-built point); off-route points are quarantined, not refused.
    Location {
        /// Section id (or a unique prefix).
        section: String,
        /// `lat,lon` (WGS84 degrees).
        #[arg(value_parser = parse_point, allow_hyphen_values = true)]
        point: GeoPoint,
    },
    /// Make a section's notes read TEXT (merged character by character with others' edits).
    Notes {
        /// Section id (or a unique prefix).
        section: String,
        /// The whole new text.
        text: String,
    },
    /// Accept a quarantined point (foreman or office).
    Accept {
        /// Section id (or a unique prefix).
        section: String,
        /// The point's edit id (shown by `show`; a unique prefix will do).
        point: String,
    },
    /// Rename a section (office only).
    Rename {
        /// Section id (or a unique prefix).
        section: String,
        /// New name.
        name: String,
    },
    /// Attach a photo: an image file (kept by content next to the replica),
    /// or a URI the app keeps.
    Photo {
        /// Section id (or a unique prefix).
        section: String,
        /// An image file (JPEG, PNG, WebP, HEIC, GIF), or a URI such as content://….
        photo: String,
        /// Caption.
        #[arg(long)]
        caption: Option<String>,
    },
    /// A section's photos, and where each one's bytes are (on this device
    /// only, going up, on the server, fetched here or not).
    Photos {
        /// Section id (or a unique prefix).
        section: String,
    },
    /// Fetch the bytes of a photo another device took, from the server (a
    /// fetch cut off goes on from where it stopped).
    FetchPhoto {
        /// The photo's id (from `photos`) or its SHA-256.
        photo: String,
    },
    /// Sync once with the server, and report what became of unconfirmed local edits.
    Sync {
        /// The link is metered (a phone's hotspot): full-size photos wait
        /// where the project holds them for an unmetered link; thumbnails go.
        #[arg(long)]
        metered: bool,
    },
    /// A section's validated view.
    Show {
        /// Section id (or a unique prefix).
        section: String,
    },
    /// List sections, ordered by id, a page at a time.
    List {
        /// Start after this section id (the `next_after` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Conflict records (contests, rejections, quarantines), of one section or all.
    Conflicts {
        /// Section id (or a unique prefix); all sections if omitted.
        section: Option<String>,
    },
    /// A section's audit trail: every write and what the rules made of it.
    Audit {
        /// Section id (or a unique prefix).
        section: String,
    },
    /// A section's changes in causal order.
    History {
        /// Section id (or a unique prefix).
        section: String,
    },
    /// A section's view as it was at a past point (time travel).
    ViewAt {
        /// Section id (or a unique prefix).
        section: String,
        /// As of this HLC time, ms since the epoch.
        #[arg(long, conflicts_with = "heads", required_unless_present = "heads")]
        time: Option<u64>,
        /// As of these change hashes (comma-separated, from `history`).
        #[arg(long, value_delimiter = ',')]
        heads: Option<Vec<String>>,
    },
    /// Write a section's Automerge document (the bytes any Automerge implementation loads) to a file.
    Export {
        /// Section id (or a unique prefix).
        section: String,
        /// File to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Sync status: pending and refused changes, last success, last error.
    Status,
    /// Assign a section to a crew (office only): devices subscribed to the crew's sections receive it.
    Assign {
        /// Section id (or a unique prefix).
        section: String,
        /// The crew's name.
        crew: String,
    },
    /// Hold only part of the project (partial sync): add a subscription. The
    /// next sync brings the sections entering whole and drops the ones
    /// leaving (never before their edits are on the server).
    Subscribe {
        #[command(flatten)]
        subscription: crate::device_scope::SubscribeArgs,
        #[command(flatten)]
        buffer: crate::device_scope::BufferArg,
    },
    /// Hold every section of the project again.
    Unsubscribe,
    /// The subscriptions, and every section this device holds with why.
    Subscriptions,
}

/// Open an existing store (or create one with `create`), as whichever device it belongs to.
fn open(db: &Path, device: &str, create: bool) -> Result<Replica, CliError> {
    if !create && !db.exists() {
        return Err(CliError::Failed(format!(
            "no replica at {}; create one with `fieldsync device --db {} init --server URL --token TOKEN --project P`",
            db.display(),
            db.display()
        )));
    }
    let options = |device: &str| ReplicaOptions {
        device: device.to_owned(),
        durability: Durability::Full,
        encryption_key: None,
        ..Default::default()
    };
    match Replica::open(db, options(device)) {
        // A store made elsewhere (a phone's, for support): open it as the device it belongs to.
        Err(OpenError::OtherDevice { found, .. }) if !create => Ok(Replica::open(db, options(&found))?),
        other => Ok(other?),
    }
}

fn setting(replica: &Replica, key: &str) -> Result<String, CliError> {
    replica.setting(key)?.ok_or_else(|| {
        CliError::Failed(format!(
            "this replica has no {key} set; run `fieldsync device --db {} init --server URL --token TOKEN --project P`",
            replica.path().display()
        ))
    })
}

/// A section id from an id or a unique prefix of one.
fn resolve(replica: &Replica, given: &str) -> Result<String, CliError> {
    match replica.section(given) {
        Ok(_) => return Ok(given.to_owned()),
        Err(ReplicaError::UnknownSection(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // Ids sort after their prefixes: the first two ids after it tell whether it is unique.
    let after = replica.list_sections(None, Some(given), 2)?;
    let matching: Vec<_> = after.iter().filter(|s| s.id.starts_with(given)).collect();
    match matching.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(CliError::Failed(format!("no section `{given}` in this replica; `list` shows the ids"))),
        _ => Err(CliError::Failed(format!("`{given}` is the start of several section ids; give more of it"))),
    }
}

fn roster_of(replica: &Replica, project: &str) -> Result<Roster, CliError> {
    Ok(replica.roster(project)?)
}

/// Run `work` with a sync client over HTTP (rounds and photos), then hand the replica back.
fn with_client<T>(
    replica: Replica,
    work: impl FnOnce(&SyncClient, &str) -> Result<T, SyncError>,
) -> Result<(Replica, T), CliError> {
    let server = setting(&replica, "server")?;
    let token = setting(&replica, "token")?;
    let transport = Arc::new(
        HttpTransport::new(&server, &token, ROUND_TRIP_TIMEOUT)
            .map_err(|e| CliError::Failed(format!("cannot reach {server}: {e}")))?,
    );
    let shared = Arc::new(Mutex::new(replica));
    let client = SyncClient::new(Arc::clone(&shared), Arc::clone(&transport) as _).with_photos(transport);
    let result = work(&client, &server);
    drop(client);
    let replica = Arc::try_unwrap(shared)
        .map_err(|_| CliError::Failed("internal: the replica is still shared after sync".into()))?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    Ok((replica, result?))
}

/// Sync once over HTTP; a spinner on a terminal shows rounds and bytes.
fn sync(replica: Replica, json: bool, metered: bool) -> Result<(Replica, SyncReport), CliError> {
    with_client(replica, |client, server| {
        client.set_metered(metered);
        let bar = if json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
        bar.set_message(format!("syncing with {server}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let result = client.sync_with_progress(&mut |r: &SyncReport| {
            bar.set_message(format!(
                "syncing with {server}: {} round(s), sent {}, received {}",
                r.rounds,
                output::bytes(r.bytes_sent),
                output::bytes(r.bytes_received)
            ));
        });
        bar.finish_and_clear();
        result
    })
}

fn print_sync(report: &SyncReport, server: &str) {
    println!(
        "synced with {server}: {} round trip(s), sent {}, received {}",
        report.rounds,
        output::bytes(report.bytes_sent),
        output::bytes(report.bytes_received)
    );
    println!(
        "  {} of your change(s) confirmed, {} refused by the server; {} new change(s) received, {} section(s) changed",
        report.confirmed,
        report.refused,
        report.new_changes,
        report.sections_changed.len()
    );
    if report.photo_bytes_sent > 0 {
        println!(
            "  photos: sent {} of them, {} photo(s) now on the server",
            output::bytes(report.photo_bytes_sent),
            report.photos_sent
        );
    }
    if !report.reconciliation.is_empty() {
        println!("your unconfirmed edits:");
        for r in &report.reconciliation {
            println!("{}", output::reconciliation(r));
        }
    }
}

/// What `init --json` prints.
#[derive(Serialize)]
struct InitOut<'a> {
    device: &'a str,
    actor: String,
    server: &'a str,
    project: &'a str,
    user: Option<String>,
    role: Option<&'static str>,
    sync: Option<SyncReport>,
}

/// What `status --json` prints.
#[derive(Serialize)]
struct StatusOut {
    device: String,
    actor: String,
    server: Option<String>,
    project: Option<String>,
    user: Option<String>,
    role: Option<&'static str>,
    #[serde(flatten)]
    sync: fieldsync_core::SyncStatus,
}

pub fn run(args: DeviceArgs, json: bool) -> Result<(), CliError> {
    let db = args.db;
    if let DeviceCommand::Init { server, token, project, device, offline } = args.command {
        let server = server.trim_end_matches('/');
        let mut replica = open(&db, &device, true)?;
        replica.set_setting("server", server)?;
        replica.set_setting("token", &token)?;
        replica.set_setting("project", &project)?;
        replica.join_project(&project)?;
        let (replica, report) = if offline {
            (replica, None)
        } else {
            let (r, report) = sync(replica, json, false).map_err(|e| match e {
                CliError::Failed(m) => CliError::Failed(format!(
                    "the replica is set up (server, token and project saved) but its first {m}; \
                     run `fieldsync device --db {} sync` once the server is reachable",
                    db.display()
                )),
                other => other,
            })?;
            (r, Some(report))
        };
        let me = roster_of(&replica, &project)?.member(&replica.actor()).cloned();
        if json {
            return output::json(&InitOut {
                device: replica.device(),
                actor: replica.actor(),
                server,
                project: &project,
                user: me.as_ref().map(|m| m.user.clone()),
                role: me.as_ref().map(|m| m.role.as_str()),
                sync: report,
            });
        }
        println!("replica {} (device {}, actor {})", db.display(), replica.device(), replica.actor());
        match (&me, &report) {
            (Some(m), _) => println!("you are {} ({}) in project {project}", m.user, m.role.as_str()),
            (None, Some(_)) => println!("project {project}: this device is not in the roster yet"),
            (None, None) => println!("project {project}: the roster arrives with the first `sync`"),
        }
        if let Some(r) = report {
            print_sync(&r, server);
        }
        return Ok(());
    }

    let mut replica = open(&db, DEFAULT_DEVICE, false)?;
    match args.command {
        DeviceCommand::Init { .. } => unreachable!("handled above"),
        DeviceCommand::Create { name, route, id } => {
            let project = setting(&replica, "project")?;
            let id = match id {
                Some(id) => {
                    replica.create_section_with_id(&id, &project, &name, &route.0)?;
                    id
                }
                None => replica.create_section(&project, &name, &route.0)?,
            };
            if json {
                return output::json(&json!({ "section": id }));
            }
            println!("created section {id} {name:?} with a route of {} points", route.0.len());
            Ok(())
        }
        DeviceCommand::Progress { section, percent } => {
            let section = resolve(&replica, &section)?;
            let r = replica.record_progress(&section, percent)?;
            output::receipt(json, &r, &format!("progress {percent}%"))
        }
        DeviceCommand::State { section, state, reason } => {
            let section = resolve(&replica, &section)?;
            let r = replica.transition(&section, state, reason.as_deref())?;
            output::receipt(json, &r, &format!("state {}", state.as_str()))
        }
        DeviceCommand::Location { section, point } => {
            let section = resolve(&replica, &section)?;
            let r = replica.report_location(&section, point)?;
            output::receipt(json, &r, &format!("location {:.6},{:.6}", point.lat, point.lon))
        }
        DeviceCommand::Notes { section, text } => {
            let section = resolve(&replica, &section)?;
            replica.set_notes(&section, &text)?;
            if json {
                return output::json(&json!({ "section": section, "notes": replica.section(&section)?.notes }));
            }
            println!("notes of section {} set ({} characters)", short(&section), text.chars().count());
            Ok(())
        }
        DeviceCommand::Accept { section, point } => {
            let section = resolve(&replica, &section)?;
            let view = replica.section(&section)?;
            let matching: Vec<_> = view.quarantined.iter().filter(|q| q.edit_id.starts_with(&point)).collect();
            let edit = match matching.as_slice() {
                [one] => one.edit_id.clone(),
                // Not (or no longer) quarantined: let the rules say what they make of it.
                [] => point.clone(),
                _ => return Err(CliError::Usage(format!("`{point}` starts several quarantined points' ids"))),
            };
            let r = replica.accept_point(&section, &edit)?;
            output::receipt(json, &r, "acceptance")
        }
        DeviceCommand::Rename { section, name } => {
            let section = resolve(&replica, &section)?;
            let r = replica.rename_section(&section, &name)?;
            output::receipt(json, &r, &format!("name {name:?}"))
        }
        DeviceCommand::Photo { section, photo, caption } => {
            let section = resolve(&replica, &section)?;
            let file = std::path::Path::new(&photo);
            let id = match file.is_file() {
                true => replica.add_photo_file(&section, file, caption.as_deref())?,
                false => replica.add_photo(&section, &photo, caption.as_deref())?,
            };
            if json {
                return output::json(&json!({ "section": section, "photo": id }));
            }
            println!("photo {id} attached to section {}", short(&section));
            Ok(())
        }
        DeviceCommand::Sync { metered } => {
            let server = setting(&replica, "server")?;
            let (_, report) = sync(replica, json, metered)?;
            if json {
                return output::json(&report);
            }
            print_sync(&report, &server);
            Ok(())
        }
        DeviceCommand::Photos { section } => {
            let section = resolve(&replica, &section)?;
            let view = replica.section(&section)?;
            let rows = view
                .photos
                .iter()
                .map(|p| Ok((p, replica.photo_state(p)?, p.blob.as_ref().and_then(|b| replica.photo_file(&b.sha256)))))
                .collect::<Result<Vec<_>, ReplicaError>>()?;
            if json {
                let photos: Vec<_> = rows
                    .iter()
                    .map(|(p, state, file)| {
                        json!({ "photo": p, "where": state, "on_this_device": file.is_some(), "file": file.as_ref().map(|f| f.display().to_string()) })
                    })
                    .collect();
                return output::json(&json!({ "section": section, "photos": photos }));
            }
            if rows.is_empty() {
                println!("no photos on section {}", short(&section));
            }
            for (p, state, _) in rows {
                let what = match &p.blob {
                    Some(b) => format!(
                        "{}  {}×{}  {} KB  {}  sha256 {}",
                        b.media_type,
                        b.width,
                        b.height,
                        b.size.div_ceil(1024),
                        output::photo_state(&state),
                        b.sha256
                    ),
                    None => p.uri.clone(),
                };
                let caption = p.caption.as_ref().map(|c| format!("  {c:?}")).unwrap_or_default();
                println!("{}  {what}{caption}", short(&p.id));
            }
            Ok(())
        }
        DeviceCommand::FetchPhoto { photo } => {
            let (_, file) = with_client(replica, |client, _| {
                let bar = if json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
                let fetched = client.fetch_photo(&photo, &mut |got, size| {
                    bar.set_length(size);
                    bar.set_position(got);
                });
                bar.finish_and_clear();
                fetched
            })?;
            if json {
                return output::json(&json!({ "photo": photo, "file": file.display().to_string() }));
            }
            println!("photo {} is in {}", short(&photo), file.display());
            Ok(())
        }
        DeviceCommand::Assign { section, crew } => {
            let section = resolve(&replica, &section)?;
            crate::device_scope::assign(&mut replica, &section, &crew, json)
        }
        DeviceCommand::Subscribe { subscription, buffer } => {
            let project = setting(&replica, "project")?;
            crate::device_scope::subscribe(&mut replica, &project, subscription, buffer, json)
        }
        DeviceCommand::Unsubscribe => {
            let project = setting(&replica, "project")?;
            crate::device_scope::unsubscribe(&mut replica, &project, json)
        }
        DeviceCommand::Subscriptions => {
            let project = setting(&replica, "project")?;
            crate::device_scope::subscriptions(&replica, &project, json)
        }
        DeviceCommand::Show { section } => {
            let section = resolve(&replica, &section)?;
            let view = replica.section(&section)?;
            if json {
                return output::json(&view);
            }
            println!("{}", output::view(&view, &roster_of(&replica, &view.project)?));
            Ok(())
        }
        DeviceCommand::List { after, limit } => {
            if limit == 0 {
                return Err(CliError::Usage("--limit must be at least 1".into()));
            }
            let sections = replica.list_sections(None, after.as_deref(), limit)?;
            let next_after = (sections.len() == limit).then(|| sections.last().map(|s| s.id.clone())).flatten();
            if json {
                return output::json(&json!({ "sections": sections, "next_after": next_after }));
            }
            if sections.is_empty() {
                println!("no sections{}", if after.is_some() { " after that id" } else { "" });
            }
            for s in &sections {
                println!("{}  {:<12}  {:>3}%  {}", s.id, s.state, s.progress, s.name);
            }
            if let Some(n) = next_after {
                println!("more: list --after {n}");
            }
            Ok(())
        }
        DeviceCommand::Conflicts { section } => {
            let section = section.map(|s| resolve(&replica, &s)).transpose()?;
            let conflicts = replica.conflicts(section.as_deref())?;
            if json {
                return output::json(&json!({ "conflicts": conflicts }));
            }
            if conflicts.is_empty() {
                println!("no conflicts");
            }
            for c in &conflicts {
                println!("{}", output::conflict(c));
            }
            Ok(())
        }
        DeviceCommand::Audit { section } => {
            let section = resolve(&replica, &section)?;
            let entries = replica.audit(&section)?;
            if json {
                return output::json(&json!({ "section": section, "entries": entries }));
            }
            for e in &entries {
                let who = match (&e.user, e.role) {
                    (Some(u), Some(r)) => format!("{u} ({})", r.as_str()),
                    _ => format!("actor {}", short(&e.author)),
                };
                let field = e.field.map_or("?", |f| f.as_str());
                let received =
                    e.received_ms.map_or("not confirmed".into(), |ms| format!("received {}", output::time(ms as i64)));
                println!(
                    "{}  {field:<10}  {:<28}  {who:<24}  {received:<32}  {}",
                    e.edit_id,
                    e.value,
                    output::decision(&e.decision)
                );
            }
            Ok(())
        }
        DeviceCommand::History { section } => {
            let section = resolve(&replica, &section)?;
            let changes = replica.history(&section)?;
            if json {
                return output::json(&json!({ "section": section, "changes": changes }));
            }
            let project = replica.section(&section)?.project;
            let roster = roster_of(&replica, &project)?;
            for c in &changes {
                let deps: Vec<&str> = c.deps.iter().map(|d| short(d)).collect();
                println!(
                    "{}  {} ({})  {:<10}  {:<24}  deps {}",
                    c.hash,
                    c.time_ms,
                    output::time(c.time_ms),
                    c.message.as_deref().unwrap_or(""),
                    output::who(&roster, &c.actor),
                    if deps.is_empty() { "-".into() } else { deps.join(",") }
                );
            }
            Ok(())
        }
        DeviceCommand::ViewAt { section, time, heads } => {
            let section = resolve(&replica, &section)?;
            let at = match (time, heads) {
                (Some(ms), _) => PastPoint::Time(ms),
                (None, Some(hs)) => PastPoint::Heads(hs),
                (None, None) => return Err(CliError::Usage("give --time MS or --heads H,…".into())),
            };
            let view = replica.view_at(&section, &at)?;
            if json {
                return output::json(&view);
            }
            println!("{}", output::view(&view, &roster_of(&replica, &view.project)?));
            Ok(())
        }
        DeviceCommand::Export { section, out } => {
            let section = resolve(&replica, &section)?;
            let bytes = replica.export(&section)?;
            std::fs::write(&out, &bytes)
                .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", out.display())))?;
            if json {
                return output::json(&json!({ "section": section, "file": out, "bytes": bytes.len() }));
            }
            println!(
                "wrote section {section}'s Automerge document ({}) to {}",
                output::bytes(bytes.len() as u64),
                out.display()
            );
            Ok(())
        }
        DeviceCommand::Status => {
            let project = replica.setting("project")?;
            let me = match &project {
                Some(p) => roster_of(&replica, p)?.member(&replica.actor()).cloned(),
                None => None,
            };
            let out = StatusOut {
                device: replica.device().to_owned(),
                actor: replica.actor(),
                server: replica.setting("server")?,
                project,
                user: me.as_ref().map(|m| m.user.clone()),
                role: me.as_ref().map(|m| m.role.as_str()),
                sync: replica.sync_status()?,
            };
            if json {
                return output::json(&out);
            }
            println!("device      {} (actor {})", out.device, out.actor);
            println!("server      {}", out.server.as_deref().unwrap_or("(not set: run init)"));
            match (&out.project, &out.user) {
                (Some(p), Some(u)) => println!("project     {p}, as {u} ({})", out.role.unwrap_or("?")),
                (Some(p), None) => println!("project     {p} (not in the roster yet: sync)"),
                (None, _) => println!("project     (not set: run init)"),
            }
            let s = &out.sync;
            match s.oldest_pending_ms {
                Some(ms) => println!("pending     {} change(s), oldest from {}", s.pending_changes, output::time(ms)),
                None => println!("pending     {} change(s)", s.pending_changes),
            }
            println!("refused     {} change(s) (kept here, not re-sent)", s.refused_changes);
            println!("last sync   {}", s.last_success_ms.map_or("never".into(), output::time));
            match (&s.last_error, s.last_problem) {
                (Some(e), Some(p)) => println!("last error  {e} ({})", p.as_str().replace('_', " ")),
                (Some(e), None) => println!("last error  {e}"),
                (None, _) => println!("last error  none"),
            }
            if let Some(last) = s.recent_rounds.last() {
                let n = s.recent_rounds.len();
                let mut latencies: Vec<u64> = s.recent_rounds.iter().map(|r| r.latency_ms).collect();
                latencies.sort_unstable();
                println!(
                    "last round  {} ms, {} B up, {} B down (median of the last {n}: {} ms)",
                    last.latency_ms,
                    last.bytes_sent,
                    last.bytes_received,
                    latencies[n / 2]
                );
            }
            Ok(())
        }
    }
}
