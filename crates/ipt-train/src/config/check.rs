//! Static checks of a config (no file system): one function per section, run by
//! [`ExperimentConfig::validate`] when a config is read, and the check that a config suits the
//! command that runs it ([`check_command`]). Each rule has its home here; the plan
//! ([`crate::plan`]) relies on them.

use std::path::Path;

use ipt_degrade::Task;

use super::{
    ConfigError, DataSourceKind, ExperimentConfig, Mode, OptimSection, RuntimeSection,
    ValidationSize,
};

/// A failed check: the key and what is wrong with it.
type Failure = (&'static str, String);

impl ExperimentConfig {
    /// Static checks that need no file system; the error names the file and the key.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        check_name(self.name.as_deref())
            .and_then(|()| check_tasks(self))
            .and_then(|()| check_model(self))
            .and_then(|()| check_data(self))
            .and_then(|()| check_optim(&self.optim))
            .and_then(|()| check_loss(self))
            .and_then(|()| check_checkpoint(self))
            .and_then(|()| check_runtime(&self.runtime))
            .and_then(|()| check_validation(self))
            .and_then(|()| check_rain_pairs(self))
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                key: key.to_string(),
                message,
            })
    }
}

/// `[finetune]` present exactly for `ipt finetune`.
pub fn check_command(cfg: &ExperimentConfig, mode: Mode, file: &Path) -> Result<(), ConfigError> {
    let bad = |message: &str| ConfigError::Invalid {
        path: file.to_path_buf(),
        key: "finetune".into(),
        message: message.into(),
    };
    match (mode, &cfg.finetune) {
        (Mode::Finetune, None) => Err(bad(
            "`ipt finetune` needs a [finetune] section (task, from)",
        )),
        (Mode::Pretrain, Some(_)) => Err(bad(
            "this is a fine-tune config; run it with `ipt finetune`",
        )),
        _ => Ok(()),
    }
}

/// `name`: one plain folder name, so that the run directory (`runs/<name>`) stays inside `runs/`.
fn check_name(name: Option<&str>) -> Result<(), Failure> {
    let Some(name) = name else {
        return Ok(());
    };
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with(' ')
        && !name.ends_with(' ');
    if plain {
        Ok(())
    } else {
        Err((
            "name",
            format!(
                "{name:?} is not a plain folder name: the run directory is runs/<name>, so the name \
                 cannot be empty, `.`, `..`, contain `/` or `\\`, or start or end with a space"
            ),
        ))
    }
}

/// `[model]`: sizes set here must be ≥ 1 (the rest of the network's rules are
/// `IptConfig::validate`'s, run when the plan is resolved).
fn check_model(cfg: &ExperimentConfig) -> Result<(), Failure> {
    let m = &cfg.model;
    for (key, value) in [
        ("model.n_feats", m.n_feats),
        ("model.patch_dim", m.patch_dim),
        ("model.num_heads", m.num_heads),
        ("model.num_layers", m.num_layers),
    ] {
        if value == Some(0) {
            return Err((key, "must be ≥ 1".into()));
        }
    }
    if let Some(p) = m.dropout.filter(|p| !(0.0..1.0).contains(p)) {
        return Err(("model.dropout", format!("{p} must lie in [0, 1)")));
    }
    Ok(())
}

/// `[tasks]`: at least one, none twice, weights matching and usable.
fn check_tasks(cfg: &ExperimentConfig) -> Result<(), Failure> {
    let names = &cfg.tasks.names;
    if names.is_empty() {
        return Err(("tasks.names", "at least one task is needed".into()));
    }
    for (i, t) in names.iter().enumerate() {
        if names[..i].iter().any(|u| u.name() == t.name()) {
            return Err(("tasks.names", format!("task `{}` listed twice", t.name())));
        }
    }
    if let Some(w) = &cfg.tasks.weights {
        if w.len() != names.len() {
            return Err((
                "tasks.weights",
                format!("{} weights for {} tasks", w.len(), names.len()),
            ));
        }
        if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
            return Err((
                "tasks.weights",
                "weights must be finite, non-negative and not all zero".into(),
            ));
        }
    }
    Ok(())
}

