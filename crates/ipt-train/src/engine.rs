//! The step engine: the one type that computes an optimizer step. [`StepEngine`] owns the
//! model, Adam, the learning-rate schedule, the clipping, the loss and the precision, and
//! [`StepEngine::step`] turns one batch into a [`StepOutput`] — nothing else (no run directory,
//! no logging, no stop or NaN policy: those are the trainer's).
//!
//! A step: seed libtorch's RNG from `(seed, step)`, forward (bf16 autocast on CUDA when asked),
//! loss = L1 + λ·contrastive on the decoder tokens, the global loss agreed over the ranks of a
//! data-parallel job (with the stop flag); a NaN/Inf loss ends the step there (no update);
//! otherwise gradients → averaged over the ranks → clipping → Adam → the weights' moving
//! average ([`crate::ema`], when `optim.ema_decay` is set).

use ipt_degrade::seed::derive_seed;
use ipt_degrade::Task;
use ipt_loss::PretrainLoss;
use ipt_model::{Ipt, IptConfig};
use tch::{nn, Device, Kind, Tensor};

use crate::data::Batch;
use crate::ema::{self, Ema};
use crate::error::TrainError;
use crate::optim::{clip_gradients, Adam, Clip, OptimError};
use crate::parallel::{Agreement, Replicas};
use crate::schedule::LrSchedule;

/// Seed domain of the libtorch RNG before step `n`.
const TAG_STEP_TORCH: u64 = 0x5EED;
/// Seed domain of the weight initialisation.
pub(crate) const TAG_INIT: u64 = 0x1417;

/// How a step is computed, apart from the model.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// The run's seed (libtorch's RNG is seeded from `(seed, step)` before each step).
    pub seed: u64,
    /// Learning rate by step.
    pub schedule: LrSchedule,
    /// Gradient clipping.
    pub clip: Clip,
    /// The loss.
    pub loss: PretrainLoss,
    /// bf16 autocast of the forward pass (CUDA only; ignored on CPU).
    pub bf16: bool,
    /// Keep a moving average of the weights with this decay.
    pub ema_decay: Option<f64>,
}

/// What a checkpoint's optimizer file holds: Adam's state and the weights' moving average.
#[derive(Debug)]
pub(crate) struct Optimizer {
    /// Adam over the trainable variables.
    pub adam: Adam,
    /// The moving average of the same variables, when kept.
    pub ema: Option<Ema>,
}

impl Optimizer {
    /// Adam's entries (`m.`, `v.`, `step.`), then the average's (`ema.`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = self.adam.state();
        out.extend(self.ema.iter().flat_map(Ema::state));
        out
    }

    /// Restore a state written by [`Optimizer::state`] (after the weights are in place). An
    /// average missing from the state (a checkpoint written without one) restarts at the
    /// current weights; one present but not kept by this run is ignored.
    pub fn load_state(&mut self, mut state: Vec<(String, Tensor)>) -> Result<(), OptimError> {
        match &mut self.ema {
            Some(avg) => {
                if !avg.load_state(&mut state)? {
                    avg.reset(self.adam.params());
                }
            }
            None => ema::strip(&mut state),
        }
        self.adam.load_state(state)
    }

    /// Every tensor that must be identical on all ranks: the parameters and their average.
    fn replicated(&self) -> Vec<Tensor> {
        let mut out: Vec<Tensor> = self
            .adam
            .params()
            .iter()
            .map(Tensor::shallow_clone)
            .collect();
        if let Some(avg) = &self.ema {
            out.extend(avg.tensors().iter().map(Tensor::shallow_clone));
        }
        out
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    /// Completed steps after this one.
    pub step: u64,
    /// The batch's task.
    pub task: Task,
    /// The learning rate used.
    pub lr: f64,
    /// The loss terms, or `None` when the loss was NaN/Inf and the step was skipped.
    pub loss: Option<LossTerms>,
    /// The NaN/Inf loss that made the step skip its update (`loss` is then `None`).
    pub nonfinite_loss: Option<f64>,
    /// Whether some rank (this one alone in a single process) asked to stop.
    pub stop: bool,
}

/// The loss of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossTerms {
    /// L1 + λ·contrastive.
    pub total: f64,
    /// The L1 term.
    pub l1: f64,
    /// The (unweighted) contrastive term.
    pub contrastive: f64,
}

/// Model, optimizer, schedule, clipping, loss and precision: computes steps.
pub struct StepEngine {
    device: Device,
    vs: nn::VarStore,
    model: Ipt,
    network: IptConfig,
    optimizer: Optimizer,
    settings: EngineSettings,
    replicas: Replicas,
}

impl StepEngine {
    /// A freshly initialised model of `network` on `device` (weights seeded from
    /// `settings.seed`, as a run's), for one process.
    pub fn fresh(
        network: &IptConfig,
        device: Device,
        settings: EngineSettings,
    ) -> Result<Self, ipt_model::ModelError> {
        tch::manual_seed(derive_seed(settings.seed, &[TAG_INIT]) as i64);
        let vs = nn::VarStore::new(device);
        let model = Ipt::new(&vs.root(), network)?;
        Ok(Self::new(
            vs,
            model,
            network.clone(),
            settings,
            Replicas::single(),
        ))
    }

