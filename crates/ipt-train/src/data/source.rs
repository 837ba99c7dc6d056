//! Where training images come from.
//!
//! - [`ImageSource::Embedded`]: `count` procedural images (see [`ProceduralImages`]).
//! - [`ImageSource::Files`]: every image file under a folder, recursively, sorted by path
//!   (`ipt_degrade::files`: png, jpg, jpeg, bmp, tif, tiff, webp in any case), so ImageNet's
//!   `train/<wnid>/*.JPEG` and DIV2K's `DIV2K_train_HR/*.png` work as they are.
//! - [`ImageSource::RainPairs`]: RainTrainL-style pairs: every `norain-*` file (clean) whose
//!   rainy twin (the same name without the leading `no`) sits in the same folder.
//!
//! Files are decoded lazily, by the worker that needs them; a file that cannot be decoded is an
//! [`SourceError::Unreadable`] the pipeline counts and skips.

use std::path::{Path, PathBuf};

use ipt_degrade::files::{list_images, Depth, IMAGE_EXTENSIONS};

use crate::data::{Image, ProceduralImages};

/// Errors of listing or reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The folder could not be listed.
    #[error("cannot list {path}: {reason}")]
    List {
        /// The folder.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The folder holds no usable files.
    #[error("{path}: no {what} found")]
    Empty {
        /// The folder.
        path: PathBuf,
        /// What was looked for.
        what: String,
    },
    /// A task's recipe failed on an image (validation data is made once, before training).
    #[error("{path}: cannot degrade for task {task}: {reason}")]
    Degrade {
        /// The image.
        path: PathBuf,
        /// The task.
        task: ipt_degrade::Task,
        /// What the recipe reported.
        reason: String,
    },
    /// One file could not be read or decoded (the pipeline skips it and counts it).
    #[error("{reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong, naming the file.
        reason: String,
    },
}

/// One decoded training sample.
#[derive(Debug, Clone)]
pub enum Sample {
    /// A clean image; the task's degradation is synthesised from it.
    Clean(Image),
    /// A real degraded/clean pair of equal size (rain pairs).
    Pair {
        /// The degraded input (rainy).
        lr: Image,
        /// The clean target.
        hr: Image,
    },
}

impl Sample {
    /// Height and width (of the clean image).
    pub fn dims(&self) -> (usize, usize) {
        let img = match self {
            Sample::Clean(img) => img,
            Sample::Pair { hr, .. } => hr,
        };
        (img.dim().1, img.dim().2)
    }
}

/// A list of training images.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// `count` procedural images.
    Embedded {
        /// The generator.
        generator: ProceduralImages,
        /// Number of distinct images (indices `0..count`).
        count: usize,
    },
    /// Image files.
    Files(Vec<PathBuf>),
    /// `(rainy, clean)` file pairs.
    RainPairs(Vec<(PathBuf, PathBuf)>),
}

/// Every image file under `dir`, recursively, sorted by path (symlinks followed).
fn list_images_recursive(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    list_images(dir, Depth::Recursive).map_err(|e| SourceError::List {
        path: e.path,
        reason: e.source.to_string(),
    })
}

impl ImageSource {
    /// `count` procedural `size`×`size` images from `seed`.
    pub fn embedded(seed: u64, count: usize, size: usize) -> Self {
        ImageSource::Embedded {
            generator: ProceduralImages::new(seed, size, size),
            count,
        }
    }

    /// Every image under `dir` (recursive). Errors when the folder cannot be listed or is empty.
    pub fn folder(dir: &Path) -> Result<Self, SourceError> {
        let files = list_images_recursive(dir)?;
        if files.is_empty() {
            return Err(SourceError::Empty {
                path: dir.to_path_buf(),
                what: format!("image files ({})", IMAGE_EXTENSIONS.join(", ")),
            });
        }
        Ok(ImageSource::Files(files))
    }

    /// RainTrainL-style pairs under `dir` (recursive): `norain-N.ext` with `rain-N.ext`.
    pub fn rain_pairs(dir: &Path) -> Result<Self, SourceError> {
        let files = list_images_recursive(dir)?;
        let pairs: Vec<(PathBuf, PathBuf)> = files
            .iter()
            .filter_map(|clean| {
                let name = clean.file_name()?.to_str()?;
                let rainy_name = name.strip_prefix("no")?;
                if !rainy_name.starts_with("rain") {
                    return None;
                }
                let rainy = clean.with_file_name(rainy_name);
                files
                    .binary_search(&rainy)
                    .ok()
                    .map(|_| (rainy, clean.clone()))
            })
            .collect();
        if pairs.is_empty() {
            return Err(SourceError::Empty {
                path: dir.to_path_buf(),
                what: "rain pairs (norain-N.png with rain-N.png)".into(),
            });
        }
        Ok(ImageSource::RainPairs(pairs))
    }

