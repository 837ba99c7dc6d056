//! Multi-head attention with PyTorch `nn.MultiheadAttention(d, h, bias=False)` parameters
//! (spec §1.7): a packed `in_proj_weight` [3d, d] (rows W_q, W_k, W_v) and `out_proj` [d, d]
//! (bias optional, as written by PyTorch 1.5–1.8). Inputs are sequence-first [L, B, d].

use tch::nn;
use tch::Tensor;

use crate::common::{linear, torch_default_init};

/// How `in_proj_weight` is initialised (matters only when training from scratch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InProjInit {
    /// `nn.MultiheadAttention`'s own `xavier_uniform_` (decoder attentions).
    XavierUniform,
    /// `kaiming_uniform_(a = √5)`, which the official encoder layer applies after construction.
    KaimingUniformA5,
}

/// How the attention product softmax(QKᵀ/√d_h)V is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionKernel {
    /// [`Explicit`](Self::Explicit) for CPU tensors, [`Fused`](Self::Fused) otherwise.
    #[default]
    Auto,
    /// Scale Q by 1/√d_h, Q·Kᵀ, softmax, ·V: the operations of PyTorch's
    /// `nn.MultiheadAttention` (`need_weights=True`, the official code's path); on CPU its
    /// results are bit-identical to PyTorch's.
    Explicit,
    /// libtorch's `scaled_dot_product_attention` (flash / memory-efficient kernels): less
    /// memory and faster on GPUs; on CPU it differs from PyTorch's module by a few ulps
    /// (up to ≈3e-4 on outputs of magnitude ≈300 in the fixtures).
    Fused,
}

/// `self_attn` / `multihead_attn` of the transformer layers.
#[derive(Debug)]
pub struct MultiheadAttention {
    /// [3d, d]: rows [0, d) = W_q, [d, 2d) = W_k, [2d, 3d) = W_v.
    pub in_proj_weight: Tensor,
    /// `out_proj`: Linear(d → d), without bias unless the config asks for one.
    pub out_proj: nn::Linear,
    num_heads: i64,
    dropout: f64,
    /// The kernel used by [`forward`](Self::forward).
    pub kernel: AttentionKernel,
}

impl MultiheadAttention {
    /// Attention over `d`-dim tokens with `num_heads` contiguous heads of `d / num_heads`.
    pub fn new(
        p: nn::Path,
        d: i64,
        num_heads: i64,
        dropout: f64,
        init: InProjInit,
        out_bias: bool,
        no_norm: bool,
    ) -> Self {
        let in_init = match init {
            InProjInit::XavierUniform => {
                // fan_in = d, fan_out = 3d for a [3d, d] matrix.
                let bound = (6.0 / (4 * d) as f64).sqrt();
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                }
            }
            InProjInit::KaimingUniformA5 => torch_default_init(d),
        };
        let in_proj_weight = p.var("in_proj_weight", &[3 * d, d], in_init);
        let out_proj = linear(&p / "out_proj", d, d, out_bias, no_norm);
        if let Some(b) = &out_proj.bs {
            // nn.MultiheadAttention zeroes out_proj.bias in _reset_parameters.
            tch::no_grad(|| {
                let mut b = b.shallow_clone();
                let _ = b.zero_();
            });
        }
        Self {
            in_proj_weight,
            out_proj,
            num_heads,
            dropout,
            kernel: AttentionKernel::default(),
        }
    }

    /// softmax(Q Kᵀ / √d_h) V per head, then `out_proj`. `query` is [Lq, B, d], `key` and
    /// `value` are [Lk, B, d]; the result is [Lq, B, d]. Attention dropout only when `train`.
    pub fn forward(&self, query: &Tensor, key: &Tensor, value: &Tensor, train: bool) -> Tensor {
        let (lq, b, d) = query.size3().expect("attention query must be [L, B, d]");
        let lk = key.size()[0];
        let h = self.num_heads;
        let w = &self.in_proj_weight;
        let split = |x: &Tensor, block: i64, len: i64| {
            x.linear::<&Tensor>(&w.narrow(0, block * d, d), None)
                .view([len, b, h, d / h])
                .permute([1, 2, 0, 3])
        };
        let q = split(query, 0, lq);
        let k = split(key, 1, lk);
        let v = split(value, 2, lk);
        let p = if train { self.dropout } else { 0.0 };
        let fused = match self.kernel {
            AttentionKernel::Auto => query.device() != tch::Device::Cpu,
            AttentionKernel::Explicit => false,
            AttentionKernel::Fused => true,
        };
        let o = if fused {
            Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, p, false, None, false)
        } else {
            // The operations of torch's multi_head_attention_forward, in its order.
            let q = q * (1.0 / (d / h) as f64).sqrt();
            let a = q.matmul(&k.transpose(-2, -1)).softmax(-1, q.kind());
            let a = if p > 0.0 { a.dropout(p, true) } else { a };
            a.matmul(&v)
        };
        o.permute([2, 0, 1, 3])
            .contiguous()
            .view([lq, b, d])
            .apply(&self.out_proj)
    }
}

impl MultiheadAttention {
    /// Number of heads.
    pub fn num_heads(&self) -> i64 {
        self.num_heads
    }
}
