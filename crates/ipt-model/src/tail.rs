//! The per-task tail (official `model/common.py`, `Upsampler`): an EDSR `Upsampler` (conv +
//! pixel shuffle) and a 3×3 conv back to RGB.

use tch::nn::{self, Module};
use tch::Tensor;

use crate::common::conv;

/// `tail.{i}.0`: for scale 2^n, n × [Conv2d(C → 4C, 3), PixelShuffle(2)]; for scale 3,
/// Conv2d(C → 9C, 3), PixelShuffle(3); for scale 1, nothing. The convolutions sit at the even
/// indices `0`, `2`, … of the official `nn.Sequential`.
#[derive(Debug)]
pub(crate) struct Upsampler {
    /// `(conv, pixel-shuffle factor)` in order.
    stages: Vec<(nn::Conv2D, i64)>,
}

impl Upsampler {
    /// An upsampler for `scale` ∈ {1, 3, 2^n}; other scales are rejected earlier by
    /// [`IptConfig::validate`](crate::IptConfig::validate) and build an identity here.
    pub(crate) fn new(p: nn::Path, scale: usize, n_feats: i64) -> Self {
        let factors: Vec<i64> = if scale == 3 {
            vec![3]
        } else if scale.is_power_of_two() {
            vec![2; scale.trailing_zeros() as usize]
        } else {
            vec![]
        };
        let stages = factors
            .into_iter()
            .enumerate()
            .map(|(j, r)| (conv(&p / (2 * j), n_feats, r * r * n_feats, 3), r))
            .collect();
        Self { stages }
    }
}

impl Module for Upsampler {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.stages
            .iter()
            .fold(xs.shallow_clone(), |x, (c, r)| x.apply(c).pixel_shuffle(*r))
    }
}

/// `tail.{i}`: `0` = [`Upsampler`], `1` = Conv2d(n_feats → 3, 3).
#[derive(Debug)]
pub(crate) struct Tail {
    upsampler: Upsampler,
    conv: nn::Conv2D,
}

impl Tail {
    /// A tail for one task of the given scale.
    pub(crate) fn new(p: nn::Path, scale: usize, n_feats: i64) -> Self {
        Self {
            upsampler: Upsampler::new(&p / "0", scale, n_feats),
            conv: conv(&p / "1", n_feats, 3, 3),
        }
    }
}

impl Module for Tail {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.upsampler).apply(&self.conv)
    }
}
