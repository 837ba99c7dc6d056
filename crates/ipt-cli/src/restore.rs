//! `ipt restore`: restore whole images with an IPT checkpoint.
//!
//! Inputs are image files or folders (a folder contributes its image files, not recursively,
//! in name order). Each output is `OUT/<input stem>.png`, 8-bit by default or 16-bit with
//! `--bit-depth 16` (storing `round(value·257)`, so nothing is lost to 8-bit quantisation).
//!
//! Windows are stitched the official way (`--chop exact`, the default) or with the official
//! second variant's sparser layout (`--chop fast`, about 9× fewer windows); either way the output
//! rows are streamed, so memory is the output image plus a few bands of windows. Each image gets
//! a progress bar in megapixels of input.
//!
//! Error policy: problems with the command itself (checkpoint, task, device, output folder,
//! missing input paths, two inputs that would write the same output) stop before any work. An
//! input that turns out to be unreadable is reported and skipped; the others are still restored,
//! and the command exits with an error listing the skipped files at the end. Before each image,
//! the memory it needs (output image, working set, PNG buffer) is compared with the memory
//! available (`MemAvailable` of `/proc/meminfo`, and the cgroup limit when there is one; or
//! `--memory-limit`), and the command stops with the sizes if it would not fit. Every output is
//! written to a temporary file in `OUT` and renamed into place, so an interrupted run never leaves
//! a truncated PNG and never touches outputs already written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use ipt_degrade::files::{list_images, write_atomic, Depth};
use ipt_model::checkpoint::{self, InferOptions};
use ipt_model::chop::ChopMode;
use ipt_model::device::DeviceSpec;
use ipt_model::restore::{
    memory_estimate, restore_image, windows_for, RestoreOptions, DEFAULT_CROP_BATCH,
};
use ipt_model::TaskSelector;

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
    #[arg(long, default_value_t = 8, value_parser = parse_bit_depth)]
    pub bit_depth: u8,
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
    match s.trim().parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => Ok((g * GIB) as u64),
        _ => Err(format!(
            "memory limit must be a positive number of GiB, not {s:?}"
        )),
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// `bytes` in GiB, MiB or KiB (binary units), whichever reads best.
fn gib(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// `MemAvailable` (bytes) from the text of `/proc/meminfo`.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(value * 1024),
            Some(_) => None,
        }
    })
}

/// Memory this process may still use, with where the figure comes from: the smaller of
/// `MemAvailable` and the room left under a cgroup v2 `memory.max`; `None` if neither can be read.
fn available_memory() -> Option<(u64, &'static str)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_mem_available(&t));
    let read = |p: &str| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .map(|max| max.saturating_sub(read("/sys/fs/cgroup/memory.current").unwrap_or(0)));
    match (meminfo, cgroup) {
        (Some(m), Some(c)) if c < m => Some((c, "the cgroup memory limit")),
        (Some(m), _) => Some((m, "MemAvailable in /proc/meminfo")),
        (None, Some(c)) => Some((c, "the cgroup memory limit")),
        (None, None) => None,
    }
}

/// Refuses an image whose restoration needs more than `limit` bytes, naming both.
pub fn check_memory(
    file: &Path,
    (h, w): (usize, usize),
    scale: usize,
    patch: usize,
    opts: &RestoreOptions,
    bit_depth: u8,
    (limit, source): (u64, &str),
) -> anyhow::Result<()> {
    let est = memory_estimate(h, w, scale, patch, opts);
    let png = 3 * (h * scale * w * scale) as u64 * u64::from(bit_depth / 8);
    let need = est.total() + png;
    if need > limit {
        bail!(
            "{}: restoring this {w}×{h} image (width×height; ×{scale}: {}×{} output) needs about \
             {} (output image {}, working memory {}, PNG buffer {}), more than the {} available \
             ({source}); free memory, restore a smaller image, or override with --memory-limit GIB",
            file.display(),
            w * scale,
            h * scale,
            gib(need),
            gib(est.output),
            gib(est.working),
            gib(png),
            gib(limit),
        );
    }
    Ok(())
}

fn parse_bit_depth(s: &str) -> Result<u8, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("bit depth must be 8 or 16, not {s:?}")),
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

/// Decoding limits for `--max-pixels` (the defaults without it).
fn read_options(max_pixels: Option<u64>) -> ipt_degrade::io::ReadOptions {
    use ipt_degrade::io::{ImageLimits, ReadOptions};
    let limits = match max_pixels {
        None => ImageLimits::default(),
        Some(max_pixels) => ImageLimits {
            max_pixels,
            max_bytes: max_pixels
                .saturating_mul(8)
                .max(ImageLimits::DEFAULT_MAX_BYTES),
        },
    };
    ReadOptions {
        limits,
        ..Default::default()
    }
}

