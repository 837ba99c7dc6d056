//! Multi-head attention with the parameters of PyTorch's `nn.MultiheadAttention(d, h,
//! bias=False)`, as the official `model/ipt.py` uses it: a packed `in_proj_weight` [3d, d]
//! (rows W_q, W_k, W_v) and `out_proj` [d, d] (bias optional, as written by PyTorch 1.5–1.8).
//! Inputs are sequence-first [L, B, d].

use tch::nn;
use tch::Tensor;

use crate::common::{linear, torch_default_init, LinearOpts};

/// How `in_proj_weight` is initialised (matters only when training from scratch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InProjInit {
    /// `nn.MultiheadAttention`'s own `xavier_uniform_` (decoder attentions).
    XavierUniform,
    /// `kaiming_uniform_(a = √5)`, which the official encoder layer applies after construction.
    KaimingUniformA5,
}

/// How the attention product softmax(QKᵀ/√d_h)V is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionKernel {
    /// [`Explicit`](Self::Explicit) for CPU tensors, [`Fused`](Self::Fused) otherwise. (On a
    /// 2-core CPU the fused kernel restores base-model windows about 1.2× faster, but its float32
    /// result is further from the float64 network and up to ≈0.03 from PyTorch's on 0–255: see
    /// `examples/kernel_error.rs` and docs/performance.md.)
    #[default]
    Auto,
    /// Scale Q by 1/√d_h, Q·Kᵀ, softmax, ·V: the operations of PyTorch's
    /// `nn.MultiheadAttention` (`need_weights=True`, the official code's path); in float64 the
    /// network matches PyTorch's to ~1e-12, and in float32 on CPU it has matched PyTorch on the
    /// same machine bit for bit (float32 results of both move by ulps from one CPU to another).
    Explicit,
    /// libtorch's `scaled_dot_product_attention` (flash / memory-efficient kernels): less
    /// memory and faster on GPUs; on CPU it differs from PyTorch's module by a few ulps
    /// (up to ≈4e-4 on outputs of magnitude ≈300 in the fixtures).
    Fused,
}

/// The shape and initialisation of one attention block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AttentionConfig {
    /// Token dimension d.
    pub d: i64,
    /// Heads; each takes a contiguous slice of d / num_heads features.
    pub num_heads: i64,
    /// Attention dropout (training only).
    pub dropout: f64,
    /// How `in_proj_weight` starts.
    pub in_proj_init: InProjInit,
    /// `out_proj`'s bias and initialisation.
    pub out_proj: LinearOpts,
}

/// `self_attn` / `multihead_attn` of the transformer layers.
#[derive(Debug)]
pub(crate) struct MultiheadAttention {
    /// [3d, d]: rows [0, d) = W_q, [d, 2d) = W_k, [2d, 3d) = W_v.
    pub(crate) in_proj_weight: Tensor,
    /// `out_proj`: Linear(d → d), without bias unless the config asks for one.
    pub(crate) out_proj: nn::Linear,
    num_heads: i64,
    dropout: f64,
    /// The kernel used by [`forward`](Self::forward).
    pub(crate) kernel: AttentionKernel,
}

