//! `ipt restore`: restore whole images with an IPT checkpoint.
//!
//! Thin: parse the arguments, run the library job [`ipt_eval::restore_job::RestoreJob`] (it owns
//! the policy: inputs → `OUT/[sub/]<stem><suffix>.<ext>`, limits, memory check, task, grey,
//! alpha, bit depth, ICC and EXIF, atomic writes, what stops the command and what is skipped)
//! and turn its events into progress bars (megapixels of input) and lines. Skipped inputs are
//! listed at the end (exit status 1). The options follow Real-ESRGAN's
//! `inference_realesrgan.py` where it has one (`-n -i -o -s --suffix --ext`).

use std::path::PathBuf;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use ipt_degrade::photo::OutputFormat;
use ipt_eval::models::ModelRef;
use ipt_eval::restore_job::{
    check_bf16, AlphaRestore, Batch, BitDepth, Cancel, Event, JobSpec, Naming, RestoreJob,
    RestoreJobError, Written,
};
use ipt_model::checkpoint::InferOptions;
use ipt_model::chop::ChopMode;
use ipt_model::device::DeviceSpec;
use ipt_model::restore::{RestoreOptions, DEFAULT_CROP_BATCH};
use ipt_model::TaskSelector;

use crate::signals::Interrupts;

/// Arguments of `ipt restore`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("inputs").required(true).multiple(true).args(["input", "inputs_positional"])))]
pub struct Args {
    /// The model: a shipped model's name (`ipt models` lists them) or a checkpoint file (an
    /// official PyTorch `.pt` or a `.safetensors`).
    #[arg(short = 'n', long, visible_alias = "weights", value_name = "NAME|CKPT")]
    pub model: ModelRef,
    /// Task: sr2, sr3, sr4, derain, denoise30, denoise50, or an index into the checkpoint's
    /// task list (resolved by `ipt_model::TaskMap`, as `ipt info` lists them). Optional for
    /// single-task checkpoints.
    #[arg(long, value_name = "NAME|INDEX")]
    pub task: Option<TaskSelector>,
    /// Input image files or folders (as positional arguments or with -i, or both).
    #[arg(short = 'i', long, value_name = "INPUT")]
    pub input: Vec<PathBuf>,
    /// Input image files or folders.
    #[arg(value_name = "INPUT", id = "inputs_positional")]
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(short = 'o', long, visible_alias = "output", value_name = "DIR")]
    pub out: PathBuf,
    /// Search input folders recursively and mirror their sub-folders under the output folder
    /// (the output folder's own files are never taken as inputs).
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Appended to each output's stem: `--suffix _x2` writes `photo_x2.png`.
    #[arg(long, default_value = "", value_parser = parse_suffix)]
    pub suffix: String,
    /// Output format: png, jpg (with --quality) or webp (lossless).
    #[arg(long, default_value = "png", value_name = "FORMAT")]
    pub ext: OutputFormat,
    /// JPEG quality, 1–100 (with --ext jpg; default 95, as OpenCV's imwrite).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: Option<u8>,
    /// Leave inputs whose output already exists alone, so an interrupted batch resumes (without
    /// it, existing outputs are replaced and the plan line says how many).
    #[arg(long)]
    pub skip_existing: bool,
    /// Final scale of the outputs relative to the inputs (e.g. 3 with a ×2 model): the network's
    /// output is resized with MATLAB's bicubic `imresize` (default: the model's scale).
    #[arg(short = 's', long, value_name = "SCALE", value_parser = parse_outscale)]
    pub outscale: Option<f64>,
    /// Bits per channel of the outputs: auto (as the input: a 16-bit photo stays 16-bit), 8, or
    /// 16 (= value·257 rounded). JPEG and WebP outputs are 8-bit.
    #[arg(long, default_value_t = BitDepth::Auto, value_name = "auto|8|16")]
    pub bit_depth: BitDepth,
    /// Window layout: `fast` (the official second variant: stride 36, one window per pixel,
    /// about 9× fewer windows than exact, within 0.013 dB of it per image on Set5 and B100) or `exact`
    /// (the official stitching: stride 12, every pixel averaged over up to 4 windows; what
    /// the benchmarks use).
    #[arg(long, default_value_t = ChopMode::Fast, value_name = "MODE")]
    pub chop: ChopMode,
    /// Average over the ×8 flips/transposes (8× slower).
    #[arg(long)]
    pub self_ensemble: bool,
    /// Windows per network call.
    #[arg(long, default_value_t = DEFAULT_CROP_BATCH as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub crop_batch: u64,
    /// Memory the command may use per image, in GiB (default: what the system reports as
    /// available). An image that needs more is refused before any work on it.
    #[arg(long, value_name = "GIB", value_parser = parse_gib)]
    pub memory_limit: Option<u64>,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceSpec,
    /// Attention heads, for `.pt` files (which do not record it; default: 12, as in every
    /// official checkpoint). Safetensors files written by ipt-rs carry it in their metadata.
    #[arg(long)]
    pub num_heads: Option<usize>,
    /// Run the network in bf16 autocast (CUDA only).
    #[arg(long)]
    pub bf16: bool,
    /// Largest input image to decode, in pixels: a number or WIDTHxHEIGHT (default 16384x16384).
    /// Checked from the file's header, so a small file claiming a huge image is refused before
    /// it takes the machine's memory. The limit on decoded bytes grows with it (8 bytes a pixel,
    /// enough for 16-bit RGBA).
    #[arg(long, value_name = "PIXELS", value_parser = parse_max_pixels)]
    pub max_pixels: Option<u64>,
}