/// A read error, with a hint at `--max-pixels` for images over the limits.
fn read_error(e: ipt_degrade::DegradeError) -> anyhow::Error {
    if matches!(e, ipt_degrade::DegradeError::TooLarge { .. }) {
        anyhow::anyhow!("{e} (raise it with --max-pixels if the image is genuine)")
    } else {
        e.into()
    }
}

/// Expand files and folders into the list of image files, in order.
pub fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).with_context(|| format!("input {}", input.display()))?;
        if meta.is_dir() {
            let found = list_images(input, Depth::Flat)?;
            if found.is_empty() {
                eprintln!("warning: no image files in folder {}", input.display());
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    if files.is_empty() {
        bail!("no input images");
    }
    Ok(files)
}

/// `OUT/<stem>.png` for every input; refuses two inputs with the same output and an output that
/// would overwrite an input.
pub fn output_paths(files: &[PathBuf], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    let canonical_inputs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .collect();
    let mut outs = Vec::with_capacity(files.len());
    for f in files {
        let stem = f
            .file_stem()
            .with_context(|| format!("input {} has no file name", f.display()))?;
        let o = out.join(stem).with_extension("png");
        if let Some(prev) = seen.insert(o.clone(), f) {
            bail!(
                "inputs {} and {} would both be written to {}; restore them into different folders",
                prev.display(),
                f.display(),
                o.display()
            );
        }
        if let Ok(c) = std::fs::canonicalize(&o) {
            if canonical_inputs.contains(&c) {
                bail!(
                    "output {} would overwrite an input; choose another --out",
                    o.display()
                );
            }
        }
        outs.push(o);
    }
    Ok(outs)
}

/// Write `img` to `path` as a PNG of `bit_depth` bits, atomically
/// ([`ipt_degrade::files::write_atomic`]: an interrupted run never leaves a truncated PNG).
fn write_atomically(path: &Path, img: &ipt_degrade::Image, bit_depth: u8) -> anyhow::Result<()> {
    write_atomic(path, |tmp| {
        if bit_depth == 16 {
            ipt_degrade::io::write_png16(tmp, img)
        } else {
            ipt_degrade::io::write_png(tmp, img)
        }
    })?;
    Ok(())
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

/// Run `ipt restore`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    if args.bf16 && !device.is_cuda() {
        bail!("--bf16 needs a CUDA device (libtorch has no CPU autocast here); drop --bf16 or use --device cuda");
    }
    let files = collect_inputs(&args.inputs)?;
    let outs = output_paths(&files, &args.out)?;

    let infer = InferOptions {
        num_heads: args.num_heads,
        ..Default::default()
    };
    let loaded = checkpoint::load(&args.weights, device, &infer)?;
    let model = &loaded.model;
    let config = model.config();
    let head = config
        .task_map()
        .resolve(args.task)
        .with_context(|| format!("checkpoint {}", args.weights.display()))?;
    let (task_idx, task_label) = (head.index, head.to_string());
    // Only now that the command is known to be valid: nothing is created for a bad one.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output folder {}", args.out.display()))?;
    let opts = RestoreOptions {
        crop_batch: args.crop_batch as usize,
        self_ensemble: args.self_ensemble,
        bf16: args.bf16,
        chop: args.chop,
    };
    let scale = head.scale;
    let patch = config.patch_size;

    // Sizes from the image headers: the pixel limit, window totals, and the memory check before
    // each image. An image refused here is skipped and listed at the end, like an unreadable one.
    let read_opts = read_options(args.max_pixels);
    let mut sizes = Vec::with_capacity(files.len());
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    let mut skip = |f: &Path, e: anyhow::Error| {
        eprintln!("skipping {}: {e}", f.display());
        failed.push((f.to_path_buf(), e.to_string()));
    };
    for f in &files {
        let size = image::image_dimensions(f)
            .map_err(anyhow::Error::from)
            .and_then(|(w, h)| {
                // The byte limit depends on the colour type and is checked when decoding.
                read_opts.limits.check(f, (w, h), 0).map_err(read_error)?;
                Ok((h as usize, w as usize))
            });
        match size {
            Ok(size) => sizes.push(Some(size)),
            Err(e) => {
                skip(f, e);
                sizes.push(None);
            }
        }
    }
    let todo = sizes.iter().flatten().count();
    let total: usize = sizes
        .iter()
        .flatten()
        .map(|&(h, w)| windows_for(h, w, patch, &opts))
        .sum();
    eprintln!(
        "restoring {todo} image(s) with {} on {}{}: {total} windows of {patch}×{patch}, {} layout{}",
        task_label,
        device_name(device),
        if opts.bf16 { " (bf16 autocast)" } else { "" },
        opts.chop,
        if opts.self_ensemble {
            " (×8 self-ensemble)"
        } else {
            ""
        },
    );

    let started = Instant::now();
    let mut done = 0usize;
    let mut number = 0usize;
    for ((file, out), size) in files.iter().zip(&outs).zip(&sizes) {
        let Some((h, w)) = *size else { continue };
        number += 1;
        let limit = match args.memory_limit {
            Some(bytes) => Some((bytes, "--memory-limit")),
            None => available_memory(),
        };
        if let Some(limit) = limit {
            if let Err(e) = check_memory(file, (h, w), scale, patch, &opts, args.bit_depth, limit) {
                skip(file, e);
                continue;
            }
        }
        let t0 = Instant::now();
        let image =
            match ipt_degrade::io::read_image_with_options(file, &read_opts).map_err(read_error) {
                Ok(img) => img,
                Err(e) => {
                    skip(file, e);
                    continue;
                }
            };
        let (_, ih, iw) = image.dim();
        let bar = image_bar(
            windows_for(ih, iw, patch, &opts),
            (ih * iw) as f64 / 1e6,
            format!("[{number}/{todo}] {}", file.display()),
        );
        let restored = restore_image(model, task_idx, &image, device, &opts, |n| {
            bar.inc(n as u64)
        })
        .with_context(|| format!("restoring {}", file.display()))?;
        bar.finish_and_clear();
        write_atomically(out, &restored, args.bit_depth)
            .with_context(|| format!("writing {}", out.display()))?;
        done += 1;
        let (_, oh, ow) = restored.dim();
        println!(
            "{} ({iw}×{ih}, {:.2} MP) -> {} ({ow}×{oh}, {}-bit) in {:.1} s",
            file.display(),
            (ih * iw) as f64 / 1e6,
            out.display(),
            args.bit_depth,
            t0.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "restored {done} image(s) into {} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        let list: Vec<String> = failed
            .iter()
            .map(|(f, e)| format!("  {}: {e}", f.display()))
            .collect();
        bail!(
            "{} input(s) could not be restored and were skipped:\n{}",
            failed.len(),
            list.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_memory_check() {
        let text = "MemTotal:       24683584 kB\nMemFree:  100 kB\nMemAvailable:   23587484 kB\n";
        assert_eq!(parse_mem_available(text), Some(23587484 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        let opts = RestoreOptions::default();
        let file = Path::new("photo.jpg");
        // 4000×3000 ×2: the output alone is 576 MB
        let err = check_memory(
            file,
            (3000, 4000),
            2,
            48,
            &opts,
            8,
            (1 << 29, "--memory-limit"),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "photo.jpg",
            "4000×3000",
            "8000×6000",
            "512.0 MiB",
            "--memory-limit",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(check_memory(file, (3000, 4000), 2, 48, &opts, 16, (4 << 30, "x")).is_ok());
        assert_eq!(parse_gib("1.5"), Ok(3 << 29));
        assert!(parse_gib("0").is_err() && parse_gib("lots").is_err());
        assert_eq!(gib(3 << 30), "3.00 GiB");
        assert_eq!(gib(5 << 20), "5.0 MiB");
        assert_eq!(gib(2048), "2 KiB");
    }

    #[test]
    fn outputs_are_unique_and_never_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        std::fs::write(&a, b"x").unwrap();
        let err = output_paths(std::slice::from_ref(&a), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("overwrite an input"), "{err}");
        let files = vec![PathBuf::from("x/a.png"), PathBuf::from("y/a.jpg")];
        let err = output_paths(&files, Path::new("out"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("both be written"), "{err}");
        let outs = output_paths(&[PathBuf::from("x/b.jpg")], Path::new("out")).unwrap();
        assert_eq!(outs, vec![PathBuf::from("out/b.png")]);
    }

    #[test]
    fn folders_expand_to_their_images_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.png", "a.JPG", "notes.txt"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.png")).unwrap();
        let files = collect_inputs(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.JPG", "b.png"]);
        assert!(collect_inputs(&[dir.path().join("missing.png")]).is_err());
    }
}
