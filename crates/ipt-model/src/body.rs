//! The transformer body `VisionTransformer` (official `model/ipt.py`, `VisionTransformer`): cut
//! the feature map into words, encode, decode with the task embedding, and fold back.

use tch::nn;
use tch::{Kind, Tensor};

use crate::attention::AttentionKernel;
use crate::common::{linear, LinearOpts};
use crate::config::IptConfig;
use crate::transformer::{Decoder, Encoder, LayerConfig};

/// Cuts [B, C, H, W] into non-overlapping `pd`×`pd` words, sequence-first:
/// [N = (H/pd)·(W/pd), B, C·pd²]. Token t = py·(W/pd) + px; feature = c·pd² + ky·pd + kx,
/// exactly as `F.unfold(x, pd, stride=pd).transpose(1, 2).transpose(0, 1)`.
pub(crate) fn unfold_tokens(x: &Tensor, pd: i64) -> Tensor {
    let (b, c, h, w) = x.size4().expect("unfold_tokens expects [B, C, H, W]");
    let (gh, gw) = (h / pd, w / pd);
    x.reshape([b, c, gh, pd, gw, pd])
        .permute([2, 4, 0, 1, 3, 5])
        .reshape([gh * gw, b, c * pd * pd])
}

/// The inverse of [`unfold_tokens`]: [N, B, C·pd²] → [B, C, gh·pd, gw·pd] (`F.fold` with
/// kernel = stride = pd, which for non-overlapping windows is a pure rearrangement).
pub(crate) fn fold_tokens(t: &Tensor, gh: i64, gw: i64, pd: i64) -> Tensor {
    let (n, b, f) = t.size3().expect("fold_tokens expects [N, B, C·pd²]");
    debug_assert_eq!(n, gh * gw);
    let c = f / (pd * pd);
    t.reshape([gh, gw, b, c, pd, pd])
        .permute([2, 3, 0, 4, 1, 5])
        .reshape([b, c, gh * pd, gw * pd])
}

/// `body.position_encoding`: a learned embedding `pe` [N, d] looked up with the int64 buffer
/// `position_ids` = arange(N) of shape [1, N] (both in the state dict).
#[derive(Debug)]
pub(crate) struct LearnedPositionalEncoding {
    /// `pe.weight`, [N, d], initialised N(0, 1).
    pub(crate) pe: Tensor,
    /// `position_ids`, [1, N] int64, non-trainable.
    pub(crate) position_ids: Tensor,
}

impl LearnedPositionalEncoding {
    fn new(p: nn::Path, n: i64, d: i64) -> Self {
        let pe = (&p / "pe").randn_standard("weight", &[n, d]);
        let ids = Tensor::arange(n, (Kind::Int64, p.device())).view([1, n]);
        Self {
            pe,
            position_ids: p.add("position_ids", ids, false),
        }
    }

    /// The position term, [N, 1, d] (broadcasts over the batch).
    pub(crate) fn forward(&self) -> Tensor {
        Tensor::embedding(&self.pe, &self.position_ids, -1, false, false).transpose(0, 1)
    }
}

/// `body`: linear encoding, learned positions, task embedding (`query_embed`), encoder,
/// decoder and MLP head, between an unfold and a fold of the feature map.
#[derive(Debug)]
pub(crate) struct VisionTransformer {
    /// `linear_encoding` (absent under `no_mlp`).
    pub(crate) linear_encoding: Option<nn::Linear>,
    /// `mlp_head.0` and `mlp_head.3` (absent under `no_mlp`).
    pub(crate) mlp_head: Option<(nn::Linear, nn::Linear)>,
    /// `query_embed.weight`, [num_queries, N·d] (absent under `no_mlp`).
    pub(crate) query_embed: Option<Tensor>,
    /// `encoder`.
    pub(crate) encoder: Encoder,
    /// `decoder`.
    pub(crate) decoder: Decoder,
    /// `position_encoding` (absent under `no_pos`).
    pub(crate) position_encoding: Option<LearnedPositionalEncoding>,
    patch_dim: i64,
    grid: i64,
    d: i64,
    dropout: f64,
    pos_every: bool,
}

impl VisionTransformer {
    /// Builds the body for a validated config.
    pub(crate) fn new(p: nn::Path, cfg: &IptConfig) -> Self {
        let d = cfg.embedding_dim() as i64;
        let n = cfg.seq_len() as i64;
        let lc = LayerConfig {
            d,
            num_heads: cfg.num_heads as i64,
            hidden: cfg.hidden_dim() as i64,
            dropout: cfg.dropout,
            no_norm: cfg.no_norm,
            attn_out_bias: cfg.attn_out_bias,
        };
        let mlp = !cfg.no_mlp;
        let lin = LinearOpts::body(cfg.no_norm);
        let linear_encoding = mlp.then(|| linear(&p / "linear_encoding", d, d, lin));
        let mlp_head = mlp.then(|| {
            let m = &p / "mlp_head";
            (
                linear(&m / "0", d, lc.hidden, lin),
                linear(&m / "3", lc.hidden, d, lin),
            )
        });
        let query_embed = mlp.then(|| {
            (&p / "query_embed").randn_standard("weight", &[cfg.num_queries as i64, n * d])
        });
        let encoder = Encoder::new(&p / "encoder", &lc, cfg.num_layers);
        let decoder = Decoder::new(&p / "decoder", &lc, cfg.num_layers);
        let position_encoding =
            (!cfg.no_pos).then(|| LearnedPositionalEncoding::new(&p / "position_encoding", n, d));
        Self {
            linear_encoding,
            mlp_head,
            query_embed,
            encoder,
            decoder,
            position_encoding,
            patch_dim: cfg.patch_dim as i64,
            grid: cfg.grid() as i64,
            d,
            dropout: cfg.dropout,
            pos_every: cfg.pos_every,
        }
    }

