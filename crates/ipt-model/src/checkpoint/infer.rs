//! Inferring an [`IptConfig`] from the keys and shapes of a state dict (the rules chaiNNer's spandrel also uses for IPT), or reading
//! it from safetensors metadata.

use std::collections::{BTreeSet, HashMap};

use super::safetensors_file::CONFIG_KEY;
use super::StateDict;
use crate::config::IptConfig;
use crate::error::ModelError;

/// Why no config could be read or inferred from a state dict.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The metadata holds a config that does not parse.
    #[error("metadata `{CONFIG_KEY}` is not a valid IPT config: {0}")]
    Metadata(serde_json::Error),
    /// The metadata's config describes another network than the file's tensors.
    #[error("metadata `{CONFIG_KEY}` disagrees with the file's tensors: {}", differences(.0))]
    MetadataMismatch(Vec<FieldDifference>),
    /// The metadata's config has heads/tails or layers whose tensors the file lacks.
    #[error(
        "the file lacks the tensors of {} that its metadata `{CONFIG_KEY}` records ({}): a file \
         cut short or edited",
        .missing.join(", "), differences(.fields)
    )]
    MissingParts {
        /// Key prefixes of the missing parts (`head.5.*`, `body.encoder.layers.3.*`).
        missing: Vec<String>,
        /// The fields that disagree.
        fields: Vec<FieldDifference>,
    },
    /// A key needed to infer the config is absent.
    #[error("cannot infer the model config: key {0} is missing")]
    MissingKey(String),
    /// A tensor has a shape that does not fit the network.
    #[error("{key} has shape {shape:?}, expected {expected}")]
    Shape {
        /// The tensor's key.
        key: String,
        /// Its shape.
        shape: Vec<i64>,
        /// What was expected, in words.
        expected: &'static str,
    },
    /// Head/tail (or encoder/decoder layer) indices that are not both `0..n`.
    #[error("{first} {first_indices:?} and {second} {second_indices:?} must both be 0..n")]
    Indices {
        /// The first family ("head indices", "encoder layers").
        first: &'static str,
        /// Its indices.
        first_indices: Vec<usize>,
        /// The second family ("tail indices", "decoder layers").
        second: &'static str,
        /// Its indices.
        second_indices: Vec<usize>,
    },
    /// A tail's upsampler matches no supported scale.
    #[error(
        "tail.{task}: upsampler convolutions {convs:?} with {channels:?} output channels match \
         no scale (n_feats {n_feats})"
    )]
    NoScale {
        /// The task (tail) index.
        task: usize,
        /// The indices of its upsampler convolutions.
        convs: Vec<usize>,
        /// Their output channels.
        channels: Vec<i64>,
        /// The feature channels.
        n_feats: i64,
    },
    /// Neither an encoder layer nor the position embedding gives the embedding dimension.
    #[error("cannot infer the embedding dimension (no encoder layer and no position embedding)")]
    NoEmbeddingDim,
    /// The embedding dimension is not `n_feats · patch_dim²`.
    #[error("embedding dim {dim} is not n_feats {n_feats} × a square (patch_dim²)")]
    EmbeddingDim {
        /// The embedding dimension.
        dim: i64,
        /// The feature channels.
        n_feats: i64,
    },
    /// The number of tokens is not a square.
    #[error("token count {0} is not a square")]
    TokenCount(i64),
    /// The config read or inferred is invalid.
    #[error(transparent)]
    Invalid(#[from] ModelError),
}

/// One field on which a file's metadata config and its tensors disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDifference {
    /// The config field.
    pub field: &'static str,
    /// Its value in the metadata.
    pub metadata: String,
    /// Its value according to the tensors.
    pub tensors: String,
}

