//! Experiment configs (`configs/*.toml`) through `ExperimentConfig::from_toml_str` (parse and
//! validate). Seeds: `configs/*.toml`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ipt_train::ExperimentConfig::from_toml_str(text, Path::new("fuzz.toml"));
    }
});
