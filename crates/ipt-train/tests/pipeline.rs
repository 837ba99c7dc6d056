//! The batch sequence does not depend on the number of worker threads; several crops of one
//! decoded image (`crops_per_image`) cost one decode.

use std::sync::Arc;

use ipt_degrade::rain::RainSource;
use ipt_degrade::Task;
use ipt_train::config::SmallImages;
use ipt_train::data::pipeline::{BatchFactory, DataError};
use ipt_train::data::{DataStats, ImageSource, Pipeline, Sampler, SamplerConfig};

fn factory(augment: bool) -> Arc<BatchFactory> {
    factory_over(
        ImageSource::embedded(9, 10, 200),
        augment,
        Task::OFFICIAL.to_vec(),
        3,
        1,
        SmallImages::Skip,
    )
}

fn factory_over(
    source: ImageSource,
    augment: bool,
    tasks: Vec<Task>,
    batch_size: usize,
    crops_per_image: usize,
    small_images: SmallImages,
) -> Arc<BatchFactory> {
    let sampler = Sampler::new(
        SamplerConfig {
            seed: 4,
            weights: vec![1.0; tasks.len()],
            tasks,
            batch_size,
            patch: 48,
            augment,
            repeat: crops_per_image,
            crops_per_image,
            rank: 0,
            world_size: 1,
        },
        source.len(),
    )
    .unwrap();
    Arc::new(BatchFactory {
        sampler,
        source,
        rain: RainSource::default(),
        max_bad_fraction: 0.01,
        bad_file_grace: 10,
        small_images,
        stats: DataStats::default(),
    })
}

type Flat = (usize, u64, Vec<f32>, Vec<f32>);

fn collect(workers: usize, start: u64, n: usize, augment: bool) -> Vec<Flat> {
    let mut p = Pipeline::start(factory(augment), start, workers, 2);
    (0..n)
        .map(|_| {
            let b = p.next_batch().unwrap();
            let flat = |t: &tch::Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
            (b.plan.task_pos, b.plan.index, flat(&b.lr), flat(&b.hr))
        })
        .collect()
}

#[test]
fn batches_are_identical_for_any_worker_count_and_across_epochs() {
    // 10 images / batch 3 = 3 batches per epoch: batches 2..9 cross two epoch boundaries.
    let one = collect(1, 2, 8, true);
    let three = collect(3, 2, 8, true);
    assert_eq!(one.len(), three.len());
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.0, b.0, "task of batch {}", a.1);
        assert_eq!(a.1, b.1);
        assert!(a.2 == b.2 && a.3 == b.3, "batch {} differs", a.1);
    }
    assert_eq!(
        one.iter().map(|b| b.1).collect::<Vec<_>>(),
        (2..10).collect::<Vec<_>>()
    );
    // Shapes follow the task: LR 48, HR 48·scale.
    for (pos, _, lr, hr) in &one {
        let s = Task::OFFICIAL[*pos].scale();
        assert_eq!(lr.len(), 3 * 3 * 48 * 48);
        assert_eq!(hr.len(), 3 * 3 * 48 * s * 48 * s);
    }
    // Starting in the middle (a resume) gives the same batches as running through.
    let resumed = collect(2, 5, 5, true);
    for (a, b) in one[3..].iter().zip(&resumed) {
        assert!(a.1 == b.1 && a.2 == b.2 && a.3 == b.3);
    }
    // Different seeds of flips: augmented and plain crops differ somewhere.
    let plain = collect(1, 2, 8, false);
    assert!(one.iter().zip(&plain).any(|(a, b)| a.3 != b.3));
}

#[test]
fn crops_of_one_image_share_one_decode() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6u32 {
        let img = image::RgbImage::from_fn(120, 100, |x, y| {
            image::Rgb([
                (x * 2 + i * 40) as u8,
                (y * 2) as u8,
                ((x * y + i) % 256) as u8,
            ])
        });
        img.save(dir.path().join(format!("{i}.png"))).unwrap();
    }
    let f = factory_over(
        ImageSource::folder(dir.path()).unwrap(),
        false,
        vec![Task::Sr2],
        4,
        2,
        SmallImages::Skip,
    );
    let mut crops = Vec::new();
    for k in 0..3 {
        let b = f.build_index(k).unwrap();
        crops.push(Vec::<f32>::try_from(b.hr.flatten(0, -1)).unwrap());
    }
    // 12 crops from 6 files read once each (groups of 2 never straddle a batch of 4) ...
    assert_eq!(f.stats.files_read(), 6);
    // ... and the two crops of a group are different cuts of the same image.
    let n = 3 * 96 * 96;
    assert_ne!(crops[0][..n], crops[0][n..2 * n]);
}

#[test]
fn small_images_are_skipped_or_enlarged_as_configured() {
    // 100×100 images are smaller than the ×4 HR crop (48·4 = 192).
    let small = |policy| {
        factory_over(
            ImageSource::embedded(3, 4, 100),
            false,
            vec![Task::Sr4],
            2,
            1,
            policy,
        )
    };
    let skip = small(SmallImages::Skip);
    match skip.build_index(0) {
        Err(DataError::NoUsableImages { crop: 192, .. }) => {}
        other => panic!("expected NoUsableImages, got {other:?}"),
    }
    assert_eq!(skip.stats.small_skips(), 4);
    assert_eq!(skip.stats.resized(), 0);

    let resize = small(SmallImages::Resize);
    let b = resize.build_index(0).unwrap();
    assert_eq!(b.hr.size(), [2, 3, 192, 192]);
    assert_eq!(b.lr.size(), [2, 3, 48, 48]);
    assert_eq!(resize.stats.resized(), 2);
    assert_eq!(resize.stats.resized_images(), 2);
    assert_eq!(resize.stats.small_skips(), 0);
    // An enlarged smooth image stays within the 0–255 range of its source up to bicubic overshoot.
    let hr = Vec::<f32>::try_from(b.hr.flatten(0, -1)).unwrap();
    assert!(hr.iter().all(|v| v.is_finite() && *v > -40.0 && *v < 300.0));
}

#[test]
fn fractions_of_a_folder_are_nested_and_sized() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..40 {
        std::fs::write(dir.path().join(format!("img{i:02}.png")), b"").unwrap();
    }
    let names = |f: f64| -> Vec<String> {
        match ImageSource::folder(dir.path()).unwrap().keep_fraction(f, 0) {
            ImageSource::Files(v) => v
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect(),
            other => panic!("expected files, got {other:?}"),
        }
    };
    let (q, h, all) = (names(0.25), names(0.5), names(1.0));
    assert_eq!((q.len(), h.len(), all.len()), (10, 20, 40));
    assert!(q.iter().all(|n| h.contains(n)), "25 % ⊂ 50 %");
    // A seeded choice, not the first files in name order; kept in name order.
    assert_ne!(q, all[..10].to_vec());
    assert!(q.windows(2).all(|w| w[0] < w[1]));
    // Another seed picks another subset.
    let other = match ImageSource::folder(dir.path())
        .unwrap()
        .keep_fraction(0.25, 1)
    {
        ImageSource::Files(v) => v.len(),
        _ => 0,
    };
    assert_eq!(other, 10);
}