    /// The `⌈fraction·n⌉` items of smallest [`ipt_degrade::seed::name_rank`] (by file name;
    /// for pairs, the clean file's), in their original order: nested subsets for growing
    /// fractions. `fraction` ≥ 1 keeps everything; the embedded source keeps its first items.
    pub fn keep_fraction(self, fraction: f64, seed: u64) -> Self {
        let keep = |n: usize| ((fraction.min(1.0) * n as f64).ceil() as usize).clamp(1, n.max(1));
        fn pick<T: Clone>(
            items: Vec<T>,
            k: usize,
            seed: u64,
            name: impl Fn(&T) -> String,
        ) -> Vec<T> {
            let mut ranked: Vec<(u64, usize)> = items
                .iter()
                .enumerate()
                .map(|(i, t)| (ipt_degrade::seed::name_rank(seed, &name(t)), i))
                .collect();
            ranked.sort_unstable();
            let mut chosen: Vec<usize> = ranked.iter().take(k).map(|&(_, i)| i).collect();
            chosen.sort_unstable();
            chosen.into_iter().map(|i| items[i].clone()).collect()
        }
        let file_name = |p: &PathBuf| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        if fraction >= 1.0 {
            return self;
        }
        match self {
            ImageSource::Embedded { generator, count } => ImageSource::Embedded {
                generator,
                count: keep(count),
            },
            ImageSource::Files(f) => {
                let k = keep(f.len());
                ImageSource::Files(pick(f, k, seed, file_name))
            }
            ImageSource::RainPairs(p) => {
                let k = keep(p.len());
                ImageSource::RainPairs(pick(p, k, seed, |(_, clean)| file_name(clean)))
            }
        }
    }

    /// Number of images (or pairs).
    pub fn len(&self) -> usize {
        match self {
            ImageSource::Embedded { count, .. } => *count,
            ImageSource::Files(f) => f.len(),
            ImageSource::RainPairs(p) => p.len(),
        }
    }

    /// Whether the source is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A human-readable name of item `i` (its path, or `embedded#i`).
    pub fn describe(&self, i: usize) -> String {
        match self {
            ImageSource::Embedded { .. } => format!("embedded#{i}"),
            ImageSource::Files(f) => f[i].display().to_string(),
            ImageSource::RainPairs(p) => p[i].1.display().to_string(),
        }
    }

    /// Decode item `i` (`i < len()`).
    pub fn load(&self, i: usize) -> Result<Sample, SourceError> {
        let read = |p: &Path| {
            ipt_degrade::io::read_image(p).map_err(|e| SourceError::Unreadable {
                path: p.to_path_buf(),
                reason: e.to_string(),
            })
        };
        match self {
            ImageSource::Embedded { generator, .. } => Ok(Sample::Clean(generator.image(i as u64))),
            ImageSource::Files(f) => read(&f[i]).map(Sample::Clean),
            ImageSource::RainPairs(p) => {
                let (rainy, clean) = &p[i];
                let lr = read(rainy)?;
                let hr = read(clean)?;
                if lr.dim() != hr.dim() {
                    return Err(SourceError::Unreadable {
                        path: rainy.clone(),
                        reason: format!(
                            "{}: is {}, its clean twin {} is {}",
                            rainy.display(),
                            ipt_degrade::size_text(&lr),
                            clean.display(),
                            ipt_degrade::size_text(&hr)
                        ),
                    });
                }
                Ok(Sample::Pair { lr, hr })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_jpeg_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(96, 80, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 3) as u8, 77])
        });
        let mut jpeg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        let good = dir.path().join("good.JPG");
        std::fs::write(&good, &jpeg).unwrap();
        let padded = dir.path().join("padded.jpg");
        std::fs::write(&padded, [jpeg.as_slice(), &[0u8; 100]].concat()).unwrap();
        let cut = dir.path().join("cut.jpeg");
        std::fs::write(&cut, &jpeg[..jpeg.len() - 40]).unwrap();
        let src = ImageSource::folder(dir.path()).unwrap();
        let names: Vec<String> = (0..src.len()).map(|i| src.describe(i)).collect();
        let bad: Vec<&String> = names
            .iter()
            .zip((0..src.len()).map(|i| src.load(i).is_err()))
            .filter(|(_, e)| *e)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].ends_with("cut.jpeg"));
    }

    #[test]
    fn folder_is_recursive_sorted_and_rain_pairs_match() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("n01/inner");
        std::fs::create_dir_all(&sub).unwrap();
        for p in [
            sub.join("b.JPEG"),
            dir.path().join("a.png"),
            dir.path().join("notes.txt"),
            dir.path().join("norain-1.png"),
            dir.path().join("rain-1.png"),
            dir.path().join("norain-2.png"),
        ] {
            std::fs::write(&p, b"x").unwrap();
        }
        let ImageSource::Files(files) = ImageSource::folder(dir.path()).unwrap() else {
            panic!()
        };
        let names: Vec<_> = files
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "a.png",
                "n01/inner/b.JPEG",
                "norain-1.png",
                "norain-2.png",
                "rain-1.png"
            ]
        );
        let ImageSource::RainPairs(pairs) = ImageSource::rain_pairs(dir.path()).unwrap() else {
            panic!()
        };
        assert_eq!(
            pairs,
            vec![(
                dir.path().join("rain-1.png"),
                dir.path().join("norain-1.png")
            )]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            ImageSource::folder(empty.path()),
            Err(SourceError::Empty { .. })
        ));
    }
}
