//! Worker threads that turn [`BatchPlan`]s into tensors ahead of the training step.
//!
//! Workers claim global batch indices in increasing order (at most `queue` ahead of the
//! consumer), build each batch with [`build_batch`] — a pure function of the plan, so the result
//! does not depend on which worker builds it or how many there are — and the consumer reorders
//! them by index. Unreadable files are skipped, counted and reported once each through
//! [`DataStats::take_warnings`]; when too many fail, the batch comes back as
//! [`DataError::TooManyBadFiles`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ipt_degrade::rain::RainSource;
use ipt_degrade::Task;
use ndarray::{s, Axis};
use rand::Rng;
use tch::Tensor;

use crate::config::SmallImages;
use crate::data::{BatchPlan, Image, ImageSource, Sample, Sampler, SourceError};

/// One training batch.
#[derive(Debug)]
pub struct Batch {
    /// The plan it was built from.
    pub plan: BatchPlan,
    /// Degraded inputs `[B, 3, patch, patch]`, f32 on 0–255, CPU.
    pub lr: Tensor,
    /// Clean targets `[B, 3, patch·s, patch·s]`, f32 on 0–255, CPU.
    pub hr: Tensor,
}

/// Errors of the data pipeline.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// More files failed to decode than the configured limits allow.
    #[error(
        "{bad} of {read} files read so far could not be decoded (limit: more than {grace} and \
         above {fraction} of those read); last: {last}"
    )]
    TooManyBadFiles {
        /// Unreadable files seen.
        bad: u64,
        /// Files read.
        read: u64,
        /// `data.bad_file_grace`.
        grace: usize,
        /// `data.max_bad_fraction`.
        fraction: f64,
        /// The last bad file and why.
        last: String,
    },
    /// No item of the epoch could be used for this task (all unreadable or too small).
    #[error(
        "no usable image for task {task} (HR crop {crop}×{crop}) in the whole epoch: {detail}"
    )]
    NoUsableImages {
        /// The task.
        task: Task,
        /// HR crop side.
        crop: usize,
        /// Counts of skipped items.
        detail: String,
    },
    /// A task's recipe failed on a training crop.
    #[error("task {task}: cannot degrade a training crop: {source}")]
    Degrade {
        /// The task.
        task: Task,
        /// What the recipe reported.
        source: ipt_degrade::DegradeError,
    },
    /// A worker thread died.
    #[error("data worker failed: {0}")]
    Worker(String),
}

/// Counters shared by the workers; read them for the log.
#[derive(Debug, Default)]
pub struct DataStats {
    files_read: AtomicU64,
    small_skips: AtomicU64,
    resized: AtomicU64,
    bad: Mutex<BTreeSet<String>>,
    small: Mutex<BTreeSet<String>>,
    resized_names: Mutex<BTreeSet<String>>,
    warnings: Mutex<Vec<String>>,
}

impl DataStats {
    /// Files decoded or attempted so far (0 for the embedded source).
    pub fn files_read(&self) -> u64 {
        self.files_read.load(Ordering::Relaxed)
    }

    /// Distinct files that could not be decoded.
    pub fn bad_files(&self) -> u64 {
        self.bad.lock().map(|b| b.len() as u64).unwrap_or(0)
    }

    /// Crops skipped because the image was smaller than the HR crop (each occurrence).
    pub fn small_skips(&self) -> u64 {
        self.small_skips.load(Ordering::Relaxed)
    }

    /// Distinct images that were too small for some crop.
    pub fn small_images(&self) -> u64 {
        self.small.lock().map(|b| b.len() as u64).unwrap_or(0)
    }

    /// Warnings (one line per newly seen bad file) since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    fn record_bad(&self, path: &str, reason: &str) {
        if let (Ok(mut bad), Ok(mut w)) = (self.bad.lock(), self.warnings.lock()) {
            if bad.insert(path.to_string()) {
                w.push(format!("warning: skipping unreadable image {reason}"));
            }
        }
    }

    /// Crops cut from an image enlarged up to the HR crop (`data.small_images = "resize"`,
    /// each occurrence).
    pub fn resized(&self) -> u64 {
        self.resized.load(Ordering::Relaxed)
    }

    /// Distinct images enlarged for some crop.
    pub fn resized_images(&self) -> u64 {
        self.resized_names
            .lock()
            .map(|b| b.len() as u64)
            .unwrap_or(0)
    }

    fn record_resized(&self, name: &str) {
        self.resized.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.resized_names.lock() {
            s.insert(name.to_string());
        }
    }

    fn record_small(&self, name: &str) {
        self.small_skips.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.small.lock() {
            s.insert(name.to_string());
        }
    }
}