    /// An engine over a built model (its variables in `vs`), as one rank of `replicas`.
    pub(crate) fn new(
        vs: nn::VarStore,
        model: Ipt,
        network: IptConfig,
        mut settings: EngineSettings,
        replicas: Replicas,
    ) -> Self {
        let device = vs.device();
        settings.bf16 = settings.bf16 && device.is_cuda();
        let adam = Adam::from_var_store(&vs);
        let ema = settings
            .ema_decay
            .map(|d| Ema::new(d, adam.names(), adam.params()));
        StepEngine {
            device,
            vs,
            model,
            network,
            optimizer: Optimizer { adam, ema },
            settings,
            replicas,
        }
    }

    /// One optimizer step on `batch` after `step` completed steps; `stop` is this rank's stop
    /// request (agreed over the ranks with the loss). A NaN/Inf loss skips the update
    /// (`loss: None`).
    pub fn step(&mut self, batch: &Batch, step: u64, stop: bool) -> Result<StepOutput, TrainError> {
        let s = &self.settings;
        let lr = s.schedule.lr(step);
        tch::manual_seed(derive_seed(s.seed, &[TAG_STEP_TORCH, step]) as i64);
        let x = batch.lr.to_device(self.device);
        let y = batch.hr.to_device(self.device);
        let want_tokens = s.loss.lambda > 0.0;
        let forward = || {
            self.model
                .forward_with_tokens(&x, batch.plan.task_pos, true)
        };
        let (out, tokens) = if s.bf16 {
            ipt_model::device::autocast_bf16(forward)?
        } else {
            forward()
        };
        let out = out.to_kind(Kind::Float);
        let tokens = tokens.to_kind(Kind::Float);
        let parts = s.loss.compute(&out, &y, want_tokens.then_some(&tokens));
        // The global batch's loss (the mean of the ranks'), and whether any rank must stop.
        let agreed = self.replicas.agree(Agreement {
            total: parts.total.double_value(&[]),
            l1: parts.l1,
            contrastive: parts.contrastive,
            stop,
        })?;
        let mut output = StepOutput {
            step: step + 1,
            task: batch.plan.task,
            lr,
            loss: None,
            nonfinite_loss: None,
            stop: agreed.stop,
        };
        if !agreed.total.is_finite() {
            output.nonfinite_loss = Some(agreed.total);
            return Ok(output);
        }
        let opt = &mut self.optimizer;
        let mut grads = opt.adam.gradients(&parts.total);
        self.replicas.average_gradients(&mut grads)?;
        let _ = clip_gradients(&mut grads, s.clip);
        opt.adam.step(&mut grads, lr);
        if let Some(avg) = &mut opt.ema {
            avg.update(opt.adam.params());
        }
        output.loss = Some(LossTerms {
            total: agreed.total,
            l1: agreed.l1,
            contrastive: agreed.contrastive,
        });
        Ok(output)
    }

    /// The model being trained.
    pub fn model(&self) -> &Ipt {
        &self.model
    }

    /// Whether a moving average of the weights is kept.
    pub fn has_average(&self) -> bool {
        self.optimizer.ema.is_some()
    }

    /// Run `f` on the model holding the averaged weights when an average is kept (the trained
    /// weights are put back bit for bit afterwards), else on the model as it is.
    pub fn with_evaluated_weights<R>(&mut self, f: impl FnOnce(&Self) -> R) -> R {
        let Some(avg) = &mut self.optimizer.ema else {
            return f(self);
        };
        avg.swap(self.optimizer.adam.params());
        let out = f(self);
        if let Some(avg) = &mut self.optimizer.ema {
            avg.swap(self.optimizer.adam.params());
        }
        out
    }

    /// Its architecture.
    pub fn network(&self) -> &IptConfig {
        &self.network
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Trainable parameters of the model.
    pub fn parameter_count(&self) -> usize {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel())
            .sum()
    }

    /// The variables, the optimizer and the job, to load or synchronise state.
    pub(crate) fn state_mut(&mut self) -> (&nn::VarStore, &mut Optimizer, &Replicas) {
        (&self.vs, &mut self.optimizer, &self.replicas)
    }

    /// The optimizer state a checkpoint holds.
    pub(crate) fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.optimizer.state()
    }

    /// This process's place in the job.
    pub(crate) fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// Errors unless every rank holds bit-identical weights and averages (no collective
    /// alone).
    pub(crate) fn check_replicas(&self, step: u64) -> Result<(), TrainError> {
        match self.replicas.identical(&self.optimizer.replicated())? {
            true => Ok(()),
            false => Err(TrainError::ReplicasDiverged { step }),
        }
    }

    /// Write the weights (official keys, config in the metadata) to `path`.
    pub(crate) fn save_weights(
        &self,
        path: &std::path::Path,
    ) -> Result<(), ipt_model::CheckpointError> {
        ipt_model::checkpoint::save(path, &self.vs, &self.network)
    }
}
