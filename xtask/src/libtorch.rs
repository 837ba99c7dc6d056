//! Finding or installing libtorch 2.11.0 (the version tch 0.24.0 expects).
//!
//! Resolution order, first hit wins:
//! 1. `LIBTORCH` set by the user: used as is (checked for `lib/` and, when it can be read, its version).
//! 2. A Python named by `IPT_PYTHON` (or `python3` on `PATH`) whose `torch.__version__` starts with 2.11.0.
//! 3. The project cache `$IPT_HOME/libtorch/2.11.0-{cpu,cuda}` (default `IPT_HOME` = `~/.cache/ipt`), installed from
//!    PyPI on first use: the smallest CPU install by default, the full CUDA wheel with `--cuda` or when an NVIDIA
//!    driver is present. A stamp file marks a finished install; a half-finished one is removed and redone.
//!
//! Everything that touches the outside world (running Python, pip) goes through the [`Host`] trait, so the
//! resolution logic is unit-tested without a network.

use std::fmt;
use std::path::{Path, PathBuf};

/// The libtorch version tch 0.24.0 is built against.
pub const TORCH_VERSION: &str = "2.11.0";

/// Extra wheels the CPU-only install needs: `libtorch_cpu.so` links `libcudart.so.13` and `libcupti.so.13`.
pub const CPU_EXTRA_WHEELS: [&str; 2] =
    ["nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85"];

/// Name of the stamp file written as the last step of a successful cache install.
pub const STAMP_FILE: &str = ".ipt-stamp";

/// Which flavour of the PyPI wheel is installed in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `torch` with `--no-deps` plus the two small CUDA runtime wheels: 1.2 GB, runs on CPU only.
    Cpu,
    /// `torch` with all its dependencies (CUDA 13 libraries): ~4.7 GB, runs on NVIDIA GPUs.
    Cuda,
}

impl Variant {
    fn dir_name(self) -> String {
        match self {
            Variant::Cpu => format!("{TORCH_VERSION}-cpu"),
            Variant::Cuda => format!("{TORCH_VERSION}-cuda"),
        }
    }

    /// The exact content of the stamp file for this variant.
    pub fn stamp(self) -> String {
        match self {
            Variant::Cpu => format!("torch {TORCH_VERSION} cpu\n"),
            Variant::Cuda => format!("torch {TORCH_VERSION} cuda\n"),
        }
    }

    /// The `pip install` arguments after `python -m pip install`.
    pub fn pip_args(self, target: &Path) -> Vec<String> {
        let mut args = vec![
            "--disable-pip-version-check".to_string(),
            "--no-input".to_string(),
            "--target".to_string(),
            target.display().to_string(),
        ];
        match self {
            Variant::Cpu => {
                args.push("--no-deps".to_string());
                args.push(format!("torch=={TORCH_VERSION}"));
                args.extend(CPU_EXTRA_WHEELS.iter().map(|s| s.to_string()));
            }
            Variant::Cuda => args.push(format!("torch=={TORCH_VERSION}")),
        }
        args
    }
}

/// Where the libtorch in use came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The user's `LIBTORCH`.
    EnvLibtorch,
    /// The torch package of a Python interpreter.
    Python(PathBuf),
    /// The project cache (already there).
    Cache(Variant),
    /// The project cache, installed by this run.
    Installed(Variant),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::EnvLibtorch => write!(f, "LIBTORCH set by the user"),
            Source::Python(p) => write!(f, "torch package of {}", p.display()),
            Source::Cache(v) => write!(f, "project cache ({v:?} install)"),
            Source::Installed(v) => write!(f, "project cache ({v:?} install, installed now)"),
        }
    }
}

/// A resolved libtorch: the folder holding `include/` and `lib/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Libtorch {
    /// Value for the `LIBTORCH` environment variable.
    pub dir: PathBuf,
    /// The version, when it could be determined.
    pub version: Option<String>,
    /// Where it came from.
    pub source: Source,
}

