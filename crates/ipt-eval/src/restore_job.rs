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

use ipt_degrade::files::{list_images, AtomicWriteError, Depth, ListError};
use ipt_degrade::io::{ImageLimits, ReadOptions};
use ipt_degrade::photo::{Dropped, OutputFormat, Photo};
use ipt_degrade::{DegradeError, Image};
use ipt_model::checkpoint::{InferOptions, Loaded};

use crate::models::ModelRef;
use ipt_model::memory::{available_memory, MemoryBudget};
use ipt_model::restore::{memory_estimate, restore_image, windows_for, MemoryEstimate};
use ipt_model::restore::{RestoreError, RestoreOptions};
use ipt_model::{CheckpointError, Head, TaskMapError, TaskSelector};
use tch::Device;

/// Bits per channel of the outputs: `auto` (the default: as the input file, so a 16-bit photo
/// stays 16-bit and an 8-bit one 8-bit), `8`, or `16` storing `round(value·257)`, so nothing
/// is lost to 8-bit quantisation. Formats without 16 bits (JPEG, WebP) write 8 and say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BitDepth {
    /// As the input file (8 or 16; floating-point files give 16).
    #[default]
    Auto,
    /// 8 bits.
    Eight,
    /// 16 bits.
    Sixteen,
}

impl BitDepth {
    /// The bits of an output whose input file has `input_bits`.
    pub fn resolve(self, input_bits: u8) -> u8 {
        match self {
            BitDepth::Auto => input_bits,
            BitDepth::Eight => 8,
            BitDepth::Sixteen => 16,
        }
    }

    /// Most bytes per channel value this setting writes (for the memory check).
    pub fn max_bytes(self) -> u64 {
        match self {
            BitDepth::Eight => 1,
            BitDepth::Auto | BitDepth::Sixteen => 2,
        }
    }
}

impl FromStr for BitDepth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BitDepth::Auto),
            "8" => Ok(BitDepth::Eight),
            "16" => Ok(BitDepth::Sixteen),
            _ => Err(format!("bit depth must be auto, 8 or 16, not {s:?}")),
        }
    }
}

impl fmt::Display for BitDepth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BitDepth::Auto => f.write_str("auto"),
            BitDepth::Eight => f.write_str("8"),
            BitDepth::Sixteen => f.write_str("16"),
        }
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
    /// The output file's interleaved pixel buffer (colour and alpha).
    pub png: u64,
}

impl MemoryNeed {
    /// The need of an `(h, w)` input at `scale`, windows of side `patch`, written as an image of
    /// `out_size` (the network's output, or the `--outscale` size) at `depth`.
    pub fn of(
        (h, w): (usize, usize),
        scale: usize,
        patch: usize,
        opts: &RestoreOptions,
        out_size: (usize, usize),
        depth: BitDepth,
    ) -> Self {
        let pixels = (h * scale * w * scale).max(out_size.0 * out_size.1) as u64;
        MemoryNeed {
            size: (h, w),
            scale,
            estimate: memory_estimate(h, w, scale, patch, opts),
            // interleaved colour and alpha samples
            png: 4 * pixels * depth.max_bytes(),
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
         image {}, working memory {}, file buffer {}), more than the {} available ({}); free \
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
        "inputs {} and {} would both be written to {}; restore them into different folders \
         (or give their common folder with --recursive, which mirrors its sub-folders)",
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
    /// An input is not restored because its output exists ([`JobSpec::skip_existing`]).
    Kept {
        /// The input.
        file: &'a Path,
        /// Its existing output.
        output: &'a Path,
    },
    /// The images to restore are known (sizes read from the headers).
    Planned {
        /// Images that will be attempted.
        images: usize,
        /// Network windows over all of them.
        windows: usize,
        /// Of those, images whose output exists and will be replaced.
        replacing: usize,
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
        /// What the output file holds besides the colour, and what its format dropped.
        written: &'a Written,
        /// Seconds from decoding to written.
        seconds: f64,
    },
}

/// How an input's alpha plane was carried to the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlphaRestore {
    /// Copied as it was (the output has the input's size).
    Kept,
    /// Resized to the output's size with MATLAB's bicubic `imresize` (the network restores
    /// colour only).
    Bicubic,
}