/// `sample` enlarged with MATLAB bicubic (aspect ratio kept) so that its short side is at least
/// `crop` (`data.small_images = "resize"`); both images of a pair alike.
fn enlarge_to(sample: &Sample, crop: usize) -> Sample {
    let (h, w) = sample.dims();
    let f = crop as f64 / h.min(w).max(1) as f64;
    let size = |n: usize| ((n as f64 * f).ceil() as usize).max(crop);
    let (oh, ow) = (size(h), size(w));
    let up = |img: &Image| ipt_degrade::imresize_to(img, oh, ow);
    match sample {
        Sample::Clean(img) => Sample::Clean(up(img)),
        Sample::Pair { lr, hr } => Sample::Pair {
            lr: up(lr),
            hr: up(hr),
        },
    }
}

/// Everything a worker needs to build batches.
#[derive(Debug)]
pub struct BatchFactory {
    /// The sampler.
    pub sampler: Sampler,
    /// The images.
    pub source: ImageSource,
    /// Rain layers for the derain task.
    pub rain: RainSource,
    /// `data.max_bad_fraction`.
    pub max_bad_fraction: f64,
    /// `data.bad_file_grace`.
    pub bad_file_grace: usize,
    /// `data.small_images`.
    pub small_images: SmallImages,
    /// Shared counters.
    pub stats: DataStats,
}

fn flip_transpose(img: &Image, hflip: bool, vflip: bool, transpose: bool) -> Image {
    let mut v = img.view();
    if hflip {
        v.invert_axis(Axis(2));
    }
    if vflip {
        v.invert_axis(Axis(1));
    }
    if transpose {
        v.swap_axes(1, 2);
    }
    v.as_standard_layout().into_owned()
}

impl BatchFactory {
    /// Build batch `plan` given its epoch's order (see [`Sampler::epoch_order`]).
    ///
    /// Items whose file is unreadable or whose image is smaller than the HR crop are skipped and
    /// counted; the batch is completed with the next items of the order (wrapping around).
    pub fn build(&self, plan: &BatchPlan, order: &[usize]) -> Result<Batch, DataError> {
        let cfg = self.sampler.config();
        let (b, p, task) = (cfg.batch_size, cfg.patch, plan.task);
        let crop = task.hr_patch(p);
        let mut lr_data: Vec<f32> = Vec::with_capacity(b * 3 * p * p);
        let mut hr_data: Vec<f32> = Vec::with_capacity(b * 3 * crop * crop);
        let mut got = 0;
        let (mut n_bad, mut n_small) = (0usize, 0usize);
        // The last decoded image: consecutive items of one image (`crops_per_image`) share it.
        let mut decoded: Option<(usize, Sample)> = None;
        for attempt in 0..order.len() {
            if got == b {
                break;
            }
            let idx = order[(plan.start + attempt) % order.len()];
            let loaded = match decoded.take().filter(|(i, _)| *i == idx) {
                Some((_, s)) => Ok(s),
                None => {
                    if !matches!(self.source, ImageSource::Embedded { .. }) {
                        self.stats.files_read.fetch_add(1, Ordering::Relaxed);
                    }
                    self.source.load(idx)
                }
            };
            let sample = match loaded {
                Ok(s) => s,
                Err(e) => {
                    n_bad += 1;
                    let (path, reason) = match &e {
                        SourceError::Unreadable { path, .. } => {
                            (path.display().to_string(), e.to_string())
                        }
                        other => (self.source.describe(idx), other.to_string()),
                    };
                    self.stats.record_bad(&path, &reason);
                    self.check_bad_fraction(&reason)?;
                    continue;
                }
            };
            let (h, w) = sample.dims();
            let resized;
            let sample_ref = if h >= crop && w >= crop {
                &sample
            } else if self.small_images == SmallImages::Resize {
                self.stats.record_resized(&self.source.describe(idx));
                resized = enlarge_to(&sample, crop);
                &resized
            } else {
                n_small += 1;
                self.stats.record_small(&self.source.describe(idx));
                decoded = Some((idx, sample));
                continue;
            };
            let (lr, hr) = self.cut_pair(plan, attempt as u64, sample_ref, crop)?;
            debug_assert_eq!(lr.dim(), (3, p, p));
            debug_assert_eq!(hr.dim(), (3, crop, crop));
            lr_data.extend(lr.iter());
            hr_data.extend(hr.iter());
            got += 1;
            decoded = Some((idx, sample));
        }
        if got < b {
            return Err(DataError::NoUsableImages {
                task,
                crop,
                detail: format!(
                    "{n_bad} unreadable, {n_small} too small, {got} usable of {b} needed"
                ),
            });
        }
        let (bi, pi, ci) = (b as i64, p as i64, crop as i64);
        Ok(Batch {
            plan: plan.clone(),
            lr: Tensor::from_slice(&lr_data).view([bi, 3, pi, pi]),
            hr: Tensor::from_slice(&hr_data).view([bi, 3, ci, ci]),
        })
    }

