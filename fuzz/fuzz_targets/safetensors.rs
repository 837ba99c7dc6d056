//! A `.safetensors` checkpoint with our `ipt_config` metadata, through the whole load path:
//! read, config from the metadata (checked against the tensors), network built on the CPU,
//! weights copied in strictly. Seeds: small checkpoints written by `ipt convert` from
//! `crates/ipt-model/tests/fixtures`.
#![no_main]

use std::path::Path;

use ipt_model::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let Ok(sd) = checkpoint::read_state_dict_bytes(data, path) else {
        return;
    };
    let Ok(config) = checkpoint::infer_config(&sd, &checkpoint::InferOptions::default()) else {
        return;
    };
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    if ipt_model::Ipt::new(&vs.root(), &config).is_ok() {
        let _ = checkpoint::copy_into(&vs, &sd, path);
    }
});
