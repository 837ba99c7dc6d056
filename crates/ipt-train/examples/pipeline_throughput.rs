//! Throughput of the data pipeline alone at the base settings: 192×192 HR crops (SR×4, LR 48)
//! decoded from image files, batch 64, no model.
//!
//! `cargo run --release -p ipt-train --example pipeline_throughput -- [FOLDER] [WORKERS...]`
//! (default folder: `$IPT_DATA/train/BSD200`, default workers: 1 2).

use std::sync::Arc;
use std::time::Instant;

use ipt_degrade::rain::RainSource;
use ipt_degrade::Task;
use ipt_train::data::pipeline::BatchFactory;
use ipt_train::data::{DataStats, ImageSource, Pipeline, Sampler, SamplerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = match args.next() {
        Some(f) => std::path::PathBuf::from(f),
        None => match ipt_degrade::data::dataset_root() {
            Some(root) => root.join("train/BSD200"),
            None => {
                println!("skipped: no dataset root (set IPT_DATA) and no folder given");
                return Ok(());
            }
        },
    };
    let workers: Vec<usize> = {
        let w: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
        if w.is_empty() {
            vec![1, 2]
        } else {
            w
        }
    };
    let batch = 64;
    let n_batches = 6u64;
    for &w in &workers {
        let source = ImageSource::folder(&folder)?;
        let n = source.len();
        let sampler = Sampler::new(
            SamplerConfig {
                seed: 0,
                tasks: vec![Task::Sr4],
                weights: vec![1.0],
                batch_size: batch,
                patch: 48,
                augment: false,
                repeat: 4,
                rank: 0,
                world_size: 1,
            },
            n,
        )?;
        let factory = Arc::new(BatchFactory {
            sampler,
            source,
            rain: RainSource::default(),
            max_bad_fraction: 0.01,
            bad_file_grace: 10,
            stats: DataStats::default(),
        });
        let mut p = Pipeline::start(factory, 0, w, 4);
        p.next_batch()?; // warm-up
        let t = Instant::now();
        for _ in 0..n_batches {
            p.next_batch()?;
        }
        let secs = t.elapsed().as_secs_f64();
        let pps = (n_batches as usize * batch) as f64 / secs;
        println!(
            "{} ({n} images): {w} worker(s): {pps:.1} patches/s ({:.1} per worker), {:.2} s per batch of {batch}, skipped {} small",
            folder.display(),
            pps / w as f64,
            secs / n_batches as f64,
            p.stats().small_skips()
        );
    }
    Ok(())
}
