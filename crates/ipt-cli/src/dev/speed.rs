//! `ipt bench-speed`: how fast this build runs what a user of the project waits for, on the
//! device it finds — whole-image restore, training steps, the data pipeline, bicubic and SSIM —
//! as a Markdown table (or `--json`), with the device, threads and versions in the header.
//! `docs/performance.md` holds its output.
//!
//! Each row repeats its work until `--seconds` have passed (after one untimed warm-up run) and
//! reports the work done over the time taken. Models are randomly initialised (seed 0): speed
//! does not depend on the weights.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use ipt_degrade::{synthesize_with, Task};
use ipt_loss::PretrainLoss;
use ipt_model::chop::ChopMode;
use ipt_model::device::DeviceSpec;
use ipt_model::restore::{restore_image, windows_for, RestoreOptions};
use ipt_model::{AttentionKernel, Ipt, IptConfig};
use ipt_train::config::{ModelPreset, ModelSection};
use ipt_train::data::pipeline::BatchFactory;
use ipt_train::data::{Batch, BatchPlan, DataStats, ImageSource, Sampler, SamplerConfig};
use ipt_train::optim::Clip;
use ipt_train::schedule::LrSchedule;
use ipt_train::{DataRoots, EngineSettings, StepEngine};
use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

/// Arguments of `ipt bench-speed`.
#[derive(clap::Args)]
pub struct Args {
    /// Device for the network rows: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceSpec,
    /// Folder of training images for the data-pipeline rows (JPEG/PNG, searched recursively)
    /// [default: $IPT_TRAIN_DATA, else data/train; the embedded procedural images when neither
    /// exists].
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Seconds of timed work per row (at least one repetition after the warm-up).
    #[arg(long, default_value_t = 3.0, value_name = "S")]
    seconds: f64,
    /// Leave out the base-model rows (minutes on a CPU).
    #[arg(long)]
    quick: bool,
    /// Print JSON instead of the Markdown table.
    #[arg(long)]
    json: bool,
    /// CPU clock for the FP32 peak, in GHz [default: what /proc/cpuinfo reports; a virtual
    /// machine often reports its nominal clock, below the boost clock the cores run at].
    #[arg(long, value_name = "GHZ", value_parser = parse_ghz)]
    cpu_ghz: Option<f64>,
}

/// `--cpu-ghz`: a clock between 0.1 and 10 GHz.
fn parse_ghz(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.1..=10.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "--cpu-ghz takes a clock in GHz between 0.1 and 10, not {s:?}"
        )),
    }
}

/// The name of a preset in row titles.
fn preset_name(preset: ModelPreset) -> &'static str {
    match preset {
        ModelPreset::Tiny => "tiny",
        ModelPreset::Small => "small",
        ModelPreset::Base => "base",
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
struct Row {
    /// What was measured.
    work: String,
    /// The rate.
    value: f64,
    /// Its unit.
    unit: &'static str,
    /// How: sizes, settings.
    detail: String,
    /// Multiply-accumulates per second the row achieved (network rows only:
    /// [`ipt_model::cost`]).
    gmac_per_s: Option<f64>,
}

/// What the figures were measured on.
#[derive(Debug, Clone, Serialize)]
struct Header {
    ipt_rs: &'static str,
    libtorch: &'static str,
    device: String,
    cpu: String,
    intra_op_threads: i32,
    data_images: String,
    /// The CPU's FP32 peak in GMAC/s for the intra-op threads, and how it was estimated.
    fp32_peak: Option<Peak>,
}

/// The FP32 multiply-accumulate peak of the CPU threads a row may use.
#[derive(Debug, Clone, Serialize)]
struct Peak {
    /// GMAC/s.
    gmac_per_s: f64,
    /// How: threads × FMA lanes per cycle × clock.
    how: String,
}

/// The FP32 peak of `threads` cores of this CPU, from `/proc/cpuinfo`: two FMA units per core
/// (every x86 core with AVX2 since Haswell and Zen 2 has two) of 8 lanes (256 bits), or of 16
/// lanes with AVX-512 on Intel; AMD's Zen 4 and 5 run AVX-512 through their 256-bit units, so
/// they count 16 lanes a cycle too. At the clock the kernel reports (boost clocks are higher).
/// `None` off Linux/x86 or without FMA.
fn fp32_peak(threads: i32, clock: Option<f64>) -> Option<Peak> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let flags = field("flags")?;
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let amd = field("vendor_id").is_some_and(|v| v == "AuthenticAMD");
    let (lanes, isa) = if has("avx512f") && !amd {
        (32, "AVX-512")
    } else if has("avx512f") {
        (16, "AVX-512 on 256-bit units")
    } else if has("avx2") && has("fma") {
        (16, "AVX2 + FMA")
    } else {
        return None;
    };
    let (ghz, source) = match clock {
        Some(ghz) => (ghz, "given with --cpu-ghz"),
        None => (
            field("cpu MHz")?.parse::<f64>().ok()? / 1e3,
            "as /proc/cpuinfo reports it",
        ),
    };
    let threads = threads.max(1) as f64;
    Some(Peak {
        gmac_per_s: threads * f64::from(lanes) * ghz,
        how: format!(
            "{threads} threads × {lanes} FMA lanes per cycle ({isa}, two FMA units) × {ghz:.2} GHz \
             ({source})"
        ),
    })
}