impl Libtorch {
    /// `dir/lib`, where the shared libraries live.
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("lib")
    }

    /// Whether this libtorch can run on CUDA: it ships `libtorch_cuda.so` and is not the CPU-only subset
    /// (which lacks cuBLAS, cuDNN and the other CUDA libraries that library needs).
    pub fn has_cuda_backend(&self) -> bool {
        let cpu_only = matches!(
            self.source,
            Source::Cache(Variant::Cpu) | Source::Installed(Variant::Cpu)
        );
        !cpu_only && self.lib_dir().join("libtorch_cuda.so").exists()
    }

    /// Environment variables a plain `cargo build` needs.
    pub fn cargo_env(&self) -> Vec<(String, String)> {
        vec![("LIBTORCH".to_string(), self.dir.display().to_string())]
    }
}

/// What a Python interpreter reports about its torch package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonTorch {
    /// `torch.__version__`.
    pub version: String,
    /// `os.path.dirname(torch.__file__)`.
    pub dir: PathBuf,
    /// `torch.cuda.is_available()`.
    pub cuda_available: bool,
}

/// Result of asking a Python about torch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PythonProbe {
    /// The interpreter could not be run.
    NotFound,
    /// It ran, but `import torch` failed.
    NoTorch,
    /// It has torch.
    Torch(PythonTorch),
}

/// The inputs of the resolution, read once from the environment.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// `LIBTORCH`.
    pub libtorch: Option<PathBuf>,
    /// `IPT_PYTHON`.
    pub ipt_python: Option<PathBuf>,
    /// `IPT_HOME` (default `~/.cache/ipt`).
    pub ipt_home: PathBuf,
    /// `--cuda` was given.
    pub want_cuda: bool,
    /// An NVIDIA driver is present on this machine.
    pub nvidia_driver: bool,
}

impl Inputs {
    /// Read the inputs from the process environment.
    pub fn from_env(want_cuda: bool) -> Inputs {
        let nonempty = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let ipt_home = nonempty("IPT_HOME").unwrap_or_else(|| {
            nonempty("HOME")
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join(".cache")
                .join("ipt")
        });
        Inputs {
            libtorch: nonempty("LIBTORCH"),
            ipt_python: nonempty("IPT_PYTHON"),
            ipt_home,
            want_cuda,
            nvidia_driver: Path::new("/proc/driver/nvidia/version").exists(),
        }
    }

    /// The variant a fresh install should use.
    pub fn wanted_variant(&self) -> Variant {
        if self.want_cuda || self.nvidia_driver {
            Variant::Cuda
        } else {
            Variant::Cpu
        }
    }

    /// The Python to probe and to install with, and whether the user named it.
    pub fn python(&self) -> (PathBuf, bool) {
        match &self.ipt_python {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("python3"), false),
        }
    }
}