    /// The (LR, HR) pair of one item: a crop at a random position of `sample` (flipped and
    /// transposed when augmenting), degraded by `plan.task` — all from the item slot's RNG.
    fn cut_pair(
        &self,
        plan: &BatchPlan,
        slot: u64,
        sample_ref: &Sample,
        crop: usize,
    ) -> Result<(Image, Image), DataError> {
        let task = plan.task;
        let (h, w) = sample_ref.dims();
        let mut rng = self.sampler.slot_rng(plan, slot);
        let y = rng.random_range(0..=h - crop);
        let x = rng.random_range(0..=w - crop);
        let (hf, vf, tr) = if self.sampler.config().augment {
            (
                rng.random_bool(0.5),
                rng.random_bool(0.5),
                rng.random_bool(0.5),
            )
        } else {
            (false, false, false)
        };
        let cut = |img: &Image| {
            flip_transpose(
                &img.slice(s![.., y..y + crop, x..x + crop]).to_owned(),
                hf,
                vf,
                tr,
            )
        };
        match sample_ref {
            Sample::Clean(img) => {
                ipt_degrade::synthesize_with(&cut(img), task, &self.rain, &mut rng)
                    .map_err(|source| DataError::Degrade { task, source })
            }
            Sample::Pair { lr, hr } => Ok((cut(lr), cut(hr))),
        }
    }

    fn check_bad_fraction(&self, last: &str) -> Result<(), DataError> {
        let bad = self.stats.bad_files();
        let read = self.stats.files_read().max(1);
        if bad as usize > self.bad_file_grace && bad as f64 > self.max_bad_fraction * read as f64 {
            return Err(DataError::TooManyBadFiles {
                bad,
                read,
                grace: self.bad_file_grace,
                fraction: self.max_bad_fraction,
                last: last.to_string(),
            });
        }
        Ok(())
    }

    /// Build batch `index` (computing the epoch order; use [`Pipeline`] for the cached version).
    pub fn build_index(&self, index: u64) -> Result<Batch, DataError> {
        let plan = self.sampler.plan(index);
        let order = self.sampler.epoch_order(plan.epoch);
        self.build(&plan, &order)
    }
}

struct Shared {
    factory: Arc<BatchFactory>,
    state: Mutex<Claim>,
    cv: Condvar,
    stop: AtomicBool,
}

struct Claim {
    next_to_claim: u64,
    consumed: u64,
}

/// Background batch producer: `workers` threads, at most `queue` batches ahead, in order.
pub struct Pipeline {
    shared: Arc<Shared>,
    rx: Receiver<(u64, Result<Batch, DataError>)>,
    pending: BTreeMap<u64, Result<Batch, DataError>>,
    next: u64,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("next", &self.next)
            .finish()
    }
}

