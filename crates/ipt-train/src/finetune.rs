//! Fine-tuning: start a single-task model from a multi-task pre-trained checkpoint.
//!
//! The fine-tuned model has the pre-trained architecture with one task (`scales = [s]`,
//! `num_queries = 1`). Its body is copied from the checkpoint; `head.0`, `tail.0` and row 0 of
//! `body.query_embed` are copied from the task's head `k`, tail `k` and query row `k` — or,
//! for a task the checkpoint does not hold ([`HeadInit`]), from another task of the same scale,
//! or left at their fresh initialisation. Training it
//! is equivalent to the official recipe (MindSpore keeps all six heads but only task `k`'s get
//! gradients, and Adam leaves parameters with zero gradients and zero moments unchanged), and
//! the exported checkpoint has the official single-task layout (`head.0`, `tail.0`,
//! `query_embed` of shape `[1, ·]`) that `ipt restore` and the official code load.

use std::collections::HashMap;
use std::path::Path;

use ipt_degrade::Task;

pub use crate::config::HeadInit;
use ipt_model::checkpoint::{infer_config, read_state_dict, InferOptions};
use ipt_model::IptConfig;
use tch::{nn, Tensor};

/// Errors of preparing a fine-tune.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// The checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(#[from] ipt_model::CheckpointError),
    /// The checkpoint does not fit the request.
    #[error("{path}: {message}")]
    Mismatch {
        /// The checkpoint.
        path: std::path::PathBuf,
        /// What does not fit.
        message: String,
    },
}

/// The pre-trained weights and what is known about them.
#[derive(Debug)]
pub struct Pretrained {
    /// Tensors by official key.
    pub tensors: HashMap<String, Tensor>,
    /// The checkpoint's config.
    pub config: IptConfig,
    /// Its tasks, in head order.
    pub tasks: Vec<Task>,
}

/// Read a pre-trained checkpoint (ours or an official `.pt`) and name its tasks: `source_tasks`
/// when given, else the tasks recorded in the checkpoint (ours record them), else the six
/// official tasks for the official six-task layout, else the `init` task (or `task`) for a
/// one-task model. The checkpoint must hold the `init` task, of `task`'s scale.
pub fn read_pretrained(
    path: &Path,
    task: Task,
    init: HeadInit,
    source_tasks: Option<&[Task]>,
) -> Result<Pretrained, FinetuneError> {
    let start = match init {
        HeadInit::Task(t) => t,
        HeadInit::Random => task,
    };
    let mismatch = |message: String| FinetuneError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    let sd = read_state_dict(path)?;
    let config =
        infer_config(&sd, &InferOptions::default()).map_err(|e| mismatch(e.to_string()))?;
    let tasks: Vec<Task> = match source_tasks {
        Some(t) => t.to_vec(),
        None if config.tasks.is_some() => config.tasks.clone().unwrap_or_default(),
        None if config.is_official_six_task() => Task::OFFICIAL.to_vec(),
        None if config.scales.len() == 1 => vec![start],
        None => {
            return Err(mismatch(format!(
                "cannot tell which task each of its {} heads (scales {:?}) is; set \
                 `finetune.source_tasks`",
                config.scales.len(),
                config.scales
            )))
        }
    };
    if tasks.len() != config.scales.len()
        || tasks
            .iter()
            .zip(&config.scales)
            .any(|(t, &s)| t.scale() != s)
    {
        return Err(mismatch(format!(
            "tasks {} do not match the checkpoint's scales {}",
            tasks
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", "),
            config
                .scales
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let HeadInit::Task(t) = init {
        if !tasks.contains(&t) {
            let held: Vec<&str> = tasks.iter().map(|t| t.name()).collect();
            return Err(mismatch(format!(
                "has no head for task {t} (it holds {}); set `finetune.init` to one of them of \
                 scale {} or to \"random\"",
                held.join(", "),
                task.scale()
            )));
        }
        if t.scale() != task.scale() {
            return Err(mismatch(format!(
                "task {t} has scale {}, task {task} scale {}: a tail cannot change its scale \
                 (set `finetune.init` to a task of scale {} or to \"random\")",
                t.scale(),
                task.scale(),
                task.scale()
            )));
        }
    }
    Ok(Pretrained {
        tensors: sd.tensors.into_iter().collect(),
        config,
        tasks,
    })
}

impl Pretrained {
    /// The single-task config for `task`: this architecture with `scales = [s]`, one query,
    /// the task recorded.
    pub fn single_task_config(&self, task: Task) -> IptConfig {
        IptConfig {
            scales: vec![task.scale()],
            num_queries: 1,
            tasks: Some(vec![task]),
            ..self.config.clone()
        }
    }

    /// Copy the body and, by `init`, a task's head, tail and query row into a single-task
    /// model's variables (built with [`Pretrained::single_task_config`]); with
    /// [`HeadInit::Random`] those stay as initialised. Every variable copied must be found with
    /// the right shape.
    pub fn copy_task_into(
        &self,
        vs: &nn::VarStore,
        init: HeadInit,
        path: &Path,
    ) -> Result<(), FinetuneError> {
        let k = match init {
            HeadInit::Task(task) => self.tasks.iter().position(|&t| t == task).unwrap_or(0),
            HeadInit::Random => usize::MAX,
        };
        let mismatch = |message: String| FinetuneError::Mismatch {
            path: path.to_path_buf(),
            message,
        };
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (name, mut var) in vars {
                let own = name.starts_with("head.0.")
                    || name.starts_with("tail.0.")
                    || name == "body.query_embed.weight";
                if own && init == HeadInit::Random {
                    continue;
                }
                let src_name = if let Some(rest) = name.strip_prefix("head.0.") {
                    format!("head.{k}.{rest}")
                } else if let Some(rest) = name.strip_prefix("tail.0.") {
                    format!("tail.{k}.{rest}")
                } else {
                    name.clone()
                };
                let src = self
                    .tensors
                    .get(&src_name)
                    .ok_or_else(|| mismatch(format!("missing key {src_name}")))?;
                let src = if name == "body.query_embed.weight" {
                    src.narrow(0, k as i64, 1)
                } else {
                    src.shallow_clone()
                };
                if src.size() != var.size() {
                    return Err(mismatch(format!(
                        "{src_name} has shape {:?}, the model needs {:?}",
                        src.size(),
                        var.size()
                    )));
                }
                var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
            }
            Ok(())
        })
    }
}
