//! A whole `.pt` file (zip + pickle + storages) through the checkpoint reader, then config
//! inference. Seeds: `crates/ipt-model/tests/fixtures/*.pt`.
#![no_main]

use std::path::Path;

use ipt_model::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = checkpoint::read_state_dict_bytes(data, Path::new("fuzz.pt")) {
        let _ = checkpoint::infer_config(&sd, &checkpoint::InferOptions::default());
    }
});
