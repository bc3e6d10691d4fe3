//! `fieldsync device subscribe | unsubscribe | subscriptions | assign`:
//! partial sync from the command line. What the device holds of its
//! project, and the office's crew assignments that subscriptions follow.

use clap::Args;
use fieldsync_core::{Bounds, HeldBecause, Replica, Scope, Subscription};
use serde_json::json;

use crate::error::CliError;
use crate::geo_arg::parse_points;
use crate::output::{self, short};

/// One subscription from the command line (exactly one of these).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SubscribeArgs {
    /// Sections whose route comes within `--buffer` metres of this line: `lat,lon;lat,lon;…`.
    #[arg(long, allow_hyphen_values = true)]
    corridor: Option<String>,
    /// A box: `south,west,north,east` in degrees.
    #[arg(long, allow_hyphen_values = true)]
    bbox: Option<String>,
    /// These sections: `id,id,…`.
    #[arg(long, value_delimiter = ',')]
    sections: Option<Vec<String>>,
    /// Sections the office assigned to this crew.
    #[arg(long, value_name = "CREW")]
    assigned: Option<String>,
}

/// How far either side of a corridor, in metres.
#[derive(Debug, Args)]
pub struct BufferArg {
    /// Metres either side of `--corridor`'s line.
    #[arg(long, default_value_t = 500)]
    buffer: u32,
}

fn parse_bbox(s: &str) -> Result<Bounds, CliError> {
    let n: Vec<f64> = s
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| CliError::Usage(format!("`{s}` is not `south,west,north,east` in degrees")))?;
    match n.as_slice() {
        &[south, west, north, east] => Ok(Bounds { south, west, north, east }),
        _ => Err(CliError::Usage(format!("`{s}` is not four numbers: `south,west,north,east`"))),
    }
}

impl SubscribeArgs {
    fn subscription(self, buffer: BufferArg) -> Result<Subscription, CliError> {
        Ok(match self {
            SubscribeArgs { corridor: Some(line), .. } => Subscription::Corridor {
                points: parse_points(&line).map_err(CliError::Usage)?,
                buffer_m: buffer.buffer,
            },
            SubscribeArgs { bbox: Some(b), .. } => Subscription::Area(parse_bbox(&b)?),
            SubscribeArgs { sections: Some(ids), .. } => Subscription::Sections(ids),
            SubscribeArgs { assigned: Some(crew), .. } => Subscription::Crew(crew),
            _ => return Err(CliError::Usage("give --corridor, --bbox, --sections or --assigned".into())),
        })
    }
}

fn describe(s: &Subscription) -> String {
    match s {
        Subscription::Corridor { points, buffer_m } => {
            format!("corridor of {} points, {buffer_m} m either side", points.len())
        }
        Subscription::Area(b) => format!("box {},{} to {},{}", b.south, b.west, b.north, b.east),
        Subscription::Sections(ids) => format!("{} section(s) by id", ids.len()),
        Subscription::Crew(crew) => format!("sections assigned to crew {crew:?}"),
    }
}

fn because(reason: &HeldBecause) -> String {
    match reason {
        HeldBecause::Everything => "the project (everything)".into(),
        HeldBecause::Subscription { index } => format!("subscription {}", index + 1),
        HeldBecause::UnsyncedEdits => "its edits are not on the server yet".into(),
        HeldBecause::ScopeChanging => "the next sync settles it".into(),
    }
}

/// `subscribe`: add one subscription to the project's scope.
pub fn subscribe(
    replica: &mut Replica,
    project: &str,
    args: SubscribeArgs,
    buffer: BufferArg,
    json: bool,
) -> Result<(), CliError> {
    let scope = replica.subscribe(project, args.subscription(buffer)?)?;
    if json {
        return output::json(&json!({ "project": project, "scope": scope }));
    }
    println!("project {project}: this device will hold only what its subscriptions cover (from the next sync):");
    print_scope(&scope);
    Ok(())
}

/// `unsubscribe`: hold the whole project again.
pub fn unsubscribe(replica: &mut Replica, project: &str, json: bool) -> Result<(), CliError> {
    replica.set_scope(project, Scope::Everything)?;
    if json {
        return output::json(&json!({ "project": project, "scope": Scope::Everything }));
    }
    println!("project {project}: this device will hold every section (from the next sync)");
    Ok(())
}

/// `subscriptions`: the scope, and every section held with why.
pub fn subscriptions(replica: &Replica, project: &str, json: bool) -> Result<(), CliError> {
    let scope = replica.scope(project)?;
    let holdings = replica.holdings(project)?;
    if json {
        return output::json(&json!({ "project": project, "scope": scope, "sections": holdings }));
    }
    print_scope(&scope);
    println!("{} section(s) held:", holdings.len());
    for h in &holdings {
        let why: Vec<String> = h.reasons.iter().map(because).collect();
        println!("  {}  {}", short(&h.section), why.join("; "));
    }
    Ok(())
}

fn print_scope(scope: &Scope) {
    match scope {
        Scope::Everything => println!("  every section of the project"),
        Scope::Only(list) => {
            for (i, s) in list.iter().enumerate() {
                println!("  {}. {}", i + 1, describe(s));
            }
        }
    }
}

/// `assign`: the office assigns a section to a crew.
pub fn assign(replica: &mut Replica, section: &str, crew: &str, json: bool) -> Result<(), CliError> {
    let r = replica.assign_crew(section, crew)?;
    output::receipt(json, &r, &format!("crew {crew:?}"))
}
