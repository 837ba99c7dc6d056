//! Start-up of a run, before its first step: the device, joining the process group of a
//! data-parallel job, the run directory (rank 0), the sampler, the model (fresh or from the
//! pre-trained checkpoint) inside a [`StepEngine`], resuming weights + optimizer + step from
//! the latest usable checkpoint (rank 0), and giving the other ranks rank 0's state.

use std::sync::Arc;
use std::time::Duration;

use ipt_degrade::rain::RainSource;
use ipt_degrade::seed::derive_seed;
use ipt_degrade::Task;
use ipt_model::{Ipt, IptConfig};
use tch::{nn, Device, Tensor};

use crate::checkpoint::TrainState;
use crate::config::ConfigError;
use crate::data::pipeline::BatchFactory;
use crate::data::{DataStats, Sampler};
use crate::engine::{EngineSettings, Optimizer, StepEngine, TAG_INIT};
use crate::error::TrainError;
use crate::finetune::read_pretrained;
use crate::parallel::Replicas;
use crate::plan::{Recipe, RunPlan, ValidationSource};
use crate::run::RunOptions;
use crate::run_dir::RunDir;
use crate::validation::ValidationSet;

/// What start-up hands the loop.
pub(crate) struct Started {
    /// The run directory: rank 0 only.
    pub run: Option<RunDir>,
    /// The model, ready to step.
    pub engine: StepEngine,
    /// The step to continue from.
    pub state: TrainState,
    /// Checkpoints set aside, with the reason.
    pub skipped: Vec<String>,
    /// The batches of every step.
    pub data: Arc<BatchFactory>,
}

/// Open the run for `plan`: device, process group, run directory, sampler, model and
/// optimizer, resumed state (synchronised over the ranks), then the batch factory.
pub(crate) fn start(plan: &RunPlan, opts: &RunOptions) -> Result<Started, TrainError> {
    if let Some(t) = plan.runtime.threads {
        tch::set_num_threads(t as i32);
    }
    let device = match (plan.runtime.device.resolve()?, &opts.distributed) {
        // One GPU per rank, as torchrun and srun lay them out.
        (Device::Cuda(_), Some(env)) => Device::Cuda(env.local_rank),
        (d, _) => d,
    };
    let replicas = match &opts.distributed {
        Some(env) => Replicas::join(
            env,
            device,
            Duration::from_secs(plan.runtime.collective_timeout_s),
        )?,
        None => Replicas::single(),
    };
    // Only rank 0 touches the run directory; the others get what it resumes.
    let run = match replicas.is_main() {
        true => Some(RunDir::open(&opts.run_dir)?),
        false => None,
    };
    let sampler = Sampler::new(
        plan.sampler_config(replicas.rank(), replicas.world()),
        plan.data.source.len(),
    )?;
    let batches_per_epoch = sampler.batches_per_epoch() as u64;
    let mut engine = build_engine(plan, device, replicas, batches_per_epoch)?;
    let (state, skipped) = match &run {
        Some(run) => open_state(run, plan, &mut engine, opts.verbose)?,
        None => (TrainState::fresh(plan.runtime.seed), Vec::new()),
    };
    let state = sync_replicas(&mut engine, state)?;
    if let Some(stop) = opts
        .stop_after
        .filter(|&s| s <= state.step && state.step > 0)
    {
        return Err(TrainError::NothingToDo {
            run_dir: opts.run_dir.clone(),
            step: state.step,
            stop_after: stop,
        });
    }
    let data = batch_factory(plan, sampler)?;
    Ok(Started {
        run,
        engine,
        state,
        skipped,
        data,
    })
}

