//! Making sure the Gloo headers are present, so that `ipt-dist`'s C++ shim compiles.
//!
//! libtorch's `ProcessGroupGloo.hpp` includes Gloo's own headers (`gloo/context.h`, ...), which the torch wheel does
//! not ship. Debian's and Ubuntu's `libgloo-dev` package provides headers that work with the Gloo compiled into
//! `libtorch_cpu.so` (only the headers are used; nothing links `libgloo`). The rule, decided by [`plan`]:
//!
//! - `IPT_GLOO_INCLUDE` set: it must hold `gloo/config.h`; it is used as is, nothing is installed.
//! - the headers are in a standard include folder ([`SEARCH_DIRS`]): nothing to do.
//! - otherwise, as root with `apt-get` available: `apt-get update`, then
//!   `apt-get install -y --no-install-recommends libgloo-dev` (non-interactive).
//! - otherwise: fail, printing the exact command to run.
//!
//! `crates/ipt-dist/build.rs` searches the same folders in the same order (keep the two lists in step).
//! The outside world goes through [`GlooHost`], so the decision logic is unit-tested without root or a network.

use std::fmt;
use std::path::{Path, PathBuf};

/// The Debian/Ubuntu package that ships Gloo's headers.
pub const PACKAGE: &str = "libgloo-dev";

/// A header every Gloo install has; its presence marks a usable include folder.
pub const MARKER: &str = "gloo/config.h";

/// Include folders searched when `IPT_GLOO_INCLUDE` is not set (the compiler's default search path on Debian).
pub const SEARCH_DIRS: [&str; 2] = ["/usr/include", "/usr/local/include"];

/// Environment variable naming a folder that holds `gloo/` (for installs outside the standard folders).
pub const ENV_OVERRIDE: &str = "IPT_GLOO_INCLUDE";

/// What setup sees of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlooInputs {
    /// `IPT_GLOO_INCLUDE`, when set and non-empty.
    pub override_dir: Option<PathBuf>,
    /// The first folder of the search list holding [`MARKER`], if any.
    pub found: Option<PathBuf>,
    /// Whether xtask runs as root (effective uid 0).
    pub is_root: bool,
    /// Whether `apt-get` can be run.
    pub has_apt: bool,
}

/// What to do about the Gloo headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlooPlan {
    /// Headers present in this include folder; nothing to do.
    Present(PathBuf),
    /// Run these commands (program and arguments, with `DEBIAN_FRONTEND=noninteractive`), then look again.
    Install(Vec<Vec<String>>),
    /// Cannot proceed; the error says what to do.
    Fail(GlooError),
}

/// Why the Gloo headers cannot be provided; each message names the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlooError {
    /// `IPT_GLOO_INCLUDE` points at a folder without `gloo/config.h`.
    BadOverride {
        /// The folder named by the variable.
        dir: PathBuf,
    },
    /// Headers missing, `apt-get` present, but not root.
    NotRoot,
    /// Headers missing and no `apt-get` on this machine.
    NoApt,
    /// `apt-get` failed.
    AptFailed {
        /// The command that failed, as typed in a shell.
        command: String,
        /// The last lines of its output.
        tail: String,
    },
    /// `apt-get` succeeded, but the headers are still not found.
    StillMissing,
}

/// The commands that install the package, as a person would type them (without `sudo`).
pub fn install_commands() -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        s(&["apt-get", "update"]),
        s(&[
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            PACKAGE,
        ]),
    ]
}

impl fmt::Display for GlooError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let searched = SEARCH_DIRS.join(", ");
        match self {
            GlooError::BadOverride { dir } => write!(
                f,
                "{ENV_OVERRIDE}={} is set, but {} does not exist there.\nPoint {ENV_OVERRIDE} at the folder \
                 that holds gloo/ (the Gloo headers), or unset it to use the system's ({searched}).",
                dir.display(),
                MARKER
            ),
            GlooError::NotRoot => write!(
                f,
                "the Gloo headers ({MARKER}) are missing: ipt-dist's C++ shim includes libtorch's \
                 ProcessGroupGloo.hpp, which needs them, and the torch wheel does not ship them.\n\
                 Install them (this needs root), then rerun:\n    \
                 sudo apt-get update && sudo apt-get install -y --no-install-recommends {PACKAGE}\n\
                 (searched: {searched}; headers elsewhere: set {ENV_OVERRIDE}=DIR)"
            ),
            GlooError::NoApt => write!(
                f,
                "the Gloo headers ({MARKER}) are missing and this machine has no apt-get.\n\
                 ipt-dist's C++ shim needs Gloo's headers (Debian/Ubuntu package {PACKAGE}; elsewhere the \
                 headers of https://github.com/facebookincubator/gloo with its generated gloo/config.h). \
                 Install them and set {ENV_OVERRIDE}=DIR to the folder holding gloo/ (searched: {searched})."
            ),
            GlooError::AptFailed { command, tail } => write!(
                f,
                "`{command}` failed while installing the Gloo headers ({PACKAGE}):\n{tail}"
            ),
            GlooError::StillMissing => write!(
                f,
                "{PACKAGE} was installed but {MARKER} is still not in {searched}; set {ENV_OVERRIDE}=DIR \
                 to the folder holding gloo/."
            ),
        }
    }
}

