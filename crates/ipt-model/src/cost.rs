//! What one window costs: the multiply-accumulates (MACs) of a forward pass of the network on one
//! `patch_size`² window, from its config (Fig. 2 of the paper; the official `model/ipt.py`).
//!
//! Counted: every convolution (the mean shifts, the head's 3×3 and two 5×5 residual blocks, the
//! tail's upsampling and output convolutions, each at the resolution it runs at), every linear
//! layer of the body (`linear_encoding`, the attention projections, the feed-forward blocks,
//! `mlp_head`), and the two products of each attention (`QKᵀ` and the weighted sum of `V`, N² · d
//! each). Not counted: additions of biases, residuals and embeddings, normalisations, softmax,
//! activations, unfolding and pixel shuffles (a few per cent of the memory traffic, no MACs).
//! Training is taken as about three forward passes (the backward pass computes two products per
//! forward one), the usual rule.

use crate::IptConfig;

/// MACs of one forward pass through head `task`, the body and tail `task`, for one window.
/// `None` when `task` is not in the network.
pub fn forward_macs(cfg: &IptConfig, task: usize) -> Option<u64> {
    let scale = *cfg.scales.get(task)? as u64;
    let p = cfg.patch_size as u64;
    let c = cfg.n_feats as u64;
    let d = cfg.embedding_dim() as u64;
    let n = cfg.seq_len() as u64;
    let hidden = cfg.hidden_dim() as u64;
    let layers = cfg.num_layers as u64;
    let conv = |pixels: u64, cin: u64, cout: u64, k: u64| pixels * cin * cout * k * k;
    let linear = |cin: u64, cout: u64| n * cin * cout;

    // mean shifts (1×1, 3 → 3) at the input and output resolutions
    let mean_shifts = conv(p * p, 3, 3, 1) + conv(p * p * scale * scale, 3, 3, 1);
    // head: 3×3 (3 → C), two residual blocks of two 5×5 (C → C)
    let head = conv(p * p, 3, c, 3) + 4 * conv(p * p, c, c, 5);
    // body
    let attention = linear(d, 3 * d) + 2 * n * n * d + linear(d, d);
    let cross_attention = linear(d, d) + linear(d, 2 * d) + 2 * n * n * d + linear(d, d);
    let feed_forward = linear(d, hidden) + linear(hidden, d);
    let encoder = layers * (attention + feed_forward);
    let decoder = layers * (attention + cross_attention + feed_forward);
    let mlp = if cfg.no_mlp {
        0
    } else {
        linear(d, d) + linear(d, hidden) + linear(hidden, d)
    };
    // tail: upsampling stages (3×3, C → r²C, at the resolution before each shuffle), then 3×3
    // (C → 3) at the output resolution
    let stages: Vec<u64> = match scale {
        1 => vec![],
        3 => vec![3],
        s if s.is_power_of_two() => vec![2; s.trailing_zeros() as usize],
        _ => vec![],
    };
    let mut side = p;
    let mut upsample = 0;
    for r in stages {
        upsample += conv(side * side, c, r * r * c, 3);
        side *= r;
    }
    let tail = upsample + conv(p * p * scale * scale, c, 3, 3);
    Some(mean_shifts + head + encoder + decoder + mlp + tail)
}

/// MACs of one training step per patch: three forward passes' worth (forward, and a backward
/// pass of about twice its work).
pub fn train_macs_per_patch(cfg: &IptConfig, task: usize) -> Option<u64> {
    forward_macs(cfg, task).map(|m| 3 * m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ipt;
    use tch::{nn, Device};

    /// The same count from the network's own weights: each convolution's kernel at the
    /// resolution its key says it runs at, each linear weight over the N tokens, plus the two
    /// attention products, which have no weights.
    fn macs_from_weights(cfg: &IptConfig, task: usize) -> u64 {
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = Ipt::new(&vs.root(), cfg).unwrap();
        let (p, s) = (cfg.patch_size as u64, cfg.scales[task] as u64);
        let n = cfg.seq_len() as u64;
        let mut total = 0u64;
        for (key, t) in vs.variables() {
            let shape: Vec<u64> = t.size().iter().map(|&x| x as u64).collect();
            let numel: u64 = shape.iter().product();
            let parts: Vec<&str> = key.split('.').collect();
            let weight = key.ends_with("weight");
            if !weight {
                continue;
            }
            let pixels = match parts.as_slice() {
                ["sub_mean", ..] => p * p,
                ["add_mean", ..] => p * p * s * s,
                ["head", t, ..] if *t == task.to_string() => p * p,
                ["tail", t, "1", ..] if *t == task.to_string() => p * p * s * s,
                ["tail", t, "0", j, ..] if *t == task.to_string() => {
                    // upsampling stage j/2 runs at the side before its shuffle
                    let stage = j.parse::<u32>().unwrap() / 2;
                    let side = if s == 3 { p } else { p * 2u64.pow(stage) };
                    side * side
                }
                ["body", ..]
                    if shape.len() == 2 && !key.contains("embed") && !key.contains("position") =>
                {
                    n
                }
                _ => 0,
            };
            total += pixels * numel;
        }
        // QKᵀ and the weighted sum of V: 2·N²·d per attention, three per encoder + decoder layer
        let d = cfg.embedding_dim() as u64;
        total + 3 * cfg.num_layers as u64 * 2 * n * n * d
    }

    #[test]
    fn the_closed_form_counts_what_the_weights_do() {
        for scales in [vec![2, 3, 4, 1], vec![2]] {
            let cfg = IptConfig::tiny(&scales);
            for (task, scale) in scales.iter().enumerate() {
                assert_eq!(
                    forward_macs(&cfg, task),
                    Some(macs_from_weights(&cfg, task)),
                    "tiny, scale {scale}"
                );
            }
        }
        let no_mlp = IptConfig {
            no_mlp: true,
            ..IptConfig::tiny(&[2])
        };
        assert_eq!(
            forward_macs(&no_mlp, 0),
            Some(macs_from_weights(&no_mlp, 0))
        );
        assert_eq!(forward_macs(&no_mlp, 1), None);
    }

    #[test]
    fn the_base_window_costs_about_33_gmac() {
        // 12 + 12 layers of d = 576 on 256 tokens: the body's ~31.7 GMAC, plus ~1.3 for the
        // head's 5×5 blocks and the tail
        let m = forward_macs(&IptConfig::base(&[2]), 0).unwrap() as f64 / 1e9;
        assert!((32.0..34.5).contains(&m), "{m}");
    }
}