impl Args {
    /// Every input, `-i` ones first.
    fn all_inputs(&self) -> Vec<PathBuf> {
        self.input.iter().chain(&self.inputs).cloned().collect()
    }

    /// The output format with its quality; `--quality` without `--ext jpg` is refused.
    fn format(&self) -> anyhow::Result<OutputFormat> {
        match (self.ext, self.quality) {
            (OutputFormat::Jpeg { .. }, Some(quality)) => Ok(OutputFormat::Jpeg { quality }),
            (format, Some(_)) => bail!(
                "--quality applies to --ext jpg only ({format} output is lossless); drop it or \
                 add --ext jpg"
            ),
            (format, None) => Ok(format),
        }
    }
}

/// `--suffix`: no path separators (it names a file in the output folder).
fn parse_suffix(s: &str) -> Result<String, String> {
    if s.contains(['/', '\\']) || s.contains('\0') {
        return Err(format!(
            "--suffix is part of a file name and cannot hold {s:?}"
        ));
    }
    Ok(s.to_string())
}

/// `--outscale`: a number above 0, at most 16.
fn parse_outscale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 16.0 => Ok(v),
        _ => Err(format!(
            "--outscale takes a scale above 0 and at most 16, not {s:?}"
        )),
    }
}

/// GiB (a positive number, fractions allowed) to bytes.
fn parse_gib(s: &str) -> Result<u64, String> {
    const GIB: f64 = (1u64 << 30) as f64;
    match s.trim().parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => Ok((g * GIB) as u64),
        _ => Err(format!(
            "memory limit must be a positive number of GiB, not {s:?}"
        )),
    }
}

/// `--max-pixels`: a pixel count or `WIDTHxHEIGHT` (`x` or `×`).
fn parse_max_pixels(s: &str) -> Result<u64, String> {
    let number = |t: &str| t.trim().parse::<u64>().ok().filter(|&n| n > 0);
    let parsed = match s.split_once(['x', 'X', '×']) {
        Some((w, h)) => number(w).zip(number(h)).and_then(|(w, h)| w.checked_mul(h)),
        None => number(s),
    };
    parsed.ok_or_else(|| {
        format!("--max-pixels takes a positive pixel count or WIDTHxHEIGHT, not {s:?}")
    })
}

/// A progress bar over the windows of one image, shown as megapixels of input done.
fn image_bar(windows: usize, megapixels: f64, prefix: String) -> ProgressBar {
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {mp} MP ({elapsed_precise}, eta {eta})")
            .expect("static progress template is valid")
            .with_key(
                "mp",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(
                        w,
                        "{:.2}/{:.2}",
                        f64::from(state.fraction()) * megapixels,
                        megapixels
                    );
                },
            )
            .progress_chars("=> ");
    ProgressBar::new(windows as u64)
        .with_style(style)
        .with_prefix(prefix)
}

fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// What an output holds besides its size: `8-bit`, `16-bit grey`, `8-bit, alpha upscaled with
/// bicubic`.
fn describe(w: &Written) -> String {
    let mut text = format!("{}-bit{}", w.bits, if w.grey { " grey" } else { "" });
    match w.alpha {
        Some(AlphaRestore::Kept) => text += ", alpha kept",
        Some(AlphaRestore::Bicubic) => text += ", alpha resized with bicubic",
        None => {}
    }
    text
}

/// Turns a job's events into the command's output: warnings and skips on stderr, the plan line,
/// one bar per image, one line per restored image on stdout.
struct Printer<'a> {
    job: Option<&'a RestoreJob>,
    bar: Option<ProgressBar>,
}