impl std::error::Error for GlooError {}

/// Decide what to do, from what the machine looks like.
pub fn plan(inputs: &GlooInputs) -> GlooPlan {
    if let Some(dir) = &inputs.override_dir {
        return match &inputs.found {
            Some(found) if found == dir => GlooPlan::Present(dir.clone()),
            _ => GlooPlan::Fail(GlooError::BadOverride { dir: dir.clone() }),
        };
    }
    match (&inputs.found, inputs.has_apt, inputs.is_root) {
        (Some(dir), _, _) => GlooPlan::Present(dir.clone()),
        (None, true, true) => GlooPlan::Install(install_commands()),
        (None, true, false) => GlooPlan::Fail(GlooError::NotRoot),
        (None, false, _) => GlooPlan::Fail(GlooError::NoApt),
    }
}

/// The outside world, as the Gloo step sees it.
pub trait GlooHost {
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> bool;
    /// Whether the process runs as root.
    fn is_root(&self) -> bool;
    /// Whether `apt-get` can be run.
    fn has_apt(&self) -> bool;
    /// Run a command non-interactively, its output shown to the user; on failure return its last lines.
    fn run(&self, command: &[String]) -> Result<(), String>;
}

/// The folder holding [`MARKER`]: the override alone when given, else the first of [`SEARCH_DIRS`].
pub fn find(host: &dyn GlooHost, override_dir: Option<&Path>) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match override_dir {
        Some(d) => vec![d.to_path_buf()],
        None => SEARCH_DIRS.iter().map(PathBuf::from).collect(),
    };
    candidates
        .into_iter()
        .find(|d| host.exists(&d.join(MARKER)))
}

/// Read the inputs of [`plan`] through `host`.
pub fn inputs(host: &dyn GlooHost, override_dir: Option<PathBuf>) -> GlooInputs {
    GlooInputs {
        found: find(host, override_dir.as_deref()),
        override_dir,
        is_root: host.is_root(),
        has_apt: host.has_apt(),
    }
}

/// Make sure the headers are there, installing them when [`plan`] says so. `note` is told what is about to be
/// done, before it is done, for the user.
pub fn ensure(
    host: &dyn GlooHost,
    override_dir: Option<PathBuf>,
    note: &mut dyn FnMut(String),
) -> Result<PathBuf, GlooError> {
    match plan(&inputs(host, override_dir)) {
        GlooPlan::Present(dir) => Ok(dir),
        GlooPlan::Fail(e) => Err(e),
        GlooPlan::Install(commands) => {
            note(format!(
                "the Gloo headers ({MARKER}) are missing; installing the Debian package {PACKAGE} \
                 (headers only are used, by ipt-dist's C++ shim) with: {}",
                commands
                    .iter()
                    .map(|c| c.join(" "))
                    .collect::<Vec<_>>()
                    .join(" && ")
            ));
            for c in &commands {
                host.run(c).map_err(|tail| GlooError::AptFailed {
                    command: c.join(" "),
                    tail,
                })?;
            }
            find(host, None).ok_or(GlooError::StillMissing)
        }
    }
}

/// The real machine.
pub struct SystemGlooHost;

