//! `cargo xtask`: the project runner.
//!
//! It has no libtorch dependency itself: it finds or installs libtorch 2.11.0 (see [`libtorch`]), then drives
//! cargo with the environment torch-sys needs. User-facing jobs (`pretrain`, `bench-sr`, `restore`, ...) are
//! forwarded to the `ipt` binary, built in release mode.

mod fuzz;
mod launch;
mod libtorch;
mod system_package;
mod tensorboard;

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
    /// Multi-task pre-training: `cargo xtask pretrain configs/demo.toml` (runs `ipt pretrain`). With
    /// `--nproc-per-node N [--nnodes M --node-rank K --master-addr HOST --master-port P]` it starts N ranks
    /// (see docs/distributed.md).
    Pretrain(Forward),
    /// Fine-tune one task (runs `ipt finetune`); takes the same launcher flags as `pretrain`.
    Finetune(Forward),
    /// Super-resolution benchmark (runs `ipt bench-sr`).
    BenchSr(Forward),
    /// Denoising benchmark (runs `ipt bench-denoise`).
    BenchDenoise(Forward),
    /// Deraining benchmark (runs `ipt bench-derain`).
    BenchDerain(Forward),
    /// Benchmark any task by its recipe (runs `ipt bench`).
    Bench(Forward),
    /// JPEG artefact-removal benchmark (runs `ipt bench-jpeg`).
    BenchJpeg(Forward),
    /// Speed of restore, training, data pipeline, bicubic and SSIM on this machine (runs `ipt bench-speed`).
    BenchSpeed(Forward),
    /// Restore images with a shipped model or a checkpoint (runs `ipt restore`).
    Restore(Forward),
    /// List the shipped models (runs `ipt models`).
    Models(Forward),
    /// A local web page to restore images (runs `ipt serve`).
    Serve(Forward),
    /// Convert a PyTorch checkpoint to safetensors (runs `ipt convert`).
    Convert(Forward),
    /// Apply a task's degradation recipe to clean images (runs `ipt degrade`).
    Degrade(Forward),
    /// Describe a checkpoint (runs `ipt info`).
    Info(Forward),
    /// Show the libtorch and devices the `ipt` binary sees (runs `ipt doctor`).
    Doctor(Forward),
    /// Draw the validation curves of several (chained) runs in one chart (runs `ipt plot-runs`).
    PlotRuns(Forward),
    /// Fuzz the file parsers (cargo-fuzz on nightly, installed when missing): one target or all,
    /// N seconds each, then a table of executions and coverage.
    Fuzz(fuzz::Args),
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
            let gloo = ensure_gloo()?;
            println!(
                "gloo:      headers in {} (for ipt-dist's C++ shim)",
                gloo.display()
            );
            let cmake = ensure_package(&system_package::CMAKE)?;
            println!(
                "cmake:     {} (builds libjpeg-turbo for the JPEG degradation)",
                cmake.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Env { cuda } => {
            let lt = setup(cuda)?;
            check_gloo();
            for (k, v) in lt.cargo_env() {
                println!("export {k}={}", shell_quote(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test { args } => {
            let lt = setup(false)?;
            ensure_build_packages()?;
            let chromium = ensure_package(&system_package::CHROMIUM)?;
            let tb = match std::env::var_os("IPT_TENSORBOARD_PYTHONPATH") {
                Some(dir) => std::path::PathBuf::from(dir),
                None => {
                    let inputs = Inputs::from_env(false);
                    tensorboard::ensure(&inputs.ipt_home, &inputs.python().0)?
                }
            };
            let mut a: Vec<OsString> = vec!["test".into(), "--workspace".into()];
            a.extend(args);
            let mut env = lt.cargo_env();
            env.push((
                "IPT_TENSORBOARD_PYTHONPATH".into(),
                tb.display().to_string(),
            ));
            env.push(("IPT_REQUIRE_TENSORBOARD".into(), "1".into()));
            env.push((
                "IPT_CHROMIUM".into(),
                chromium
                    .join(system_package::CHROMIUM.marker)
                    .display()
                    .to_string(),
            ));
            cargo_with(&env, &a)
        }
        Cmd::Lint => {
            let lt = setup(false)?;
            ensure_build_packages()?;
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
        Cmd::Pretrain(f) => train("pretrain", f),
        Cmd::Finetune(f) => train("finetune", f),
        Cmd::BenchSr(f) => forward("bench-sr", f),
        Cmd::BenchDenoise(f) => forward("bench-denoise", f),
        Cmd::BenchDerain(f) => forward("bench-derain", f),
        Cmd::Bench(f) => forward("bench", f),
        Cmd::BenchJpeg(f) => forward("bench-jpeg", f),
        Cmd::BenchSpeed(f) => forward("bench-speed", f),
        Cmd::Restore(f) => forward("restore", f),
        Cmd::Models(f) => forward("models", f),
        Cmd::Serve(f) => forward("serve", f),
        Cmd::Convert(f) => forward("convert", f),
        Cmd::Degrade(f) => forward("degrade", f),
        Cmd::Info(f) => forward("info", f),
        Cmd::Doctor(f) => forward("doctor", f),
        Cmd::PlotRuns(f) => forward("plot-runs", f),
        Cmd::Fuzz(args) => fuzz::run(&setup(false)?, args),
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

/// Make sure `req` is present, installing its Debian package as root.
fn ensure_package(req: &'static system_package::Requirement) -> Result<std::path::PathBuf> {
    system_package::ensure(
        req,
        &system_package::SystemHost,
        system_package::override_dir(req),
        &mut |n| eprintln!("xtask: note: {n}"),
    )
    .with_context(|| format!("set-up of {} failed", req.what))
}

/// Make sure the Gloo headers ipt-dist's shim needs are present, installing `libgloo-dev` as root.
fn ensure_gloo() -> Result<std::path::PathBuf> {
    ensure_package(&system_package::GLOO)
}

/// Everything the build needs from the system: the Gloo headers and CMake.
fn ensure_build_packages() -> Result<()> {
    ensure_gloo()?;
    ensure_package(&system_package::CMAKE)?;
    Ok(())
}

/// For `cargo xtask env`, which must stay quick: say (on stderr) when the Gloo headers are missing, never install.
fn check_gloo() {
    let (req, host) = (&system_package::GLOO, system_package::SystemHost);
    let inputs = system_package::inputs(req, &host, system_package::override_dir(req));
    match system_package::plan(req, &inputs) {
        system_package::Plan::Present(_) => {}
        system_package::Plan::Install(_) => eprintln!(
            "xtask: note: {} ({}) not found, so ipt-dist will not build; `cargo xtask setup` installs {}",
            req.what, req.marker, req.package
        ),
        system_package::Plan::Fail(e) => eprintln!("xtask: note: {e}"),
    }
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
    cargo_with(&lt.cargo_env(), args)
}

/// Run cargo with the environment `env`; return its exit status.
fn cargo_with(env: &[(String, String)], args: &[OsString]) -> Result<ExitCode> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(args);
    for (k, v) in env {
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
    ensure_build_packages()?;
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

/// `pretrain` / `finetune`: the plain forward, or the multi-process launcher when a launcher flag is given.
fn train(name: &str, f: Forward) -> Result<ExitCode> {
    let (opts, args) = launch::split_args(&f.args)?;
    match opts {
        None => forward(name, Forward { args }),
        Some(opts) => launch_ranks(name, &opts, &args),
    }
}

/// `cargo build --release -p ipt-cli --bin ipt`; returns the binary's path.
fn build_ipt(lt: &Libtorch) -> Result<std::path::PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--release",
        "--package",
        "ipt-cli",
        "--bin",
        "ipt",
        "--message-format=json-render-diagnostics",
    ])
    .stdout(std::process::Stdio::piped());
    for (k, v) in lt.cargo_env() {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("could not run {}", cargo.to_string_lossy()))?;
    anyhow::ensure!(out.status.success(), "building the `ipt` binary failed");
    launch::executable_from_cargo_json(&String::from_utf8_lossy(&out.stdout), "ipt")
        .context("cargo built `ipt` but did not say where")
}

/// Start this machine's ranks of `ipt NAME ARGS` and supervise them (see [`launch`]).
fn launch_ranks(name: &str, opts: &launch::LaunchOpts, args: &[OsString]) -> Result<ExitCode> {
    let lt = setup(false)?;
    ensure_build_packages()?;
    let ipt = build_ipt(&lt)?;
    let gpu = std::path::Path::new("/proc/driver/nvidia/version").exists();
    let cpu_threads = (!gpu && std::env::var_os("IPT_THREADS").is_none()).then(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let specs = launch::plan(opts, cpu_threads);
    let world = opts.nnodes * opts.nproc_per_node;
    eprintln!(
        "xtask: starting ranks {}..={} of {world} (`ipt {name}`), rendezvous at {}:{}{}",
        specs[0].rank,
        specs[specs.len() - 1].rank,
        opts.master_addr.as_deref().unwrap_or("127.0.0.1"),
        opts.master_port,
        cpu_threads
            .map(|t| format!(", {} CPU threads each", (t / opts.nproc_per_node).max(1)))
            .unwrap_or_default()
    );
    let mut rank_args: Vec<OsString> = vec![name.into()];
    rank_args.extend(args.iter().cloned());
    let commands = specs
        .iter()
        .map(|s| (s.rank, launch::rank_command(ipt.as_os_str(), &rank_args, s)))
        .collect();
    let mut signals = launch::signal_source().context("cannot install the Ctrl-C handler")?;
    let out: launch::Sink = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let err: launch::Sink = std::sync::Arc::new(std::sync::Mutex::new(std::io::stderr()));
    let outcome = launch::supervise(commands, out, err, launch::KILL_GRACE, &mut signals)?;
    if let Some((rank, ending)) = outcome.first_failure {
        eprintln!(
            "xtask: rank {rank} failed ({ending}); the job exits with code {}",
            outcome.exit_code
        );
    }
    Ok(ExitCode::from(u8::try_from(outcome.exit_code).unwrap_or(1)))
}
