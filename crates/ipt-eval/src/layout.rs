//! Finding benchmark sets on disk.
//!
//! Two layouts are accepted for a set called `<Set>` under the data root:
//! - **EDSR**: `<Set>/HR/*.png`, optionally with the pre-computed MATLAB-bicubic inputs
//!   `<Set>/LR_bicubic/X{s}/<name>x{s}.png` (used, per image and scale, when present);
//! - **flat**: `<Set>/*.png` (HR images only), as in `shared/datasets`.
//!
//! Images are listed in file-name order. A set that is absent (or holds no image) is reported
//! as missing and skipped; no set at all is an error that says where it looked.

use std::path::{Path, PathBuf};

use ipt_degrade::files::{self, Depth};
use ipt_degrade::Image;

use crate::data_root::DataRoot;
use crate::protocol::{check_limit, EvalSet, Pair, SetSlot};
use crate::report::MissingSet;
use crate::BenchError;

/// How a set's files are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `<Set>/HR/*` with optional `<Set>/LR_bicubic/X{s}/<name>x{s}.png`.
    Edsr,
    /// `<Set>/*`: a flat folder of HR images.
    Flat,
}

/// One ground-truth image of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchImage {
    /// File stem, e.g. `baby`.
    pub name: String,
    /// Path of the HR (clean) image.
    pub hr: PathBuf,
}

/// A set found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchSet {
    /// The set name as requested (e.g. `B100`).
    pub name: String,
    /// The set folder.
    pub dir: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// Its images in file-name order.
    pub images: Vec<BenchImage>,
}

impl BenchSet {
    /// The pre-computed bicubic LR file for `image` at `scale`, when the set uses the EDSR
    /// layout and the file exists.
    pub fn lr_bicubic(&self, image: &BenchImage, scale: usize) -> Option<PathBuf> {
        if self.layout != Layout::Edsr {
            return None;
        }
        let path = self
            .dir
            .join("LR_bicubic")
            .join(format!("X{scale}"))
            .join(format!("{}x{scale}.png", image.name));
        path.is_file().then_some(path)
    }

    /// Keeps only the first `limit` images (a quick look); `None` keeps all.
    pub fn truncated(mut self, limit: Option<usize>) -> Self {
        if let Some(n) = limit {
            self.images.truncate(n);
        }
        self
    }
}

impl BenchImage {
    /// This image's (input, target) pair for a protocol.
    pub fn pair(&self, input: Image, target: Image) -> Pair {
        Pair {
            name: self.name.clone(),
            path: self.hr.display().to_string(),
            input,
            target,
        }
    }
}

impl EvalSet for BenchSet {
    type Item = BenchImage;

    fn name(&self) -> &str {
        &self.name
    }

    fn items(&self) -> &[BenchImage] {
        &self.images
    }
}

/// The outcome of looking for several sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Sets found, in the requested order.
    pub found: Vec<BenchSet>,
    /// Sets not found.
    pub missing: Vec<MissingSet>,
}

/// Other folder names under which a set is commonly distributed.
fn aliases(name: &str) -> &'static [&'static str] {
    match name.to_ascii_lowercase().as_str() {
        "b100" | "bsd100" | "bsds100" => &["B100", "BSD100", "BSDS100"],
        "cbsd68" => &["CBSD68", "CBSD"],
        _ => &[],
    }
}

/// Candidate folders for set `name` under `root`: the name itself, then its aliases, then any
/// folder of `root` whose name equals one of those ignoring ASCII case (`set5` finds `Set5`).
fn candidate_dirs(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut names = vec![name.to_string()];
    names.extend(aliases(name).iter().map(|a| a.to_string()));
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut push = |dir: PathBuf| {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    };
    for n in &names {
        push(root.join(n));
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        let mut others: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| names.iter().any(|n| n.eq_ignore_ascii_case(f)))
            })
            .collect();
        others.sort();
        for dir in others {
            push(dir);
        }
    }
    dirs
}

/// The images directly inside `dir`, sorted by file name.
pub fn list_images(dir: &Path) -> Result<Vec<BenchImage>, BenchError> {
    let paths = files::list_images(dir, Depth::Flat)?;
    Ok(paths
        .into_iter()
        .map(|hr| BenchImage {
            name: hr
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            hr,
        })
        .collect())
}

/// Looks for set `name` under `root` (EDSR layout first, then flat). `Ok(None)` when no
/// candidate folder holds images.
pub fn find_set(root: &Path, name: &str) -> Result<Option<BenchSet>, BenchError> {
    for dir in candidate_dirs(root, name) {
        if !dir.is_dir() {
            continue;
        }
        let hr_dir = dir.join("HR");
        if hr_dir.is_dir() {
            let images = list_images(&hr_dir)?;
            if !images.is_empty() {
                return Ok(Some(BenchSet {
                    name: name.to_string(),
                    dir,
                    layout: Layout::Edsr,
                    images,
                }));
            }
        }
        let images = list_images(&dir)?;
        if !images.is_empty() {
            return Ok(Some(BenchSet {
                name: name.to_string(),
                dir,
                layout: Layout::Flat,
                images,
            }));
        }
    }
    Ok(None)
}

