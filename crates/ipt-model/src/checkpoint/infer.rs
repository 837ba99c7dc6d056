//! Inferring an [`IptConfig`] from the keys and shapes of a state dict (the rules chaiNNer's spandrel also uses for IPT), or reading
//! it from safetensors metadata.

use std::collections::{BTreeSet, HashMap};

use super::safetensors_file::CONFIG_KEY;
use super::StateDict;
use crate::config::IptConfig;

/// What cannot be read from tensor shapes alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InferOptions {
    /// Attention heads. `None`: the config in the file's metadata, else 12 (every official
    /// checkpoint). When set, overrides the metadata too.
    pub num_heads: Option<usize>,
    /// Set `pos_every` (not visible in the weights).
    pub pos_every: bool,
    /// Input size to assume when the file has neither position nor task embeddings.
    pub patch_size: Option<usize>,
}

/// The config stored in the file's metadata, if any (with `opts.num_heads` applied), else one
/// inferred from its keys and shapes. The result is validated.
pub fn infer_config(sd: &StateDict, opts: &InferOptions) -> Result<IptConfig, String> {
    let mut cfg = match sd.metadata.get(CONFIG_KEY) {
        Some(json) => serde_json::from_str::<IptConfig>(json)
            .map_err(|e| format!("metadata `{CONFIG_KEY}` is not a valid IPT config: {e}"))?,
        None => from_shapes(sd, opts)?,
    };
    if let Some(h) = opts.num_heads {
        cfg.num_heads = h;
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn from_shapes(sd: &StateDict, opts: &InferOptions) -> Result<IptConfig, String> {
    let shapes: HashMap<&str, Vec<i64>> = sd
        .tensors
        .iter()
        .map(|(k, t)| (k.as_str(), t.size()))
        .collect();
    let shape = |k: &str| shapes.get(k).cloned();
    let require = |k: &str| {
        shape(k).ok_or_else(|| format!("cannot infer the model config: key {k} is missing"))
    };
    // A matrix-like key: present, at least 2-D, no zero sizes.
    let matrix = |k: &str| -> Result<Option<Vec<i64>>, String> {
        match shape(k) {
            Some(s) if s.len() >= 2 && s.iter().all(|&x| x > 0) => Ok(Some(s)),
            Some(s) => Err(format!("{k} has shape {s:?}, expected a non-empty matrix")),
            None => Ok(None),
        }
    };
    let indices = |prefix: &str| -> BTreeSet<usize> {
        shapes
            .keys()
            .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse().ok())
            .collect()
    };

    let head0 = require("head.0.0.weight")?;
    if head0.len() != 4 || head0[1] != 3 || head0[0] <= 0 {
        return Err(format!(
            "head.0.0.weight has shape {head0:?}, expected [C, 3, 3, 3]"
        ));
    }
    let nf = head0[0];

    let tasks = indices("head.");
    let n_tasks = tasks.len();
    if tasks != (0..n_tasks).collect::<BTreeSet<_>>() || indices("tail.") != tasks {
        return Err(format!(
            "head indices {tasks:?} and tail indices {:?} must both be 0..n",
            indices("tail.")
        ));
    }
    let mut scales = Vec::with_capacity(n_tasks);
    for i in 0..n_tasks {
        let ups: Vec<usize> = indices(&format!("tail.{i}.0.")).into_iter().collect();
        let outs: Vec<i64> = ups
            .iter()
            .map(|j| {
                let k = format!("tail.{i}.0.{j}.weight");
                matrix(&k)?
                    .map(|s| s[0])
                    .ok_or_else(|| format!("{k} is missing"))
            })
            .collect::<Result<_, _>>()?;
        let scale = match outs.as_slice() {
            [] => 1,
            [o] if *o == 9 * nf => 3,
            os if os.iter().all(|&o| o == 4 * nf)
                && ups.iter().enumerate().all(|(k, &j)| j == 2 * k) =>
            {
                1usize << os.len()
            }
            _ => {
                return Err(format!(
                    "tail.{i}: upsampler convolutions {ups:?} with {outs:?} output channels \
                     match no scale (n_feats {nf})"
                ))
            }
        };
        scales.push(scale);
    }

    let layers = indices("body.encoder.layers.");
    let num_layers = layers.iter().next_back().map_or(0, |&l| l + 1);
    if layers.len() != num_layers || indices("body.decoder.layers.") != layers {
        return Err(format!(
            "encoder layers {layers:?} and decoder layers {:?} must both be 0..n",
            indices("body.decoder.layers.")
        ));
    }
    let d = match (
        matrix("body.encoder.layers.0.linear1.weight")?,
        matrix("body.position_encoding.pe.weight")?,
    ) {
        (Some(s), _) => s[1],
        (None, Some(s)) => s[1],
        (None, None) => return Err("cannot infer the embedding dimension".into()),
    };
    if d % nf != 0 {
        return Err(format!(
            "embedding dim {d} is not a multiple of n_feats {nf}"
        ));
    }
    let pd = isqrt(d / nf);
    if pd * pd * nf != d {
        return Err(format!("embedding dim {d} is not n_feats {nf} × a square"));
    }
    let query = matrix("body.query_embed.weight")?;
    let pe = matrix("body.position_encoding.pe.weight")?;
    let seq = match (&pe, &query) {
        (Some(p), _) => Some(p[0]),
        (None, Some(q)) => Some(q[1] / d),
        (None, None) => None,
    };
    let patch_size = match seq {
        Some(n) => {
            let g = isqrt(n);
            if g * g != n {
                return Err(format!("token count {n} is not a square"));
            }
            (g * pd) as usize
        }
        None => opts.patch_size.unwrap_or(48),
    };

    let mut cfg = IptConfig::base(&scales);
    cfg.n_feats = nf as usize;
    cfg.patch_dim = pd as usize;
    cfg.patch_size = patch_size;
    cfg.num_layers = num_layers;
    cfg.num_heads = opts.num_heads.unwrap_or(12);
    cfg.no_mlp = !shapes.contains_key("body.linear_encoding.weight");
    cfg.num_queries = query.map_or(n_tasks, |q| q[0] as usize);
    cfg.no_pos = pe.is_none();
    cfg.pos_every = opts.pos_every;
    cfg.no_norm = num_layers > 0 && !shapes.contains_key("body.encoder.layers.0.norm1.weight");
    cfg.attn_out_bias = shapes.contains_key("body.encoder.layers.0.self_attn.out_proj.bias");
    Ok(cfg)
}

fn isqrt(n: i64) -> i64 {
    if n <= 0 {
        return 0;
    }
    let mut r = (n as f64).sqrt() as i64;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}
