//! IPT checkpoints as a benchmark method.
//!
//! `--weights` may be repeated; each job uses the first checkpoint that performs its task:
//! - a six-task model (scales `2,3,4,1,1,1`, e.g. `IPT_pretrain.pt`) performs every task, at its
//!   official index;
//! - otherwise each head with scale 2, 3 or 4 performs SR at that scale, and a scale-1 head
//!   performs the task named in the file name (`derain`, `denoise30`, `denoise50`, as in
//!   `IPT_denoise30.pt`), or the task given explicitly as `--weights denoise30=FILE`.
//!
//! Inference is the official whole-image `forward_chop` (48-px windows, stride 12), optionally
//! inside the ×8 self-ensemble, under no-grad on the chosen device.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use indicatif::ProgressBar;
use ipt_degrade::{Image, Task};
use ipt_model::checkpoint::{self, InferOptions};
use ipt_model::restore::{restore_image, windows_for, RestoreOptions};
use ipt_model::{Ipt, IptConfig, TaskMapError};
use tch::{nn, Device};

use crate::job::Job;
use crate::BenchError;

/// One `--weights` argument: `FILE` or `TASK=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsSpec {
    /// The task this checkpoint is for, when stated explicitly.
    pub task: Option<Task>,
    /// The checkpoint file (`.pt` or `.safetensors`).
    pub path: PathBuf,
}

impl FromStr for WeightsSpec {
    type Err = String;

    /// `TASK=FILE` or `FILE`. A plain word before `=` that is not a task is an error (a typo
    /// such as `banana=ck.safetensors`), unless the whole argument names an existing file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((prefix, rest)) = s.split_once('=') {
            if let Ok(task) = ipt_degrade::task::lookup(prefix) {
                return Ok(WeightsSpec {
                    task: Some(task),
                    path: PathBuf::from(rest),
                });
            }
            let word = !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if word && !Path::new(s).exists() {
                return Err(format!(
                    "unknown task `{prefix}` in `{s}`; the task before `=` must be one of {}",
                    Task::OFFICIAL.map(|t| t.name()).join(", ")
                ));
            }
        }
        Ok(WeightsSpec {
            task: None,
            path: PathBuf::from(s),
        })
    }
}

/// The task named in a checkpoint's file name (`IPT_denoise30.pt` → `denoise30`), for scale-1
/// heads.
pub fn task_from_file_name(path: &Path) -> Option<Task> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    [Task::Denoise30, Task::Denoise50, Task::Derain]
        .into_iter()
        .find(|t| name.contains(t.name()))
}

impl WeightsSpec {
    /// Which tasks the checkpoint with configuration `config` performs, as (task, head index),
    /// by [`TaskMap::serving`] (see the module docs): the explicit `TASK=` if given, and the
    /// file name as the hint for scale-1 heads.
    pub fn serving(&self, config: &IptConfig) -> Result<Vec<(Task, usize)>, BenchError> {
        let file = self.path.display();
        config
            .task_map()
            .serving(self.task, task_from_file_name(&self.path))
            .map_err(|e| {
                BenchError::Unsupported(match e {
                    TaskMapError::Unnamed { head } => format!(
                        "cannot tell which task head {head} (scale 1) of {file} performs: name \
                         it, e.g. --weights denoise30={file} (or derain=, denoise50=)"
                    ),
                    TaskMapError::Duplicate { task, scales } => format!(
                        "{file} has several heads for {task} (scales {scales:?}); name the task \
                         with TASK=FILE"
                    ),
                    other => format!("{file}: {other}"),
                })
            })
    }
}

/// A loaded checkpoint and the tasks it performs.
pub struct LoadedCheckpoint {
    /// The file.
    pub path: PathBuf,
    /// The network.
    pub model: Ipt,
    /// (task, head index) pairs.
    pub tasks: Vec<(Task, usize)>,
    _vs: nn::VarStore,
}

impl LoadedCheckpoint {
    /// Wraps a network built on `vs` (which must stay alive as long as the network runs).
    pub fn new(path: PathBuf, vs: nn::VarStore, model: Ipt, tasks: Vec<(Task, usize)>) -> Self {
        LoadedCheckpoint {
            path,
            model,
            tasks,
            _vs: vs,
        }
    }
}