/// What one output file holds besides its colour pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bits per channel.
    pub bits: u8,
    /// One grey channel (the input was grey).
    pub grey: bool,
    /// How the alpha plane was carried, when the input had one.
    pub alpha: Option<AlphaRestore>,
    /// What the output format could not hold.
    pub dropped: Vec<Dropped>,
}

/// How outputs are named and found: `OUT/[sub/folders/]<stem><suffix>.<ext>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    /// Appended to each output's stem (`photo` → `photo_out` with `_out`; Real-ESRGAN's
    /// `--suffix`, which adds its own `_`; here the suffix is taken as given).
    pub suffix: String,
    /// The output format, which gives the extension.
    pub format: OutputFormat,
    /// Search folders recursively and mirror their sub-folders under the output folder.
    pub recursive: bool,
}

/// One input image and the sub-folder of the output folder it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The image file.
    pub file: PathBuf,
    /// Its folder relative to the input folder it was found in (empty for files given
    /// directly and for flat folders).
    pub sub_folder: PathBuf,
}

/// The inputs of a run and where each is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input image files, in order.
    pub files: Vec<PathBuf>,
    /// The output of each (see [`output_paths`]).
    pub outputs: Vec<PathBuf>,
    /// The output folder (created by [`RestoreJob::run`], with the sub-folders it needs).
    pub out_dir: PathBuf,
}

impl Batch {
    /// Expands `inputs` ([`collect_inputs`]) and names their outputs in `out` ([`output_paths`]).
    pub fn collect(
        inputs: &[PathBuf],
        out: &Path,
        naming: &Naming,
        events: &mut dyn FnMut(&Event),
    ) -> Result<Batch, RestoreJobError> {
        let found = collect_inputs(inputs, naming.recursive, out, events)?;
        let outputs = output_paths(&found, out, naming)?;
        Ok(Batch {
            files: found.into_iter().map(|i| i.file).collect(),
            outputs,
            out_dir: out.to_path_buf(),
        })
    }
}

/// Expands files and folders (their image files in name order; with `recursive`, those of every
/// sub-folder too, except inside the output folder `out`) into the list of inputs; reports
/// folders without images.
pub fn collect_inputs(
    inputs: &[PathBuf],
    recursive: bool,
    out: &Path,
    events: &mut dyn FnMut(&Event),
) -> Result<Vec<Input>, RestoreJobError> {
    let out_canonical = std::fs::canonicalize(out).ok();
    let mut found = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|source| RestoreJobError::Input {
            path: input.clone(),
            source,
        })?;
        if !meta.is_dir() {
            found.push(Input {
                file: input.clone(),
                sub_folder: PathBuf::new(),
            });
            continue;
        }
        let depth = if recursive {
            Depth::Recursive
        } else {
            Depth::Flat
        };
        let mut files = list_images(input, depth)?;
        if let Some(out) = &out_canonical {
            // earlier outputs are not inputs
            files.retain(|f| !std::fs::canonicalize(f).is_ok_and(|c| c.starts_with(out)));
        }
        if files.is_empty() {
            events(&Event::EmptyFolder(input));
        }
        found.extend(files.into_iter().map(|file| {
            let sub_folder = file
                .parent()
                .and_then(|p| p.strip_prefix(input).ok())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            Input { file, sub_folder }
        }));
    }
    if found.is_empty() {
        return Err(RestoreJobError::NoInputs);
    }
    Ok(found)
}