    /// Selects how every attention of the encoder and decoder is computed.
    pub(crate) fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        for l in &mut self.encoder.layers {
            l.set_attention_kernel(kernel);
        }
        for l in &mut self.decoder.layers {
            l.set_attention_kernel(kernel);
        }
    }

    fn drop(&self, x: Tensor, train: bool) -> Tensor {
        if train && self.dropout > 0.0 {
            x.dropout(self.dropout, true)
        } else {
            x
        }
    }

    /// [B, C, P, P] features → ([B, C, P, P] features, [B, N, d] decoder tokens). The tokens
    /// are the body output after the MLP-head residual, before folding (the contrastive
    /// feature `con_x`).
    pub(crate) fn forward(&self, x: &Tensor, task: usize, train: bool) -> (Tensor, Tensor) {
        let b = x.size()[0];
        let mut x = unfold_tokens(x, self.patch_dim);
        if let Some(le) = &self.linear_encoding {
            x = self.drop(x.apply(le), train) + &x;
        }
        let query_pos = self.query_embed.as_ref().map(|q| {
            q.get(task as i64)
                .view([-1, 1, self.d])
                .expand([-1, b, self.d], false)
        });
        let pos = self.position_encoding.as_ref().map(|pe| pe.forward());
        x = match (&pos, self.pos_every) {
            (Some(pos), true) => {
                let m = self.encoder.forward(&x, Some(pos), train);
                self.decoder
                    .forward(&m, &m, Some(pos), query_pos.as_ref(), train)
            }
            (Some(pos), false) => {
                let m = self.encoder.forward(&(x + pos), None, train);
                self.decoder
                    .forward(&m, &m, None, query_pos.as_ref(), train)
            }
            (None, _) => {
                let m = self.encoder.forward(&x, None, train);
                self.decoder
                    .forward(&m, &m, None, query_pos.as_ref(), train)
            }
        };
        if let Some((l0, l3)) = &self.mlp_head {
            let h = self.drop(x.apply(l0), train).relu().apply(l3);
            x = self.drop(h, train) + &x;
        }
        let tokens = x.transpose(0, 1);
        let out = fold_tokens(&x, self.grid, self.grid, self.patch_dim);
        (out, tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

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

    #[test]
    fn token_cut_follows_the_official_unfold_order() {
        let (b, c, pd, gh, gw) = (2i64, 3i64, 3i64, 2i64, 4i64);
        let x = Tensor::randn([b, c, gh * pd, gw * pd], (Kind::Float, Device::Cpu));
        let t = unfold_tokens(&x, pd);
        assert_eq!(t.size(), vec![gh * gw, b, c * pd * pd]);
        // token = py·gw + px, feature = c·pd² + ky·pd + kx
        let xv = to_vec(&x);
        let tv = to_vec(&t);
        let (w, hh) = (gw * pd, gh * pd);
        for py in 0..gh {
            for px in 0..gw {
                for bb in 0..b {
                    for cc in 0..c {
                        for ky in 0..pd {
                            for kx in 0..pd {
                                let tok = py * gw + px;
                                let f = cc * pd * pd + ky * pd + kx;
                                let got = tv[((tok * b + bb) * c * pd * pd + f) as usize];
                                let want = xv[(((bb * c + cc) * hh + py * pd + ky) * w
                                    + px * pd
                                    + kx) as usize];
                                assert_eq!(got, want);
                            }
                        }
                    }
                }
            }
        }
        // Equal to F.unfold(x, pd, stride=pd).transpose(1, 2).transpose(0, 1) ...
        let im2col = x
            .im2col([pd, pd], [1, 1], [0, 0], [pd, pd])
            .transpose(1, 2)
            .transpose(0, 1);
        assert_eq!(max_abs(&t, &im2col), 0.0);
        // ... and folding back is F.fold, the exact inverse.
        let back = fold_tokens(&t, gh, gw, pd);
        assert_eq!(max_abs(&back, &x), 0.0);
        let col2im = t.transpose(0, 1).transpose(1, 2).col2im(
            [gh * pd, gw * pd],
            [pd, pd],
            [1, 1],
            [0, 0],
            [pd, pd],
        );
        assert_eq!(max_abs(&back, &col2im), 0.0);
    }
}
