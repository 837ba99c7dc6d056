//! `ipt bench-sr`, `ipt bench-denoise`, `ipt bench-derain`: the IPT test protocols; `ipt bench`
//! and `ipt bench-jpeg`: any task's recipe at a fixed seed (JPEG with PSNR-B).
//!
//! Thin: parse arguments, build the method, call `ipt_eval`, print the Markdown table
//! on stdout and write the optional CSV/JSON files. See `docs/benchmarks.md`.

use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use ipt_eval::denoise::DEFAULT_NOISE_SEED;
use ipt_eval::{
    self as bench, report, BenchOutcome, BenchProgress, DenoiseOptions, IptMethod, Method,
    RecipeOptions, SrOptions, WeightsSpec,
};
use ipt_model::chop::ChopMode;
use ipt_model::device::DeviceSpec;
use ipt_model::restore::{RestoreOptions, DEFAULT_CROP_BATCH};

/// The three benchmark subcommands (flattened into `ipt`'s command list).
#[derive(clap::Subcommand)]
pub enum Command {
    /// Super-resolution benchmark (Set5, Set14, B100, Urban100 at x2/x3/x4), IPT protocol.
    #[command(name = "bench-sr")]
    Sr(SrArgs),
    /// Colour-denoising benchmark (CBSD68, Urban100 at sigma 30/50), IPT and SwinIR protocols.
    #[command(name = "bench-denoise")]
    Denoise(DenoiseArgs),
    /// Deraining benchmark (Rain100L), IPT protocol.
    #[command(name = "bench-derain")]
    Derain(DerainArgs),
    /// Any task: clean images degraded by its recipe at a fixed seed (PSNR-Y, SSIM-Y, PSNR-B).
    #[command(name = "bench")]
    Recipe(RecipeArgs),
    /// JPEG artefact removal (Classic5, quality 10/20/30/40; PSNR, SSIM, PSNR-B as SwinIR).
    #[command(name = "bench-jpeg")]
    Jpeg(JpegArgs),
}

/// Options shared by the three benchmarks.
#[derive(clap::Args)]
pub struct CommonArgs {
    /// Folder that holds the sets [default: $IPT_DATA, else data/benchmark].
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Evaluate at most N images per set (a quick look).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Run the sets that exist and list missing ones as `missing` rows (default: a missing or
    /// misspelled set is an error).
    #[arg(long)]
    skip_missing: bool,
    /// IPT checkpoint (.pt or .safetensors); repeat it, one per task. `TASK=FILE` names the task
    /// of a scale-1 checkpoint (sr2, sr3, sr4, derain, denoise30, denoise50).
    #[arg(long, value_name = "[TASK=]CKPT")]
    weights: Vec<WeightsSpec>,
    /// Average over the x8 flips/transposes (IPT checkpoints only).
    #[arg(long)]
    self_ensemble: bool,
    /// Windows per model call during whole-image inference.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CROP_BATCH)]
    crop_batch: usize,
    /// Window layout of whole-image inference: `exact` (the official stitching, what published
    /// figures use; the default) or `fast` (stride 36, ~9× fewer windows), to measure what the
    /// fast layout of `ipt restore --chop fast` costs in PSNR.
    #[arg(long, default_value_t = ChopMode::Exact, value_name = "MODE")]
    chop: ChopMode,
    /// Device for IPT inference: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    /// Run the network under bf16 autocast (CUDA only: refused on the CPU, as by `ipt restore`).
    #[arg(long)]
    bf16: bool,
    /// Write the JSON summary here.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Write one CSV row per image here.
    #[arg(long, value_name = "OUT")]
    csv: Option<PathBuf>,
}

/// Baselines of `bench-sr`.
#[derive(Clone, Copy, ValueEnum)]
pub enum SrBaseline {
    /// MATLAB bicubic upscaling.
    Bicubic,
}

/// Baselines of `bench-denoise` and `bench-derain`.
#[derive(Clone, Copy, ValueEnum)]
pub enum RestoreBaseline {
    /// The degraded input itself.
    Identity,
}

/// Arguments of `ipt bench-sr`.
#[derive(clap::Args)]
pub struct SrArgs {
    /// A baseline instead of --weights.
    #[arg(
        long,
        value_enum,
        conflicts_with = "weights",
        required_unless_present = "weights"
    )]
    model: Option<SrBaseline>,
    /// Sets, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Set5,Set14,B100,Urban100"
    )]
    sets: Vec<String>,
    /// Scales, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4")]
    scales: Vec<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Arguments of `ipt bench-denoise`.