/// The engine: weights initialised from the run's seed, the model built (and, fine-tuning,
/// filled from the pre-trained checkpoint), its input size checked against `data.patch`.
fn build_engine(
    plan: &RunPlan,
    device: Device,
    replicas: Replicas,
    batches_per_epoch: u64,
) -> Result<StepEngine, TrainError> {
    tch::manual_seed(derive_seed(plan.runtime.seed, &[TAG_INIT]) as i64);
    let vs = nn::VarStore::new(device);
    let (model, network) = build_model(plan, &vs)?;
    if network.patch_size != plan.data.patch {
        return Err(ConfigError::Invalid {
            path: plan.file.clone(),
            key: "data.patch".into(),
            message: format!(
                "{} differs from the checkpoint's input size {}",
                plan.data.patch, network.patch_size
            ),
        }
        .into());
    }
    let settings = EngineSettings {
        seed: plan.runtime.seed,
        schedule: plan.schedule.lr_schedule(batches_per_epoch),
        clip: plan.clip,
        loss: plan.loss,
        bf16: plan.runtime.bf16,
        ema_decay: plan.schedule.ema_decay,
    };
    Ok(StepEngine::new(vs, model, network, settings, replicas))
}

/// The network: the plan's for pre-training, from the pre-trained checkpoint's task when
/// fine-tuning (body, head, tail and query row copied in).
fn build_model(plan: &RunPlan, vs: &nn::VarStore) -> Result<(Ipt, IptConfig), TrainError> {
    if let Recipe::Finetune {
        task,
        from,
        source_tasks,
        init,
    } = &plan.recipe
    {
        let pre = read_pretrained(from, *task, *init, source_tasks.as_deref())?;
        let network = pre.single_task_config(*task);
        let model = Ipt::new(&vs.root(), &network)?;
        pre.copy_task_into(vs, *init, from)?;
        return Ok((model, network));
    }
    let network = plan.network.clone().ok_or_else(|| ConfigError::Invalid {
        path: plan.file.clone(),
        key: "model".into(),
        message: "a pre-training plan without a network".into(),
    })?;
    Ok((Ipt::new(&vs.root(), &network)?, network))
}

/// The batches: the sampler, the listed images and the rain layers.
fn batch_factory(plan: &RunPlan, sampler: Sampler) -> Result<Arc<BatchFactory>, TrainError> {
    let d = &plan.data;
    let rain = match &d.rain_streaks {
        Some(dir) => RainSource::from_folder(dir)?,
        None => RainSource::default(),
    };
    Ok(Arc::new(BatchFactory {
        sampler,
        source: d.source.clone(),
        rain,
        max_bad_fraction: d.max_bad_fraction,
        bad_file_grace: d.bad_file_grace,
        small_images: d.small_images,
        stats: DataStats::default(),
    }))
}

/// The held-out images of the plan, when validation is on (rank 0 only).
pub(crate) fn build_validation(
    plan: &RunPlan,
    tasks: &[Task],
) -> Result<Option<ValidationSet>, TrainError> {
    let Some(v) = &plan.validation else {
        return Ok(None);
    };
    let seed = plan.runtime.seed;
    Ok(Some(match &v.source {
        ValidationSource::Folder { dir, size } => {
            ValidationSet::from_folder(dir, seed, tasks, v.images, *size)?
        }
        ValidationSource::Embedded { size } => {
            ValidationSet::embedded(seed, tasks, v.images, *size)?
        }
    }))
}

/// Rank 0's start: resume from the run directory's latest usable checkpoint (or start fresh),
/// record the config, and trim the log to the resumed step. Returns the state and the
/// checkpoints set aside.
fn open_state(
    run: &RunDir,
    plan: &RunPlan,
    engine: &mut StepEngine,
    verbose: bool,
) -> Result<(TrainState, Vec<String>), TrainError> {
    let (vs, optimizer, _) = engine.state_mut();
    let resumed = resume(run, plan, vs, optimizer, verbose)?;
    run.write_config(&plan.config)?;
    let state = match resumed.state {
        Some(st) => {
            run.log().truncate_after(st.step)?;
            st
        }
        None => {
            // A fresh run: no stale rows from an earlier run that never checkpointed.
            let _ = std::fs::remove_file(run.log().path());
            TrainState::fresh(plan.runtime.seed)
        }
    };
    Ok((state, resumed.skipped))
}