/// IPT inference over one or more checkpoints.
pub struct IptMethod {
    checkpoints: Vec<LoadedCheckpoint>,
    device: Device,
    options: RestoreOptions,
}

impl IptMethod {
    /// Loads every checkpoint onto `device` (config inferred from each file, loaded strictly).
    pub fn load(
        specs: &[WeightsSpec],
        device: Device,
        options: RestoreOptions,
    ) -> Result<IptMethod, BenchError> {
        if specs.is_empty() {
            return Err(BenchError::Unsupported("no --weights given".into()));
        }
        let mut checkpoints = Vec::new();
        for spec in specs {
            let loaded = checkpoint::load(&spec.path, device, &InferOptions::default())
                .map_err(|e| BenchError::Model(e.to_string()))?;
            let tasks = spec.serving(&loaded.config)?;
            checkpoints.push(LoadedCheckpoint::new(
                spec.path.clone(),
                loaded.vs,
                loaded.model,
                tasks,
            ));
        }
        Self::from_checkpoints(checkpoints, device, options)
    }

    /// Wraps networks that are already built (e.g. in tests).
    pub fn from_checkpoints(
        checkpoints: Vec<LoadedCheckpoint>,
        device: Device,
        options: RestoreOptions,
    ) -> Result<IptMethod, BenchError> {
        if options.crop_batch == 0 {
            return Err(BenchError::Unsupported(
                "--crop-batch must be at least 1".into(),
            ));
        }
        Ok(IptMethod {
            checkpoints,
            device,
            options,
        })
    }