impl Pipeline {
    /// Start workers producing batches `start, start+1, …`.
    pub fn start(factory: Arc<BatchFactory>, start: u64, workers: usize, queue: usize) -> Self {
        let shared = Arc::new(Shared {
            factory,
            state: Mutex::new(Claim {
                next_to_claim: start,
                consumed: start,
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = channel();
        let ahead = queue.max(1) as u64;
        let handles = (0..workers.max(1))
            .map(|w| {
                let shared = Arc::clone(&shared);
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("ipt-data-{w}"))
                    .spawn(move || {
                        let mut cached: Option<(u64, Vec<usize>)> = None;
                        loop {
                            let index = {
                                let Ok(mut st) = shared.state.lock() else {
                                    return;
                                };
                                while !shared.stop.load(Ordering::Relaxed)
                                    && st.next_to_claim >= st.consumed + ahead
                                {
                                    st = match shared.cv.wait(st) {
                                        Ok(g) => g,
                                        Err(_) => return,
                                    };
                                }
                                if shared.stop.load(Ordering::Relaxed) {
                                    return;
                                }
                                st.next_to_claim += 1;
                                st.next_to_claim - 1
                            };
                            let f = &shared.factory;
                            let plan = f.sampler.plan(index);
                            if cached.as_ref().map(|c| c.0) != Some(plan.epoch) {
                                cached = Some((plan.epoch, f.sampler.epoch_order(plan.epoch)));
                            }
                            let order = cached.as_ref().map(|c| c.1.as_slice()).unwrap_or(&[]);
                            let result =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    f.build(&plan, order)
                                }))
                                .unwrap_or_else(|payload| {
                                    Err(worker_failure(index, payload.as_ref()))
                                });
                            if tx.send((index, result)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a data worker thread")
            })
            .collect();
        Pipeline {
            shared,
            rx,
            pending: BTreeMap::new(),
            next: start,
            handles,
        }
    }

    /// The shared counters.
    pub fn stats(&self) -> &DataStats {
        &self.shared.factory.stats
    }

    /// The next batch, in index order.
    pub fn next_batch(&mut self) -> Result<Batch, DataError> {
        let want = self.next;
        let result = loop {
            if let Some(r) = self.pending.remove(&want) {
                break r;
            }
            match self.rx.recv() {
                Ok((i, r)) => {
                    self.pending.insert(i, r);
                }
                Err(_) => return Err(DataError::Worker("all data workers exited".into())),
            }
        };
        self.next += 1;
        if let Ok(mut st) = self.shared.state.lock() {
            st.consumed = self.next;
        }
        self.shared.cv.notify_all();
        result
    }
}

/// The error for a data worker that panicked while building batch `index`: the panic's
/// message, and a hint at the sizes when it is about memory (an allocation too large, a
/// capacity overflow), so the run ends with what happened instead of "all data workers exited".
fn worker_failure(index: u64, payload: &(dyn std::any::Any + Send)) -> DataError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "an unknown error".into());
    let lower = message.to_lowercase();
    let memory = ["alloc", "memory", "capacity overflow"]
        .iter()
        .any(|w| lower.contains(w));
    let hint = if memory {
        " (out of memory building the batch: lower optim.batch_size, data.patch or data.workers)"
    } else {
        ""
    };
    DataError::Worker(format!("building batch {index} failed: {message}{hint}"))
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.cv.notify_all();
        // Unblock senders: dropping the receiver makes `send` fail.
        let rx = std::mem::replace(&mut self.rx, channel().1);
        drop(rx);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod worker_failure_tests {
    use super::*;

    #[test]
    fn a_panic_about_memory_says_memory_and_the_knobs() {
        let payload: Box<dyn std::any::Any + Send> = Box::new("capacity overflow".to_string());
        let e = worker_failure(7, payload.as_ref()).to_string();
        assert!(
            e.contains("batch 7") && e.contains("out of memory") && e.contains("optim.batch_size"),
            "{e}"
        );
        let payload: Box<dyn std::any::Any + Send> = Box::new("index out of bounds");
        let e = worker_failure(1, payload.as_ref()).to_string();
        assert!(
            e.contains("index out of bounds") && !e.contains("memory"),
            "{e}"
        );
    }
}
