//! Which images, which task and which random numbers make batch number `k`.
//!
//! Everything is a pure function of the seed and the global batch index `k` (step `k` of the
//! run), so a run can be resumed at any step and the batch sequence does not depend on how many
//! workers prepare it:
//!
//! - one epoch = one pass over `len(source) · repeat` items; epoch `e` visits them in the order of
//!   a permutation seeded by `(seed, e)`;
//! - global batch `j` of the epoch takes the next `world · batch_size` items of that order (a
//!   partial last global batch is dropped); with data parallelism, rank `r` of `world` takes the
//!   slice `[r · batch_size, (r + 1) · batch_size)` of it;
//! - the task of a batch is drawn (weighted) from an RNG seeded by `(seed, e, j)` only, so every
//!   rank trains the same task at the same step; crops, flips and degradations use RNGs seeded by
//!   `(seed, e, j, global slot)`, the global slot being `r · batch_size + slot`.
//!
//! So global batch `j` is the same set of crops whatever the world size: two processes with
//! batch `B` train exactly the items one process with batch `2B` would (as long as no item is
//! skipped as unreadable or too small: a skipped item is replaced by the next item of the order,
//! which may belong to the next rank's slice).

use ipt_degrade::Task;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ipt_degrade::seed::derive_seed;

/// Seed domain tags, so the different uses of the seed never collide.
const TAG_ORDER: u64 = 0x0D0E;
const TAG_TASK: u64 = 0x7A5C;
const TAG_SLOT: u64 = 0x5107;

/// Settings of a [`Sampler`].
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Base seed.
    pub seed: u64,
    /// Tasks in head order.
    pub tasks: Vec<Task>,
    /// Relative weight of each task (same length as `tasks`).
    pub weights: Vec<f64>,
    /// Images per batch (per process).
    pub batch_size: usize,
    /// LR patch side (HR side = patch·scale).
    pub patch: usize,
    /// Random flips/transposes.
    pub augment: bool,
    /// Items per source image per epoch.
    pub repeat: usize,
    /// Consecutive items of the epoch order that come from the same image (divides `repeat`).
    pub crops_per_image: usize,
    /// This process's rank.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
}

/// The recipe of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    /// Global batch index (= optimizer step it feeds).
    pub index: u64,
    /// Epoch of the batch.
    pub epoch: u64,
    /// Index of the batch inside its epoch.
    pub index_in_epoch: u64,
    /// Position of the task in [`SamplerConfig::tasks`] (= model head index).
    pub task_pos: usize,
    /// The task.
    pub task: Task,
    /// Position in the epoch order ([`Sampler::epoch_order`]) of this rank's first item.
    pub start: usize,
    /// The global slot of this rank's first item (`rank · batch_size`).
    pub first_slot: u64,
}

/// Errors of building a sampler.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// Not even one batch fits in an epoch.
    #[error("{items} training items give no full global batch of {world} process(es) × {batch}")]
    TooFewItems {
        /// Items per epoch (images × repeat).
        items: usize,
        /// Batch size.
        batch: usize,
        /// World size.
        world: usize,
    },
    /// Inconsistent settings.
    #[error("invalid sampler settings: {0}")]
    Invalid(String),
}

/// Deterministic, shardable batch sampler over `n_images` source images.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    n_images: usize,
    cumulative: Vec<f64>,
}

