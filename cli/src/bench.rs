//! `fieldsync bench`: quick core figures.

use clap::Args;

use crate::error::CliError;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs, _json: bool) -> Result<(), CliError> {
    Err(CliError::Failed("not built yet; run `cargo bench -p fieldsync-core --bench core`".into()))
}
