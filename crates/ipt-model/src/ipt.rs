//! The top-level IPT network (official `model/ipt.py`, `ipt.forward`): MeanShift, per-task
//! heads, the shared transformer body with a global residual, per-task tails.

use tch::nn;
use tch::Tensor;

use crate::attention::AttentionKernel;
use crate::body::VisionTransformer;
use crate::common::MeanShift;
use crate::config::IptConfig;
use crate::error::ModelError;
use crate::head::Head;
use crate::tail::Tail;

/// The IPT network. Variable paths equal the official state-dict keys (of the official
/// `model/ipt.py`) when it is built on the root of a `VarStore`.
#[derive(Debug)]
pub struct Ipt {
    config: IptConfig,
    /// `sub_mean`.
    pub(crate) sub_mean: MeanShift,
    /// `add_mean`.
    pub(crate) add_mean: MeanShift,
    /// `head.{i}`, one per task.
    pub(crate) head: Vec<Head>,
    /// `body`.
    pub(crate) body: VisionTransformer,
    /// `tail.{i}`, one per task.
    pub(crate) tail: Vec<Tail>,
}

impl Ipt {
    /// Builds the network under `p` (normally `vs.root()`), initialised as the official PyTorch
    /// code does (official `model/ipt.py`, PyTorch's default `nn.Linear`/`nn.Conv2d` init).
    pub fn new(p: &nn::Path, config: &IptConfig) -> Result<Ipt, ModelError> {
        config.validate()?;
        let n_feats = config.n_feats as i64;
        let sub_mean = MeanShift::new(p / "sub_mean", config.rgb_range, config.rgb_mean, -1.0);
        let add_mean = MeanShift::new(p / "add_mean", config.rgb_range, config.rgb_mean, 1.0);
        let hp = p / "head";
        let head = (0..config.num_tasks())
            .map(|i| Head::new(&hp / i, n_feats))
            .collect();
        let body = VisionTransformer::new(p / "body", config);
        let tp = p / "tail";
        let tail = config
            .scales
            .iter()
            .enumerate()
            .map(|(i, &s)| Tail::new(&tp / i, s, n_feats))
            .collect();
        Ok(Ipt {
            config: config.clone(),
            sub_mean,
            add_mean,
            head,
            body,
            tail,
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &IptConfig {
        &self.config
    }

    /// Selects how attention is computed (default [`AttentionKernel::Auto`]: the explicit
    /// PyTorch-identical product on CPU, libtorch's fused kernel on GPUs).
    pub fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        self.body.set_attention_kernel(kernel);
    }

    /// Checks a task index and an input shape before [`forward`](Self::forward), for callers
    /// that pass user input: `x` must be [B, 3, patch_size, patch_size].
    pub fn check_input(&self, x: &Tensor, task_idx: usize) -> Result<(), ModelError> {
        if task_idx >= self.config.num_tasks() {
            return Err(ModelError::TaskOutOfRange {
                task: task_idx,
                num_tasks: self.config.num_tasks(),
            });
        }
        let s = x.size();
        let p = self.config.patch_size as i64;
        if s.len() != 4 || s[1] != 3 || s[2] != p || s[3] != p {
            return Err(ModelError::BadInput {
                got: s,
                expected: format!("[B, 3, {p}, {p}]"),
            });
        }
        Ok(())
    }

    /// Restores a batch of windows `x` [B, 3, P, P] (float, 0–255) with task `task_idx` (the
    /// position in the config's scale list); returns [B, 3, P·s, P·s]. `train` enables dropout.
    ///
    /// Panics if `task_idx` is out of range or `x` has the wrong shape; use
    /// [`check_input`](Self::check_input) first for untrusted input.
    pub fn forward(&self, x: &Tensor, task_idx: usize, train: bool) -> Tensor {
        self.forward_with_tokens(x, task_idx, train).0
    }

    /// As [`forward`](Self::forward), also returning the decoder tokens [B, N, d] (the body
    /// output after the MLP-head residual, before folding) for the contrastive loss.
    pub fn forward_with_tokens(
        &self,
        x: &Tensor,
        task_idx: usize,
        train: bool,
    ) -> (Tensor, Tensor) {
        self.forward_with_body(x, task_idx, train, |body| body())
    }

    /// As [`forward_with_tokens`](Self::forward_with_tokens), with the transformer body evaluated
    /// by `run_body`, which receives a closure computing it (e.g. to run only the body under
    /// bf16 autocast). The mean shifts, head, global residual and tail stay outside; the body
    /// output is cast back to the head output's kind before the residual.
    pub fn forward_with_body(
        &self,
        x: &Tensor,
        task_idx: usize,
        train: bool,
        run_body: impl FnOnce(&dyn Fn() -> (Tensor, Tensor)) -> (Tensor, Tensor),
    ) -> (Tensor, Tensor) {
        if let Err(e) = self.check_input(x, task_idx) {
            panic!("Ipt::forward: {e}");
        }
        let f = x.apply(&self.sub_mean).apply(&self.head[task_idx]);
        let (res, tokens) = run_body(&|| self.body.forward(&f, task_idx, train));
        let res = res.to_kind(f.kind()) + &f;
        let out = res.apply(&self.tail[task_idx]).apply(&self.add_mean);
        (out, tokens)
    }
}
