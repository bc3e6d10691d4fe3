//! `fieldsync simulate`: a crew's working day over a simulated network.
//! The engine is `fieldsync-tests`' `run_simulation` (being written); until
//! it lands this command says so.

use clap::Args;

use crate::error::CliError;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Seed of the simulated day (same seed, same day).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Crew devices (default: 3 crews of a foreman and 3 technicians).
    #[arg(long, default_value_t = 12)]
    devices: usize,
    /// Sections along generated routes.
    #[arg(long, default_value_t = 200)]
    sections: usize,
    /// Network profile: 3g, edge, 2g-rural or offline-day.
    #[arg(long, default_value = "2g-rural")]
    profile: String,
}

pub fn run(args: SimulateArgs, _json: bool) -> Result<(), CliError> {
    let _ = (args.seed, args.devices, args.sections, &args.profile);
    Err(CliError::Failed("`fieldsync simulate` needs the simulation engine (fieldsync-tests), not built yet".into()))
}
