//! Restore jobs: the policy of `ipt restore` as a library type, for the CLI, the benchmarks'
//! front ends and any future one (a local web page).
//!
//! - [`Batch::collect`]: inputs (files, or folders of images in name order) → `OUT/<stem>.png`,
//!   refusing two inputs with one output and an output that would overwrite an input.
//! - [`RestoreJob::open`]: loads the checkpoint and resolves the task through
//!   [`TaskMap`](ipt_model::TaskMap) (the one resolver); [`RestoreJob::restore`] restores one
//!   in-memory image; [`RestoreJob::run`] restores a [`Batch`] of files.
//! - Before each image the memory it needs ([`MemoryNeed`]: output image, working set, PNG
//!   buffer) is compared with [`available_memory`] or the given limit; an image that does not
//!   fit, an unreadable one, or one over the pixel limit is skipped ([`Event::Skipped`]) and the
//!   others are still restored. Outputs are written atomically.
//! - Progress is reported as [`Event`]s through a callback (the CLI turns them into its bars and
//!   lines); a [`Cancel`] token stops a run before its next image.
//!
//! It lives in `ipt-eval`, not `ipt-model`, because it is file policy on top of inference
//! (image listing, decoding limits, output naming, PNG writing, skipping) while `ipt-model`
//! stays the network and its whole-image inference; `ipt-eval` already sits above `ipt-model`
//! and `ipt-degrade` and is what the benchmarks and the CLI share.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ipt_degrade::files::{list_images, write_atomic, AtomicWriteError, Depth, ListError};
use ipt_degrade::io::{ImageLimits, ReadOptions};
use ipt_degrade::{DegradeError, Image};
use ipt_model::checkpoint::{self, InferOptions, Loaded};
use ipt_model::memory::{available_memory, MemoryBudget};
use ipt_model::restore::{memory_estimate, restore_image, windows_for, MemoryEstimate};
use ipt_model::restore::{RestoreError, RestoreOptions};
use ipt_model::{CheckpointError, Head, TaskMapError, TaskSelector};
use tch::Device;

/// Bits per channel of the output PNGs: 8 (default), or 16 storing `round(value·257)`, so
/// nothing is lost to 8-bit quantisation. Parses from `8` and `16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BitDepth {
    /// 8-bit PNG.
    #[default]
    Eight,
    /// 16-bit PNG.
    Sixteen,
}

impl BitDepth {
    /// 8 or 16.
    pub fn bits(self) -> u8 {
        match self {
            BitDepth::Eight => 8,
            BitDepth::Sixteen => 16,
        }
    }

    /// Bytes per channel value in the PNG buffer.
    pub fn bytes(self) -> u64 {
        u64::from(self.bits() / 8)
    }

    /// Writes `img` to `path` as a PNG of this depth, atomically ([`write_atomic`]: an
    /// interrupted run never leaves a truncated PNG).
    pub fn write(self, path: &Path, img: &Image) -> Result<(), AtomicWriteError<DegradeError>> {
        write_atomic(path, |tmp| match self {
            BitDepth::Eight => ipt_degrade::io::write_png(tmp, img),
            BitDepth::Sixteen => ipt_degrade::io::write_png16(tmp, img),
        })
    }
}

impl FromStr for BitDepth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "8" => Ok(BitDepth::Eight),
            "16" => Ok(BitDepth::Sixteen),
            _ => Err(format!("bit depth must be 8 or 16, not {s:?}")),
        }
    }
}

impl fmt::Display for BitDepth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bits())
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// `bytes` in GiB, MiB or KiB (binary units), whichever reads best.
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// What restoring one image needs: [`memory_estimate`] plus the PNG buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Input height and width.
    pub size: (usize, usize),
    /// The head's scale.
    pub scale: usize,
    /// Output image and working set.
    pub estimate: MemoryEstimate,
    /// The encoded PNG's pixel buffer.
    pub png: u64,
}

impl MemoryNeed {
    /// The need of an `(h, w)` input at `scale`, windows of side `patch`, written at `depth`.
    pub fn of(
        (h, w): (usize, usize),
        scale: usize,
        patch: usize,
        opts: &RestoreOptions,
        depth: BitDepth,
    ) -> Self {
        MemoryNeed {
            size: (h, w),
            scale,
            estimate: memory_estimate(h, w, scale, patch, opts),
            png: 3 * (h * scale * w * scale) as u64 * depth.bytes(),
        }
    }

