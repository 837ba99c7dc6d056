//! The `data.pkl` of a `.pt` file: the input is the pickle, wrapped here in a valid
//! `torch.save` zip (the zip's checksums would otherwise stop most mutations of the pickle)
//! with 64 storages of 2 KiB, `data/0` … `data/63`, then read like a file. Seeds: the
//! `data.pkl` entries of `crates/ipt-model/tests/fixtures/*.pt`.
#![no_main]

use std::io::Write;
use std::path::Path;

use ipt_model::checkpoint;
use libfuzzer_sys::fuzz_target;

fn torch_zip(pickle: &[u8]) -> zip::result::ZipResult<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts)?;
    zip.write_all(pickle)?;
    zip.start_file("archive/byteorder", opts)?;
    zip.write_all(b"little")?;
    let storage: Vec<u8> = (0..2048u32).map(|i| (i * 37 % 251) as u8).collect();
    for key in 0..64 {
        zip.start_file(format!("archive/data/{key}"), opts)?;
        zip.write_all(&storage)?;
    }
    Ok(zip.finish()?.into_inner())
}

fuzz_target!(|pickle: &[u8]| {
    // the pickle on its own, then as a checkpoint
    let _ = checkpoint::pickle::unpickle(pickle);
    let Ok(file) = torch_zip(pickle) else { return };
    if let Ok(sd) = checkpoint::read_state_dict_bytes(&file, Path::new("fuzz.pt")) {
        let _ = checkpoint::infer_config(&sd, &checkpoint::InferOptions::default());
    }
});
