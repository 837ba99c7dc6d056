//! `ipt restore`: restore whole images with an IPT checkpoint.
//!
//! Thin: parse the arguments, run the library job [`ipt_eval::restore_job::RestoreJob`] (it owns
//! the policy: inputs → `OUT/<stem>.png`, limits, memory check, task, bit depth, atomic writes,
//! what stops the command and what is skipped) and turn its events into progress bars
//! (megapixels of input) and lines. Skipped inputs are listed at the end (exit status 1).

use std::path::PathBuf;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use ipt_eval::restore_job::{
    check_bf16, Batch, BitDepth, Cancel, Event, JobSpec, RestoreJob, RestoreJobError,
};
use ipt_model::checkpoint::InferOptions;
use ipt_model::chop::ChopMode;
use ipt_model::device::DeviceSpec;
use ipt_model::restore::{RestoreOptions, DEFAULT_CROP_BATCH};
use ipt_model::TaskSelector;

use crate::signals::Interrupts;

/// Arguments of `ipt restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint: an official PyTorch `.pt` file or a `.safetensors` file.
    #[arg(long, value_name = "CKPT")]
    pub weights: PathBuf,
    /// Task: sr2, sr3, sr4, derain, denoise30, denoise50, or an index into the checkpoint's
    /// task list (resolved by `ipt_model::TaskMap`, as `ipt info` lists them). Optional for
    /// single-task checkpoints.
    #[arg(long, value_name = "NAME|INDEX")]
    pub task: Option<TaskSelector>,
    /// Average over the ×8 flips/transposes (8× slower).
    #[arg(long)]
    pub self_ensemble: bool,
    /// Windows per network call.
    #[arg(long, default_value_t = DEFAULT_CROP_BATCH as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub crop_batch: u64,
    /// Window layout: `exact` (the official stitching: stride 12, every pixel averaged over up
    /// to 4 windows) or `fast` (the official second variant: stride 36, one window per pixel,
    /// about 9× fewer windows, slightly lower quality).
    #[arg(long, default_value_t = ChopMode::Exact, value_name = "MODE")]
    pub chop: ChopMode,
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
    /// Bits per channel of the output PNGs (8, or 16 = value·257 rounded).
    #[arg(long, default_value_t = BitDepth::Eight)]
    pub bit_depth: BitDepth,
    /// Largest input image to decode, in pixels: a number or WIDTHxHEIGHT (default 16384x16384).
    /// Checked from the file's header, so a small file claiming a huge image is refused before
    /// it takes the machine's memory. The limit on decoded bytes grows with it (8 bytes a pixel,
    /// enough for 16-bit RGBA).
    #[arg(long, value_name = "PIXELS", value_parser = parse_max_pixels)]
    pub max_pixels: Option<u64>,
    /// Input image files or folders.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
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
            Event::Planned { images, windows } => {
                let Some(job) = self.job else { return };
                let (opts, patch) = (&job.spec().options, job.patch());
                let (bf16, ens) = (opts.bf16, opts.self_ensemble);
                eprintln!(
                    "restoring {images} image(s) with {} on {}{}: {windows} windows of \
                     {patch}×{patch}, {} layout{}",
                    job.head(),
                    device_name(job.device()),
                    if bf16 { " (bf16 autocast)" } else { "" },
                    opts.chop,
                    if ens { " (×8 self-ensemble)" } else { "" },
                );
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
                seconds,
            } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let bits = self.job.map_or(8, |j| j.spec().bit_depth.bits());
                println!(
                    "{} ({iw}×{ih}, {:.2} MP) -> {} ({ow}×{oh}, {bits}-bit) in {seconds:.1} s",
                    file.display(),
                    (ih * iw) as f64 / 1e6,
                    output.display(),
                );
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
    let batch = Batch::collect(&args.inputs, &args.out, &mut |e| printer.event(e))?;
    let spec = JobSpec {
        weights: args.weights,
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
                "stopped: {restored} image(s) restored into {}; run the command again to \
                 restore the rest",
                args.out.display()
            );
            std::process::exit(interrupts.exit_status());
        }
        other => other?,
    };
    eprintln!(
        "restored {} image(s) into {} in {:.1} s",
        summary.restored,
        args.out.display(),
        summary.seconds
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(parse_gib("1.5"), Ok(3 << 29));
        assert!(parse_gib("0").is_err() && parse_gib("lots").is_err());
    }
}