#[derive(clap::Args)]
pub struct DenoiseArgs {
    /// A baseline instead of --weights.
    #[arg(
        long,
        value_enum,
        conflicts_with = "weights",
        required_unless_present = "weights"
    )]
    model: Option<RestoreBaseline>,
    /// Sets, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "CBSD68,Urban100")]
    sets: Vec<String>,
    /// Noise levels (0-255 scale, 1 to 255), comma separated. σ = 0 would compare an image with
    /// itself (PSNR infinite) and is refused.
    #[arg(long, value_delimiter = ',', default_value = "30,50",
          value_parser = clap::value_parser!(u32).range(1..=255))]
    sigmas: Vec<u32>,
    /// Base seed of the per-image noise (see docs/benchmarks.md).
    #[arg(long, default_value_t = DEFAULT_NOISE_SEED)]
    seed: u64,
    #[command(flatten)]
    common: CommonArgs,
}

/// Arguments of `ipt bench-derain`.
#[derive(clap::Args)]
pub struct DerainArgs {
    /// A baseline instead of --weights.
    #[arg(
        long,
        value_enum,
        conflicts_with = "weights",
        required_unless_present = "weights"
    )]
    model: Option<RestoreBaseline>,
    /// The test set: Rain100L (the paper's) or Rain100H (heavy rain), a folder of that name
    /// under the data root.
    #[arg(long, default_value = "Rain100L", value_parser = clap::builder::PossibleValuesParser::new(ipt_eval::rain_pairs::RAIN_SETS))]
    set: String,
    #[command(flatten)]
    common: CommonArgs,
}

/// Baselines of `bench` and `bench-jpeg`.
#[derive(Clone, Copy, ValueEnum)]
pub enum AnyBaseline {
    /// The degraded input itself (tasks of scale 1).
    Identity,
    /// MATLAB bicubic upscaling (tasks of scale above 1).
    Bicubic,
}

impl AnyBaseline {
    fn method(self) -> Method {
        match self {
            AnyBaseline::Identity => Method::Identity,
            AnyBaseline::Bicubic => Method::Bicubic,
        }
    }
}

/// Arguments of `ipt bench`.
#[derive(clap::Args)]
pub struct RecipeArgs {
    /// A baseline instead of --weights.
    #[arg(
        long,
        value_enum,
        conflicts_with = "weights",
        required_unless_present = "weights"
    )]
    model: Option<AnyBaseline>,
    /// Tasks, comma separated: built in, shipped (denoise-blind, jpeg10…, realsr4), recorded in
    /// the checkpoint, or defined in --task-file.
    #[arg(long, value_delimiter = ',', required = true, value_name = "NAME")]
    task: Vec<String>,
    /// Sets (folders under the data root), comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    sets: Vec<String>,
    /// A TOML file whose [[tasks.define]] tables define more tasks (a config or a recipe file).
    #[arg(long, value_name = "TOML")]
    task_file: Option<PathBuf>,
    /// Base seed of the recipes' draws (each image's depend on it, the task and the image).
    #[arg(long, default_value_t = ipt_eval::recipe::DEFAULT_RECIPE_SEED)]
    seed: u64,
    /// Folder of rain-streak layers for the `rain` op (default: the procedural generator).
    #[arg(long, value_name = "DIR")]
    rain_streaks: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Arguments of `ipt bench-jpeg`.
#[derive(clap::Args)]
pub struct JpegArgs {
    /// A baseline instead of --weights.
    #[arg(
        long,
        value_enum,
        conflicts_with = "weights",
        required_unless_present = "weights"
    )]
    model: Option<RestoreBaseline>,
    /// Sets, comma separated (grey files are compressed and scored in grey).
    #[arg(long, value_delimiter = ',', default_value = "classic5")]
    sets: Vec<String>,
    /// JPEG qualities (1 to 100), comma separated: the tasks `jpeg<q>`.
    #[arg(long, value_delimiter = ',', default_value = "10,20,30,40",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    qualities: Vec<u8>,
    #[command(flatten)]
    common: CommonArgs,
}