impl Printer<'_> {
    fn event(&mut self, event: &Event) {
        match *event {
            Event::EmptyFolder(dir) => {
                eprintln!("warning: no image files in folder {}", dir.display())
            }
            Event::StaleTemporaryRemoved(file) => eprintln!(
                "note: removed {}, left by an interrupted earlier run",
                file.display()
            ),
            Event::Skipped { file, reason } => {
                eprintln!("skipping {}: {}", file.display(), reason.describe(file))
            }
            Event::Kept { output, .. } => {
                eprintln!("kept {} (exists; --skip-existing)", output.display())
            }
            Event::Planned {
                images,
                windows,
                replacing,
            } => {
                let Some(job) = self.job else { return };
                let (opts, patch) = (&job.spec().options, job.patch());
                let (bf16, ens) = (opts.bf16, opts.self_ensemble);
                eprintln!(
                    "restoring {} with {} on {}{}: {} of {patch}×{patch}, {} layout{}",
                    count(images, "image"),
                    job.head(),
                    device_name(job.device()),
                    if bf16 { " (bf16 autocast)" } else { "" },
                    count(windows, "window"),
                    opts.chop,
                    if ens { " (×8 self-ensemble)" } else { "" },
                );
                if replacing > 0 {
                    eprintln!(
                        "note: {} already exist{} and will be replaced (--skip-existing keeps \
                         them)",
                        count(replacing, "output"),
                        if replacing == 1 { "s" } else { "" }
                    );
                }
            }
            Event::ImageStarted {
                number,
                of,
                file,
                size: (h, w),
                windows,
            } => {
                let prefix = format!("[{number}/{of}] {}", file.display());
                self.bar = Some(image_bar(windows, (h * w) as f64 / 1e6, prefix));
            }
            Event::Windows(n) => self.bar.iter().for_each(|bar| bar.inc(n as u64)),
            Event::ImageDone {
                file,
                output,
                input: (ih, iw),
                restored: (oh, ow),
                written,
                seconds,
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                println!(
                    "{} ({iw}×{ih}, {:.2} MP) -> {} ({ow}×{oh}, {}) in {seconds:.1} s",
                    file.display(),
                    (ih * iw) as f64 / 1e6,
                    output.display(),
                    describe(written),
                );
                if !written.dropped.is_empty() {
                    let what: Vec<String> = written.dropped.iter().map(|d| d.to_string()).collect();
                    eprintln!(
                        "note: {}: dropped the input's {} (the output format cannot hold it)",
                        output.display(),
                        what.join(", ")
                    );
                }
            }
        }
    }
}

/// Run `ipt restore`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    check_bf16(args.bf16, device)?;
    let mut printer = Printer {
        job: None,
        bar: None,
    };
    let format = args.format()?;
    let naming = Naming {
        suffix: args.suffix.clone(),
        format,
        recursive: args.recursive,
    };
    let batch = Batch::collect(&args.all_inputs(), &args.out, &naming, &mut |e| {
        printer.event(e)
    })?;
    let spec = JobSpec {
        model: args.model,
        task: args.task,
        infer: InferOptions {
            num_heads: args.num_heads,
            ..Default::default()
        },
        options: RestoreOptions {
            crop_batch: args.crop_batch as usize,
            self_ensemble: args.self_ensemble,
            bf16: args.bf16,
            chop: args.chop,
        },
        bit_depth: args.bit_depth,
        format,
        outscale: args.outscale,
        skip_existing: args.skip_existing,
        memory_limit: args.memory_limit,
        max_pixels: args.max_pixels,
    };
    let job = RestoreJob::open(spec, device)?;
    let mut printer = Printer {
        job: Some(&job),
        bar: None,
    };
    let cancel = Cancel::default();
    let interrupts = {
        let cancel = cancel.clone();
        Interrupts::install(move |what| {
            cancel.cancel();
            eprintln!(
                "\n{what}: stopping after the current image (press Ctrl-C again to drop it and \
                 exit now)"
            );
        })
    };
    let summary = match job.run(&batch, &mut |e| printer.event(e), &cancel) {
        Err(RestoreJobError::Cancelled { restored }) => {
            eprintln!(
                "stopped: {} restored into {}; run the command again with --skip-existing to \
                 restore the rest",
                count(restored, "image"),
                args.out.display()
            );
            std::process::exit(interrupts.exit_status());
        }
        other => other?,
    };
    eprintln!(
        "restored {} into {} in {:.1} s{}",
        count(summary.restored, "image"),
        args.out.display(),
        summary.seconds,
        if summary.kept > 0 {
            format!(" ({} kept)", count(summary.kept, "existing output"))
        } else {
            String::new()
        }
    );
    if !summary.skipped.is_empty() {
        let list: Vec<String> = summary
            .skipped
            .iter()
            .map(|(f, e)| format!("  {}: {e}", f.display()))
            .collect();
        bail!(
            "{} input(s) could not be restored and were skipped:\n{}",
            summary.skipped.len(),
            list.join("\n")
        );
    }
    Ok(())
}

/// Run `ipt models`: one line per shipped model (name, tasks it is best for, what it is).
pub fn run_models() -> anyhow::Result<()> {
    println!("{:<24} {:<38} about", "name", "best shipped model for");
    for m in &ipt_eval::models::SHIPPED {
        let best = if m.best_for.is_empty() {
            "-".to_string()
        } else {
            m.best_for.join(", ")
        };
        println!("{:<24} {best:<38} {}", m.name, m.about);
    }
    println!(
        "\nuse: ipt restore --model NAME [--task TASK] IMAGES… -o DIR (data/weights/README.md \
         says how each was trained)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_gib("1.5"), Ok(3 << 29));
        assert!(parse_gib("0").is_err() && parse_gib("lots").is_err());
    }
}
