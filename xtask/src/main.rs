//! `cargo xtask`: the project runner.
//!
//! It has no libtorch dependency itself: it finds or installs libtorch 2.11.0 (see [`libtorch`]), then drives
//! cargo with the environment torch-sys needs. User-facing jobs (`pretrain`, `bench-sr`, `restore`, ...) are
//! forwarded to the `ipt` binary, built in release mode.

mod libtorch;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use libtorch::{Inputs, Libtorch, Source, SystemHost};
use std::ffi::OsString;
use std::process::{Command, ExitCode};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "ipt-rs project runner: provisions libtorch and drives cargo"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Find or install libtorch 2.11.0 and print where it is and how to build with plain cargo.
    Setup {
        /// Install the full CUDA wheel (~4.7 GB) instead of the CPU-only subset (1.2 GB).
        #[arg(long)]
        cuda: bool,
    },
    /// Print `export NAME=value` lines for `eval "$(cargo xtask env)"`, so plain cargo works.
    Env {
        /// Resolve the CUDA install (see `setup --cuda`).
        #[arg(long)]
        cuda: bool,
    },
    /// Set up libtorch, then run `cargo test --workspace [ARGS]`.
    Test {
        /// Extra arguments for `cargo test` (after `--`, test-binary arguments).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// `cargo fmt --check` and `cargo clippy --workspace --all-targets -- -D warnings`.
    Lint,
    /// Multi-task pre-training: `cargo xtask pretrain configs/demo.toml` (runs `ipt pretrain`).
    Pretrain(Forward),
    /// Fine-tune one task (runs `ipt finetune`).
    Finetune(Forward),
    /// Super-resolution benchmark (runs `ipt bench-sr`).
    BenchSr(Forward),
    /// Denoising benchmark (runs `ipt bench-denoise`).
    BenchDenoise(Forward),
    /// Deraining benchmark (runs `ipt bench-derain`).
    BenchDerain(Forward),
    /// Restore images with a checkpoint (runs `ipt restore`).
    Restore(Forward),
    /// Convert a PyTorch checkpoint to safetensors (runs `ipt convert`).
    Convert(Forward),
    /// Describe a checkpoint (runs `ipt info`).
    Info(Forward),
    /// Show the libtorch and devices the `ipt` binary sees (runs `ipt doctor`).
    Doctor(Forward),
}

/// Arguments passed through to the `ipt` subcommand of the same name.
#[derive(clap::Args)]
struct Forward {
    /// Arguments for the `ipt` subcommand (see `cargo xtask <cmd> --help` there).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Setup { cuda } => {
            let lt = setup(cuda)?;
            report(&lt);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Env { cuda } => {
            let lt = setup(cuda)?;
            for (k, v) in lt.cargo_env() {
                println!("export {k}={}", shell_quote(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test { args } => {
            let lt = setup(false)?;
            let mut a: Vec<OsString> = vec!["test".into(), "--workspace".into()];
            a.extend(args);
            cargo(&lt, &a)
        }
        Cmd::Lint => {
            let lt = setup(false)?;
            let fmt = cargo(&lt, &os(&["fmt", "--all", "--", "--check"]))?;
            if fmt != ExitCode::SUCCESS {
                eprintln!("xtask: `cargo fmt` found unformatted code (run `cargo fmt --all`)");
                return Ok(fmt);
            }
            cargo(
                &lt,
                &os(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]),
            )
        }
        Cmd::Pretrain(f) => forward("pretrain", f),
        Cmd::Finetune(f) => forward("finetune", f),
        Cmd::BenchSr(f) => forward("bench-sr", f),
        Cmd::BenchDenoise(f) => forward("bench-denoise", f),
        Cmd::BenchDerain(f) => forward("bench-derain", f),
        Cmd::Restore(f) => forward("restore", f),
        Cmd::Convert(f) => forward("convert", f),
        Cmd::Info(f) => forward("info", f),
        Cmd::Doctor(f) => forward("doctor", f),
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Resolve libtorch, printing notes on stderr.
fn setup(cuda: bool) -> Result<Libtorch> {
    let inputs = Inputs::from_env(cuda);
    let mut notes = Vec::new();
    let lt =
        libtorch::resolve(&inputs, &SystemHost, &mut notes).context("libtorch set-up failed")?;
    for n in notes {
        eprintln!("xtask: note: {n}");
    }
    if let Source::Installed(_) = lt.source {
        eprintln!("xtask: installed libtorch into {}", lt.dir.display());
    }
    Ok(lt)
}

fn report(lt: &Libtorch) {
    let driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
    println!("libtorch:  {}", lt.dir.display());
    println!(
        "version:   {}",
        lt.version.as_deref().unwrap_or("unknown (assumed 2.11.0)")
    );
    println!("source:    {}", lt.source);
    let cuda = match (lt.has_cuda_backend(), driver) {
        (true, true) => "yes (CUDA backend present, NVIDIA driver found)".to_string(),
        (true, false) => {
            "no (CUDA backend present, but no NVIDIA driver on this machine)".to_string()
        }
        (false, _) => {
            "no (CPU-only libtorch; `cargo xtask setup --cuda` installs the CUDA one)".to_string()
        }
    };
    println!("cuda:      {cuda}");
    println!("To build with plain cargo, set:");
    for (k, v) in lt.cargo_env() {
        println!("  export {k}={}", shell_quote(&v));
    }
    println!("(or run `eval \"$(cargo xtask env)\"`). Built binaries find libtorch by rpath; no LD_LIBRARY_PATH needed.");
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Run cargo with the libtorch environment; return its exit status.
fn cargo(lt: &Libtorch, args: &[OsString]) -> Result<ExitCode> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(args);
    for (k, v) in lt.cargo_env() {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("could not run {}", cargo.to_string_lossy()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// `cargo run --release -p ipt-cli --bin ipt -- NAME ARGS`.
fn forward(name: &str, f: Forward) -> Result<ExitCode> {
    let lt = setup(false)?;
    let mut a = os(&[
        "run",
        "--release",
        "--package",
        "ipt-cli",
        "--bin",
        "ipt",
        "--",
        name,
    ]);
    a.extend(f.args);
    cargo(&lt, &a)
}