#[derive(Serialize)]
struct Report {
    header: Header,
    rows: Vec<Row>,
}

/// Run the benchmark and print the table.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!("--seconds {}: must be a positive number", args.seconds);
    }
    let device = args.device.resolve()?;
    let images = data_images(args.images.as_deref())?;
    let header = Header {
        ipt_rs: env!("CARGO_PKG_VERSION"),
        libtorch: option_env!("IPT_LIBTORCH_LIB").unwrap_or("<unknown>"),
        device: format!("{device:?}"),
        cpu: cpu_model(),
        intra_op_threads: tch::get_num_threads(),
        data_images: describe(&images),
        fp32_peak: if device.is_cuda() {
            None
        } else {
            fp32_peak(tch::get_num_threads(), args.cpu_ghz)
        },
    };
    let bench = Bench {
        seconds: args.seconds,
        device,
    };
    let mut rows = Vec::new();
    let mut add = |row: Row| {
        eprintln!("{:<48} {:>10.2} {}", row.work, row.value, row.unit);
        rows.push(row);
    };
    let models: &[(&str, IptConfig)] = if args.quick {
        &[]
    } else {
        &[("base", IptConfig::base(&[2]))]
    };
    let tiny = IptConfig::tiny(&[2]);
    // The other attention kernel than the device's default, to show what it would change.
    let other = match device {
        Device::Cpu => AttentionKernel::Fused,
        _ => AttentionKernel::Explicit,
    };
    for (name, cfg) in models.iter().chain([&("tiny", tiny.clone())]) {
        for mode in [ChopMode::Exact, ChopMode::Fast] {
            for bf16 in [false, true]
                .into_iter()
                .filter(|&b| !b || device.is_cuda())
            {
                add(bench.restore(name, cfg, mode, bf16, None)?);
            }
        }
        add(bench.restore(name, cfg, ChopMode::Exact, false, Some(other))?);
    }
    let presets: &[(ModelPreset, usize)] = if args.quick {
        &[(ModelPreset::Tiny, 16)]
    } else {
        &[(ModelPreset::Base, 2), (ModelPreset::Tiny, 16)]
    };
    for &(preset, batch) in presets {
        for lambda in [0.0, 0.1] {
            add(bench.train_step(preset, batch, lambda)?);
        }
    }
    // The data pipeline's work, bicubic and SSIM on one thread (what one data worker has; the
    // resize and SSIM kernels otherwise spread over rayon's threads), then SSIM and bicubic on all.
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    one.install(|| -> anyhow::Result<()> {
        add(bench.decode(&images)?);
        for task in Task::OFFICIAL {
            add(bench.synthesize(task)?);
        }
        for crops in [1, 4] {
            for task in Task::OFFICIAL {
                add(bench.pipeline(&images, task, crops)?);
            }
        }
        add(bench.bicubic()?);
        add(bench.ssim()?);
        Ok(())
    })?;
    add(bench.bicubic()?);
    add(bench.ssim()?);
    let report = Report { header, rows };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", markdown(&report));
    }
    Ok(())
}

