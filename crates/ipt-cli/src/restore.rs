//! `ipt restore`: restore whole images with an IPT checkpoint.
//!
//! Inputs are image files or folders (a folder contributes its image files, not recursively,
//! in name order). Each output is `OUT/<input stem>.png`, 8-bit by default or 16-bit with
//! `--bit-depth 16` (storing `round(value·257)`, so nothing is lost to 8-bit quantisation).
//!
//! Error policy: problems with the command itself (checkpoint, task, device, output folder,
//! missing input paths, two inputs that would write the same output) stop before any work. An
//! input that turns out to be unreadable is reported and skipped; the others are still restored,
//! and the command exits with an error listing the skipped files at the end. Every output is
//! written to a temporary file in `OUT` and renamed into place, so an interrupted run never leaves
//! a truncated PNG and never touches outputs already written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use ipt_degrade::Task;
use ipt_model::checkpoint::{self, InferOptions};
use ipt_model::device::DeviceSpec;
use ipt_model::restore::{restore_image, windows_for, RestoreOptions};
use ipt_model::IptConfig;

/// File extensions (any case) treated as images when a folder is given.
const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// Arguments of `ipt restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint: an official PyTorch `.pt` file or a `.safetensors` file.
    #[arg(long, value_name = "CKPT")]
    pub weights: PathBuf,
    /// Task: sr2, sr3, sr4, derain, denoise30, denoise50, or an index into the checkpoint's
    /// task list. Optional for single-task checkpoints.
    #[arg(long)]
    pub task: Option<String>,
    /// Average over the ×8 flips/transposes (8× slower).
    #[arg(long)]
    pub self_ensemble: bool,
    /// Windows per network call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub crop_batch: u64,
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
    /// Input image files or folders.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

fn parse_bit_depth(s: &str) -> Result<u8, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("bit depth must be 8 or 16, not {s:?}")),
    }
}

/// The task index in the checkpoint for `--task` (see [`Args::task`]), with a label for messages.
pub fn resolve_task(arg: Option<&str>, config: &IptConfig) -> anyhow::Result<(usize, String)> {
    let scales = &config.scales;
    let n = scales.len();
    let Some(arg) = arg else {
        if n == 1 {
            return Ok((0, format!("task 0 (scale {})", scales[0])));
        }
        bail!(
            "this checkpoint holds {n} tasks (scales {scales:?}); choose one with --task \
             (sr2, sr3, sr4, derain, denoise30, denoise50, or an index 0..{n})"
        );
    };
    if let Ok(idx) = arg.trim().parse::<usize>() {
        if idx >= n {
            bail!("task index {idx} is not in this checkpoint: it holds {n} task(s) with scales {scales:?}");
        }
        return Ok((idx, format!("task {idx} (scale {})", scales[idx])));
    }
    let task: Task = arg.trim().parse().map_err(anyhow::Error::from)?;
    let label = |idx: usize| format!("{task} (task {idx}, scale {})", scales[idx]);
    if scales.as_slice() == Task::ALL.map(Task::scale).as_slice() {
        // the official six-task layout: index = official task index
        return Ok((task.index(), label(task.index())));
    }
    let matching: Vec<usize> = (0..n).filter(|&i| scales[i] == task.scale()).collect();
    match matching.as_slice() {
        [idx] => Ok((*idx, label(*idx))),
        [] => bail!(
            "task {task} (scale {}) is not in this checkpoint: its task scales are {scales:?}",
            task.scale()
        ),
        _ => bail!(
            "task {task} is ambiguous in this checkpoint (tasks {matching:?} all have scale {}); \
             give the task index instead",
            task.scale()
        ),
    }
}