/// The task `name` for a benchmark: one the loaded checkpoints perform, else a built-in, a
/// `task_file` or a shipped one.
fn bench_task(
    name: &str,
    method: &Method,
    task_file: Option<&std::path::Path>,
) -> anyhow::Result<ipt_degrade::Task> {
    if let Method::Ipt(m) = method {
        if let Some(t) = m.tasks().into_iter().find(|t| t.name() == name) {
            return Ok(t);
        }
    }
    let defined = match task_file {
        Some(f) => ipt_train::config::read_task_definitions(f)?,
        None => Vec::new(),
    };
    Ok(ipt_degrade::task::with_defined(&defined, || {
        ipt_degrade::task::lookup(name)
    })?)
}

/// The task of a JPEG round trip at `quality`: the shipped `jpeg<q>` when there is one.
fn jpeg_task(quality: u8) -> anyhow::Result<ipt_degrade::Task> {
    use ipt_degrade::recipe::{Op, Param, Recipe, Step};
    let name = format!("jpeg{quality}");
    if let Ok(t) = ipt_degrade::task::lookup(&name) {
        return Ok(t);
    }
    let recipe = Recipe(
        vec![Step::always(Op::Jpeg {
            quality: Param::Fixed(f64::from(quality)),
        })]
        .into(),
    );
    Ok(ipt_degrade::Task::define(ipt_degrade::task::TaskDef::new(
        name, 1, recipe,
    ))?)
}

/// Builds the method: a baseline, or the IPT checkpoints of `--weights`.
fn method(baseline: Option<Method>, common: &CommonArgs) -> anyhow::Result<Method> {
    if let Some(m) = baseline {
        if common.self_ensemble {
            anyhow::bail!("--self-ensemble applies to IPT checkpoints (--weights) only");
        }
        if common.chop != ChopMode::Exact {
            anyhow::bail!("--chop applies to IPT checkpoints (--weights) only");
        }
        if common.bf16 {
            anyhow::bail!("--bf16 applies to IPT checkpoints (--weights) only");
        }
        return Ok(m);
    }
    let device = common.device.resolve().context("choosing the device")?;
    ipt_eval::restore_job::check_bf16(common.bf16, device)?;
    eprintln!("device: {device:?}");
    let options = RestoreOptions {
        crop_batch: common.crop_batch,
        self_ensemble: common.self_ensemble,
        bf16: common.bf16,
        chop: common.chop,
    };
    let ipt = IptMethod::load(&common.weights, device, options)?;
    Ok(Method::Ipt(Box::new(ipt)))
}

/// Prints the table and writes the requested files.
fn emit(outcome: &BenchOutcome, common: &CommonArgs) -> anyhow::Result<()> {
    println!("{}", report::render_markdown(outcome));
    if let Some(path) = &common.csv {
        report::write_csv(path, &outcome.images)?;
        eprintln!("per-image results: {}", path.display());
    }
    if let Some(path) = &common.json {
        report::write_json(path, &outcome.report())?;
        eprintln!("summary: {}", path.display());
    }
    Ok(())
}