/// The Markdown table.
fn markdown(r: &Report) -> String {
    let h = &r.header;
    let peak = h.fp32_peak.as_ref();
    let mut s = format!(
        "ipt-rs {}, libtorch {}\ndevice {}, CPU {}, {} intra-op threads\nFP32 peak: {}\n\
         data-pipeline images: {}\n\n\
         | work | rate | unit | GMAC/s (of peak) | how |\n|---|---:|---|---:|---|\n",
        h.ipt_rs,
        h.libtorch,
        h.device,
        h.cpu,
        h.intra_op_threads,
        peak.map_or("unknown".to_string(), |p| format!(
            "{:.0} GMAC/s = {}",
            p.gmac_per_s, p.how
        )),
        h.data_images
    );
    for row in &r.rows {
        let achieved = match (row.gmac_per_s, peak) {
            (Some(g), Some(p)) => format!("{} ({:.0} %)", figure(g), 100.0 * g / p.gmac_per_s),
            (Some(g), None) => figure(g),
            (None, _) => String::new(),
        };
        s += &format!(
            "| {} | {} | {} | {achieved} | {} |\n",
            row.work,
            figure(row.value),
            row.unit,
            row.detail
        );
    }
    s
}

/// Three significant digits.
fn figure(v: f64) -> String {
    match v.abs() {
        x if x >= 100.0 => format!("{v:.0}"),
        x if x >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// `model name` of /proc/cpuinfo, or the architecture.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Side of the embedded procedural images used without a training folder (the SR×4 crop is 192).
const EMBEDDED_SIDE: usize = 400;

/// `N files under DIR`, or `N embedded procedural images`.
fn describe(images: &ImageSource) -> String {
    match images {
        ImageSource::Files(f) => {
            let first = f
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{} files (first {first})", f.len())
        }
        other => format!(
            "{} embedded procedural images of {EMBEDDED_SIDE}×{EMBEDDED_SIDE}",
            other.len()
        ),
    }
}

/// The images of the data-pipeline rows.
fn data_images(flag: Option<&Path>) -> anyhow::Result<ImageSource> {
    let dir = match flag {
        Some(d) => d.to_path_buf(),
        None => DataRoots::resolve(None, None).train,
    };
    if flag.is_none() && !dir.is_dir() {
        return Ok(ImageSource::embedded(0, 200, EMBEDDED_SIDE));
    }
    ImageSource::folder(&dir).with_context(|| format!("--images {}", dir.display()))
}

struct Bench {
    seconds: f64,
    device: Device,
}

impl Bench {
    /// Run `work` once untimed, then until `seconds` have passed; `work` returns the units it
    /// did. Returns units per second.
    fn rate(&self, mut work: impl FnMut() -> anyhow::Result<usize>) -> anyhow::Result<f64> {
        work()?;
        self.sync();
        let start = Instant::now();
        let mut done = 0;
        while done == 0 || start.elapsed().as_secs_f64() < self.seconds {
            done += work()?;
            self.sync();
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    }

    fn sync(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Whole-image ×2 restore of a 96×96 input: windows per second.
    fn restore(
        &self,
        name: &str,
        cfg: &IptConfig,
        chop: ChopMode,
        bf16: bool,
        kernel: Option<AttentionKernel>,
    ) -> anyhow::Result<Row> {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(self.device);
        let mut model = Ipt::new(&vs.root(), cfg)?;
        if let Some(k) = kernel {
            model.set_attention_kernel(k);
        }
        let side = 96;
        let image = random_image(side, side);
        let opts = RestoreOptions {
            chop,
            bf16,
            ..RestoreOptions::default()
        };
        let windows = windows_for(side, side, cfg.patch_size, &opts);
        let mut last = None;
        let rate = self.rate(|| {
            last = Some(restore_image(
                &model,
                0,
                &image,
                self.device,
                &opts,
                |_| {},
            )?);
            Ok(windows)
        })?;
        // With another kernel than the default: how far it moves the image.
        let mut delta = String::new();
        if let (Some(k), Some(out)) = (kernel, last) {
            model.set_attention_kernel(AttentionKernel::Auto);
            let default = restore_image(&model, 0, &image, self.device, &opts, |_| {})?;
            let d = (&out - &default).fold(0.0f32, |m, v| m.max(v.abs()));
            let top = default.fold(0.0f32, |m, v| m.max(v.abs()));
            delta = format!(
                "; max |Δ| from the default ({}) kernel {d:.1e} on values up to {top:.0}",
                if k == AttentionKernel::Fused {
                    "explicit"
                } else {
                    "fused"
                }
            );
        }
        Ok(Row {
            work: format!(
                "restore {name} ×2, {} chop{}{}",
                chop.name(),
                if bf16 { ", bf16" } else { "" },
                match kernel {
                    Some(AttentionKernel::Fused) => ", fused attention",
                    Some(_) => ", explicit attention",
                    None => "",
                }
            ),
            value: rate,
            unit: "windows/s",
            gmac_per_s: ipt_model::cost::forward_macs(cfg, 0).map(|m| rate * m as f64 / 1e9),
            detail: format!(
                "{side}×{side} input, {windows} windows of {p}×{p}, {c} per call, {t:.2} s per \
                 image{delta}",
                p = cfg.patch_size,
                c = opts.crop_batch,
                t = windows as f64 / rate
            ),
        })
    }

    /// Training steps of `preset` with batch `batch` (forward, L1 + λ·SupCon, backward,
    /// clipping, Adam, through [`StepEngine::step`]): patches per second.
    fn train_step(&self, preset: ModelPreset, batch: usize, lambda: f64) -> anyhow::Result<Row> {
        let model = ModelSection {
            preset,
            ..ModelSection::default()
        };
        let network = model.network(&[Task::Sr2, Task::Denoise30], 48);
        let settings = EngineSettings {
            seed: 0,
            schedule: LrSchedule::constant(5e-5),
            clip: Clip::PerTensor(1.0),
            loss: PretrainLoss {
                lambda,
                ..PretrainLoss::default()
            },
            bf16: false,
            ema_decay: None,
        };
        let mut engine = StepEngine::fresh(&network, self.device, settings)?;
        let (lr, hr) = (random_batch(batch, 48), random_batch(batch, 96));
        let batch_in = Batch {
            plan: BatchPlan {
                index: 0,
                epoch: 0,
                index_in_epoch: 0,
                task_pos: 0,
                task: Task::Sr2,
                start: 0,
                first_slot: 0,
            },
            lr,
            hr,
        };
        let params = engine.parameter_count();
        let macs = ipt_model::cost::train_macs_per_patch(&network, 0);
        let mut step = 0;
        let rate = self.rate(|| {
            engine.step(&batch_in, step, false)?;
            step += 1;
            Ok(batch)
        })?;
        Ok(Row {
            work: format!(
                "train {}, {}",
                preset_name(preset),
                if lambda > 0.0 {
                    "L1 + 0.1·SupCon"
                } else {
                    "L1"
                }
            ),
            value: rate,
            unit: "patches/s",
            gmac_per_s: macs.map(|m| rate * m as f64 / 1e9),
            detail: format!(
                "sr2 step (fwd, loss, bwd, clip, Adam), batch {batch} of 48², {:.2} M parameters; \
                 GMAC/s counts 3 forward passes per patch",
                params as f64 / 1e6
            ),
        })
    }

    /// Decoding the training images (the first stage of the data pipeline): images per second.
    fn decode(&self, images: &ImageSource) -> anyhow::Result<Row> {
        let n = images.len();
        let mut i = 0;
        let mut pixels = 0usize;
        let rate = self.rate(|| {
            let sample = images.load(i % n)?;
            let (h, w) = sample.dims();
            pixels += h * w;
            i += 1;
            Ok(1)
        })?;
        Ok(Row {
            work: "decode training images".into(),
            value: rate,
            unit: "images/s",
            gmac_per_s: None,
            detail: format!(
                "one thread, mean {:.2} MP per image",
                pixels as f64 / i.max(1) as f64 / 1e6
            ),
        })
    }

    /// Degrading one HR crop into its LR input (the second stage): patches per second.
    fn synthesize(&self, task: Task) -> anyhow::Result<Row> {
        let hr = random_image(task.hr_patch(48), task.hr_patch(48));
        let rain = ipt_degrade::rain::RainSource::default();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let rate = self.rate(|| {
            synthesize_with(&hr, task, &rain, &mut rng)?;
            Ok(1)
        })?;
        Ok(Row {
            work: format!("synthesize {task}"),
            value: rate,
            unit: "patches/s",
            gmac_per_s: None,
            detail: format!("one thread, HR crop {0}×{0} → LR 48×48", task.hr_patch(48)),
        })
    }

    /// Whole batches of `task` from the images (decode, crop, synthesize, to tensors), one
    /// worker, `crops` crops per decoded image (`data.crops_per_image`): patches per second.
    fn pipeline(&self, images: &ImageSource, task: Task, crops: usize) -> anyhow::Result<Row> {
        let batch = 16;
        let factory = BatchFactory {
            sampler: Sampler::new(
                SamplerConfig {
                    seed: 0,
                    tasks: vec![task],
                    weights: vec![1.0],
                    batch_size: batch,
                    patch: 48,
                    augment: false,
                    repeat: crops,
                    crops_per_image: crops,
                    rank: 0,
                    world_size: 1,
                },
                images.len(),
            )?,
            source: images.clone(),
            rain: ipt_degrade::rain::RainSource::default(),
            max_bad_fraction: 1.0,
            bad_file_grace: usize::MAX,
            small_images: Default::default(),
            stats: DataStats::default(),
        };
        let mut k = 0;
        let rate = self.rate(|| {
            factory.build_index(k)?;
            k += 1;
            Ok(batch)
        })?;
        let skipped = factory.stats.small_skips();
        Ok(Row {
            work: format!(
                "data pipeline {task}, {crops} crop{} per image",
                if crops > 1 { "s" } else { "" }
            ),
            value: rate,
            unit: "patches/s",
            gmac_per_s: None,
            detail: format!(
                "one worker, batches of {batch}{}",
                if skipped > 0 {
                    format!(", {skipped} crops skipped (image too small)")
                } else {
                    String::new()
                }
            ),
        })
    }

    /// MATLAB-exact bicubic ↓4 of a 1024² RGB image: megapixels (input) per second.
    fn bicubic(&self) -> anyhow::Result<Row> {
        let img = random_image(1024, 1024);
        let rate = self.rate(|| {
            let _ = ipt_degrade::resize::imresize(&img, 0.25);
            Ok(1)
        })?;
        Ok(Row {
            work: format!("bicubic ↓4 (MATLAB imresize), {}", threads()),
            value: rate * 1024.0 * 1024.0 / 1e6,
            unit: "MP/s",
            gmac_per_s: None,
            detail: format!("1024² RGB, {:.2} ms per image", 1e3 / rate),
        })
    }

    /// SSIM on the Y channel of a 1024² pair: megapixels per second.
    fn ssim(&self) -> anyhow::Result<Row> {
        let (a, b) = (random_image(1024, 1024), random_image(1024, 1024));
        let rate = self.rate(|| {
            ipt_metrics::ssim_y(a.view(), b.view(), 0)?;
            Ok(1)
        })?;
        Ok(Row {
            work: format!("SSIM-Y, {}", threads()),
            value: rate * 1024.0 * 1024.0 / 1e6,
            unit: "MP/s",
            gmac_per_s: None,
            detail: format!("1024² RGB pair, {:.2} ms per pair", 1e3 / rate),
        })
    }
}

/// `1 thread` or `N threads`: the rayon threads the current scope runs on.
fn threads() -> String {
    match rayon::current_num_threads() {
        1 => "1 thread".into(),
        n => format!("{n} threads"),
    }
}

/// A seeded random RGB image on 0–255.
fn random_image(h: usize, w: usize) -> Array3<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    Array3::from_shape_simple_fn((3, h, w), || rng.random_range(0.0..255.0f32))
}

/// A random `[b, 3, side, side]` batch on 0–255 (CPU, as the pipeline delivers).
fn random_batch(b: usize, side: i64) -> Tensor {
    Tensor::rand([b as i64, 3, side, side], (Kind::Float, Device::Cpu)) * 255.0
}