/// `[data]`: a folder where the source needs one, sizes ≥ 1, crops dividing the repeat,
/// embedded images large enough, fractions in range.
fn check_data(cfg: &ExperimentConfig) -> Result<(), Failure> {
    let d = &cfg.data;
    if d.source != DataSourceKind::Embedded && d.path.is_none() {
        return Err((
            "data.path",
            format!("data source `{}` needs a folder", d.source.name()),
        ));
    }
    if d.patch == 0 || d.workers == 0 || d.queue == 0 || d.repeat == 0 {
        return Err((
            "data",
            "patch, workers, queue and repeat must be ≥ 1".into(),
        ));
    }
    if d.crops_per_image == 0 || !d.repeat.is_multiple_of(d.crops_per_image) {
        return Err((
            "data.crops_per_image",
            format!(
                "{} must be ≥ 1 and divide data.repeat ({})",
                d.crops_per_image, d.repeat
            ),
        ));
    }
    if d.source == DataSourceKind::Embedded {
        let need = cfg
            .tasks
            .names
            .iter()
            .chain(cfg.finetune.as_ref().map(|f| &f.task))
            .map(|t| t.hr_patch(d.patch))
            .max()
            .unwrap_or(d.patch);
        if d.image_size < need {
            return Err((
                "data.image_size",
                format!(
                    "{} is smaller than the largest HR crop {need}",
                    d.image_size
                ),
            ));
        }
        if d.images == 0 {
            return Err(("data.images", "must be ≥ 1".into()));
        }
    }
    if !(0.0..=1.0).contains(&d.max_bad_fraction) {
        return Err(("data.max_bad_fraction", "must lie in [0, 1]".into()));
    }
    if !(d.fraction > 0.0 && d.fraction <= 1.0) {
        return Err((
            "data.fraction",
            format!("{} must lie in (0, 1]", d.fraction),
        ));
    }
    Ok(())
}

/// `[optim]`: positive batch, rates and threshold; at least one step.
fn check_optim(o: &OptimSection) -> Result<(), Failure> {
    if o.batch_size == 0 {
        return Err(("optim.batch_size", "must be ≥ 1".into()));
    }
    if !o.lr.is_finite() || o.lr <= 0.0 {
        return Err(("optim.lr", "must be positive".into()));
    }
    if !o.gamma.is_finite() || o.gamma <= 0.0 {
        return Err(("optim.gamma", "must be positive".into()));
    }
    if o.steps == Some(0) || (o.steps.is_none() && o.epochs == 0) {
        return Err(("optim.steps", "the run must have at least one step".into()));
    }
    if o.clip_norm.is_nan() || o.clip_norm <= 0.0 {
        return Err(("optim.clip_norm", "must be positive".into()));
    }
    if !o.min_lr.is_finite() || o.min_lr < 0.0 || o.min_lr > o.lr {
        return Err((
            "optim.min_lr",
            format!("{} must lie in [0, optim.lr = {}]", o.min_lr, o.lr),
        ));
    }
    if let Some(steps) = o.steps.filter(|&s| o.warmup_steps >= s) {
        return Err((
            "optim.warmup_steps",
            format!(
                "{} warm-up steps leave none of the run's {steps} steps",
                o.warmup_steps
            ),
        ));
    }
    for (key, list) in [
        ("optim.milestones", &o.milestones),
        ("optim.milestone_steps", &o.milestone_steps),
    ] {
        if list.first() == Some(&0) || list.windows(2).any(|w| w[0] >= w[1]) {
            return Err((
                key,
                format!(
                    "{list:?} must be ≥ 1 and strictly increasing (a repeated milestone would \
                     apply optim.gamma twice)"
                ),
            ));
        }
    }
    if let Some(d) = o.ema_decay.filter(|d| !(*d > 0.0 && *d < 1.0)) {
        return Err((
            "optim.ema_decay",
            format!("{d} must lie strictly between 0 and 1 (e.g. 0.999)"),
        ));
    }
    Ok(())
}