/// Give every rank rank 0's weights (all variables, by name), optimizer state and step
/// counters; returns the state to continue from. A single process keeps its own.
fn sync_replicas(engine: &mut StepEngine, state: TrainState) -> Result<TrainState, TrainError> {
    let device = engine.device();
    let (vs, optimizer, replicas) = engine.state_mut();
    if replicas.world() == 1 {
        return Ok(state);
    }
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tensors: Vec<Tensor> = vars.into_iter().map(|(_, t)| t).collect();
    let ostate: Vec<(String, Tensor)> = optimizer
        .state()
        .into_iter()
        .map(|(n, t)| (n, t.to_device(device)))
        .collect();
    tensors.extend(ostate.iter().map(|(_, t)| t.shallow_clone()));
    let counters = Tensor::from_slice(&[
        state.step as i64,
        state.epoch as i64,
        state.nonfinite_steps as i64,
        state.elapsed_s.to_bits() as i64,
    ])
    .to_device(device);
    tensors.push(counters.shallow_clone());
    replicas.sync_from_main(&tensors)?;
    if replicas.is_main() {
        return Ok(state);
    }
    optimizer.load_state(ostate)?;
    let c = Vec::<i64>::try_from(counters.to_device(Device::Cpu))?;
    Ok(TrainState {
        step: c[0] as u64,
        epoch: c[1] as u64,
        nonfinite_steps: c[2] as u64,
        elapsed_s: f64::from_bits(c[3] as u64),
        ..state
    })
}

/// What [`resume`] found.
struct Resumed {
    /// The state of the checkpoint resumed from (`None`: a fresh run).
    state: Option<TrainState>,
    /// Checkpoints set aside, with the reason.
    skipped: Vec<String>,
}

/// Load the newest checkpoint of `run` that can be read completely (state, weights, optimizer)
/// into `vs` and `optimizer`. A checkpoint that cannot is set aside (renamed `*.corrupt`, kept) with a
/// warning and the next older one is tried; one of a different experiment stops the run.
fn resume(
    run: &RunDir,
    plan: &RunPlan,
    vs: &nn::VarStore,
    optimizer: &mut Optimizer,
    verbose: bool,
) -> Result<Resumed, TrainError> {
    let steps = run.checkpoints().steps()?;
    let mut skipped = Vec::new();
    for &step in steps.iter().rev() {
        let loaded = (|| -> Result<TrainState, TrainError> {
            let ck = run.checkpoints().read(step)?;
            run.check_same_experiment(&plan.fingerprint, ck.state.config.as_deref())?;
            let sd = ipt_model::checkpoint::read_state_dict(&ck.weights)?;
            ipt_model::checkpoint::copy_into(vs, &sd, &ck.weights)?;
            let optim = ipt_model::checkpoint::read_state_dict(&ck.optim)?;
            optimizer.load_state(optim.tensors)?;
            Ok(ck.state)
        })();
        match loaded {
            Ok(state) => {
                if verbose {
                    eprintln!(
                        "resuming from {} (step {}, epoch {})",
                        run.checkpoints().files(step).0.display(),
                        state.step,
                        state.epoch
                    );
                }
                return Ok(Resumed {
                    state: Some(state),
                    skipped,
                });
            }
            Err(e @ TrainError::ResumeMismatch(_)) => return Err(e),
            Err(e) => {
                let moved = run.checkpoints().set_aside(step)?;
                let why = format!(
                    "step {step}: {e} (set aside as {})",
                    moved
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                eprintln!("warning: cannot resume from checkpoint {why}; trying the previous one");
                skipped.push(why);
            }
        }
    }
    if steps.is_empty() {
        Ok(Resumed {
            state: None,
            skipped,
        })
    } else {
        Err(TrainError::NoUsableCheckpoint {
            run_dir: run.path().to_path_buf(),
            problems: skipped,
        })
    }
}
