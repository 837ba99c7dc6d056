//! The per-task head (official `model/ipt.py`, `self.head`): conv 3×3 (3 → C), then two 5×5
//! residual blocks.

use tch::nn::{self, Module};
use tch::Tensor;

use crate::common::{conv, ResBlock};

/// `head.{i}`: `0` = Conv2d(3 → n_feats, 3), `1` and `2` = ResBlock(n_feats, 5).
#[derive(Debug)]
pub(crate) struct Head {
    conv: nn::Conv2D,
    res1: ResBlock,
    res2: ResBlock,
}

impl Head {
    /// A head with `n_feats` output channels.
    pub(crate) fn new(p: nn::Path, n_feats: i64) -> Self {
        Self {
            conv: conv(&p / "0", 3, n_feats, 3),
            res1: ResBlock::new(&p / "1", n_feats, 5),
            res2: ResBlock::new(&p / "2", n_feats, 5),
        }
    }
}

impl Module for Head {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.conv).apply(&self.res1).apply(&self.res2)
    }
}
