//! `IptConfig`: every hyperparameter of the IPT network (the official `option.py`), its presets and validation.

use ipt_degrade::Task;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::tasks::TaskMap;

/// The RGB mean of DIV2K used by the official `MeanShift` layers (official `model/common.py`, `MeanShift`).
pub const DIV2K_RGB_MEAN: [f64; 3] = [0.4488, 0.4371, 0.4040];

/// Hyperparameters of the IPT network. Field names follow the official `option.py`.
///
/// One head, one tail and (normally) one row of the task embedding exist per entry of
/// [`scales`](Self::scales); the task index used by [`Ipt::forward`](crate::Ipt::forward) is the
/// position in that list, and [`task_map`](Self::task_map) says which task each index serves. Missing fields take the value of [`IptConfig::default`] (the paper's
/// six-task pre-training model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IptConfig {
    /// Feature channels C of heads and tails (64).
    pub n_feats: usize,
    /// Side of the fixed square input the transformer accepts (48).
    pub patch_size: usize,
    /// Side of one token ("word") cut from the feature map (3).
    pub patch_dim: usize,
    /// Attention heads (12); must divide the embedding dimension.
    pub num_heads: usize,
    /// Encoder layers, and also decoder layers (12 each).
    pub num_layers: usize,
    /// Upscaling factor of each task, in task-index order (e.g. `[2, 3, 4, 1, 1, 1]`). 1 means
    /// a same-size task (denoise or derain). Allowed values: 1, 3 and powers of two.
    pub scales: Vec<usize>,
    /// Rows of the task embedding `query_embed` (≥ the number of tasks).
    pub num_queries: usize,
    /// Dropout probability of every dropout layer (0 in the paper).
    pub dropout: f64,
    /// Remove `linear_encoding`, `mlp_head` and `query_embed` (official `--no_mlp`).
    pub no_mlp: bool,
    /// Add the position embedding to q/k in every layer instead of once at the input.
    pub pos_every: bool,
    /// No position embedding at all.
    pub no_pos: bool,
    /// Replace every LayerNorm by the identity.
    pub no_norm: bool,
    /// Give the attention output projections a bias (`*.out_proj.bias`), as PyTorch 1.5–1.8 did.
    pub attn_out_bias: bool,
    /// Pixel value range (255: tensors hold floats on the 0–255 scale).
    pub rgb_range: f64,
    /// RGB mean subtracted by `sub_mean` and added back by `add_mean`, as a fraction of the range.
    pub rgb_mean: [f64; 3],
    /// What each task index is, when known (recorded by training; official `.pt` files do
    /// not say). Must match `scales` entry by entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<Task>>,
}

impl Default for IptConfig {
    fn default() -> Self {
        Self::base(&[2, 3, 4, 1, 1, 1])
    }
}

impl IptConfig {
    /// The paper's model: 64 features, 48-px input cut into 3×3 words (d = 576), 12 heads,
    /// 12 encoder + 12 decoder layers; one task embedding row per scale.
    pub fn base(scales: &[usize]) -> Self {
        Self {
            n_feats: 64,
            patch_size: 48,
            patch_dim: 3,
            num_heads: 12,
            num_layers: 12,
            scales: scales.to_vec(),
            num_queries: scales.len().max(1),
            dropout: 0.0,
            no_mlp: false,
            pos_every: false,
            no_pos: false,
            no_norm: false,
            attn_out_bias: false,
            rgb_range: 255.0,
            rgb_mean: DIV2K_RGB_MEAN,
            tasks: None,
        }
    }

    /// A small model for CPU tests, demos and quick training runs: the same 48-px input as the
    /// paper (so data pipelines and `forward_chop` are unchanged), 8 features, 4×4 words
    /// (d = 128, 144 tokens), 2 heads, 1 encoder + 1 decoder layer (792,098 parameters with six
    /// tasks; a batch-8 training step takes a fraction of a second on a 2-core CPU).
    pub fn tiny(scales: &[usize]) -> Self {
        Self {
            n_feats: 8,
            patch_dim: 4,
            num_heads: 2,
            num_layers: 1,
            ..Self::base(scales)
        }
    }

    /// A wider small model: 16 features, 3×3 words (d = 144, 256 tokens), 4 heads, 1 encoder +
    /// 1 decoder layer (1.24 M parameters with six tasks, under 5 MB as an f32 checkpoint). On a
    /// 2-core CPU it trains at about 0.6× the speed of [`tiny`](Self::tiny), and in equal
    /// wall time it scored lower, so the CPU recipe of `configs/small-*.toml` uses `tiny`
    /// (`docs/results.md` has the comparison).
    pub fn small(scales: &[usize]) -> Self {
        Self {
            n_feats: 16,
            patch_dim: 3,
            num_heads: 4,
            num_layers: 1,
            ..Self::base(scales)
        }
    }