impl MultiheadAttention {
    /// The attention block `c` describes, its variables under `p`.
    pub(crate) fn new(p: nn::Path, c: &AttentionConfig) -> Self {
        let AttentionConfig {
            d,
            num_heads,
            dropout,
            ..
        } = *c;
        let in_init = match c.in_proj_init {
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
        let out_proj = linear(&p / "out_proj", d, d, c.out_proj);
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
    pub(crate) fn forward(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        train: bool,
    ) -> Tensor {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::LinearInit;
    use tch::{Device, Kind};

    fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
        f64::try_from(
            (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
                .abs()
                .max(),
        )
        .unwrap()
    }

    fn to_vec(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    /// softmax(Q Kᵀ/√dh) V per batch item and head, with plain loops in f64.
    fn naive_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        w_in: &Tensor,
        w_out: &Tensor,
        b_out: &Tensor,
        h: usize,
    ) -> Vec<f64> {
        let (lq, b, d) = q.size3().unwrap();
        let lk = k.size()[0] as usize;
        let (lq, b, d) = (lq as usize, b as usize, d as usize);
        let dh = d / h;
        let (q, k, v) = (to_vec(q), to_vec(k), to_vec(v));
        let (w, wo, bo) = (to_vec(w_in), to_vec(w_out), to_vec(b_out));
        // project: x [L, B, d] with rows of w starting at `row0`
        let proj = |x: &[f64], l: usize, row0: usize| {
            let mut out = vec![0.0; l * b * d];
            for i in 0..l {
                for bb in 0..b {
                    for o in 0..d {
                        let mut s = 0.0;
                        for c in 0..d {
                            s += x[(i * b + bb) * d + c] * w[(row0 + o) * d + c];
                        }
                        out[(i * b + bb) * d + o] = s;
                    }
                }
            }
            out
        };
        let (pq, pk, pv) = (proj(&q, lq, 0), proj(&k, lk, d), proj(&v, lk, 2 * d));
        let mut concat = vec![0.0; lq * b * d];
        for bb in 0..b {
            for hh in 0..h {
                for i in 0..lq {
                    let scores: Vec<f64> = (0..lk)
                        .map(|j| {
                            (0..dh)
                                .map(|e| {
                                    pq[(i * b + bb) * d + hh * dh + e]
                                        * pk[(j * b + bb) * d + hh * dh + e]
                                })
                                .sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let ex: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = ex.iter().sum();
                    for e in 0..dh {
                        concat[(i * b + bb) * d + hh * dh + e] = (0..lk)
                            .map(|j| ex[j] / z * pv[(j * b + bb) * d + hh * dh + e])
                            .sum();
                    }
                }
            }
        }
        let mut out = vec![0.0; lq * b * d];
        for r in 0..lq * b {
            for o in 0..d {
                out[r * d + o] = bo[o]
                    + (0..d)
                        .map(|c| concat[r * d + c] * wo[o * d + c])
                        .sum::<f64>();
            }
        }
        out
    }

    #[test]
    fn attention_kernels_match_naive_f64_attention() {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let (d, h) = (24i64, 3usize);
        let mut mha = MultiheadAttention::new(
            vs.root() / "attn",
            &AttentionConfig {
                d,
                num_heads: h as i64,
                dropout: 0.0,
                in_proj_init: InProjInit::XavierUniform,
                out_proj: LinearOpts {
                    bias: true,
                    init: LinearInit::TorchDefault,
                },
            },
        );
        tch::no_grad(|| {
            let _ = mha
                .out_proj
                .bs
                .as_ref()
                .unwrap()
                .shallow_clone()
                .uniform_(-0.5, 0.5);
        });
        let q = Tensor::randn([5, 2, d], (Kind::Float, Device::Cpu));
        let k = Tensor::randn([7, 2, d], (Kind::Float, Device::Cpu));
        let v = Tensor::randn([7, 2, d], (Kind::Float, Device::Cpu));
        let want = naive_attention(
            &q,
            &k,
            &v,
            &mha.in_proj_weight,
            &mha.out_proj.ws,
            mha.out_proj.bs.as_ref().unwrap(),
            h,
        );
        let want = Tensor::from_slice(&want).view([5, 2, d]);
        for kernel in [
            AttentionKernel::Explicit,
            AttentionKernel::Fused,
            AttentionKernel::Auto,
        ] {
            mha.kernel = kernel;
            let got = tch::no_grad(|| mha.forward(&q, &k, &v, false));
            let err = max_abs(&got, &want);
            eprintln!("{kernel:?} attention vs naive f64: max abs error {err:.2e}");
            assert!(err < 1e-5, "{kernel:?}: {err}");
        }
    }
}
