//! `fieldsync`: the command a newcomer runs first, and the tool operators,
//! support staff and scripts use.
//!
//! - [`serve`]: the sync hub on its embedded SQLite store.
//! - [`admin`]: projects, members, devices of a hub's data directory.
//! - [`device`]: a full replica on a local SQLite file (edit, sync, inspect).
//! - [`simulate`]: a crew's working day over a simulated rural network.
//! - [`bench`]: a quick run of the core's headline figures; [`load`] (`bench
//!   load`): capacity, real devices ([`load_devices`]) against real `serve`
//!   processes ([`load_server`]: the child processes, `/proc`, their metrics).
//! - [`error`]: the one error type and its exit codes; [`output`]: how
//!   values are printed for people and as JSON; [`logging`]: where the
//!   server's `tracing` events go (stderr, human or JSON).
//!
//! Every flag of `serve`, `admin` and `device` can also come from an
//! environment variable, `FIELDSYNC_` and the flag's name (`--database-url`:
//! `FIELDSYNC_DATABASE_URL`), so that no token or password need be on a
//! command line; `--help` names each variable, never a secret's value.
//!
//! Exit codes: 0 success, 1 failure, 2 usage, 3 an edit refused by a rule.

mod admin;
mod bench;
mod bench_partial;
mod bench_photos;
mod device;
mod device_scope;
mod error;
mod geo_arg;
mod hub_store;
mod load;
mod load_devices;
mod load_layout;
mod load_server;
mod logging;
mod output;
mod serve;
mod simulate;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// FieldSync: offline-first sync for field crews.
#[derive(Debug, Parser)]
#[command(name = "fieldsync", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Print machine-readable JSON (the shapes are documented in docs/cli.md).
    #[arg(long, global = true, env = "FIELDSYNC_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    json: bool,
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sync server on its embedded SQLite store.
    Serve(serve::ServeArgs),
    /// Manage a server's projects, members and devices (works while it serves).
    Admin(admin::AdminArgs),
    /// A full replica on a local SQLite file: edit, sync, inspect.
    Device(device::DeviceArgs),
    /// Play a crew's working day over a simulated rural network and report.
    Simulate(simulate::SimulateArgs),
    /// Measure the core's headline figures quickly, or (`bench load`) a server's capacity.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let json = cli.json;
    if let Err(e) = cli.log.init() {
        e.report(json);
        return ExitCode::from(e.exit_code());
    }
    // Where a value came from (a flag or the environment) is in the matches only.
    let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(&matches);
    let result = match cli.command {
        Command::Serve(mut args) => args.store.settle(sub).and_then(|()| serve::run(args)),
        Command::Admin(mut args) => args.store.settle(sub).and_then(|()| admin::run(args, json)),
        Command::Device(args) => device::run(args, json),
        Command::Simulate(args) => simulate::run(args, json),
        Command::Bench(args) => bench::run(args, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report(json);
            ExitCode::from(e.exit_code())
        }
    }
}