    /// The command-line flags of the official code (`option.py` of huawei-noah/Pretrained-IPT)
    /// that build this network, for loading an exported `.pt` there with `main.py --pretrain`
    /// (which loads with `strict=False`: wrong flags leave layers random without a word).
    pub fn official_flags(&self) -> String {
        let scales: Vec<String> = self.scales.iter().map(|s| s.to_string()).collect();
        let mut flags = format!(
            "--scale {} --n_feats {} --patch_size {} --patch_dim {} --num_heads {} --num_layers {} \
             --num_queries {} --rgb_range {}",
            scales.join("+"),
            self.n_feats,
            self.patch_size,
            self.patch_dim,
            self.num_heads,
            self.num_layers,
            self.num_queries,
            self.rgb_range
        );
        for (on, flag) in [
            (self.no_mlp, "--no_mlp"),
            (self.pos_every, "--pos_every"),
            (self.no_pos, "--no_pos"),
            (self.no_norm, "--no_norm"),
        ] {
            if on {
                flags += " ";
                flags += flag;
            }
        }
        flags
    }

    /// Why spandrel (`libs/spandrel/spandrel/architectures/IPT/__init__.py`, the loader of
    /// chaiNNer and ComfyUI) would not rebuild this network from its state dict, if it would
    /// not: it infers every size from the tensors except the attention heads (always 12) and
    /// `pos_every` (always off), and it cannot build a model whose output projections have a
    /// bias or whose colour mean is not the official one.
    pub fn spandrel_mismatch(&self) -> Option<String> {
        if self.num_heads != 12 {
            return Some(format!(
                "spandrel assumes 12 attention heads; this model has {}{}",
                self.num_heads,
                if !self.embedding_dim().is_multiple_of(12) {
                    format!(
                        " (and d = {} is not divisible by 12, so building it fails)",
                        self.embedding_dim()
                    )
                } else {
                    " (it would build, but attend wrongly)".to_string()
                }
            ));
        }
        if self.pos_every {
            return Some(
                "spandrel assumes pos_every off; this model adds positions in every layer".into(),
            );
        }
        if self.attn_out_bias {
            return Some(
                "spandrel builds attention output projections without a bias; this model has one"
                    .into(),
            );
        }
        if self.rgb_mean != Self::base(&[1]).rgb_mean {
            return Some(
                "spandrel assumes the official colour mean (0.4488, 0.4371, 0.4040)".into(),
            );
        }
        None
    }

    /// Embedding dimension d = n_feats · patch_dim² (576 for the base model).
    pub fn embedding_dim(&self) -> usize {
        self.n_feats * self.patch_dim * self.patch_dim
    }

    /// Hidden width of every feed-forward block, 4·d.
    pub fn hidden_dim(&self) -> usize {
        4 * self.embedding_dim()
    }

    /// Side of the token grid, patch_size / patch_dim (16 for the base model).
    pub fn grid(&self) -> usize {
        self.patch_size / self.patch_dim.max(1)
    }

