//! Building blocks shared by heads and tails (official `model/common.py`): the "same"
//! convolution, `MeanShift` and the 5×5 `ResBlock`; plus PyTorch's default initialisers.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// PyTorch's default initialiser for conv and linear weights and biases,
/// `kaiming_uniform_(a = √5)`, i.e. U(−1/√fan_in, 1/√fan_in).
pub(crate) fn torch_default_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// The official `default_conv`: Conv2d(cin → cout, k, padding k/2, bias), initialised as
/// PyTorch does.
pub(crate) fn conv(p: nn::Path, cin: i64, cout: i64, k: i64) -> nn::Conv2D {
    let init = torch_default_init(cin * k * k);
    let cfg = nn::ConvConfig {
        padding: k / 2,
        ws_init: init,
        bs_init: init,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// How the weight of a body `nn.Linear` is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinearInit {
    /// PyTorch's default, [`torch_default_init`].
    TorchDefault,
    /// N(0, std = 1/fan_in), which the official `VisionTransformer.__init__` applies to every
    /// body linear layer when `no_norm` is set ([`linear_no_norm_init`]).
    NoNorm,
}

/// The options of one body `nn.Linear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinearOpts {
    /// Whether the layer has a bias (initialised as PyTorch does).
    pub bias: bool,
    /// The weight initialisation.
    pub init: LinearInit,
}

impl LinearOpts {
    /// A biased layer initialised as the body's `no_norm` flag says.
    pub(crate) fn body(no_norm: bool) -> Self {
        LinearOpts {
            bias: true,
            init: if no_norm {
                LinearInit::NoNorm
            } else {
                LinearInit::TorchDefault
            },
        }
    }
}

/// A `nn.Linear(cin, cout)` built as `opts` says.
pub(crate) fn linear(p: nn::Path, cin: i64, cout: i64, opts: LinearOpts) -> nn::Linear {
    let init = torch_default_init(cin);
    let cfg = nn::LinearConfig {
        ws_init: match opts.init {
            LinearInit::TorchDefault => init,
            LinearInit::NoNorm => linear_no_norm_init(cin),
        },
        bs_init: Some(init),
        bias: opts.bias,
    };
    nn::linear(p, cin, cout, cfg)
}

/// The weight initialiser of every `nn.Linear` in the body when `no_norm` is set:
/// N(0, std = 1/fan_in) (official `VisionTransformer.__init__`).
pub(crate) fn linear_no_norm_init(fan_in: i64) -> nn::Init {
    nn::Init::Randn {
        mean: 0.0,
        stdev: 1.0 / fan_in as f64,
    }
}

/// `MeanShift`: a frozen 1×1 convolution, identity weight, bias `sign·rgb_range·rgb_mean`.
/// Its `weight` and `bias` are non-trainable variables that are part of the state dict.
#[derive(Debug)]
pub(crate) struct MeanShift {
    /// Shape \[3, 3, 1, 1\], the identity.
    pub(crate) weight: Tensor,
    /// Shape \[3\].
    pub(crate) bias: Tensor,
}

impl MeanShift {
    /// `sign` = −1 for `sub_mean`, +1 for `add_mean`.
    pub(crate) fn new(p: nn::Path, rgb_range: f64, rgb_mean: [f64; 3], sign: f64) -> Self {
        let dev = p.device();
        let eye = Tensor::eye(3, (Kind::Float, dev)).view([3, 3, 1, 1]);
        let b: Vec<f32> = rgb_mean
            .iter()
            .map(|m| (sign * rgb_range * m) as f32)
            .collect();
        let bias = Tensor::from_slice(&b).to_device(dev);
        Self {
            weight: p.add("weight", eye, false),
            bias: p.add("bias", bias, false),
        }
    }
}

impl Module for MeanShift {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.conv2d(&self.weight, Some(&self.bias), [1, 1], [0, 0], [1, 1], 1)
    }
}

/// The EDSR residual block without batch norm: `x + conv(relu(conv(x)))`, res_scale 1.
/// Its convolutions are `body.0` and `body.2` (index 1 is the ReLU).
#[derive(Debug)]
pub(crate) struct ResBlock {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
}

impl ResBlock {
    /// A block of two `n_feats → n_feats` convolutions of kernel `k`.
    pub(crate) fn new(p: nn::Path, n_feats: i64, k: i64) -> Self {
        let body = &p / "body";
        Self {
            conv1: conv(&body / "0", n_feats, n_feats, k),
            conv2: conv(&body / "2", n_feats, n_feats, k),
        }
    }
}

impl Module for ResBlock {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.conv1).relu().apply(&self.conv2) + xs
    }
}
