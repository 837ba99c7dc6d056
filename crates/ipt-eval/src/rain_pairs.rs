//! Pairing the rainy inputs of a deraining test set (Rain100L, Rain100H) with their clean
//! targets.
//!
//! Accepted arrangements under `<root>/<set>` (searched recursively, two levels deep):
//! - `rain-NNN.png` next to `norain-NNN.png` (the README's description);
//! - `rainy/rain-NNN.png` with `norain-NNN.png` one level up (what the official code expects);
//! - folders `rainy/` (or `rain/`, `input/`) and `norain/` (or `clean/`, `target/`, `gt/`) with
//!   files that share a name or differ only by the `rain`/`norain` prefix;
//! - Rain100H as MSPFN distributes it: `inputcrop/N.png` (rainy) and `cleancrop/N.png`.
//!
//! A file's role comes from its name first (`norain*` is clean, `rain*` is rainy), then from its
//! folder. Its pairing key is the stem without that prefix and without leading `-`/`_`, so
//! `rain-001`, `norain-001` and `001` all have key `001`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipt_degrade::files::{self, Depth};

use crate::BenchError;

/// The folder name of the set under the data root.
pub const RAIN100L: &str = "Rain100L";
/// The folder name of Rain100H (Yang et al. 2017, the heavy-rain set) under the data root.
pub const RAIN100H: &str = "Rain100H";
/// The deraining test sets `ipt bench-derain --set` knows.
pub const RAIN_SETS: [&str; 2] = [RAIN100L, RAIN100H];

/// A rainy input and its clean target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RainPair {
    /// The pairing key (e.g. `001`).
    pub name: String,
    /// The rainy input.
    pub rainy: PathBuf,
    /// The clean ground truth.
    pub clean: PathBuf,
}

/// The result of pairing a folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RainPairing {
    /// Complete pairs, sorted by key.
    pub pairs: Vec<RainPair>,
    /// Rainy files without a clean partner.
    pub unpaired_rainy: Vec<PathBuf>,
    /// Clean files without a rainy partner.
    pub unpaired_clean: Vec<PathBuf>,
}

/// Whether a file is a rainy input or a clean target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RainRole {
    /// Degraded input.
    Rainy,
    /// Ground truth.
    Clean,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

fn trim_key(s: &str) -> String {
    s.trim_start_matches(['-', '_', ' ']).to_string()
}

/// The role and pairing key of `path`, or `None` when it is neither (e.g. a README image in
/// an unrelated folder).
pub fn classify(path: &Path) -> Option<(RainRole, String)> {
    let stem = path.file_stem()?.to_str()?;
    if let Some(rest) = strip_prefix_ci(stem, "norain") {
        return Some((RainRole::Clean, trim_key(rest)));
    }
    if let Some(rest) = strip_prefix_ci(stem, "rain") {
        return Some((RainRole::Rainy, trim_key(rest)));
    }
    let parent = path.parent()?.file_name()?.to_str()?.to_ascii_lowercase();
    match parent.as_str() {
        "norain" | "clean" | "cleancrop" | "target" | "gt" | "groundtruth" => {
            Some((RainRole::Clean, trim_key(stem)))
        }
        "rainy" | "rain" | "input" | "inputcrop" => Some((RainRole::Rainy, trim_key(stem))),
        _ => None,
    }
}

/// Pairs the rainy and clean images found under `dir`. Two files with the same role and key
/// are ambiguous and rejected.
pub fn pair_rain_files(dir: &Path) -> Result<RainPairing, BenchError> {
    let files = files::list_images(dir, Depth::Levels(2))?;
    let mut rainy: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut clean: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in files {
        let Some((role, key)) = classify(&path) else {
            continue;
        };
        let map = match role {
            RainRole::Rainy => &mut rainy,
            RainRole::Clean => &mut clean,
        };
        if let Some(previous) = map.insert(key.clone(), path.clone()) {
            return Err(BenchError::RainSet {
                set: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dir: dir.to_path_buf(),
                reason: format!(
                    "two {role:?} files for key {key:?}: {} and {}",
                    previous.display(),
                    path.display()
                ),
            });
        }
    }
    let mut pairing = RainPairing::default();
    for (key, rainy_path) in rainy {
        match clean.remove(&key) {
            Some(clean_path) => pairing.pairs.push(RainPair {
                name: key,
                rainy: rainy_path,
                clean: clean_path,
            }),
            None => pairing.unpaired_rainy.push(rainy_path),
        }
    }
    pairing.unpaired_clean = clean.into_values().collect();
    Ok(pairing)
}