impl GlooHost for SystemGlooHost {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_root(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn has_apt(&self) -> bool {
        std::process::Command::new("apt-get")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn run(&self, command: &[String]) -> Result<(), String> {
        eprintln!("xtask: running: {}", command.join(" "));
        let (program, args) = command.split_first().ok_or("empty command")?;
        // The output goes to stderr, so that `cargo xtask env`-style stdout stays clean.
        let out = std::process::Command::new(program)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("could not run {program}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(())
        } else {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            Err(lines[lines.len().saturating_sub(8)..].join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    /// A scripted machine: which files exist, root or not, apt or not; `run` records the commands and, when
    /// `installs` is set, makes the headers appear under /usr/include.
    struct FakeHost {
        files: RefCell<HashSet<PathBuf>>,
        root: bool,
        apt: bool,
        installs: bool,
        fail_on: Option<&'static str>,
        ran: RefCell<Vec<String>>,
    }

    impl FakeHost {
        fn new(root: bool, apt: bool) -> Self {
            FakeHost {
                files: RefCell::new(HashSet::new()),
                root,
                apt,
                installs: true,
                fail_on: None,
                ran: RefCell::new(Vec::new()),
            }
        }
        fn with_headers(self, dir: &str) -> Self {
            self.files.borrow_mut().insert(Path::new(dir).join(MARKER));
            self
        }
    }

    impl GlooHost for FakeHost {
        fn exists(&self, path: &Path) -> bool {
            self.files.borrow().contains(path)
        }
        fn is_root(&self) -> bool {
            self.root
        }
        fn has_apt(&self) -> bool {
            self.apt
        }
        fn run(&self, command: &[String]) -> Result<(), String> {
            let line = command.join(" ");
            self.ran.borrow_mut().push(line.clone());
            if self.fail_on.is_some_and(|f| line.contains(f)) {
                return Err("E: Unable to locate package libgloo-dev".to_string());
            }
            if self.installs && line.contains("install") {
                self.files
                    .borrow_mut()
                    .insert(Path::new("/usr/include").join(MARKER));
            }
            Ok(())
        }
    }

    #[test]
    fn present_headers_need_nothing_even_without_root() {
        let host = FakeHost::new(false, false).with_headers("/usr/local/include");
        let got = ensure(&host, None, &mut |_| {}).unwrap();
        assert_eq!(got, PathBuf::from("/usr/local/include"));
        assert!(host.ran.borrow().is_empty());
    }

    #[test]
    fn the_first_search_folder_wins() {
        let host = FakeHost::new(false, false)
            .with_headers("/usr/local/include")
            .with_headers("/usr/include");
        assert_eq!(find(&host, None), Some(PathBuf::from("/usr/include")));
    }

    #[test]
    fn root_with_apt_installs_update_then_package_noninteractively() {
        let host = FakeHost::new(true, true);
        let mut notes = vec![];
        let got = ensure(&host, None, &mut |n| notes.push(n)).unwrap();
        assert_eq!(got, PathBuf::from("/usr/include"));
        assert_eq!(
            *host.ran.borrow(),
            vec![
                "apt-get update".to_string(),
                "apt-get install -y --no-install-recommends libgloo-dev".to_string()
            ]
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("libgloo-dev"), "{}", notes[0]);
    }

    #[test]
    fn not_root_fails_with_the_exact_command() {
        let host = FakeHost::new(false, true);
        let err = ensure(&host, None, &mut |_| {}).unwrap_err();
        assert_eq!(err, GlooError::NotRoot);
        let msg = err.to_string();
        assert!(
            msg.contains("sudo apt-get install -y --no-install-recommends libgloo-dev"),
            "{msg}"
        );
        assert!(host.ran.borrow().is_empty());
    }

    #[test]
    fn no_apt_fails_naming_the_override_variable() {
        let err = ensure(&FakeHost::new(true, false), None, &mut |_| {}).unwrap_err();
        assert_eq!(err, GlooError::NoApt);
        assert!(err.to_string().contains(ENV_OVERRIDE));
    }

    #[test]
    fn planning_alone_runs_nothing() {
        let host = FakeHost::new(true, true);
        assert_eq!(
            plan(&inputs(&host, None)),
            GlooPlan::Install(install_commands())
        );
        assert!(host.ran.borrow().is_empty());
    }

    #[test]
    fn override_is_used_alone_and_never_installs() {
        let host = FakeHost::new(true, true)
            .with_headers("/opt/gloo/include")
            .with_headers("/usr/include");
        let got = ensure(&host, Some(PathBuf::from("/opt/gloo/include")), &mut |_| {}).unwrap();
        assert_eq!(got, PathBuf::from("/opt/gloo/include"));

        let bad = ensure(&host, Some(PathBuf::from("/nope")), &mut |_| {}).unwrap_err();
        assert_eq!(
            bad,
            GlooError::BadOverride {
                dir: PathBuf::from("/nope")
            }
        );
        assert!(bad.to_string().contains("/nope"));
        assert!(host.ran.borrow().is_empty());
    }

    #[test]
    fn apt_failure_names_the_command_and_keeps_its_output() {
        let mut host = FakeHost::new(true, true);
        host.fail_on = Some("install");
        let err = ensure(&host, None, &mut |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("apt-get install -y --no-install-recommends libgloo-dev"),
            "{msg}"
        );
        assert!(msg.contains("Unable to locate package"), "{msg}");
    }

    #[test]
    fn install_that_leaves_no_headers_is_reported() {
        let mut host = FakeHost::new(true, true);
        host.installs = false;
        let err = ensure(&host, None, &mut |_| {}).unwrap_err();
        assert_eq!(err, GlooError::StillMissing);
    }
}
