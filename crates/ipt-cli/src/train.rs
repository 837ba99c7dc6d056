//! `ipt pretrain CONFIG` and `ipt finetune CONFIG`: run (or resume) a training run described by a
//! TOML experiment config (see `configs/` and `docs/training.md`).

use std::path::PathBuf;

use anyhow::Context;

use crate::signals::Interrupts;
use ipt_train::config::MAX_THREADS;
use ipt_train::plan::ValidationSource;
use ipt_train::trainer::{StopSignal, TrainError};
use ipt_train::{DataRoots, ExperimentConfig, Mode, RunOptions};

/// Arguments of `ipt pretrain` / `ipt finetune`.
#[derive(clap::Args)]
pub struct Args {
    /// The experiment config: for pretrain e.g. configs/demo.toml, for finetune one with a
    /// [finetune] section, e.g. configs/finetune-sr2.toml.
    pub config: PathBuf,
    /// Run directory (checkpoints, metrics.jsonl, plots, resolved config).
    /// Default: runs/<config name>/. Re-running with the same directory resumes.
    #[arg(long, env = "IPT_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Stop after this many completed steps (a checkpoint is written), e.g. to time-box a
    /// session; running again resumes.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// No progress bar or log lines (metrics.jsonl is still written).
    #[arg(long)]
    pub quiet: bool,
    /// What `${IPT_DATA}` stands for in the config's paths (the benchmark sets)
    /// [default: $IPT_DATA, else data/benchmark].
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// What `${IPT_TRAIN_DATA}` stands for in the config's paths (training images)
    /// [default: $IPT_TRAIN_DATA, else data/train].
    #[arg(long, value_name = "DIR")]
    pub train_data: Option<PathBuf>,
}

/// First Ctrl-C / SIGTERM: finish the current step, write a checkpoint, exit with 128 + the
/// signal (130 / 143). Second: exit at once ([`Interrupts`]).
fn install_stop_handler(stop: &StopSignal) -> Interrupts {
    let stop = stop.clone();
    Interrupts::install(move |what| {
        stop.request();
        eprintln!(
            "\n{what}: finishing the current step and writing a checkpoint \
             (press Ctrl-C again to exit at once; the last checkpoint is kept)"
        );
    })
}

fn run(args: Args, mode: Mode) -> anyhow::Result<()> {
    let cfg = ExperimentConfig::load(&args.config)?;
    // torchrun's or SLURM's variables: this process is one rank of a data-parallel job.
    let distributed = ipt_dist::DistEnv::from_env()?;
    if let (None, Some(_), Some(n)) = (cfg.runtime.threads, &distributed, threads_from_env()?) {
        tch::set_num_threads(n as i32);
    }
    let stop = StopSignal::new();
    let interrupts = install_stop_handler(&stop);
    let run_dir = args
        .run_dir
        .unwrap_or_else(|| PathBuf::from("runs").join(cfg.run_name()));
    let opts = RunOptions {
        config_path: args.config.clone(),
        run_dir: run_dir.clone(),
        mode,
        stop_after: args.stop_after,
        verbose: !args.quiet,
        roots: DataRoots::resolve(args.data_root.as_deref(), args.train_data.as_deref()),
        stop,
        distributed,
    };
    let summary = match ipt_train::train(&cfg, &opts) {
        Ok(s) => s,
        Err(e @ TrainError::Interrupted { .. }) => {
            eprintln!("{e}");
            std::process::exit(interrupts.exit_status());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("training run {} failed", args.config.display()))
        }
    };
    if summary.rank != 0 {
        return Ok(()); // rank 0 reports for the job
    }
    for p in &summary.removed_temporaries {
        eprintln!(
            "note: removed {}, left by an interrupted earlier run",
            p.display()
        );
    }
    if let (Some(first), Some(last)) = (summary.losses.first(), summary.losses.last()) {
        println!(
            "steps {}..{} of {}: first loss {:.4} ({}), last loss {:.4} ({}); {:.1} patches/s",
            summary.start_step,
            summary.end_step,
            summary.total_steps,
            first.2,
            first.1,
            last.2,
            last.1,
            summary.patches_per_s
        );
    }
    if let (Some(first), Some(last)) = (summary.validation.first(), summary.validation.last()) {
        for ((t, a), (_, b)) in first.1.iter().zip(&last.1) {
            let base = summary
                .baselines
                .iter()
                .find(|(bt, _)| bt == t)
                .map(|(_, v)| format!(" ({} {v:.2})", ipt_train::validation::baseline_name(*t)))
                .unwrap_or_default();
            println!(
                "PSNR-Y {t}: {a:.2} dB (step {}) -> {b:.2} dB (step {}){base}",
                first.0, last.0
            );
        }
        if let Some(ValidationSource::Embedded { .. }) = &summary.validation_source {
            println!(
                "note: validated on the built-in procedural images: smooth shapes, on which bicubic \
                 is near-perfect, so super-resolution below bicubic here says little about photos; \
                 set validation.path to real images, and see docs/results.md for models trained \
                 and benchmarked on photos"
            );
        }
    }
    if let Some(ck) = &summary.last_checkpoint {
        println!("checkpoint: {}", ck.display());
    }
    if let Some(out) = &summary.exported {
        println!("fine-tuned single-task checkpoint: {}", out.display());
    }
    println!("run directory: {}", run_dir.display());
    Ok(())
}

/// `IPT_THREADS`, the intra-op threads a launcher gives each rank (`cargo xtask pretrain
/// --nproc-per-node N` sets it to the CPU threads / N); `runtime.threads` wins over it.
fn threads_from_env() -> anyhow::Result<Option<usize>> {
    match std::env::var("IPT_THREADS") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(Some(n)),
            _ => anyhow::bail!(
                "IPT_THREADS={v:?}: expected a number of threads from 1 to {MAX_THREADS}"
            ),
        },
    }
}

/// `ipt pretrain`.
pub fn run_pretrain(args: Args) -> anyhow::Result<()> {
    run(args, Mode::Pretrain)
}

/// `ipt finetune`.
pub fn run_finetune(args: Args) -> anyhow::Result<()> {
    run(args, Mode::Finetune)
}
