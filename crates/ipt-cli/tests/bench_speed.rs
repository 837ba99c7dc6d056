//! `ipt bench-speed`: every row measured and positive, the JSON shape, and clear errors.

use std::process::{Command, Output};

fn bench_speed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipt"))
        .arg("bench-speed")
        .args(args)
        // no training images: the embedded procedural ones
        .env("IPT_TRAIN_DATA", "/nonexistent/ipt-train-data")
        .output()
        .expect("running the ipt binary")
}

#[test]
fn quick_run_measures_every_row() {
    let out = bench_speed(&["--quick", "--seconds", "0.05", "--json", "--device", "cpu"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(v["header"]["device"], "Cpu");
    assert!(v["header"]["data_images"]
        .as_str()
        .unwrap()
        .contains("embedded"));
    let rows = v["rows"].as_array().unwrap();
    let works: Vec<&str> = rows.iter().map(|r| r["work"].as_str().unwrap()).collect();
    // tiny restore ×2 (exact, fast, exact with fused attention), tiny training (L1, L1 + SupCon),
    // decode, 6 synthesize,
    // 6 × 2 pipeline (1 and 4 crops per image), bicubic and SSIM on one thread and on all
    assert_eq!(rows.len(), 3 + 2 + 1 + 6 + 12 + 4, "{works:?}");
    for w in [
        "restore tiny ×2, exact chop",
        "train tiny, L1 + 0.1·SupCon",
        "data pipeline sr4, 4 crops per image",
        "SSIM-Y, 1 thread",
    ] {
        assert!(works.contains(&w), "{w} missing from {works:?}");
    }
    for r in rows {
        let value = r["value"].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "{r}");
        // network rows carry their achieved GMAC/s (rate × MACs), the others none
        let work = r["work"].as_str().unwrap();
        let network = work.starts_with("restore") || work.starts_with("train");
        assert_eq!(r["gmac_per_s"].is_f64(), network, "{r}");
        if work == "restore tiny ×2, exact chop" {
            let macs = ipt_model::cost::forward_macs(&ipt_model::IptConfig::tiny(&[2]), 0).unwrap();
            let g = r["gmac_per_s"].as_f64().unwrap();
            assert!(
                (g - value * macs as f64 / 1e9).abs() < 1e-9 * g.max(1.0),
                "{r}"
            );
        }
    }
}

#[test]
fn bad_arguments_are_errors_naming_them() {
    let out = bench_speed(&["--quick", "--images", "/nonexistent/speed-images"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/nonexistent/speed-images"), "{err}");
    let out = bench_speed(&["--seconds", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seconds 0"));
}