/// Expand files and folders into the list of image files, in order.
pub fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).with_context(|| format!("input {}", input.display()))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading folder {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            found.sort();
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

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
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

/// Write `img` to `path` through a temporary file in the same folder, renamed into place.
fn write_atomically(path: &Path, img: &ipt_degrade::Image, bit_depth: u8) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = if bit_depth == 16 {
        ipt_degrade::io::write_png16(&tmp, img)
    } else {
        ipt_degrade::io::write_png(&tmp, img)
    };
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving {} to {}", tmp.display(), path.display()))
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
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output folder {}", args.out.display()))?;
    let outs = output_paths(&files, &args.out)?;

    let infer = InferOptions {
        num_heads: args.num_heads,
        ..Default::default()
    };
    let loaded = checkpoint::load(&args.weights, device, &infer)?;
    let model = &loaded.model;
    let config = model.config();
    let (task_idx, task_label) = resolve_task(args.task.as_deref(), config)
        .with_context(|| format!("checkpoint {}", args.weights.display()))?;
    let opts = RestoreOptions {
        crop_batch: args.crop_batch as usize,
        self_ensemble: args.self_ensemble,
        bf16: args.bf16,
    };

    // Window totals from the image headers, for one progress bar over all images.
    let mut sizes = Vec::with_capacity(files.len());
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    for f in &files {
        match image::image_dimensions(f) {
            Ok((w, h)) => sizes.push(Some((h as usize, w as usize))),
            Err(e) => {
                eprintln!("skipping {}: {e}", f.display());
                failed.push((f.clone(), e.to_string()));
                sizes.push(None);
            }
        }
    }
    let total: usize = sizes
        .iter()
        .flatten()
        .map(|&(h, w)| windows_for(h, w, config.patch_size, &opts))
        .sum();
    eprintln!(
        "restoring {} image(s) with {} on {}{}: {total} windows of {p}×{p}{}",
        files.len() - failed.len(),
        task_label,
        device_name(device),
        if opts.bf16 { " (bf16 autocast)" } else { "" },
        if opts.self_ensemble {
            " (×8 self-ensemble)"
        } else {
            ""
        },
        p = config.patch_size
    );
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} windows ({per_sec}, eta {eta}) {msg}",
        )
        .expect("static progress template is valid")
        .progress_chars("=> "),
    );

    let started = Instant::now();
    let mut done = 0usize;
    for ((file, out), size) in files.iter().zip(&outs).zip(&sizes) {
        let Some((h, w)) = *size else { continue };
        bar.set_message(file.display().to_string());
        let t0 = Instant::now();
        let image = match ipt_degrade::io::read_image(file) {
            Ok(img) => img,
            Err(e) => {
                bar.suspend(|| eprintln!("skipping {}: {e}", file.display()));
                bar.set_length(
                    bar.length().unwrap_or(0) - windows_for(h, w, config.patch_size, &opts) as u64,
                );
                failed.push((file.clone(), e.to_string()));
                continue;
            }
        };
        let restored = restore_image(model, task_idx, &image, device, &opts, |n| {
            bar.inc(n as u64)
        })
        .with_context(|| format!("restoring {}", file.display()))?;
        write_atomically(out, &restored, args.bit_depth)
            .with_context(|| format!("writing {}", out.display()))?;
        done += 1;
        let (_, oh, ow) = restored.dim();
        bar.suspend(|| {
            println!(
                "{} ({}×{}) -> {} ({oh}×{ow}, {}-bit) in {:.1} s",
                file.display(),
                image.dim().1,
                image.dim().2,
                out.display(),
                args.bit_depth,
                t0.elapsed().as_secs_f64()
            )
        });
    }
    bar.finish_and_clear();
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
            "{} input(s) could not be read and were skipped:\n{}",
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
    fn tasks_resolve_against_the_checkpoint_layout() {
        let six = IptConfig::tiny(&[2, 3, 4, 1, 1, 1]);
        assert_eq!(resolve_task(Some("sr3"), &six).unwrap().0, 1);
        assert_eq!(resolve_task(Some("denoise50"), &six).unwrap().0, 5);
        assert_eq!(resolve_task(Some("4"), &six).unwrap().0, 4);
        assert!(resolve_task(None, &six).is_err());
        assert!(resolve_task(Some("6"), &six).is_err());
        assert!(resolve_task(Some("sr5"), &six).is_err());

        let sr2 = IptConfig::tiny(&[2]);
        assert_eq!(resolve_task(None, &sr2).unwrap().0, 0);
        assert_eq!(resolve_task(Some("sr2"), &sr2).unwrap().0, 0);
        let err = resolve_task(Some("sr3"), &sr2).unwrap_err().to_string();
        assert!(err.contains("not in this checkpoint"), "{err}");
        assert!(resolve_task(Some("denoise30"), &sr2).is_err());

        let dn = IptConfig::tiny(&[1]);
        assert_eq!(resolve_task(Some("denoise30"), &dn).unwrap().0, 0);

        let two = IptConfig::tiny(&[1, 1]);
        let err = resolve_task(Some("derain"), &two).unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert_eq!(resolve_task(Some("1"), &two).unwrap().0, 1);
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