/// Every way setup can fail; each message names the cause and the fix.
#[derive(Debug, PartialEq, Eq)]
pub enum SetupError {
    /// `LIBTORCH` points at something that is not a libtorch.
    BadLibtorchDir { dir: PathBuf, missing: PathBuf },
    /// `LIBTORCH` points at a libtorch of another version.
    LibtorchVersion { dir: PathBuf, found: String },
    /// `IPT_PYTHON` could not be run.
    PythonNotFound { python: PathBuf },
    /// `IPT_PYTHON` has no torch.
    PythonNoTorch { python: PathBuf },
    /// `IPT_PYTHON` has torch of another version.
    PythonVersion {
        python: PathBuf,
        found: String,
        at: PathBuf,
    },
    /// No python to install with.
    NoPythonForInstall { python: PathBuf },
    /// pip is missing.
    NoPip { python: PathBuf },
    /// pip failed (network or otherwise).
    PipFailed {
        python: PathBuf,
        network: bool,
        tail: String,
    },
    /// The install finished but the library is not where expected.
    InstallIncomplete { dir: PathBuf },
    /// File system trouble in the cache.
    Io { path: PathBuf, error: String },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SetupError::*;
        match self {
            BadLibtorchDir { dir, missing } => write!(
                f,
                "LIBTORCH={} is set, but {} does not exist: that is not a libtorch folder.\n\
                 Needed: a libtorch {TORCH_VERSION} folder holding include/ and lib/ (for a pip install, \
                 the `torch` folder inside site-packages). Fix LIBTORCH, or unset it to let \
                 `cargo xtask setup` install libtorch {TORCH_VERSION} into the project cache.",
                dir.display(),
                missing.display()
            ),
            LibtorchVersion { dir, found } => write!(
                f,
                "LIBTORCH={} is libtorch {found}, but tch 0.24.0 needs libtorch {TORCH_VERSION}.\n\
                 Point LIBTORCH at a {TORCH_VERSION} install, or unset it to let `cargo xtask setup` \
                 install one into the project cache.",
                dir.display()
            ),
            PythonNotFound { python } => write!(
                f,
                "IPT_PYTHON={} cannot be run.\nSet IPT_PYTHON to a Python ≥3.9 interpreter (or unset it to use \
                 python3 from PATH).",
                python.display()
            ),
            PythonNoTorch { python } => write!(
                f,
                "IPT_PYTHON={} has no importable torch.\nNeeded: torch {TORCH_VERSION} \
                 (`{} -m pip install torch=={TORCH_VERSION}`), or unset IPT_PYTHON to let setup install \
                 libtorch into the project cache.",
                python.display(),
                python.display()
            ),
            PythonVersion { python, found, at } => write!(
                f,
                "IPT_PYTHON={} has torch {found} (at {}), but tch 0.24.0 needs torch {TORCH_VERSION}.\n\
                 Install torch=={TORCH_VERSION} there, or unset IPT_PYTHON to let setup install libtorch \
                 into the project cache.",
                python.display(),
                at.display()
            ),
            NoPythonForInstall { python } => write!(
                f,
                "no Python found to install libtorch with (tried `{}`).\nInstall Python ≥3.9 with pip \
                 (e.g. `apt-get install python3 python3-pip`), point IPT_PYTHON at one, or set LIBTORCH to an \
                 existing libtorch {TORCH_VERSION}.",
                python.display()
            ),
            NoPip { python } => write!(
                f,
                "`{} -m pip` is not available, so libtorch cannot be installed.\nInstall pip \
                 (`apt-get install python3-pip` or `{} -m ensurepip`), or set LIBTORCH to an existing \
                 libtorch {TORCH_VERSION}.",
                python.display(),
                python.display()
            ),
            PipFailed { python, network, tail } => {
                if *network {
                    write!(
                        f,
                        "could not download torch=={TORCH_VERSION} from the package index (is there network \
                         access to PyPI, or a configured pip index/proxy?).\npip ({}) said:\n{tail}",
                        python.display()
                    )
                } else {
                    write!(
                        f,
                        "pip ({}) failed to install torch=={TORCH_VERSION}:\n{tail}",
                        python.display()
                    )
                }
            }
            InstallIncomplete { dir } => write!(
                f,
                "the install in {} finished but lib/libtorch_cpu.so is missing; delete that folder and \
                 rerun `cargo xtask setup`.",
                dir.display()
            ),
            Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for SetupError {}

/// The outside world, as setup sees it.
pub trait Host {
    /// Ask a Python interpreter about its torch.
    fn probe_python(&self, python: &Path) -> PythonProbe;
    /// Whether `python -m pip --version` works.
    fn has_pip(&self, python: &Path) -> bool;
    /// Run `python -m pip install ARGS`; on failure return pip's combined output.
    fn pip_install(&self, python: &Path, args: &[String]) -> Result<(), String>;
}

/// Read a libtorch's version from `build-version` or a sibling `torch-X.dist-info`.
pub fn detect_version(libtorch: &Path) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string(libtorch.join("build-version")) {
        return Some(v.trim().to_string());
    }
    let parent = libtorch.parent()?;
    let entries = std::fs::read_dir(parent).ok()?;
    entries.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.strip_prefix("torch-")
            .and_then(|rest| rest.strip_suffix(".dist-info"))
            .map(str::to_string)
    })
}

