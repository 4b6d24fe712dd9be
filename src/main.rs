//! The `umbra` command line. It parses arguments and calls the library;
//! nothing else lives here.

use clap::{Parser, Subcommand};
use umbra::wire;

#[derive(Parser)]
#[command(name = "umbra", version, about = "An anonymous document store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and the wire format's constants.
    Info,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info => {
            println!("umbra {}", env!("CARGO_PKG_VERSION"));
            println!("cell size:              {} bytes", wire::CELL_LEN);
            println!("relay payload per cell: {} bytes", wire::RELAY_BODY_MAX);
            println!("maximum circuit length: {} hops", wire::MAX_HOPS);
            println!("block size:             {} bytes", wire::BLOCK_DATA_LEN);
        }
    }
    Ok(())
}
