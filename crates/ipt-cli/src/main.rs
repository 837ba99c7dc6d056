//! `ipt`: the user-facing command of ipt-rs.
//!
//! Thin by design: each subcommand parses its arguments (one module per command family)
//! and calls library functions from the `ipt-*` crates. Developer tools (`bench-speed`) live
//! apart, under `dev/`.

mod bench;
mod checkpoint_cmds;
mod degrade;
mod dev;
mod doctor;
mod panics;
mod plot_crops;
mod plot_points;
mod plot_runs;
mod restore;
mod serve;
mod signals;
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Restore whole images (super-resolution, denoising, deraining) with a model.
    Restore(restore::Args),
    /// List the models shipped with ipt-rs (names for `ipt restore --model`).
    Models,
    /// A local web page to restore images with the shipped models (http://127.0.0.1:8080/).
    Serve(serve::Args),
    /// Pre-train on several tasks from a TOML config (resumes from the run's last checkpoint).
    Pretrain(train::Args),
    /// Fine-tune one task from a pre-trained checkpoint (TOML config with a [finetune] section).
    Finetune(train::Args),
    #[command(flatten)]
    Bench(bench::Command),
    /// Show a checkpoint's config, tasks and parameter count (.pt or .safetensors).
    Info(checkpoint_cmds::InfoArgs),
    /// Convert a checkpoint (e.g. an official .pt) to .safetensors with its config.
    Convert(checkpoint_cmds::ConvertArgs),
    /// Apply a task's degradation recipe to clean images (what the model would see).
    Degrade(degrade::Args),
    /// Draw one task's validation curves of several runs in one chart.
    PlotRuns(plot_runs::Args),
    /// The same region of several images side by side (input, bicubic, restored).
    PlotCrops(plot_crops::Args),
    /// Draw named (x, y) curves in one chart (figures from benchmark results).
    PlotPoints(plot_points::Args),
    /// Measure restore, training, data-pipeline, bicubic and SSIM speed on this machine.
    BenchSpeed(dev::speed::Args),
}

/// The command line, with every option that takes a value accepting a negative number as that
/// value (`--outscale -2` is refused by the option's own range check, in words), instead of
/// clap's tip to write `-- -2`, which would turn the number into an input path.
fn command() -> clap::Command {
    let negatives = |a: clap::Arg| {
        if a.get_action().takes_values() {
            a.allow_negative_numbers(true)
        } else {
            a
        }
    };
    Cli::command().mut_subcommands(move |sc| sc.mut_args(negatives))
}

/// Parses `args` with [`command`].
fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

fn main() -> std::process::ExitCode {
    ipt_model::device::init_cuda();
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    panics::install();
    match panics::run(|| run(cli)) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("{}", report(&e));
            std::process::ExitCode::FAILURE
        }
        Err(crash) => {
            eprintln!("{crash}");
            std::process::ExitCode::from(crash.exit_status())
        }
    }
}

/// An error in words, for people: `error: <message>`, then each underlying cause on its own
/// line unless the message already says it (an OS error is not printed twice). Never a Rust
/// backtrace, whatever `RUST_BACKTRACE` says: the message names the file, key or tensor.
fn report(e: &anyhow::Error) -> String {
    let mut out = format!("error: {e}");
    let mut said = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !said.contains(&cause) {
            out += &format!("\n  because: {cause}");
            said += &cause;
        }
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Models => restore::run_models(),
        Command::Serve(args) => serve::run(args),
        Command::Pretrain(args) => train::run_pretrain(args),
        Command::Finetune(args) => train::run_finetune(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Info(args) => checkpoint_cmds::run_info(args),
        Command::Convert(args) => checkpoint_cmds::run_convert(args),
        Command::Degrade(args) => degrade::run(args),
        Command::PlotRuns(args) => plot_runs::run(args),
        Command::PlotPoints(args) => plot_points::run(args),
        Command::PlotCrops(args) => plot_crops::run(args),
        Command::BenchSpeed(args) => dev::speed::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_numbers_reach_the_range_checks() {
        let err = |args: &[&str]| match parse(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => e.to_string(),
        };
        let e = err(&[
            "ipt",
            "restore",
            "-n",
            "m",
            "--outscale",
            "-2",
            "a.png",
            "-o",
            "o",
        ]);
        assert!(e.contains("above 0") && !e.contains("-- -2"), "{e}");
        let e = err(&[
            "ipt",
            "restore",
            "-n",
            "m",
            "--crop-batch",
            "-3",
            "a.png",
            "-o",
            "o",
        ]);
        assert!(e.contains("-3") && !e.contains("-- -3"), "{e}");
        let e = err(&[
            "ipt",
            "bench-denoise",
            "--model",
            "identity",
            "--sigmas",
            "-5",
        ]);
        assert!(
            e.contains("-5") && !e.contains("unexpected argument"),
            "{e}"
        );
        // flags are still flags
        assert!(parse(["ipt", "restore", "-n", "m", "-r", "a", "-o", "o"]).is_ok());
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let os = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(os).context("m.pt: No such file");
        assert_eq!(report(&e), "error: m.pt: No such file");
        let e = anyhow::anyhow!("disk full").context("writing out.png");
        assert_eq!(report(&e), "error: writing out.png\n  because: disk full");
    }
}
