//! Pre-norm transformer encoder and decoder layers of the IPT body (official `model/ipt.py`,
//! `TransformerEncoderLayer`, `TransformerDecoderLayer`). Tensors are sequence-first, [N, B, d].

use tch::nn::{self, Module};
use tch::Tensor;

use crate::attention::{AttentionConfig, AttentionKernel, InProjInit, MultiheadAttention};
use crate::common::{linear, LinearOpts};

/// Sizes and flags shared by every layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerConfig {
    /// Embedding dimension d.
    pub d: i64,
    /// Attention heads.
    pub num_heads: i64,
    /// Feed-forward hidden width (4d).
    pub hidden: i64,
    /// Dropout probability.
    pub dropout: f64,
    /// LayerNorms are identities.
    pub no_norm: bool,
    /// `out_proj` has a bias.
    pub attn_out_bias: bool,
}

impl LayerConfig {
    /// The options of every linear layer of the body.
    pub(crate) fn linear(&self) -> LinearOpts {
        LinearOpts::body(self.no_norm)
    }

    /// An attention block of this layer shape whose `in_proj_weight` starts as `init`.
    fn attention(&self, init: InProjInit) -> AttentionConfig {
        AttentionConfig {
            d: self.d,
            num_heads: self.num_heads,
            dropout: self.dropout,
            in_proj_init: init,
            out_proj: LinearOpts {
                bias: self.attn_out_bias,
                ..self.linear()
            },
        }
    }
}

/// `tensor + pos`, or `tensor` when there is no position term.
fn with_pos(t: &Tensor, pos: Option<&Tensor>) -> Tensor {
    match pos {
        Some(p) => t + p,
        None => t.shallow_clone(),
    }
}

fn dropout(x: Tensor, p: f64, train: bool) -> Tensor {
    if train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x
    }
}

/// `nn.LayerNorm(d)` (eps 1e-5), or the identity under `no_norm`.
#[derive(Debug)]
pub(crate) struct Norm(Option<nn::LayerNorm>);

impl Norm {
    fn new(p: nn::Path, c: &LayerConfig) -> Self {
        Norm((!c.no_norm).then(|| nn::layer_norm(p, vec![c.d], Default::default())))
    }

    fn params(&self) -> Vec<&Tensor> {
        self.0
            .iter()
            .flat_map(|ln| ln.ws.iter().chain(ln.bs.iter()))
            .collect()
    }
}

impl Module for Norm {
    fn forward(&self, xs: &Tensor) -> Tensor {
        match &self.0 {
            Some(ln) => xs.apply(ln),
            None => xs.shallow_clone(),
        }
    }
}

/// The feed-forward block: `linear2(dropout(relu(linear1(x))))`.
#[derive(Debug)]
struct FeedForward {
    linear1: nn::Linear,
    linear2: nn::Linear,
}

impl FeedForward {
    fn new(p: &nn::Path, c: &LayerConfig) -> Self {
        Self {
            linear1: linear(p / "linear1", c.d, c.hidden, c.linear()),
            linear2: linear(p / "linear2", c.hidden, c.d, c.linear()),
        }
    }

    fn forward(&self, x: &Tensor, p: f64, train: bool) -> Tensor {
        dropout(x.apply(&self.linear1).relu(), p, train).apply(&self.linear2)
    }

    fn params(&self) -> Vec<&Tensor> {
        [&self.linear1, &self.linear2]
            .into_iter()
            .flat_map(|l| std::iter::once(&l.ws).chain(l.bs.iter()))
            .collect()
    }
}

fn attention_params(a: &MultiheadAttention) -> Vec<&Tensor> {
    std::iter::once(&a.in_proj_weight)
        .chain(std::iter::once(&a.out_proj.ws))
        .chain(a.out_proj.bs.iter())
        .collect()
}

/// `body.encoder.layers.{L}`: pre-norm self-attention and feed-forward.
#[derive(Debug)]
pub(crate) struct EncoderLayer {
    self_attn: MultiheadAttention,
    ff: FeedForward,
    norm1: Norm,
    norm2: Norm,
    dropout: f64,
}

impl EncoderLayer {
    /// One encoder layer; its `in_proj_weight` gets `kaiming_uniform_(a = √5)` as in the
    /// official code.
    pub(crate) fn new(p: nn::Path, c: &LayerConfig) -> Self {
        Self {
            self_attn: MultiheadAttention::new(
                &p / "self_attn",
                &c.attention(InProjInit::KaimingUniformA5),
            ),
            ff: FeedForward::new(&p, c),
            norm1: Norm::new(&p / "norm1", c),
            norm2: Norm::new(&p / "norm2", c),
            dropout: c.dropout,
        }
    }

    /// x ← x + Attn(LN1(x) (+pos), LN1(x) (+pos), LN1(x)); x ← x + FFN(LN2(x)).
    pub(crate) fn forward(&self, src: &Tensor, pos: Option<&Tensor>, train: bool) -> Tensor {
        let s2 = src.apply(&self.norm1);
        let qk = with_pos(&s2, pos);
        let a = self.self_attn.forward(&qk, &qk, &s2, train);
        let src = src + dropout(a, self.dropout, train);
        let s2 = src.apply(&self.norm2);
        &src + dropout(
            self.ff.forward(&s2, self.dropout, train),
            self.dropout,
            train,
        )
    }