fn differences(d: &[FieldDifference]) -> String {
    d.iter()
        .map(|f| {
            format!(
                "{} is {} in the metadata but {} in the tensors",
                f.field, f.metadata, f.tensors
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

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
///
/// A metadata config must describe the network the tensors hold (every size visible in the
/// shapes is compared), so that a file cannot make its reader build a network far larger than
/// its contents.
pub fn infer_config(sd: &StateDict, opts: &InferOptions) -> Result<IptConfig, InferError> {
    let mut cfg = match sd.metadata.get(CONFIG_KEY) {
        Some(json) => {
            let meta = serde_json::from_str::<IptConfig>(json).map_err(InferError::Metadata)?;
            meta.validate()?;
            match from_shapes(sd, opts) {
                Ok(shapes) => agree(&meta, &shapes)?,
                // A body without parameters: nothing in it to check (or to make large).
                Err(InferError::NoEmbeddingDim) if meta.num_layers == 0 => {}
                Err(e) => return Err(e),
            }
            meta
        }
        None => from_shapes(sd, opts)?,
    };
    if let Some(h) = opts.num_heads {
        cfg.num_heads = h;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Checks that `meta` (from the metadata) has the sizes `shapes` (inferred from the tensors)
/// shows.
fn agree(meta: &IptConfig, shapes: &IptConfig) -> Result<(), InferError> {
    let mut diffs = Vec::new();
    let mut cmp = |field: &'static str, m: String, t: String| {
        if m != t {
            diffs.push(FieldDifference {
                field,
                metadata: m,
                tensors: t,
            });
        }
    };
    cmp(
        "n_feats",
        meta.n_feats.to_string(),
        shapes.n_feats.to_string(),
    );
    cmp(
        "patch_dim",
        meta.patch_dim.to_string(),
        shapes.patch_dim.to_string(),
    );
    cmp(
        "num_layers",
        meta.num_layers.to_string(),
        shapes.num_layers.to_string(),
    );
    cmp(
        "scales",
        format!("{:?}", meta.scales),
        format!("{:?}", shapes.scales),
    );
    cmp("no_mlp", meta.no_mlp.to_string(), shapes.no_mlp.to_string());
    cmp("no_pos", meta.no_pos.to_string(), shapes.no_pos.to_string());
    if !meta.no_mlp {
        cmp(
            "num_queries",
            meta.num_queries.to_string(),
            shapes.num_queries.to_string(),
        );
    }
    if !(meta.no_mlp && meta.no_pos) {
        // the token count is visible in the position or task embedding
        cmp(
            "patch_size",
            meta.patch_size.to_string(),
            shapes.patch_size.to_string(),
        );
    }
    if meta.num_layers > 0 {
        cmp(
            "no_norm",
            meta.no_norm.to_string(),
            shapes.no_norm.to_string(),
        );
        cmp(
            "attn_out_bias",
            meta.attn_out_bias.to_string(),
            shapes.attn_out_bias.to_string(),
        );
    }
    if diffs.is_empty() {
        return Ok(());
    }
    // parts the metadata records and the tensors lack, named by their keys, when that is all
    // that differs (heads/tails cut off the end, or layers)
    let only_counts = diffs
        .iter()
        .all(|d| d.field == "scales" || d.field == "num_layers")
        && meta.scales.starts_with(&shapes.scales)
        && meta.num_layers >= shapes.num_layers;
    if !only_counts {
        return Err(InferError::MetadataMismatch(diffs));
    }
    let mut missing: Vec<String> = (shapes.scales.len()..meta.scales.len())
        .flat_map(|i| [format!("head.{i}.*"), format!("tail.{i}.*")])
        .collect();
    missing.extend((shapes.num_layers..meta.num_layers).flat_map(|i| {
        [
            format!("body.encoder.layers.{i}.*"),
            format!("body.decoder.layers.{i}.*"),
        ]
    }));
    const SHOWN: usize = 6;
    if missing.len() > SHOWN {
        let more = missing.len() - SHOWN;
        missing.truncate(SHOWN);
        missing.push(format!("{more} more"));
    }
    if missing.is_empty() {
        Err(InferError::MetadataMismatch(diffs))
    } else {
        Err(InferError::MissingParts {
            missing,
            fields: diffs,
        })
    }
}

fn from_shapes(sd: &StateDict, opts: &InferOptions) -> Result<IptConfig, InferError> {
    let shapes: HashMap<&str, Vec<i64>> = sd
        .tensors
        .iter()
        .map(|(k, t)| (k.as_str(), t.size()))
        .collect();
    let shape = |k: &str| shapes.get(k).cloned();
    let require = |k: &str| shape(k).ok_or_else(|| InferError::MissingKey(k.to_owned()));
    // A matrix-like key: present, at least 2-D, no zero sizes.
    let matrix = |k: &str| -> Result<Option<Vec<i64>>, InferError> {
        match shape(k) {
            Some(s) if s.len() >= 2 && s.iter().all(|&x| x > 0) => Ok(Some(s)),
            Some(shape) => Err(InferError::Shape {
                key: k.to_owned(),
                shape,
                expected: "a non-empty matrix",
            }),
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
        return Err(InferError::Shape {
            key: "head.0.0.weight".into(),
            shape: head0,
            expected: "[C, 3, 3, 3]",
        });
    }
    let nf = head0[0];

    let tasks = indices("head.");
    let n_tasks = tasks.len();
    if tasks != (0..n_tasks).collect::<BTreeSet<_>>() || indices("tail.") != tasks {
        return Err(InferError::Indices {
            first: "head indices",
            first_indices: tasks.into_iter().collect(),
            second: "tail indices",
            second_indices: indices("tail.").into_iter().collect(),
        });
    }
    let mut scales = Vec::with_capacity(n_tasks);
    for i in 0..n_tasks {
        let ups: Vec<usize> = indices(&format!("tail.{i}.0.")).into_iter().collect();
        let outs: Vec<i64> = ups
            .iter()
            .map(|j| {
                let k = format!("tail.{i}.0.{j}.weight");
                matrix(&k)?.map(|s| s[0]).ok_or(InferError::MissingKey(k))
            })
            .collect::<Result<_, _>>()?;
        let scale = match outs.as_slice() {
            [] => 1,
            [o] if *o == 9 * nf => 3,
            os if os.iter().all(|&o| o == 4 * nf)
                && ups.iter().enumerate().all(|(k, &j)| j == 2 * k)
                && os.len() < 16 =>
            {
                1usize << os.len()
            }
            _ => {
                return Err(InferError::NoScale {
                    task: i,
                    convs: ups,
                    channels: outs,
                    n_feats: nf,
                })
            }
        };
        scales.push(scale);
    }

    let layers = indices("body.encoder.layers.");
    let num_layers = layers.iter().next_back().map_or(0, |&l| l + 1);
    if layers.len() != num_layers || indices("body.decoder.layers.") != layers {
        return Err(InferError::Indices {
            first: "encoder layers",
            first_indices: layers.into_iter().collect(),
            second: "decoder layers",
            second_indices: indices("body.decoder.layers.").into_iter().collect(),
        });
    }
    let d = match (
        matrix("body.encoder.layers.0.linear1.weight")?,
        matrix("body.position_encoding.pe.weight")?,
    ) {
        (Some(s), _) => s[1],
        (None, Some(s)) => s[1],
        (None, None) => return Err(InferError::NoEmbeddingDim),
    };
    let pd = isqrt(d / nf);
    if d % nf != 0 || pd * pd * nf != d {
        return Err(InferError::EmbeddingDim {
            dim: d,
            n_feats: nf,
        });
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
                return Err(InferError::TokenCount(n));
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