/// `[loss]`: a finite, non-negative weight λ; a positive, finite temperature; a chunk ≥ 1.
fn check_loss(cfg: &ExperimentConfig) -> Result<(), Failure> {
    if let Some(l) = cfg.loss.lambda.filter(|l| !(l.is_finite() && *l >= 0.0)) {
        return Err((
            "loss.lambda",
            format!("{l} must be finite and ≥ 0 (0 turns the contrastive term off)"),
        ));
    }
    if !(cfg.loss.tau.is_finite() && cfg.loss.tau > 0.0) {
        return Err((
            "loss.tau",
            format!("{} must be positive and finite", cfg.loss.tau),
        ));
    }
    if cfg.loss.chunk == Some(0) {
        return Err(("loss.chunk", "must be ≥ 1".into()));
    }
    Ok(())
}

/// `[checkpoint]`: an interval and a retention ≥ 1; `keep_best` a validated task of the run.
fn check_checkpoint(cfg: &ExperimentConfig) -> Result<(), Failure> {
    let c = &cfg.checkpoint;
    if c.every == 0 || c.keep_last == 0 {
        return Err(("checkpoint", "`every` and `keep_last` must be ≥ 1".into()));
    }
    let Some(best) = c.keep_best else {
        return Ok(());
    };
    let trained: Vec<Task> = match &cfg.finetune {
        Some(f) => vec![f.task],
        None => cfg.tasks.names.clone(),
    };
    if !trained.contains(&best) {
        return Err((
            "checkpoint.keep_best",
            format!(
                "`{}` is not a task of this run ({})",
                best.name(),
                trained
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if cfg.validation.every == 0 {
        return Err((
            "checkpoint.keep_best",
            "needs validation (validation.every ≥ 1)".into(),
        ));
    }
    Ok(())
}

/// The most libtorch threads a config may ask for: far above any machine's cores, far below
/// the counts that stall libtorch's thread pool (100,000 made no progress and ignored SIGTERM).
pub const MAX_THREADS: usize = 1024;

/// `[runtime]`: threads in `1..=MAX_THREADS`, a log interval and a collective timeout ≥ 1.
fn check_runtime(r: &RuntimeSection) -> Result<(), Failure> {
    if let Some(t) = r.threads.filter(|t| !(1..=MAX_THREADS).contains(t)) {
        return Err((
            "runtime.threads",
            format!("{t} must lie in 1..={MAX_THREADS} (leave it out for libtorch's choice)"),
        ));
    }
    if r.log_every == 0 {
        return Err(("runtime.log_every", "must be ≥ 1".into()));
    }
    if r.collective_timeout_s == 0 {
        return Err(("runtime.collective_timeout_s", "must be ≥ 1".into()));
    }
    Ok(())
}

/// `[validation]`: `"whole"` images need a folder; crops are ≥ 1 pixel. The one home of the
/// rule "whole-image validation needs validation.path".
fn check_validation(cfg: &ExperimentConfig) -> Result<(), Failure> {
    match cfg.validation.size {
        ValidationSize::Whole(_) if cfg.validation.path.is_none() => Err((
            "validation.size",
            "\"whole\" needs validation.path (a folder of test images)".into(),
        )),
        ValidationSize::Crop(0) => Err(("validation.size", "must be ≥ 1 or \"whole\"".into())),
        _ => Ok(()),
    }
}

/// `data.source = "rain_pairs"` only when fine-tuning the derain task.
fn check_rain_pairs(cfg: &ExperimentConfig) -> Result<(), Failure> {
    if cfg.data.source == DataSourceKind::RainPairs
        && cfg.finetune.as_ref().map(|f| f.task) != Some(Task::Derain)
    {
        return Err((
            "data.source",
            "`rain_pairs` is only for fine-tuning the derain task".into(),
        ));
    }
    Ok(())
}