/// Looks for every set in `names`; missing ones are listed, and none found at all is
/// [`BenchError::NoSets`].
pub fn discover_sets(root: &DataRoot, names: &[String]) -> Result<Discovery, BenchError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match find_set(&root.path, name)? {
            Some(set) => found.push(set),
            None => {
                let looked = candidate_dirs(&root.path, name);
                missing.push(MissingSet {
                    name: name.clone(),
                    empty: looked.iter().filter(|d| d.is_dir()).cloned().collect(),
                    looked,
                })
            }
        }
    }
    if found.is_empty() {
        let looked = missing
            .iter()
            .flat_map(|m| m.looked.iter())
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(BenchError::NoSets {
            root: root.path.clone(),
            source_name: root.source.to_string(),
            looked,
        });
    }
    Ok(Discovery { found, missing })
}

/// The sets `names` under `root` ([`discover_sets`]), each cut to its first `limit` images. A
/// requested set that is missing (or an existing but empty folder) is an error naming it and
/// where it was looked for, unless `skip_missing`, which reports it as a `missing` row instead.
pub fn find_sets(
    root: &DataRoot,
    names: &[String],
    limit: Option<usize>,
    skip_missing: bool,
) -> Result<FoundSets, BenchError> {
    check_limit(limit)?;
    let discovery = discover_sets(root, names)?;
    if !skip_missing && !discovery.missing.is_empty() {
        return Err(BenchError::MissingSets {
            root: root.path.clone(),
            source_name: root.source.to_string(),
            sets: discovery
                .missing
                .iter()
                .map(MissingSet::describe)
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(FoundSets {
        names: names.to_vec(),
        found: discovery
            .found
            .into_iter()
            .map(|s| s.truncated(limit))
            .collect(),
        missing: discovery.missing,
    })
}

/// The requested sets of a benchmark run, found or missing.
#[derive(Debug, Clone)]
pub struct FoundSets {
    /// The requested names, in display order.
    pub names: Vec<String>,
    /// The sets found (each truncated to the image limit).
    pub found: Vec<BenchSet>,
    /// The sets not found.
    pub missing: Vec<MissingSet>,
}

impl FoundSets {
    /// Every requested set in order, with the set when it was found.
    pub fn slots(&self) -> Vec<SetSlot<'_, BenchSet>> {
        self.names
            .iter()
            .map(|n| (n.as_str(), self.found.iter().find(|s| &s.name == n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_root::RootSource;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not decoded here").unwrap();
    }

    fn root_at(path: &Path) -> DataRoot {
        DataRoot {
            path: path.to_path_buf(),
            source: RootSource::Flag,
        }
    }

    #[test]
    fn finds_edsr_and_flat_layouts_and_reports_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // EDSR layout with an LR file for one image at x2 only.
        touch(&root.join("Set5/HR/b.png"));
        touch(&root.join("Set5/HR/a.png"));
        touch(&root.join("Set5/HR/notes.txt"));
        touch(&root.join("Set5/LR_bicubic/X2/ax2.png"));
        // Flat layout, found through the BSD100 alias.
        touch(&root.join("BSD100/2.PNG"));
        touch(&root.join("BSD100/1.png"));
        // An empty set folder counts as missing, and says so.
        std::fs::create_dir_all(root.join("Set14")).unwrap();
        // Found whatever the case of the folder name.
        touch(&root.join("urban100/img_001.png"));

        let names: Vec<String> = ["Set5", "Set14", "B100", "Urban100"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let d = discover_sets(&root_at(root), &names).unwrap();
        assert_eq!(d.found.len(), 3);
        assert_eq!(d.found[2].name, "Urban100");
        assert_eq!(d.found[2].dir, root.join("urban100"));
        let set5 = &d.found[0];
        assert_eq!(set5.layout, Layout::Edsr);
        let names5: Vec<_> = set5.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names5, ["a", "b"]);
        assert_eq!(
            set5.lr_bicubic(&set5.images[0], 2),
            Some(root.join("Set5/LR_bicubic/X2/ax2.png"))
        );
        assert_eq!(set5.lr_bicubic(&set5.images[0], 3), None);
        assert_eq!(set5.lr_bicubic(&set5.images[1], 2), None);

        let b100 = &d.found[1];
        assert_eq!(b100.name, "B100");
        assert_eq!(b100.layout, Layout::Flat);
        assert_eq!(b100.dir, root.join("BSD100"));
        let names_b: Vec<_> = b100.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names_b, ["1", "2"]);
        assert_eq!(b100.lr_bicubic(&b100.images[0], 2), None);

        let missing: Vec<_> = d.missing.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(missing, ["Set14"]);
        assert_eq!(d.missing[0].looked, vec![root.join("Set14")]);
        assert!(d.missing[0]
            .describe()
            .contains("exists but holds no image files"));
        // Without skip_missing the run stops, naming the set and why.
        let err = find_sets(&root_at(root), &names, None, false).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Set14") && msg.contains("no image files"),
            "{msg}"
        );
        assert!(msg.contains("--skip-missing"), "{msg}");
        let ok = find_sets(&root_at(root), &names, None, true).unwrap();
        assert_eq!(ok.missing.len(), 1);
        let typo = find_sets(
            &root_at(root),
            &["Set55".to_string(), "Set5".into()],
            None,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(typo.contains("Set55: not found"), "{typo}");

        assert_eq!(d.found[0].clone().truncated(Some(1)).images.len(), 1);
        assert_eq!(d.found[0].clone().truncated(None).images.len(), 2);
    }

    #[test]
    fn no_sets_is_an_error_naming_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let err = discover_sets(&root_at(tmp.path()), &["Set5".to_string()]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, BenchError::NoSets { .. }));
        assert!(
            msg.contains(&tmp.path().join("Set5").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("--data-root"), "{msg}");
    }
}