    /// Number of tokens N = grid² (256 for the base model).
    pub fn seq_len(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Number of tasks (heads and tails).
    pub fn num_tasks(&self) -> usize {
        self.scales.len()
    }

    /// Upscaling factor of task `task_idx`, if that task exists.
    pub fn scale(&self, task_idx: usize) -> Option<usize> {
        self.scales.get(task_idx).copied()
    }

    /// Which head serves which task ([`TaskMap`]): built from [`scales`](Self::scales) and the
    /// recorded [`tasks`](Self::tasks). Every task lookup and every `--task` goes through it.
    pub fn task_map(&self) -> TaskMap {
        TaskMap::new(&self.scales, self.tasks.as_deref())
    }

    /// The official six-task layout (see [`TaskMap::is_official_six_task`]).
    pub fn is_official_six_task(&self) -> bool {
        self.task_map().is_official_six_task()
    }

    /// Checks that the configuration describes a network that can be built.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.n_feats == 0 || self.patch_size == 0 || self.patch_dim == 0 {
            return bad(format!(
                "n_feats ({}), patch_size ({}) and patch_dim ({}) must be positive",
                self.n_feats, self.patch_size, self.patch_dim
            ));
        }
        if !self.patch_size.is_multiple_of(self.patch_dim) {
            return bad(format!(
                "patch_size {} is not divisible by patch_dim {}",
                self.patch_size, self.patch_dim
            ));
        }
        // the largest tensor sizes: the feed-forward weight (d × 4d) and the task embedding
        // (num_queries × d·tokens); libtorch sizes are i64
        let d = self
            .n_feats
            .checked_mul(self.patch_dim)
            .and_then(|x| x.checked_mul(self.patch_dim));
        let tokens = self.grid().checked_mul(self.grid());
        let fits = |x: Option<usize>| x.is_some_and(|x| i64::try_from(x).is_ok());
        let ffn = d.and_then(|d| d.checked_mul(d)?.checked_mul(4));
        let queries = d
            .zip(tokens)
            .and_then(|(d, t)| d.checked_mul(t)?.checked_mul(self.num_queries.max(1)));
        if !(fits(ffn) && fits(queries)) {
            return bad(format!(
                "n_feats {}, patch_dim {}, patch_size {} and num_queries {} give tensor sizes \
                 beyond what can be stored",
                self.n_feats, self.patch_dim, self.patch_size, self.num_queries
            ));
        }
        if self.num_layers == 0 {
            return bad(
                "num_layers must be ≥ 1 (each of the encoder and decoder needs a layer)".into(),
            );
        }
        if self.num_heads == 0 || !self.embedding_dim().is_multiple_of(self.num_heads) {
            return bad(format!(
                "embedding dim n_feats·patch_dim² = {} is not divisible by num_heads {}",
                self.embedding_dim(),
                self.num_heads
            ));
        }
        if self.scales.is_empty() {
            return bad("scales is empty: at least one task is needed".into());
        }
        for (i, &s) in self.scales.iter().enumerate() {
            if !(s == 1 || s == 3 || s.is_power_of_two()) {
                return bad(format!(
                    "scale {s} of task {i} is not supported (1, 3 or a power of two)"
                ));
            }
        }
        if !self.no_mlp && self.num_queries < self.scales.len() {
            return bad(format!(
                "num_queries {} is smaller than the number of tasks {}",
                self.num_queries,
                self.scales.len()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        if self.pos_every && self.no_pos {
            return bad("pos_every and no_pos cannot both be set".into());
        }
        if let Some(tasks) = &self.tasks {
            let task_scales: Vec<usize> = tasks.iter().map(|t| t.scale()).collect();
            if task_scales != self.scales {
                let list = |v: Vec<String>| v.join(", ");
                return bad(format!(
                    "tasks {} have scales {}, but scales is {}",
                    list(tasks.iter().map(|t| t.name().to_string()).collect()),
                    list(task_scales.iter().map(|s| s.to_string()).collect()),
                    list(self.scales.iter().map(|s| s.to_string()).collect()),
                ));
            }
        }
        if self.rgb_range.is_nan() || self.rgb_range <= 0.0 {
            return bad(format!("rgb_range {} must be positive", self.rgb_range));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_derived_sizes_match_the_paper() {
        let c = IptConfig::base(&[2]);
        assert_eq!(c.embedding_dim(), 576);
        assert_eq!(c.hidden_dim(), 2304);
        assert_eq!(c.seq_len(), 256);
        assert_eq!(c.num_queries, 1);
        c.validate().unwrap();
        IptConfig::default().validate().unwrap();
        assert_eq!(IptConfig::default().num_queries, 6);
    }

    #[test]
    fn tiny_is_valid() {
        let c = IptConfig::tiny(&[2, 3, 4, 1, 1, 1]);
        c.validate().unwrap();
        assert_eq!(c.embedding_dim(), 128);
        assert_eq!(c.seq_len(), 144);
    }

    #[test]
    fn invalid_configs_are_rejected_with_reasons() {
        let mut c = IptConfig::base(&[2]);
        c.num_heads = 7;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("not divisible by num_heads 7"), "{e}");
        let mut c = IptConfig::base(&[2]);
        c.patch_dim = 5;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("patch_dim 5"));
        let c = IptConfig::base(&[5]);
        assert!(c.validate().unwrap_err().to_string().contains("scale 5"));
        let mut c = IptConfig::base(&[2, 3]);
        c.num_queries = 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("num_queries"));
        assert!(IptConfig::base(&[]).validate().is_err());
    }

    #[test]
    fn recorded_tasks_are_validated_and_serialized() {
        let mut named = IptConfig::base(&[1, 1]);
        named.tasks = Some(vec![Task::Denoise50, Task::Derain]);
        named.validate().unwrap();
        assert_eq!(named.task_map().index_of(Task::Derain), Some(1));
        named.tasks = Some(vec![Task::Sr2, Task::Derain]);
        assert!(named.validate().unwrap_err().to_string().contains("tasks"));
        let json = serde_json::to_string(&named).unwrap();
        assert!(json.contains(r#""tasks":["sr2","derain"]"#), "{json}");
    }

    #[test]
    fn what_other_loaders_need_is_said() {
        let base = IptConfig::base(&[2, 3, 4, 1, 1, 1]);
        assert_eq!(
            base.spandrel_mismatch(),
            None,
            "the official shape loads in spandrel"
        );
        assert!(base
            .official_flags()
            .starts_with("--scale 2+3+4+1+1+1 --n_feats 64"));
        let every = IptConfig {
            pos_every: true,
            ..base.clone()
        };
        assert!(every.spandrel_mismatch().unwrap().contains("pos_every"));
        assert!(every.official_flags().ends_with("--pos_every"));
        let heads = IptConfig {
            num_heads: 4,
            ..base
        };
        assert!(heads
            .spandrel_mismatch()
            .unwrap()
            .contains("attend wrongly"));
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let c = IptConfig::tiny(&[2, 1]);
        let json = serde_json::to_string(&c).unwrap();
        let back: IptConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let partial: IptConfig = serde_json::from_str(r#"{"scales":[4],"num_queries":1}"#).unwrap();
        assert_eq!(partial, IptConfig::base(&[4]));
        assert!(serde_json::from_str::<IptConfig>(r#"{"n_feat":3}"#).is_err());
    }
}
