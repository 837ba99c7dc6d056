//! `ipt`: the user-facing command of ipt-rs.
//!
//! Thin by design: each subcommand parses its arguments (one module per command family)
//! and calls library functions from the `ipt-*` crates.

mod doctor;
mod restore;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ipt",
    version,
    about = "IPT (Pre-Trained Image Processing Transformer) in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libtorch in use and whether CUDA is available.
    Doctor(doctor::Args),
    /// Restore whole images (super-resolution, denoising, deraining) with a checkpoint.
    Restore(restore::Args),
}

fn main() -> anyhow::Result<()> {
    ipt_model::device::init_cuda();
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Restore(args) => restore::run(args),
    }
}