/// Whether a version string (`2.11.0`, `2.11.0+cu130`) is the one tch needs.
pub fn version_matches(version: &str) -> bool {
    let base = version.trim().split('+').next().unwrap_or("");
    base == TORCH_VERSION
}

fn check_libtorch_dir(dir: &Path) -> Result<(), PathBuf> {
    let lib = dir.join("lib").join("libtorch_cpu.so");
    let alt = dir.join("lib").join("libtorch.so");
    if lib.exists() || alt.exists() {
        Ok(())
    } else {
        Err(lib)
    }
}

/// The cache folder for a variant.
pub fn cache_dir(home: &Path, variant: Variant) -> PathBuf {
    home.join("libtorch").join(variant.dir_name())
}

/// Where an install of `variant` is written before it is stamped and renamed into place.
pub fn partial_dir(home: &Path, variant: Variant) -> PathBuf {
    home.join("libtorch")
        .join(format!("{}.partial", variant.dir_name()))
}

/// A finished cache install of `variant`, if its stamp is present and right.
pub fn cached(home: &Path, variant: Variant) -> Option<Libtorch> {
    let dir = cache_dir(home, variant);
    let stamp = std::fs::read_to_string(dir.join(STAMP_FILE)).ok()?;
    if stamp != variant.stamp() {
        return None;
    }
    let torch = dir.join("torch");
    check_libtorch_dir(&torch).ok()?;
    Some(Libtorch {
        dir: torch,
        version: Some(TORCH_VERSION.to_string()),
        source: Source::Cache(variant),
    })
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SetupError + '_ {
    move |e| SetupError::Io {
        path: path.to_path_buf(),
        error: e.to_string(),
    }
}

/// Install `variant` into the cache: pip into `<dir>.partial`, check, stamp, then rename into place.
/// A leftover `.partial` (an interrupted install) or an unstamped folder is removed first.
pub fn install(
    host: &dyn Host,
    home: &Path,
    variant: Variant,
    python: &Path,
) -> Result<Libtorch, SetupError> {
    let final_dir = cache_dir(home, variant);
    let partial = partial_dir(home, variant);
    for stale in [&partial, &final_dir] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(io_err(stale))?;
        }
    }
    let parent = final_dir.parent().unwrap_or(home);
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    match host.probe_python(python) {
        PythonProbe::NotFound => {
            return Err(SetupError::NoPythonForInstall {
                python: python.to_path_buf(),
            })
        }
        PythonProbe::NoTorch | PythonProbe::Torch(_) => {}
    }
    if !host.has_pip(python) {
        return Err(SetupError::NoPip {
            python: python.to_path_buf(),
        });
    }
    host.pip_install(python, &variant.pip_args(&partial))
        .map_err(|out| SetupError::PipFailed {
            python: python.to_path_buf(),
            network: looks_like_network_failure(&out),
            tail: last_lines(&out, 8),
        })?;
    check_libtorch_dir(&partial.join("torch")).map_err(|_| SetupError::InstallIncomplete {
        dir: partial.clone(),
    })?;
    let stamp = partial.join(STAMP_FILE);
    std::fs::write(&stamp, variant.stamp()).map_err(io_err(&stamp))?;
    std::fs::rename(&partial, &final_dir).map_err(io_err(&final_dir))?;
    Ok(Libtorch {
        dir: final_dir.join("torch"),
        version: Some(TORCH_VERSION.to_string()),
        source: Source::Installed(variant),
    })
}