impl Sampler {
    /// A sampler over `n_images` images.
    pub fn new(cfg: SamplerConfig, n_images: usize) -> Result<Self, SamplerError> {
        if cfg.tasks.is_empty() || cfg.tasks.len() != cfg.weights.len() {
            return Err(SamplerError::Invalid(format!(
                "{} tasks with {} weights",
                cfg.tasks.len(),
                cfg.weights.len()
            )));
        }
        let total: f64 = cfg.weights.iter().sum();
        if total.is_nan() || total <= 0.0 || cfg.weights.iter().any(|w| w.is_nan() || *w < 0.0) {
            return Err(SamplerError::Invalid(
                "task weights must be ≥ 0 and not all 0".into(),
            ));
        }
        if cfg.world_size == 0
            || cfg.rank >= cfg.world_size
            || cfg.repeat == 0
            || cfg.batch_size == 0
            || cfg.crops_per_image == 0
            || !cfg.repeat.is_multiple_of(cfg.crops_per_image)
        {
            return Err(SamplerError::Invalid(format!(
                "rank {} of {}, repeat {}, crops per image {}, batch {}",
                cfg.rank, cfg.world_size, cfg.repeat, cfg.crops_per_image, cfg.batch_size
            )));
        }
        let s = Sampler {
            cumulative: cfg
                .weights
                .iter()
                .scan(0.0, |acc, w| {
                    *acc += w / total;
                    Some(*acc)
                })
                .collect(),
            cfg,
            n_images,
        };
        if s.batches_per_epoch() == 0 {
            return Err(SamplerError::TooFewItems {
                items: s.items_per_epoch(),
                batch: s.cfg.batch_size,
                world: s.cfg.world_size,
            });
        }
        Ok(s)
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Items (crops) per epoch over all ranks: images × repeat.
    pub fn items_per_epoch(&self) -> usize {
        self.n_images * self.cfg.repeat
    }

    /// Items of one global batch (all ranks): `world · batch_size`.
    pub fn global_batch(&self) -> usize {
        self.cfg.world_size * self.cfg.batch_size
    }

    /// Full global batches per epoch (= optimizer steps per epoch, the same on every rank).
    pub fn batches_per_epoch(&self) -> usize {
        self.items_per_epoch() / self.global_batch()
    }

    /// Epoch `epoch`'s order of all items, as source image indices: a shuffle of the groups of
    /// `crops_per_image` items of one image, each group's items next to each other (with one
    /// crop per image, a shuffle of the items).
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let k = self.cfg.crops_per_image;
        let n = self.items_per_epoch() / k;
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.cfg.seed, &[TAG_ORDER, epoch]));
        // Fisher–Yates, spelled out so the order never depends on a library's shuffle algorithm.
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let groups_per_image = self.cfg.repeat / k;
        order
            .into_iter()
            .flat_map(|group| std::iter::repeat_n(group / groups_per_image, k))
            .collect()
    }

    /// The plan of global batch `index`.
    pub fn plan(&self, index: u64) -> BatchPlan {
        let bpe = self.batches_per_epoch() as u64;
        let (epoch, j) = (index / bpe, index % bpe);
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(self.cfg.seed, &[TAG_TASK, epoch, j]));
        let u: f64 = rng.random_range(0.0..1.0);
        let task_pos = self
            .cumulative
            .iter()
            .position(|&c| u < c)
            .unwrap_or(self.cfg.tasks.len() - 1);
        BatchPlan {
            index,
            epoch,
            index_in_epoch: j,
            task_pos,
            task: self.cfg.tasks[task_pos],
            start: j as usize * self.global_batch() + self.cfg.rank * self.cfg.batch_size,
            first_slot: (self.cfg.rank * self.cfg.batch_size) as u64,
        }
    }

    /// The RNG of this rank's item slot `slot` of a batch (crop position, flips, degradation):
    /// a function of the global slot, not of the rank.
    pub fn slot_rng(&self, plan: &BatchPlan, slot: u64) -> ChaCha8Rng {
        // The fixed 0 keeps the seeds of single-process runs what they were before data
        // parallelism (the rank stood there), so earlier runs and shipped weights reproduce.
        ChaCha8Rng::seed_from_u64(derive_seed(
            self.cfg.seed,
            &[
                TAG_SLOT,
                plan.epoch,
                plan.index_in_epoch,
                0,
                plan.first_slot + slot,
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(batch: usize, rank: usize, world: usize) -> SamplerConfig {
        SamplerConfig {
            seed: 3,
            tasks: vec![Task::Sr2, Task::Derain, Task::Denoise50],
            weights: vec![1.0, 1.0, 2.0],
            batch_size: batch,
            patch: 48,
            augment: false,
            repeat: 2,
            crops_per_image: 1,
            rank,
            world_size: world,
        }
    }

    #[test]
    fn epoch_is_a_permutation_and_ranks_partition_it() {
        let n = 50;
        let a = Sampler::new(cfg(4, 0, 2), n).unwrap();
        let b = Sampler::new(cfg(4, 1, 2), n).unwrap();
        assert_eq!(a.global_batch(), 8);
        assert_eq!(a.batches_per_epoch(), 12);
        let order = a.epoch_order(5);
        assert_eq!(order, b.epoch_order(5));
        let mut all = order.clone();
        all.sort();
        // Every image appears exactly `repeat` = 2 times in an epoch.
        let expect: Vec<usize> = (0..n).flat_map(|i| [i, i]).collect();
        assert_eq!(all, expect);
        assert_ne!(a.epoch_order(5), a.epoch_order(6));
        // The ranks' slices of a batch tile the global batch without overlap.
        let (pa, pb) = (a.plan(3), b.plan(3));
        assert_eq!((pa.start, pb.start), (24, 28));
        assert_eq!((pa.first_slot, pb.first_slot), (0, 4));
    }

    #[test]
    fn global_batches_do_not_depend_on_the_world_size() {
        // One process with batch 8 against two ranks with batch 4 and four with batch 2: the same
        // items in the same global slots, with the same random numbers.
        let n = 50;
        let one = Sampler::new(cfg(8, 0, 1), n).unwrap();
        for world in [2, 4] {
            let b = 8 / world;
            for k in [0u64, 5, 13, 40] {
                let p1 = one.plan(k);
                let order = one.epoch_order(p1.epoch);
                for r in 0..world {
                    let s = Sampler::new(cfg(b, r, world), n).unwrap();
                    let p = s.plan(k);
                    assert_eq!(
                        (p.epoch, p.index_in_epoch, p.task),
                        (p1.epoch, p1.index_in_epoch, p1.task)
                    );
                    assert_eq!(s.epoch_order(p.epoch), order);
                    for slot in 0..b {
                        let g = r * b + slot;
                        assert_eq!(order[p.start + slot], order[p1.start + g]);
                        let (mut x, mut y) =
                            (s.slot_rng(&p, slot as u64), one.slot_rng(&p1, g as u64));
                        assert_eq!(x.random::<u64>(), y.random::<u64>());
                    }
                }
            }
        }
    }

    #[test]
    fn plans_are_deterministic_and_task_frequencies_follow_weights() {
        let s = Sampler::new(cfg(4, 0, 1), 50).unwrap();
        let bpe = s.batches_per_epoch() as u64;
        let p = s.plan(bpe + 3);
        assert_eq!((p.epoch, p.index_in_epoch, p.start), (1, 3, 12));
        assert_eq!(p, s.plan(bpe + 3));
        let mut counts = [0usize; 3];
        for k in 0..20_000 {
            counts[s.plan(k).task_pos] += 1;
        }
        let f: Vec<f64> = counts.iter().map(|&c| c as f64 / 20_000.0).collect();
        assert!(
            (f[0] - 0.25).abs() < 0.02 && (f[1] - 0.25).abs() < 0.02 && (f[2] - 0.5).abs() < 0.02,
            "{f:?}"
        );
        // The task does not depend on the rank; the slot RNGs of the ranks' slots differ.
        let r1 = Sampler::new(cfg(4, 1, 2), 50).unwrap();
        let r0 = Sampler::new(cfg(4, 0, 2), 50).unwrap();
        assert_eq!(r0.plan(7).task, r1.plan(7).task);
        let (mut x, mut y) = (r0.slot_rng(&r0.plan(7), 0), r1.slot_rng(&r1.plan(7), 0));
        assert_ne!(x.random::<u64>(), y.random::<u64>());
    }

    #[test]
    fn crops_of_one_image_stay_together() {
        let n = 50;
        let mut c = cfg(4, 0, 1);
        c.repeat = 4;
        c.crops_per_image = 2;
        let s = Sampler::new(c.clone(), n).unwrap();
        let order = s.epoch_order(3);
        assert_eq!(order.len(), 200);
        for pair in order.chunks(2) {
            assert_eq!(pair[0], pair[1], "{order:?}");
        }
        let mut all = order.clone();
        all.sort();
        assert_eq!(all, (0..n).flat_map(|i| [i; 4]).collect::<Vec<_>>());
        // One crop per image is the plain shuffle of the items.
        c.crops_per_image = 1;
        let one = Sampler::new(c.clone(), n).unwrap().epoch_order(3);
        assert!(one.windows(2).filter(|w| w[0] == w[1]).count() < 20);
        c.crops_per_image = 3;
        assert!(Sampler::new(c, n).is_err()); // 3 does not divide repeat 4
    }

    #[test]
    fn too_few_items_is_an_error() {
        assert!(matches!(
            Sampler::new(cfg(200, 0, 1), 50),
            Err(SamplerError::TooFewItems { .. })
        ));
    }
}