    /// Selects how the attention is computed.
    pub(crate) fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        self.self_attn.kernel = kernel;
    }

    /// Every parameter, in a fixed order (used to clone layer 0 into the others).
    pub(crate) fn params(&self) -> Vec<&Tensor> {
        let mut v = attention_params(&self.self_attn);
        v.extend(self.ff.params());
        v.extend(self.norm1.params());
        v.extend(self.norm2.params());
        v
    }
}

/// `body.decoder.layers.{L}`: pre-norm self-attention, cross-attention to the encoder output
/// and feed-forward, with the task embedding added to queries (and self-attention keys).
#[derive(Debug)]
pub(crate) struct DecoderLayer {
    self_attn: MultiheadAttention,
    multihead_attn: MultiheadAttention,
    ff: FeedForward,
    norm1: Norm,
    norm2: Norm,
    norm3: Norm,
    dropout: f64,
}

impl DecoderLayer {
    /// One decoder layer (attentions keep `nn.MultiheadAttention`'s xavier initialisation).
    pub(crate) fn new(p: nn::Path, c: &LayerConfig) -> Self {
        let attention = c.attention(InProjInit::XavierUniform);
        let mha = |name: &str| MultiheadAttention::new(&p / name, &attention);
        Self {
            self_attn: mha("self_attn"),
            multihead_attn: mha("multihead_attn"),
            ff: FeedForward::new(&p, c),
            norm1: Norm::new(&p / "norm1", c),
            norm2: Norm::new(&p / "norm2", c),
            norm3: Norm::new(&p / "norm3", c),
            dropout: c.dropout,
        }
    }

    /// Self-attention on LN1(tgt) with the task embedding on q and k;
    /// cross-attention from LN2(tgt) + task embedding to the raw `memory` (+pos on keys);
    /// feed-forward on LN3(tgt); each with a residual.
    pub(crate) fn forward(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        pos: Option<&Tensor>,
        query_pos: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let t2 = tgt.apply(&self.norm1);
        let qk = with_pos(&t2, query_pos);
        let a = self.self_attn.forward(&qk, &qk, &t2, train);
        let tgt = tgt + dropout(a, self.dropout, train);
        let t2 = tgt.apply(&self.norm2);
        let a = self.multihead_attn.forward(
            &with_pos(&t2, query_pos),
            &with_pos(memory, pos),
            memory,
            train,
        );
        let tgt = tgt + dropout(a, self.dropout, train);
        let t2 = tgt.apply(&self.norm3);
        &tgt + dropout(
            self.ff.forward(&t2, self.dropout, train),
            self.dropout,
            train,
        )
    }

    /// Selects how both attentions are computed.
    pub(crate) fn set_attention_kernel(&mut self, kernel: AttentionKernel) {
        self.self_attn.kernel = kernel;
        self.multihead_attn.kernel = kernel;
    }

    /// Every parameter, in a fixed order (used to clone layer 0 into the others).
    pub(crate) fn params(&self) -> Vec<&Tensor> {
        let mut v = attention_params(&self.self_attn);
        v.extend(attention_params(&self.multihead_attn));
        v.extend(self.ff.params());
        v.extend(self.norm1.params());
        v.extend(self.norm2.params());
        v.extend(self.norm3.params());
        v
    }
}

/// Copies every parameter of `layers[0]` into the other layers, so that the stack starts as
/// deep copies of one initialised layer (DETR's `_get_clones`, which the official
/// `model/ipt.py` copies).
fn clone_first<'a>(params: impl Fn(usize) -> Vec<&'a Tensor>, n: usize) {
    if n < 2 {
        return;
    }
    let first = params(0);
    tch::no_grad(|| {
        for l in 1..n {
            for (dst, src) in params(l).into_iter().zip(&first) {
                dst.shallow_clone().copy_(src);
            }
        }
    });
}

/// `body.encoder`: `num_layers` encoder layers, no final norm.
#[derive(Debug)]
pub(crate) struct Encoder {
    /// `body.encoder.layers.{L}`.
    pub(crate) layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// `n` identical copies of one freshly initialised layer.
    pub(crate) fn new(p: nn::Path, c: &LayerConfig, n: usize) -> Self {
        let lp = &p / "layers";
        let layers: Vec<EncoderLayer> = (0..n).map(|l| EncoderLayer::new(&lp / l, c)).collect();
        clone_first(|l| layers[l].params(), n);
        Self { layers }
    }

    /// Runs the layers in order; `pos` is passed to each (only with `pos_every`).
    pub(crate) fn forward(&self, src: &Tensor, pos: Option<&Tensor>, train: bool) -> Tensor {
        self.layers.iter().fold(src.shallow_clone(), |x, layer| {
            layer.forward(&x, pos, train)
        })
    }
}

/// `body.decoder`: `num_layers` decoder layers, no final norm.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// `body.decoder.layers.{L}`.
    pub(crate) layers: Vec<DecoderLayer>,
}

impl Decoder {
    /// `n` identical copies of one freshly initialised layer.
    pub(crate) fn new(p: nn::Path, c: &LayerConfig, n: usize) -> Self {
        let lp = &p / "layers";
        let layers: Vec<DecoderLayer> = (0..n).map(|l| DecoderLayer::new(&lp / l, c)).collect();
        clone_first(|l| layers[l].params(), n);
        Self { layers }
    }

    /// Runs the layers in order against the fixed `memory`; the same `query_pos` (task
    /// embedding) enters every layer.
    pub(crate) fn forward(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        pos: Option<&Tensor>,
        query_pos: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        self.layers.iter().fold(tgt.shallow_clone(), |x, layer| {
            layer.forward(&x, memory, pos, query_pos, train)
        })
    }
}