/// Runs one benchmark subcommand.
pub fn run(cmd: Command) -> anyhow::Result<()> {
    let progress = BenchProgress::stderr();
    match cmd {
        Command::Sr(args) => {
            let root = bench::resolve_data_root(args.common.data_root.as_deref());
            eprintln!("data root: {} (from {})", root.path.display(), root.source);
            let mut method = method(args.model.map(|_| Method::Bicubic), &args.common)?;
            let opts = SrOptions {
                sets: args.sets,
                scales: args.scales,
                limit: args.common.limit,
                skip_missing: args.common.skip_missing,
            };
            let outcome = bench::run_sr(&root, &opts, &mut method, &progress)?;
            emit(&outcome, &args.common)
        }
        Command::Denoise(args) => {
            let root = bench::resolve_data_root(args.common.data_root.as_deref());
            eprintln!("data root: {} (from {})", root.path.display(), root.source);
            let mut method = method(args.model.map(|_| Method::Identity), &args.common)?;
            let opts = DenoiseOptions {
                sets: args.sets,
                sigmas: args.sigmas,
                limit: args.common.limit,
                skip_missing: args.common.skip_missing,
                seed: args.seed,
            };
            let outcome = bench::run_denoise(&root, &opts, &mut method, &progress)?;
            emit(&outcome, &args.common)
        }
        Command::Derain(args) => {
            let root = bench::resolve_data_root(args.common.data_root.as_deref());
            eprintln!("data root: {} (from {})", root.path.display(), root.source);
            let mut method = method(args.model.map(|_| Method::Identity), &args.common)?;
            let outcome =
                bench::run_derain_set(&root, &args.set, args.common.limit, &mut method, &progress)?;
            emit(&outcome, &args.common)
        }
        Command::Recipe(args) => {
            let root = bench::resolve_data_root(args.common.data_root.as_deref());
            eprintln!("data root: {} (from {})", root.path.display(), root.source);
            let mut method = method(args.model.map(AnyBaseline::method), &args.common)?;
            let tasks = args
                .task
                .iter()
                .map(|n| bench_task(n, &method, args.task_file.as_deref()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let rain = match &args.rain_streaks {
                Some(dir) => ipt_degrade::rain::RainSource::from_folder(dir)?,
                None => ipt_degrade::rain::RainSource::default(),
            };
            let opts = RecipeOptions {
                sets: args.sets,
                tasks,
                limit: args.common.limit,
                skip_missing: args.common.skip_missing,
                seed: args.seed,
                rain,
            };
            let outcome = bench::run_recipe(&root, &opts, &mut method, &progress)?;
            emit(&outcome, &args.common)
        }
        Command::Jpeg(args) => {
            let root = bench::resolve_data_root(args.common.data_root.as_deref());
            eprintln!("data root: {} (from {})", root.path.display(), root.source);
            let mut method = method(args.model.map(|_| Method::Identity), &args.common)?;
            let opts = RecipeOptions {
                sets: args.sets,
                tasks: args
                    .qualities
                    .iter()
                    .map(|&q| jpeg_task(q))
                    .collect::<anyhow::Result<Vec<_>>>()?,
                limit: args.common.limit,
                skip_missing: args.common.skip_missing,
                seed: ipt_eval::recipe::DEFAULT_RECIPE_SEED,
                rain: ipt_degrade::rain::RainSource::default(),
            };
            let outcome = bench::run_recipe(&root, &opts, &mut method, &progress)?;
            emit(&outcome, &args.common)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use ipt_eval::{denoise, sr};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("ipt").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let Command::Sr(a) = parse(&["bench-sr", "--model", "bicubic"]).unwrap() else {
            panic!("bench-sr");
        };
        assert_eq!(a.sets, sr::DEFAULT_SR_SETS);
        assert_eq!(a.scales, sr::DEFAULT_SR_SCALES);
        assert_eq!(a.common.crop_batch, DEFAULT_CROP_BATCH);
        let Command::Denoise(d) = parse(&["bench-denoise", "--model", "identity"]).unwrap() else {
            panic!("bench-denoise");
        };
        assert_eq!(d.sets, denoise::DEFAULT_DENOISE_SETS);
        assert_eq!(d.sigmas, denoise::DEFAULT_SIGMAS);
        assert_eq!(d.seed, DEFAULT_NOISE_SEED);
    }

    #[test]
    fn model_or_weights_is_required_and_exclusive() {
        assert!(parse(&["bench-sr"]).is_err());
        assert!(parse(&["bench-sr", "--model", "bicubic", "--weights", "a.pt"]).is_err());
        assert!(parse(&["bench-denoise", "--model", "bicubic"]).is_err());
        let Command::Sr(a) = parse(&[
            "bench-sr",
            "--weights",
            "IPT_sr2.pt",
            "--weights",
            "sr3=x.safetensors",
            "--scales",
            "2,3",
            "--sets",
            "Set5",
        ])
        .unwrap() else {
            panic!("bench-sr");
        };
        assert_eq!(a.common.weights.len(), 2);
        assert_eq!(a.common.weights[1].task, Some(ipt_degrade::Task::Sr3));
        assert_eq!(a.scales, vec![2, 3]);
        assert_eq!(a.sets, vec!["Set5".to_string()]);
        assert!(parse(&["bench-derain", "--model", "identity", "--limit", "3"]).is_ok());
    }

    #[test]
    fn bf16_is_refused_off_cuda_not_ignored() {
        let sr = |args: &[&str]| match parse(args).unwrap() {
            Command::Sr(a) => a,
            _ => panic!("bench-sr"),
        };
        let a = sr(&["bench-sr", "--weights", "x.pt", "--device", "cpu", "--bf16"]);
        let e = method(None, &a.common).err().unwrap().to_string();
        assert!(e.contains("CUDA"), "{e}");
        let a = sr(&["bench-sr", "--model", "bicubic", "--bf16"]);
        let e = method(a.model.map(|_| Method::Bicubic), &a.common)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("IPT checkpoints"), "{e}");
    }
}
