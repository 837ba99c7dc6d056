//! Write a randomly initialised IPT checkpoint (safetensors, config in the metadata), for demos,
//! timing and tests of `ipt restore` without the official weights.
//!
//! ```text
//! cargo run --release -p ipt-model --example random_checkpoint -- base 2 /tmp/ipt_base_x2.safetensors
//! cargo run -p ipt-model --example random_checkpoint -- tiny 2,3,4,1,1,1 /tmp/ipt_tiny6.safetensors
//! ```
//! Arguments: preset (`base` or `tiny`), comma-separated task scales, output path. The seed is
//! fixed (0), so the file is reproducible.

use std::path::PathBuf;

use ipt_model::{checkpoint, Ipt, IptConfig};
use tch::{nn, Device};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [preset, scales, out] = args.as_slice() else {
        anyhow::bail!("usage: random_checkpoint base|tiny SCALES OUT.safetensors (e.g. base 2 x2.safetensors)");
    };
    let scales = scales
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = match preset.as_str() {
        "base" => IptConfig::base(&scales),
        "tiny" => IptConfig::tiny(&scales),
        other => anyhow::bail!("unknown preset {other:?}: expected base or tiny"),
    };
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Ipt::new(&vs.root(), &config)?;
    let out = PathBuf::from(out);
    checkpoint::save(&out, &vs, &config)?;
    println!("wrote {} ({preset}, scales {scales:?})", out.display());
    Ok(())
}