/// `out/<sub_folder>/<stem><suffix>.<ext>` for every input. Inputs that differ only in their
/// extension (`a.png`, `a.jpg`) keep it in their names instead (`a.png.png`, `a.jpg.png`);
/// other inputs sharing an output, and an output that would overwrite an input, are refused.
pub fn output_paths(
    inputs: &[Input],
    out: &Path,
    naming: &Naming,
) -> Result<Vec<PathBuf>, RestoreJobError> {
    let ext = naming.format.extension();
    let named = |input: &Input, keep_extension: bool| -> Result<PathBuf, RestoreJobError> {
        let f = &input.file;
        let base = if keep_extension {
            f.file_name()
        } else {
            f.file_stem()
        };
        let base = base.ok_or_else(|| RestoreJobError::NoFileName(f.clone()))?;
        // `photo.v1.png` → `photo.v1.png`, not `photo.png` (with_extension would drop `.v1`)
        let mut name = base.to_os_string();
        name.push(&naming.suffix);
        name.push(".");
        name.push(ext);
        Ok(out.join(&input.sub_folder).join(name))
    };
    let mut outs = inputs
        .iter()
        .map(|i| named(i, false))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shared: HashMap<&PathBuf, usize> = HashMap::new();
    for o in &outs {
        *shared.entry(o).or_default() += 1;
    }
    let clashing: Vec<bool> = outs.iter().map(|o| shared[o] > 1).collect();
    for (i, clash) in clashing.into_iter().enumerate() {
        if clash {
            outs[i] = named(&inputs[i], true)?;
        }
    }
    let canonical_inputs: Vec<PathBuf> = inputs
        .iter()
        .filter_map(|i| std::fs::canonicalize(&i.file).ok())
        .collect();
    let mut seen: HashMap<&PathBuf, &Path> = HashMap::new();
    for (input, o) in inputs.iter().zip(&outs) {
        if let Some(prev) = seen.insert(o, &input.file) {
            return Err(RestoreJobError::SameOutput {
                first: prev.to_path_buf(),
                second: input.file.clone(),
                output: o.clone(),
            });
        }
        if let Ok(c) = std::fs::canonicalize(o) {
            if canonical_inputs.contains(&c) {
                return Err(RestoreJobError::OverwritesInput(o.clone()));
            }
        }
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
    /// The model: a shipped one or a checkpoint file.
    pub model: ModelRef,
    /// The task; optional for single-task checkpoints.
    pub task: Option<TaskSelector>,
    /// What the weights alone cannot tell.
    pub infer: InferOptions,
    /// Window layout, crop batch, self-ensemble, bf16.
    pub options: RestoreOptions,
    /// Bits per channel of the outputs.
    pub bit_depth: BitDepth,
    /// Output format (and with it the extension [`Naming`] gives).
    pub format: OutputFormat,
    /// Final scale of the outputs relative to the inputs (resized after the network with
    /// MATLAB's bicubic `imresize`); default: the head's scale.
    pub outscale: Option<f64>,
    /// Leave inputs whose output exists alone ([`Event::Kept`]), so an interrupted batch
    /// resumes where it stopped.
    pub skip_existing: bool,
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
    /// Inputs left alone because their output exists ([`JobSpec::skip_existing`]).
    pub kept: usize,
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
        let loaded = spec.model.load(device, &spec.infer)?;
        let head = loaded
            .config
            .task_map()
            .resolve(spec.task.clone())
            .map_err(|source| RestoreJobError::Task {
                path: spec.model.path(),
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
            self.output_size(size),
            self.spec.bit_depth,
        )
    }

    /// The size of the output of an `(h, w)` input: the head's scale, or
    /// [`JobSpec::outscale`].
    pub fn output_size(&self, size: (usize, usize)) -> (usize, usize) {
        output_size(size, self.head.scale, self.spec.outscale)
    }

    /// Restores a decoded file: the network on its colour ([`Photo::rgb`]), then
    /// [`finish`] (grey, alpha, final size, depth; metadata carried over).
    pub fn restore_photo(
        &self,
        photo: &Photo,
        events: &mut dyn FnMut(&Event),
    ) -> Result<(Photo, Option<AlphaRestore>), RestoreError> {
        let restored = self.restore(&photo.rgb(), events)?;
        let (_, h, w) = photo.pixels.dim();
        Ok(finish(
            photo,
            restored,
            self.output_size((h, w)),
            self.spec.bit_depth,
        ))
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
        // the output folder and every sub-folder it mirrors, cleaned of a killed run's leftovers
        let mut folders: Vec<&Path> = batch.outputs.iter().filter_map(|o| o.parent()).collect();
        folders.sort();
        folders.dedup();
        for dir in folders {
            let folder_error = |source| RestoreJobError::OutputFolder {
                dir: dir.to_path_buf(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(folder_error)?;
            for stale in ipt_degrade::files::remove_stale_temporaries(dir).map_err(folder_error)? {
                events(&Event::StaleTemporaryRemoved(&stale));
            }
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
        let (mut kept, mut replacing) = (0usize, 0usize);
        let mut sizes = Vec::with_capacity(batch.files.len());
        for (f, output) in batch.files.iter().zip(&batch.outputs) {
            let exists = output.exists();
            if exists && self.spec.skip_existing {
                events(&Event::Kept { file: f, output });
                kept += 1;
                sizes.push(None);
                continue;
            }
            match header_size(f, &read_opts) {
                Ok(size) => {
                    replacing += usize::from(exists);
                    sizes.push(Some(size));
                }
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
            replacing,
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
            let photo = match ipt_degrade::photo::read_photo(file, &read_opts.limits) {
                Ok(photo) => photo,
                Err(e) => {
                    skip(file, SkipReason::Decode(e), events);
                    continue;
                }
            };
            let (_, ih, iw) = photo.pixels.dim();
            events(&Event::ImageStarted {
                number,
                of: planned,
                file,
                size: (ih, iw),
                windows: self.windows((ih, iw)),
            });
            let (restored, alpha) =
                self.restore_photo(&photo, events)
                    .map_err(|source| RestoreJobError::Restore {
                        file: file.clone(),
                        source,
                    })?;
            let dropped = ipt_degrade::photo::write_photo(output, &restored, self.spec.format)
                .map_err(|source| RestoreJobError::Write {
                    file: output.clone(),
                    source: Box::new(source),
                })?;
            restored_images += 1;
            let (_, oh, ow) = restored.pixels.dim();
            events(&Event::ImageDone {
                file,
                output,
                input: (ih, iw),
                restored: (oh, ow),
                written: &Written {
                    bits: if dropped.contains(&Dropped::SixteenBits) {
                        8
                    } else {
                        restored.bits
                    },
                    grey: restored.is_grey(),
                    alpha: alpha.filter(|_| !dropped.contains(&Dropped::Alpha)),
                    dropped,
                },
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
        Ok(Summary {
            restored: restored_images,
            kept,
            skipped,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The output size of an `(h, w)` input restored at `scale`, or at `outscale` when given
/// (rounded, at least one pixel).
pub fn output_size((h, w): (usize, usize), scale: usize, outscale: Option<f64>) -> (usize, usize) {
    match outscale {
        None => (h * scale, w * scale),
        Some(s) => {
            let side = |n: usize| ((n as f64 * s).round() as usize).max(1);
            (side(h), side(w))
        }
    }
}

/// The output photo of `input` whose colour the network restored as `restored` (RGB): grey
/// inputs give grey outputs (the BT.601 luma of the result, [`ipt_degrade::photo::luma`]); the
/// colour is resized to `out_size` with MATLAB's bicubic `imresize` when the network's scale
/// does not give it (`--outscale`); the alpha plane is kept, or resized the same way when the
/// size changed; the depth follows `depth` and the input's bits; ICC profile and EXIF are the
/// input's.
pub fn finish(
    input: &Photo,
    restored: Image,
    out_size: (usize, usize),
    depth: BitDepth,
) -> (Photo, Option<AlphaRestore>) {
    let resized = |img: Image| {
        let (_, h, w) = img.dim();
        if (h, w) == out_size {
            img
        } else {
            ipt_degrade::imresize_to(&img, out_size.0, out_size.1)
        }
    };
    let colour = if input.is_grey() {
        ipt_degrade::photo::luma(&restored)
    } else {
        restored
    };
    let (alpha, how) = match &input.alpha {
        None => (None, None),
        Some(a) if a.dim().1 == out_size.0 && a.dim().2 == out_size.1 => {
            (Some(a.clone()), Some(AlphaRestore::Kept))
        }
        Some(a) => (Some(resized(a.clone())), Some(AlphaRestore::Bicubic)),
    };
    let photo = Photo {
        pixels: resized(colour),
        alpha,
        bits: depth.resolve(input.bits),
        metadata: input.metadata.clone(),
    };
    (photo, how)
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
    use ipt_degrade::io::Metadata;

    fn inputs(files: &[&str]) -> Vec<Input> {
        files
            .iter()
            .map(|f| Input {
                file: PathBuf::from(f),
                sub_folder: PathBuf::new(),
            })
            .collect()
    }

    #[test]
    fn output_names_keep_every_dot_of_the_stem() {
        let out = Path::new("out");
        let got = output_paths(
            &inputs(&["in/photo.v1.png", "in/photo.jpg"]),
            out,
            &Naming::default(),
        )
        .unwrap();
        assert_eq!(got, vec![out.join("photo.v1.png"), out.join("photo.png")]);
    }

    #[test]
    fn suffix_extension_and_sub_folders_name_outputs() {
        let naming = Naming {
            suffix: "_x2".into(),
            format: OutputFormat::Webp,
            recursive: true,
        };
        let mut found = inputs(&["in/a.png", "in/trip/b.jpg"]);
        found[1].sub_folder = PathBuf::from("trip");
        let got = output_paths(&found, Path::new("out"), &naming).unwrap();
        assert_eq!(
            got,
            vec![
                PathBuf::from("out/a_x2.webp"),
                PathBuf::from("out/trip/b_x2.webp")
            ]
        );
    }

    #[test]
    fn names_that_differ_only_in_extension_keep_it() {
        let got = output_paths(
            &inputs(&["in/a.png", "in/a.jpg", "in/b.png"]),
            Path::new("out"),
            &Naming::default(),
        )
        .unwrap();
        let names: Vec<_> = got.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(names, ["out/a.png.png", "out/a.jpg.png", "out/b.png"]);
    }

    #[test]
    fn memory_check_and_sizes() {
        let opts = RestoreOptions::default();
        let file = Path::new("photo.jpg");
        // 4000×3000 ×2: the output alone is 576 MB
        let out = (6000, 8000);
        let err = MemoryNeed::of((3000, 4000), 2, 48, &opts, out, BitDepth::Eight)
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
            MemoryNeed::of((3000, 4000), 2, 48, &opts, out, BitDepth::Sixteen)
                .check(file, big)
                .is_ok()
        );
        // a larger --outscale needs a larger file buffer
        let small = MemoryNeed::of((300, 400), 2, 48, &opts, (600, 800), BitDepth::Eight);
        let large = MemoryNeed::of((300, 400), 2, 48, &opts, (1200, 1600), BitDepth::Eight);
        assert_eq!(large.png, 4 * small.png);
        assert_eq!(format_bytes(3 << 30), "3.00 GiB");
        assert_eq!(format_bytes(5 << 20), "5.0 MiB");
        assert_eq!(format_bytes(2048), "2 KiB");
    }

    #[test]
    fn bit_depths_parse_and_follow_the_input() {
        assert_eq!("8".parse(), Ok(BitDepth::Eight));
        assert_eq!("16".parse(), Ok(BitDepth::Sixteen));
        assert_eq!("auto".parse(), Ok(BitDepth::Auto));
        assert_eq!(BitDepth::default(), BitDepth::Auto);
        assert_eq!(BitDepth::Sixteen.to_string(), "16");
        assert_eq!(
            (BitDepth::Auto.resolve(16), BitDepth::Auto.resolve(8)),
            (16, 8)
        );
        assert_eq!(BitDepth::Eight.resolve(16), 8);
        assert!("12"
            .parse::<BitDepth>()
            .unwrap_err()
            .contains("auto, 8 or 16"));
    }

    #[test]
    fn finishing_keeps_grey_alpha_depth_and_metadata() {
        let metadata = Metadata {
            icc: Some(vec![1, 2, 3]),
            exif: None,
            orientation: 1,
        };
        let input = Photo {
            pixels: Image::from_elem((1, 2, 3), 100.0),
            alpha: Some(Image::from_elem((1, 2, 3), 200.0)),
            bits: 16,
            metadata: metadata.clone(),
        };
        // a ×2 network output with a colour cast: the grey output is its luma
        let mut restored = Image::from_elem((3, 4, 6), 100.0);
        restored.slice_mut(ndarray::s![0, .., ..]).fill(110.0);
        let (out, how) = finish(&input, restored.clone(), (4, 6), BitDepth::Auto);
        assert_eq!(how, Some(AlphaRestore::Bicubic));
        assert_eq!(out.pixels.dim(), (1, 4, 6));
        assert!((out.pixels[[0, 1, 1]] - (100.0 + 0.299 * 10.0)).abs() < 1e-4);
        let alpha = out.alpha.as_ref().unwrap();
        assert_eq!(alpha.dim(), (1, 4, 6));
        assert!(
            alpha.iter().all(|&v| (v - 200.0).abs() < 1e-3),
            "flat alpha stays flat"
        );
        assert_eq!((out.bits, &out.metadata), (16, &metadata));
        // scale 1 (denoising) keeps alpha as it was; --outscale resizes everything
        let same = Image::from_elem((3, 2, 3), 50.0);
        let (out, how) = finish(&input, same.clone(), (2, 3), BitDepth::Eight);
        assert_eq!((how, out.bits), (Some(AlphaRestore::Kept), 8));
        assert_eq!(out.alpha, input.alpha);
        let (out, _) = finish(&input, restored, (3, 5), BitDepth::Eight);
        assert_eq!(out.pixels.dim(), (1, 3, 5));
        assert_eq!(out.alpha.unwrap().dim(), (1, 3, 5));
        assert_eq!(output_size((2, 3), 2, Some(2.5)), (5, 8));
        assert_eq!(output_size((2, 3), 4, None), (8, 12));
    }

    #[test]
    fn outputs_are_unique_and_never_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        std::fs::write(&a, b"x").unwrap();
        let found = vec![Input {
            file: a.clone(),
            sub_folder: PathBuf::new(),
        }];
        let err = output_paths(&found, dir.path(), &Naming::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("overwrite an input"), "{err}");
        let err = output_paths(
            &inputs(&["x/a.png", "y/a.png"]),
            Path::new("out"),
            &Naming::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("both be written") && err.contains("--recursive"),
            "{err}"
        );
    }

    #[test]
    fn folders_expand_to_their_images_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.png", "a.JPG", "notes.txt"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.png")).unwrap();
        std::fs::write(dir.path().join("sub.png/c.png"), b"x").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("a.png"), b"x").unwrap();
        let names = |found: Vec<Input>| -> Vec<String> {
            found
                .iter()
                .map(|i| {
                    i.file
                        .strip_prefix(dir.path())
                        .unwrap()
                        .display()
                        .to_string()
                })
                .collect()
        };
        let flat = collect_inputs(&[dir.path().to_path_buf()], false, &out, &mut |_| {}).unwrap();
        assert_eq!(names(flat), vec!["a.JPG", "b.png"]);
        // recursive: sub-folders mirrored, the output folder's own files left out
        let deep = collect_inputs(&[dir.path().to_path_buf()], true, &out, &mut |_| {}).unwrap();
        assert_eq!(deep[2].sub_folder, PathBuf::from("sub.png"));
        assert_eq!(names(deep), vec!["a.JPG", "b.png", "sub.png/c.png"]);
        let missing = dir.path().join("missing.png");
        assert!(collect_inputs(&[missing], false, &out, &mut |_| {}).is_err());
    }
}