    /// The report name: checkpoint file stems joined by `+`, with `+x8` for the self-ensemble.
    pub fn name(&self) -> String {
        let mut name = self
            .checkpoints
            .iter()
            .map(|c| {
                c.path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| c.path.display().to_string())
            })
            .collect::<Vec<_>>()
            .join("+");
        if self.options.self_ensemble {
            name.push_str("+x8");
        }
        name
    }

    /// Every task some checkpoint performs, in load order (each once).
    pub fn tasks(&self) -> Vec<Task> {
        let mut tasks: Vec<Task> = Vec::new();
        for (t, _) in self.checkpoints.iter().flat_map(|c| c.tasks.iter()) {
            if !tasks.contains(t) {
                tasks.push(*t);
            }
        }
        tasks
    }

    /// The checkpoint and head for `job`: the one that performs its task; for a recipe job
    /// without one, the only checkpoint when it has a single head of the task's scale (a
    /// one-task model tried on another recipe of its scale, e.g. a blind model at one level).
    fn find_for(&self, job: Job, task: Task) -> Option<(&LoadedCheckpoint, usize)> {
        self.find(task)
            .or_else(|| match (job, &self.checkpoints[..]) {
                (Job::Recipe(_), [only]) => match &only.tasks[..] {
                    [(t, idx)] if t.scale() == task.scale() => Some((only, *idx)),
                    _ => None,
                },
                _ => None,
            })
    }

    fn find(&self, task: Task) -> Option<(&LoadedCheckpoint, usize)> {
        self.checkpoints.iter().find_map(|c| {
            c.tasks
                .iter()
                .find(|(t, _)| *t == task)
                .map(|&(_, idx)| (c, idx))
        })
    }

    /// Errors unless some checkpoint performs `job`.
    pub fn check(&self, job: Job) -> Result<(), BenchError> {
        let task = job.task().ok_or_else(|| {
            BenchError::Unsupported(format!(
                "IPT has no task for {job} (SR x2/x3/x4, denoise sigma 30/50, derain)"
            ))
        })?;
        match self.find_for(job, task) {
            Some(_) => Ok(()),
            None => {
                let have = self
                    .checkpoints
                    .iter()
                    .map(|c| {
                        let tasks: Vec<&str> = c.tasks.iter().map(|(t, _)| t.name()).collect();
                        format!("{} ({})", c.path.display(), tasks.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(BenchError::Unsupported(format!(
                    "no checkpoint performs {task}; loaded: {have}"
                )))
            }
        }
    }

    /// Restores a whole image with the checkpoint for `job`, counting windows on `windows`. A
    /// grey (one-channel) image is restored as RGB with three equal channels and returned as
    /// the BT.601 luma of the result (as `ipt restore` does with grey files).
    pub fn restore(
        &mut self,
        input: &Image,
        job: Job,
        windows: &ProgressBar,
    ) -> Result<Image, BenchError> {
        self.check(job)?;
        let task = job
            .task()
            .ok_or_else(|| BenchError::Unsupported(format!("IPT has no task for {job}")))?;
        let (ckpt, idx) = self
            .find_for(job, task)
            .ok_or_else(|| BenchError::Unsupported(format!("no checkpoint performs {task}")))?;
        let (c, h, w) = input.dim();
        let patch = ckpt.model.config().patch_size;
        windows.set_length(windows_for(h, w, patch, &self.options) as u64);
        windows.set_position(0);
        let rgb;
        let input = if c == 1 {
            rgb = input
                .broadcast((3, h, w))
                .map(|v| v.to_owned())
                .unwrap_or_else(|| input.clone());
            &rgb
        } else {
            input
        };
        let out = restore_image(&ckpt.model, idx, input, self.device, &self.options, |n| {
            windows.inc(n as u64)
        })
        .map_err(|e| BenchError::Model(format!("{}: {e}", ckpt.path.display())))?;
        Ok(if c == 1 {
            ipt_degrade::photo::luma(&out)
        } else {
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_spec_parses_task_prefix() {
        let w: WeightsSpec = "denoise30=ckpt/IPT.pt".parse().unwrap();
        assert_eq!(w.task, Some(Task::Denoise30));
        assert_eq!(w.path, PathBuf::from("ckpt/IPT.pt"));
        let w: WeightsSpec = "C:=weird/IPT_sr2.pt".parse().unwrap();
        assert_eq!(w.task, None);
        assert_eq!(w.path, PathBuf::from("C:=weird/IPT_sr2.pt"));
        let err = "banana=ck.safetensors".parse::<WeightsSpec>().unwrap_err();
        assert!(
            err.contains("unknown task `banana`") && err.contains("denoise30"),
            "{err}"
        );
    }

    #[test]
    fn task_mapping_rules() {
        let cfg = |scales: &[usize]| IptConfig::tiny(scales);
        let served = |config: &IptConfig, task: Option<Task>, path: &Path| {
            WeightsSpec {
                task,
                path: path.to_path_buf(),
            }
            .serving(config)
        };
        let p = Path::new("IPT_pretrain.pt");
        let all = served(&cfg(&[2, 3, 4, 1, 1, 1]), None, p).unwrap();
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|(t, i)| t.official_index() == Some(*i)));
        assert_eq!(
            served(&cfg(&[2, 3, 4, 1, 1, 1]), Some(Task::Denoise50), p).unwrap(),
            vec![(Task::Denoise50, 5)]
        );
        assert_eq!(
            served(&cfg(&[3]), None, Path::new("IPT_sr3.pt")).unwrap(),
            vec![(Task::Sr3, 0)]
        );
        assert_eq!(
            served(&cfg(&[1]), None, Path::new("x/IPT_denoise30.pt")).unwrap(),
            vec![(Task::Denoise30, 0)]
        );
        assert_eq!(
            served(&cfg(&[1]), None, Path::new("IPT_derain.safetensors")).unwrap(),
            vec![(Task::Derain, 0)]
        );
        assert_eq!(
            served(&cfg(&[1]), Some(Task::Denoise50), Path::new("mine.pt")).unwrap(),
            vec![(Task::Denoise50, 0)]
        );
        let msg = served(&cfg(&[1]), None, Path::new("mine.pt"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("denoise30=mine.pt"), "{msg}");
        assert!(served(&cfg(&[2]), Some(Task::Sr4), Path::new("IPT_sr2.pt")).is_err());
        assert_eq!(
            served(&cfg(&[2, 4]), None, Path::new("two.pt")).unwrap(),
            vec![(Task::Sr2, 0), (Task::Sr4, 1)]
        );
        assert!(served(&cfg(&[2, 2]), None, Path::new("dup.pt")).is_err());
        // Tasks recorded in the file (by training) win over names and scales.
        let mut named = cfg(&[1, 2]);
        named.tasks = Some(vec![Task::Derain, Task::Sr2]);
        assert_eq!(
            served(&named, None, Path::new("IPT_denoise30.pt")).unwrap(),
            vec![(Task::Derain, 0), (Task::Sr2, 1)]
        );
        assert!(served(&named, Some(Task::Denoise30), Path::new("x.pt")).is_err());
    }
}