    /// Bytes in all.
    pub fn total(&self) -> u64 {
        self.estimate.total() + self.png
    }

    /// Refuses `file` if the need exceeds `budget`.
    pub fn check(&self, file: &Path, budget: MemoryBudget) -> Result<(), SkipReason> {
        if self.total() > budget.bytes {
            return Err(SkipReason::Memory {
                file: file.to_path_buf(),
                need: *self,
                budget,
            });
        }
        Ok(())
    }
}

/// Why one input was skipped (the others are still restored).
#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    /// Over the pixel limit, or not decodable.
    #[error("{}{}", .0, too_large_hint(.0))]
    Decode(DegradeError),
    /// Not enough memory.
    #[error(
        "{}: restoring this {}×{} image (width×height; ×{}: {}×{} output) needs about {} (output \
         image {}, working memory {}, PNG buffer {}), more than the {} available ({}); free \
         memory, restore a smaller image, or override with --memory-limit GIB",
        file.display(), need.size.1, need.size.0, need.scale, need.size.1 * need.scale,
        need.size.0 * need.scale, format_bytes(need.total()), format_bytes(need.estimate.output),
        format_bytes(need.estimate.working), format_bytes(need.png), format_bytes(budget.bytes),
        budget.source
    )]
    Memory {
        /// The input.
        file: PathBuf,
        /// What it needs.
        need: MemoryNeed,
        /// What is available.
        budget: MemoryBudget,
    },
}

impl SkipReason {
    /// The reason in words without the file's name in front (the caller prints it once).
    pub fn describe(&self, file: &Path) -> String {
        let text = self.to_string();
        match text.strip_prefix(&format!("{}: ", file.display())) {
            Some(rest) => rest.to_string(),
            None => text,
        }
    }
}

/// The hint after an image over the decoding limits.
fn too_large_hint(e: &DegradeError) -> &'static str {
    if matches!(e, DegradeError::TooLarge { .. }) {
        " (raise it with --max-pixels if the image is genuine)"
    } else {
        ""
    }
}