/// Whether pip's output says the index could not be reached or had no such version.
pub fn looks_like_network_failure(pip_output: &str) -> bool {
    const MARKERS: [&str; 7] = [
        "Could not find a version",
        "No matching distribution",
        "NewConnectionError",
        "Max retries exceeded",
        "Temporary failure in name resolution",
        "Network is unreachable",
        "ConnectTimeout",
    ];
    MARKERS.iter().any(|m| pip_output.contains(m))
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Resolve libtorch following the documented order, installing into the cache if nothing else fits.
/// `notes` collects one-line remarks for the user (e.g. why the system Python was passed over).
pub fn resolve(
    inputs: &Inputs,
    host: &dyn Host,
    notes: &mut Vec<String>,
) -> Result<Libtorch, SetupError> {
    // 1. LIBTORCH wins, as is.
    if let Some(dir) = &inputs.libtorch {
        check_libtorch_dir(dir).map_err(|missing| SetupError::BadLibtorchDir {
            dir: dir.clone(),
            missing,
        })?;
        let version = detect_version(dir);
        match &version {
            Some(v) if !version_matches(v) => {
                return Err(SetupError::LibtorchVersion {
                    dir: dir.clone(),
                    found: v.clone(),
                })
            }
            Some(_) => {}
            None => notes.push(format!(
                "could not read the version of LIBTORCH={} (no build-version or torch-*.dist-info); \
                 assuming it is {TORCH_VERSION}",
                dir.display()
            )),
        }
        return Ok(Libtorch {
            dir: dir.clone(),
            version,
            source: Source::EnvLibtorch,
        });
    }

    // 2. A Python with torch 2.11.0.
    let (python, named) = inputs.python();
    match host.probe_python(&python) {
        PythonProbe::Torch(t) if version_matches(&t.version) => {
            return Ok(Libtorch {
                dir: t.dir,
                version: Some(t.version),
                source: Source::Python(python),
            });
        }
        PythonProbe::Torch(t) if named => {
            return Err(SetupError::PythonVersion {
                python,
                found: t.version,
                at: t.dir,
            })
        }
        PythonProbe::Torch(t) => notes.push(format!(
            "{} has torch {} at {}, not {TORCH_VERSION}: using the project cache instead",
            python.display(),
            t.version,
            t.dir.display()
        )),
        PythonProbe::NoTorch if named => return Err(SetupError::PythonNoTorch { python }),
        PythonProbe::NotFound if named => return Err(SetupError::PythonNotFound { python }),
        PythonProbe::NoTorch | PythonProbe::NotFound => {}
    }

    // 3. The project cache: a finished install of the wanted variant (a CUDA install also serves CPU).
    let wanted = inputs.wanted_variant();
    let acceptable: &[Variant] = match wanted {
        Variant::Cpu => &[Variant::Cpu, Variant::Cuda],
        Variant::Cuda => &[Variant::Cuda],
    };
    if let Some(found) = acceptable.iter().find_map(|v| cached(&inputs.ipt_home, *v)) {
        return Ok(found);
    }
    install(host, &inputs.ipt_home, wanted, &python)
}

/// The real host: runs processes.
pub struct SystemHost;

const PROBE_SCRIPT: &str = "import os, torch\n\
print(torch.__version__)\n\
print(os.path.dirname(torch.__file__))\n\
print(torch.cuda.is_available())\n";

impl Host for SystemHost {
    fn probe_python(&self, python: &Path) -> PythonProbe {
        let out = std::process::Command::new(python)
            .args(["-c", PROBE_SCRIPT])
            .output();
        match out {
            Err(_) => PythonProbe::NotFound,
            Ok(o) if !o.status.success() => PythonProbe::NoTorch,
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout);
                let mut lines = text.lines();
                match (lines.next(), lines.next(), lines.next()) {
                    (Some(v), Some(d), Some(c)) => PythonProbe::Torch(PythonTorch {
                        version: v.trim().to_string(),
                        dir: PathBuf::from(d.trim()),
                        cuda_available: c.trim() == "True",
                    }),
                    _ => PythonProbe::NoTorch,
                }
            }
        }
    }

    fn has_pip(&self, python: &Path) -> bool {
        std::process::Command::new(python)
            .args(["-m", "pip", "--version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn pip_install(&self, python: &Path, args: &[String]) -> Result<(), String> {
        eprintln!(
            "xtask: installing libtorch: {} -m pip install {}",
            python.display(),
            args.join(" ")
        );
        let out = std::process::Command::new(python)
            .args(["-m", "pip", "install"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A host whose answers are scripted and whose pip calls are recorded.
    struct FakeHost {
        probe: PythonProbe,
        pip: bool,
        pip_result: Result<(), String>,
        pip_calls: RefCell<Vec<Vec<String>>>,
        /// When pip "succeeds", create a fake torch under the target.
        create_lib: bool,
    }

    impl FakeHost {
        fn new(probe: PythonProbe) -> Self {
            FakeHost {
                probe,
                pip: true,
                pip_result: Ok(()),
                pip_calls: RefCell::new(Vec::new()),
                create_lib: true,
            }
        }
    }

    impl Host for FakeHost {
        fn probe_python(&self, _python: &Path) -> PythonProbe {
            self.probe.clone()
        }
        fn has_pip(&self, _python: &Path) -> bool {
            self.pip
        }
        fn pip_install(&self, _python: &Path, args: &[String]) -> Result<(), String> {
            self.pip_calls.borrow_mut().push(args.to_vec());
            if self.pip_result.is_ok() && self.create_lib {
                fake_libtorch(&pip_target(args).join("torch"));
            }
            self.pip_result.clone()
        }
    }

    fn pip_target(args: &[String]) -> PathBuf {
        let i = args.iter().position(|a| a == "--target").unwrap();
        PathBuf::from(&args[i + 1])
    }

    fn fake_libtorch(dir: &Path) {
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::create_dir_all(dir.join("include")).unwrap();
        std::fs::write(dir.join("lib").join("libtorch_cpu.so"), b"").unwrap();
    }

    fn inputs(home: &Path) -> Inputs {
        Inputs {
            ipt_home: home.to_path_buf(),
            ..Default::default()
        }
    }

    fn torch(version: &str) -> PythonProbe {
        PythonProbe::Torch(PythonTorch {
            version: version.to_string(),
            dir: PathBuf::from("/py/site-packages/torch"),
            cuda_available: false,
        })
    }

    #[test]
    fn libtorch_env_var_wins_over_python_and_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let lt = tmp.path().join("site").join("torch");
        fake_libtorch(&lt);
        std::fs::create_dir_all(tmp.path().join("site").join("torch-2.11.0.dist-info")).unwrap();
        let mut inp = inputs(&tmp.path().join("home"));
        inp.libtorch = Some(lt.clone());
        let host = FakeHost::new(torch("2.11.0"));
        let got = resolve(&inp, &host, &mut vec![]).unwrap();
        assert_eq!(got.source, Source::EnvLibtorch);
        assert_eq!(got.dir, lt);
        assert_eq!(got.version.as_deref(), Some("2.11.0"));
        assert!(host.pip_calls.borrow().is_empty());
    }

    #[test]
    fn libtorch_env_var_pointing_nowhere_says_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut inp = inputs(tmp.path());
        inp.libtorch = Some(tmp.path().join("nope"));
        let err = resolve(&inp, &FakeHost::new(PythonProbe::NotFound), &mut vec![]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SetupError::BadLibtorchDir { .. }));
        assert!(
            msg.contains("nope") && msg.contains("libtorch_cpu.so") && msg.contains("2.11.0"),
            "{msg}"
        );
    }

    #[test]
    fn libtorch_env_var_with_wrong_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let lt = tmp.path().join("libtorch");
        fake_libtorch(&lt);
        std::fs::write(lt.join("build-version"), "2.13.0+cpu\n").unwrap();
        let mut inp = inputs(tmp.path());
        inp.libtorch = Some(lt);
        let err = resolve(&inp, &FakeHost::new(PythonProbe::NotFound), &mut vec![]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("2.13.0+cpu") && msg.contains("needs libtorch 2.11.0"),
            "{msg}"
        );
    }

    #[test]
    fn python_with_matching_torch_is_used() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost::new(torch("2.11.0+cu130"));
        let got = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap();
        assert_eq!(got.source, Source::Python(PathBuf::from("python3")));
        assert_eq!(got.dir, PathBuf::from("/py/site-packages/torch"));
        assert!(host.pip_calls.borrow().is_empty());
    }

    #[test]
    fn named_python_with_wrong_version_fails_with_both_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let mut inp = inputs(tmp.path());
        inp.ipt_python = Some(PathBuf::from("/opt/py/bin/python"));
        let err = resolve(&inp, &FakeHost::new(torch("2.5.1")), &mut vec![]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/opt/py/bin/python"), "{msg}");
        assert!(
            msg.contains("2.5.1") && msg.contains("needs torch 2.11.0"),
            "{msg}"
        );
        assert!(msg.contains("/py/site-packages/torch"), "{msg}");
    }

    #[test]
    fn named_python_that_cannot_run_or_has_no_torch_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let mut inp = inputs(tmp.path());
        inp.ipt_python = Some(PathBuf::from("/no/python"));
        let e1 = resolve(&inp, &FakeHost::new(PythonProbe::NotFound), &mut vec![]).unwrap_err();
        assert!(matches!(e1, SetupError::PythonNotFound { .. }));
        let e2 = resolve(&inp, &FakeHost::new(PythonProbe::NoTorch), &mut vec![]).unwrap_err();
        assert!(matches!(e2, SetupError::PythonNoTorch { .. }));
        assert!(e2.to_string().contains("no importable torch"));
    }

    #[test]
    fn system_python_with_wrong_version_falls_through_to_the_cache_with_a_note() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost::new(torch("2.4.0"));
        let mut notes = vec![];
        let got = resolve(&inputs(tmp.path()), &host, &mut notes).unwrap();
        assert_eq!(got.source, Source::Installed(Variant::Cpu));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("2.4.0"));
    }

    #[test]
    fn install_is_stamped_and_second_resolve_reuses_it_without_pip() {
        let tmp = tempfile::tempdir().unwrap();
        let host = FakeHost::new(PythonProbe::NoTorch);
        let first = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap();
        assert_eq!(first.source, Source::Installed(Variant::Cpu));
        assert_eq!(host.pip_calls.borrow().len(), 1);
        let args = &host.pip_calls.borrow()[0];
        assert!(args.contains(&"--no-deps".to_string()));
        assert!(args.contains(&"torch==2.11.0".to_string()));
        let dir = cache_dir(tmp.path(), Variant::Cpu);
        assert_eq!(
            std::fs::read_to_string(dir.join(STAMP_FILE)).unwrap(),
            Variant::Cpu.stamp()
        );
        assert!(!partial_dir(tmp.path(), Variant::Cpu).exists());
        assert!(
            pip_target(&host.pip_calls.borrow()[0]).ends_with("libtorch/2.11.0-cpu.partial"),
            "installs go to a partial folder named after the variant"
        );

        let second = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap();
        assert_eq!(second.source, Source::Cache(Variant::Cpu));
        assert_eq!(second.dir, first.dir);
        assert_eq!(
            host.pip_calls.borrow().len(),
            1,
            "the second run must not call pip"
        );
    }

    #[test]
    fn half_finished_install_is_detected_and_redone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = cache_dir(tmp.path(), Variant::Cpu);
        // an interrupted earlier run: library present but no stamp, plus a leftover partial folder
        fake_libtorch(&dir.join("torch"));
        fake_libtorch(&partial_dir(tmp.path(), Variant::Cpu).join("torch"));
        assert!(cached(tmp.path(), Variant::Cpu).is_none());
        let host = FakeHost::new(PythonProbe::NoTorch);
        let got = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap();
        assert_eq!(got.source, Source::Installed(Variant::Cpu));
        assert_eq!(host.pip_calls.borrow().len(), 1);
        assert!(cached(tmp.path(), Variant::Cpu).is_some());
    }

    #[test]
    fn wrong_stamp_content_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = cache_dir(tmp.path(), Variant::Cpu);
        fake_libtorch(&dir.join("torch"));
        std::fs::write(dir.join(STAMP_FILE), "torch 2.10.0 cpu\n").unwrap();
        assert!(cached(tmp.path(), Variant::Cpu).is_none());
    }

    #[test]
    fn cuda_is_installed_with_dependencies_and_serves_cpu_too() {
        let tmp = tempfile::tempdir().unwrap();
        let mut inp = inputs(tmp.path());
        inp.want_cuda = true;
        let host = FakeHost::new(PythonProbe::NoTorch);
        let got = resolve(&inp, &host, &mut vec![]).unwrap();
        assert_eq!(got.source, Source::Installed(Variant::Cuda));
        assert!(!host.pip_calls.borrow()[0].contains(&"--no-deps".to_string()));
        // without --cuda the existing CUDA install is reused
        let again = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap();
        assert_eq!(again.source, Source::Cache(Variant::Cuda));
        assert_eq!(host.pip_calls.borrow().len(), 1);
    }

    #[test]
    fn nvidia_driver_makes_cuda_the_default() {
        let inp = Inputs {
            nvidia_driver: true,
            ..Default::default()
        };
        assert_eq!(inp.wanted_variant(), Variant::Cuda);
        assert_eq!(Inputs::default().wanted_variant(), Variant::Cpu);
    }

    #[test]
    fn install_failures_name_cause_and_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let no_py = resolve(
            &inputs(tmp.path()),
            &FakeHost::new(PythonProbe::NotFound),
            &mut vec![],
        )
        .unwrap_err();
        assert!(matches!(no_py, SetupError::NoPythonForInstall { .. }));
        assert!(no_py.to_string().contains("IPT_PYTHON"));

        let mut host = FakeHost::new(PythonProbe::NoTorch);
        host.pip = false;
        let no_pip = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap_err();
        assert!(no_pip.to_string().contains("ensurepip"), "{no_pip}");

        let mut host = FakeHost::new(PythonProbe::NoTorch);
        host.pip_result = Err(
            "WARNING: Retrying ... NewConnectionError\nERROR: Could not find a version \
                               that satisfies the requirement torch==2.11.0"
                .to_string(),
        );
        let net = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap_err();
        assert!(matches!(net, SetupError::PipFailed { network: true, .. }));
        assert!(net.to_string().contains("network access to PyPI"), "{net}");
        assert!(
            cached(tmp.path(), Variant::Cpu).is_none(),
            "a failed install must not be stamped"
        );

        let mut host = FakeHost::new(PythonProbe::NoTorch);
        host.create_lib = false;
        let incomplete = resolve(&inputs(tmp.path()), &host, &mut vec![]).unwrap_err();
        assert!(matches!(incomplete, SetupError::InstallIncomplete { .. }));
    }

    #[test]
    fn cpu_only_install_never_claims_cuda() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("torch");
        fake_libtorch(&dir);
        std::fs::write(dir.join("lib").join("libtorch_cuda.so"), b"").unwrap();
        let mut lt = Libtorch {
            dir,
            version: None,
            source: Source::Cache(Variant::Cpu),
        };
        assert!(!lt.has_cuda_backend());
        lt.source = Source::Cache(Variant::Cuda);
        assert!(lt.has_cuda_backend());
    }

    #[test]
    fn version_matching() {
        assert!(version_matches("2.11.0"));
        assert!(version_matches("2.11.0+cu130\n"));
        assert!(!version_matches("2.11.1"));
        assert!(!version_matches("2.1.0"));
    }
}