/// Finds the Rain100L pairs under the data root; a missing folder or zero pairs is a
/// [`BenchError::RainSet`] that says where it looked.
pub fn find_rain100l(root: &Path) -> Result<RainPairing, BenchError> {
    find_rain_set(root, RAIN100L)
}

/// The pairs of the deraining set `set` under `root` (`<root>/<set>`); errors when the folder
/// is missing or holds no pair.
pub fn find_rain_set(root: &Path, set: &str) -> Result<RainPairing, BenchError> {
    let dir = root.join(set);
    let unusable = |dir: PathBuf, reason: String| BenchError::RainSet {
        set: set.to_string(),
        dir,
        reason,
    };
    if !dir.is_dir() {
        return Err(unusable(dir, "the folder does not exist".into()));
    }
    let pairing = pair_rain_files(&dir)?;
    if pairing.pairs.is_empty() {
        let reason = format!(
            "no rainy/clean pairs ({} rainy and {} clean files without partners)",
            pairing.unpaired_rainy.len(),
            pairing.unpaired_clean.len()
        );
        return Err(unusable(dir, reason));
    }
    Ok(pairing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    fn names(p: &RainPairing) -> Vec<&str> {
        p.pairs.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn classify_by_prefix_then_folder() {
        assert_eq!(
            classify(Path::new("a/rain-001.png")),
            Some((RainRole::Rainy, "001".into()))
        );
        assert_eq!(
            classify(Path::new("a/NoRain-001.png")),
            Some((RainRole::Clean, "001".into()))
        );
        assert_eq!(
            classify(Path::new("x/norain/7.png")),
            Some((RainRole::Clean, "7".into()))
        );
        assert_eq!(
            classify(Path::new("x/rainy/7.png")),
            Some((RainRole::Rainy, "7".into()))
        );
        assert_eq!(
            classify(Path::new("Rain100H/inputcrop/12.png")),
            Some((RainRole::Rainy, "12".into()))
        );
        assert_eq!(
            classify(Path::new("Rain100H/cleancrop/12.png")),
            Some((RainRole::Clean, "12".into()))
        );
        assert_eq!(classify(Path::new("x/other/7.png")), None);
    }

    #[test]
    fn side_by_side_pairs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(RAIN100L);
        for n in ["001", "002", "003"] {
            touch(&d.join(format!("rain-{n}.png")));
            touch(&d.join(format!("norain-{n}.png")));
        }
        touch(&d.join("rain-004.png")); // no clean partner
        touch(&d.join("readme.txt"));
        let p = find_rain100l(tmp.path()).unwrap();
        assert_eq!(names(&p), ["001", "002", "003"]);
        assert_eq!(p.pairs[1].rainy, d.join("rain-002.png"));
        assert_eq!(p.pairs[1].clean, d.join("norain-002.png"));
        assert_eq!(p.unpaired_rainy, vec![d.join("rain-004.png")]);
        assert!(p.unpaired_clean.is_empty());
    }

    #[test]
    fn official_code_layout_and_folder_layout() {
        // rainy/rain-NNN.png with norain-NNN.png one level up.
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(RAIN100L);
        touch(&d.join("rainy/rain-010.png"));
        touch(&d.join("norain-010.png"));
        let p = find_rain100l(tmp.path()).unwrap();
        assert_eq!(names(&p), ["010"]);
        assert_eq!(p.pairs[0].rainy, d.join("rainy/rain-010.png"));

        // rainy/ + norain/ folders with bare, shared names.
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(RAIN100L);
        touch(&d.join("rainy/1.png"));
        touch(&d.join("rainy/2.png"));
        touch(&d.join("norain/1.png"));
        touch(&d.join("norain/3.png"));
        let p = find_rain100l(tmp.path()).unwrap();
        assert_eq!(names(&p), ["1"]);
        assert_eq!(p.pairs[0].clean, d.join("norain/1.png"));
        assert_eq!(p.unpaired_rainy, vec![d.join("rainy/2.png")]);
        assert_eq!(p.unpaired_clean, vec![d.join("norain/3.png")]);
    }

    #[test]
    fn absent_or_empty_or_ambiguous_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = find_rain100l(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("Rain100L"), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");

        let d = tmp.path().join(RAIN100L);
        touch(&d.join("rain-001.png"));
        let msg = find_rain100l(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("no rainy/clean pairs"), "{msg}");

        touch(&d.join("rainy/rain-001.png"));
        touch(&d.join("norain-001.png"));
        let msg = find_rain100l(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("two Rainy files"), "{msg}");
    }
}