/// Errors that stop a restore job (problems with the command itself, or a failure mid-image).
#[derive(Debug, thiserror::Error)]
pub enum RestoreJobError {
    /// bf16 autocast asked for on a device without it.
    #[error("--bf16 needs a CUDA device (libtorch has no CPU autocast here); drop --bf16 or use --device cuda")]
    Bf16NeedsCuda,
    /// An input path cannot be read.
    #[error("input {}", path.display())]
    Input {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Listing a folder failed.
    #[error(transparent)]
    List(#[from] ListError),
    /// No image among the inputs.
    #[error("no input images")]
    NoInputs,
    /// An input without a file name.
    #[error("input {} has no file name", .0.display())]
    NoFileName(PathBuf),
    /// Two inputs would write one output.
    #[error(
        "inputs {} and {} would both be written to {}; restore them into different folders",
        first.display(), second.display(), output.display()
    )]
    SameOutput {
        /// The first input.
        first: PathBuf,
        /// The second input.
        second: PathBuf,
        /// The shared output.
        output: PathBuf,
    },
    /// An output would overwrite an input.
    #[error("output {} would overwrite an input; choose another --out", .0.display())]
    OverwritesInput(PathBuf),
    /// Loading the checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The task does not resolve in the checkpoint.
    #[error("checkpoint {}", path.display())]
    Task {
        /// The checkpoint.
        path: PathBuf,
        /// Why.
        #[source]
        source: TaskMapError,
    },
    /// The output folder cannot be created.
    #[error("creating output folder {}", dir.display())]
    OutputFolder {
        /// The folder.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Restoring an image failed.
    #[error("restoring {}", file.display())]
    Restore {
        /// The input.
        file: PathBuf,
        /// Why.
        #[source]
        source: RestoreError,
    },
    /// Writing an output failed.
    #[error("writing {}", file.display())]
    Write {
        /// The output.
        file: PathBuf,
        /// Why.
        #[source]
        source: Box<AtomicWriteError<DegradeError>>,
    },
    /// The job was cancelled through its [`Cancel`] token (between two images).
    #[error("cancelled after {restored} image(s) were restored")]
    Cancelled {
        /// Images restored and written before the cancel took effect.
        restored: usize,
    },
}

/// Refuses bf16 autocast off CUDA (libtorch has no CPU autocast through tch).
pub fn check_bf16(bf16: bool, device: Device) -> Result<(), RestoreJobError> {
    if bf16 && !device.is_cuda() {
        return Err(RestoreJobError::Bf16NeedsCuda);
    }
    Ok(())
}

/// A cancellation token: clone it, hand a clone to the job, call [`cancel`](Self::cancel) from
/// anywhere; the job stops before its next image with [`RestoreJobError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks the job to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a job reports while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// A folder among the inputs holds no image file.
    EmptyFolder(&'a Path),
    /// A temporary file left in the output folder by an earlier, killed run was removed.
    StaleTemporaryRemoved(&'a Path),
    /// An input is skipped.
    Skipped {
        /// The input.
        file: &'a Path,
        /// Why.
        reason: &'a SkipReason,
    },
    /// The images to restore are known (sizes read from the headers).
    Planned {
        /// Images that will be attempted.
        images: usize,
        /// Network windows over all of them.
        windows: usize,
    },
    /// An image was decoded and its restoration starts.
    ImageStarted {
        /// 1-based position among the planned images.
        number: usize,
        /// The planned images.
        of: usize,
        /// The input.
        file: &'a Path,
        /// Input height and width.
        size: (usize, usize),
        /// Windows it takes.
        windows: usize,
    },
    /// `n` more windows of the current image are done.
    Windows(usize),
    /// An image was restored and written.
    ImageDone {
        /// The input.
        file: &'a Path,
        /// The output.
        output: &'a Path,
        /// Input height and width.
        input: (usize, usize),
        /// Output height and width.
        restored: (usize, usize),
        /// Seconds from decoding to written.
        seconds: f64,
    },
}

/// The inputs of a run and where each is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input image files, in order.
    pub files: Vec<PathBuf>,
    /// `out/<stem>.png` for each.
    pub outputs: Vec<PathBuf>,
    /// The output folder (created by [`RestoreJob::run`]).
    pub out_dir: PathBuf,
}

impl Batch {
    /// Expands `inputs` ([`collect_inputs`]) and names their outputs in `out` ([`output_paths`]).
    pub fn collect(
        inputs: &[PathBuf],
        out: &Path,
        events: &mut dyn FnMut(&Event),
    ) -> Result<Batch, RestoreJobError> {
        let files = collect_inputs(inputs, events)?;
        let outputs = output_paths(&files, out)?;
        Ok(Batch {
            files,
            outputs,
            out_dir: out.to_path_buf(),
        })
    }
}

/// Expands files and folders (their image files, not recursively, in name order) into the list
/// of image files; reports folders without images.
pub fn collect_inputs(
    inputs: &[PathBuf],
    events: &mut dyn FnMut(&Event),
) -> Result<Vec<PathBuf>, RestoreJobError> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|source| RestoreJobError::Input {
            path: input.clone(),
            source,
        })?;
        if meta.is_dir() {
            let found = list_images(input, Depth::Flat)?;
            if found.is_empty() {
                events(&Event::EmptyFolder(input));
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    if files.is_empty() {
        return Err(RestoreJobError::NoInputs);
    }
    Ok(files)
}

/// `out/<stem>.png` for every input; refuses two inputs with the same output and an output that
/// would overwrite an input.
pub fn output_paths(files: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>, RestoreJobError> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    let canonical_inputs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .collect();
    let mut outs = Vec::with_capacity(files.len());
    for f in files {
        let stem = f
            .file_stem()
            .ok_or_else(|| RestoreJobError::NoFileName(f.clone()))?;
        // `photo.v1.png` → `photo.v1.png`, not `photo.png` (with_extension would drop `.v1`)
        let mut name = stem.to_os_string();
        name.push(".png");
        let o = out.join(name);
        if let Some(prev) = seen.insert(o.clone(), f) {
            return Err(RestoreJobError::SameOutput {
                first: prev.to_path_buf(),
                second: f.clone(),
                output: o,
            });
        }
        if let Ok(c) = std::fs::canonicalize(&o) {
            if canonical_inputs.contains(&c) {
                return Err(RestoreJobError::OverwritesInput(o));
            }
        }
        outs.push(o);
    }
    Ok(outs)
}

/// Decoding limits for a largest input of `max_pixels` (the defaults without it); the limit on
/// decoded bytes grows with it (8 bytes a pixel, enough for 16-bit RGBA).
pub fn read_options(max_pixels: Option<u64>) -> ReadOptions {
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

/// What a restore job is asked to do (everything but the inputs).
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The checkpoint (`.pt` or `.safetensors`).
    pub weights: PathBuf,
    /// The task; optional for single-task checkpoints.
    pub task: Option<TaskSelector>,
    /// What the weights alone cannot tell.
    pub infer: InferOptions,
    /// Window layout, crop batch, self-ensemble, bf16.
    pub options: RestoreOptions,
    /// Output PNG depth.
    pub bit_depth: BitDepth,
    /// Bytes one image may use (default: [`available_memory`]).
    pub memory_limit: Option<u64>,
    /// Largest input to decode, in pixels (default: [`ImageLimits::default`]).
    pub max_pixels: Option<u64>,
}

/// How a run ended (when it was not stopped by an error).
#[derive(Debug, Default)]
pub struct Summary {
    /// Images restored and written.
    pub restored: usize,
    /// Inputs skipped, with why (in words).
    pub skipped: Vec<(PathBuf, String)>,
    /// Seconds for the whole run.
    pub seconds: f64,
}

/// A loaded checkpoint with its resolved task, ready to restore images.
pub struct RestoreJob {
    loaded: Loaded,
    head: Head,
    device: Device,
    spec: JobSpec,
}

impl RestoreJob {
    /// Checks bf16 against `device`, loads the checkpoint onto it and resolves the task.
    pub fn open(spec: JobSpec, device: Device) -> Result<RestoreJob, RestoreJobError> {
        check_bf16(spec.options.bf16, device)?;
        let loaded = checkpoint::load(&spec.weights, device, &spec.infer)?;
        let head = loaded
            .config
            .task_map()
            .resolve(spec.task)
            .map_err(|source| RestoreJobError::Task {
                path: spec.weights.clone(),
                source,
            })?;
        Ok(RestoreJob {
            loaded,
            head,
            device,
            spec,
        })
    }

    /// The head that restores (index, scale, task).
    pub fn head(&self) -> Head {
        self.head
    }

    /// The device the network runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The job's settings.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Side of the network's windows.
    pub fn patch(&self) -> usize {
        self.loaded.config.patch_size
    }

    /// Windows an `(h, w)` input takes.
    pub fn windows(&self, (h, w): (usize, usize)) -> usize {
        windows_for(h, w, self.patch(), &self.spec.options)
    }

    /// What an `(h, w)` input needs in memory.
    pub fn memory_need(&self, size: (usize, usize)) -> MemoryNeed {
        let opts = &self.spec.options;
        MemoryNeed::of(
            size,
            self.head.scale,
            self.patch(),
            opts,
            self.spec.bit_depth,
        )
    }

    /// Restores one in-memory image, reporting [`Event::Windows`] as windows finish. The result
    /// is on the CPU, `f32`, neither clamped nor rounded.
    pub fn restore(
        &self,
        image: &Image,
        events: &mut dyn FnMut(&Event),
    ) -> Result<Image, RestoreError> {
        let (model, opts) = (&self.loaded.model, &self.spec.options);
        restore_image(model, self.head.index, image, self.device, opts, |n| {
            events(&Event::Windows(n))
        })
    }

    /// Restores every image of `batch` into its output (see the module docs for what is
    /// skipped), creating the output folder first.
    pub fn run(
        &self,
        batch: &Batch,
        events: &mut dyn FnMut(&Event),
        cancel: &Cancel,
    ) -> Result<Summary, RestoreJobError> {
        let folder_error = |source| RestoreJobError::OutputFolder {
            dir: batch.out_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&batch.out_dir).map_err(folder_error)?;
        for stale in
            ipt_degrade::files::remove_stale_temporaries(&batch.out_dir).map_err(folder_error)?
        {
            events(&Event::StaleTemporaryRemoved(&stale));
        }
        let read_opts = read_options(self.spec.max_pixels);
        let mut skipped = Vec::new();
        let mut skip = |file: &Path, reason: SkipReason, events: &mut dyn FnMut(&Event)| {
            events(&Event::Skipped {
                file,
                reason: &reason,
            });
            skipped.push((file.to_path_buf(), reason.describe(file)));
        };
        // Sizes from the headers: the pixel limit, window totals, and the memory check.
        let mut sizes = Vec::with_capacity(batch.files.len());
        for f in &batch.files {
            match header_size(f, &read_opts) {
                Ok(size) => sizes.push(Some(size)),
                Err(reason) => {
                    skip(f, reason, events);
                    sizes.push(None);
                }
            }
        }
        let planned = sizes.iter().flatten().count();
        let windows = sizes.iter().flatten().map(|&s| self.windows(s)).sum();
        events(&Event::Planned {
            images: planned,
            windows,
        });
        let started = Instant::now();
        let (mut number, mut restored_images) = (0usize, 0usize);
        for ((file, output), size) in batch.files.iter().zip(&batch.outputs).zip(&sizes) {
            let Some(size) = *size else { continue };
            if cancel.is_cancelled() {
                return Err(RestoreJobError::Cancelled {
                    restored: restored_images,
                });
            }
            number += 1;
            let budget = match self.spec.memory_limit {
                Some(bytes) => Some(MemoryBudget::limit(bytes)),
                None => available_memory(),
            };
            if let Some(budget) = budget {
                if let Err(reason) = self.memory_need(size).check(file, budget) {
                    skip(file, reason, events);
                    continue;
                }
            }
            let t0 = Instant::now();
            let image = match ipt_degrade::io::read_image_with_options(file, &read_opts) {
                Ok(img) => img,
                Err(e) => {
                    skip(file, SkipReason::Decode(e), events);
                    continue;
                }
            };
            let (_, ih, iw) = image.dim();
            events(&Event::ImageStarted {
                number,
                of: planned,
                file,
                size: (ih, iw),
                windows: self.windows((ih, iw)),
            });
            let restored =
                self.restore(&image, events)
                    .map_err(|source| RestoreJobError::Restore {
                        file: file.clone(),
                        source,
                    })?;
            self.spec
                .bit_depth
                .write(output, &restored)
                .map_err(|source| RestoreJobError::Write {
                    file: output.clone(),
                    source: Box::new(source),
                })?;
            restored_images += 1;
            let (_, oh, ow) = restored.dim();
            events(&Event::ImageDone {
                file,
                output,
                input: (ih, iw),
                restored: (oh, ow),
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
        Ok(Summary {
            restored: restored_images,
            skipped,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// `(h, w)` from the file's header, checked against the pixel limit (the byte limit depends on
/// the colour type and is checked when decoding).
fn header_size(file: &Path, read_opts: &ReadOptions) -> Result<(usize, usize), SkipReason> {
    let (w, h) = ipt_degrade::io::read_header_size(file).map_err(SkipReason::Decode)?;
    read_opts
        .limits
        .check(file, (w, h), 0)
        .map_err(SkipReason::Decode)?;
    Ok((h as usize, w as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_keep_every_dot_of_the_stem() {
        let out = Path::new("out");
        let got = output_paths(
            &[
                PathBuf::from("in/photo.v1.png"),
                PathBuf::from("in/photo.jpg"),
            ],
            out,
        )
        .unwrap();
        assert_eq!(got, vec![out.join("photo.v1.png"), out.join("photo.png")]);
    }

    #[test]
    fn memory_check_and_sizes() {
        let opts = RestoreOptions::default();
        let file = Path::new("photo.jpg");
        // 4000×3000 ×2: the output alone is 576 MB
        let err = MemoryNeed::of((3000, 4000), 2, 48, &opts, BitDepth::Eight)
            .check(file, MemoryBudget::limit(1 << 29))
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
        let big = MemoryBudget {
            bytes: 4 << 30,
            source: ipt_model::memory::MemorySource::MemInfo,
        };
        assert!(
            MemoryNeed::of((3000, 4000), 2, 48, &opts, BitDepth::Sixteen)
                .check(file, big)
                .is_ok()
        );
        assert_eq!(format_bytes(3 << 30), "3.00 GiB");
        assert_eq!(format_bytes(5 << 20), "5.0 MiB");
        assert_eq!(format_bytes(2048), "2 KiB");
    }

    #[test]
    fn bit_depths_parse() {
        assert_eq!("8".parse(), Ok(BitDepth::Eight));
        assert_eq!("16".parse(), Ok(BitDepth::Sixteen));
        assert_eq!(BitDepth::default(), BitDepth::Eight);
        assert_eq!(BitDepth::Sixteen.to_string(), "16");
        assert!("12".parse::<BitDepth>().unwrap_err().contains("8 or 16"));
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
        let files = collect_inputs(&[dir.path().to_path_buf()], &mut |_| {}).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.JPG", "b.png"]);
        assert!(collect_inputs(&[dir.path().join("missing.png")], &mut |_| {}).is_err());
    }
}
