//! Making sure a system package the build or the tests need is present, installing it from Debian's packages
//! when run as root: the Gloo headers ([`GLOO`]), CMake ([`CMAKE`]) and Chromium ([`CHROMIUM`]).
//!
//! - Gloo: libtorch's `ProcessGroupGloo.hpp` includes Gloo's own headers (`gloo/context.h`, ...), which the torch
//!   wheel does not ship. Debian's and Ubuntu's `libgloo-dev` package provides headers that work with the Gloo
//!   compiled into `libtorch_cpu.so` (only the headers are used; nothing links `libgloo`).
//!   `crates/ipt-dist/build.rs` searches the same folders in the same order (keep the two lists in step).
//! - CMake: ipt-degrade's `jpeg` feature (on by default) builds libjpeg-turbo from the source turbojpeg-sys
//!   vendors, with CMake.
//! - Chromium: the browser test of `ipt serve` (`crates/ipt-cli/tests/serve_browser.rs`) drives the page in a
//!   headless Chromium; it looks for the browser in the same folders.
//!
//! The rule for each, decided by [`plan`]:
//!
//! - its override variable set: the folder it names must hold the marker file; it is used as is, nothing is
//!   installed.
//! - the marker is in one of the standard folders: nothing to do.
//! - otherwise, as root with `apt-get` available: `apt-get update`, then
//!   `apt-get install -y --no-install-recommends PACKAGE` (non-interactive).
//! - otherwise: fail, printing the exact command to run.
//!
//! The outside world goes through [`Host`], so the decision logic is unit-tested without root or a network.

use std::fmt;
use std::path::{Path, PathBuf};

/// Something the project needs from the system, and how to get it.
#[derive(Debug, PartialEq, Eq)]
pub struct Requirement {
    /// What it is, in words (`the Gloo headers`).
    pub what: &'static str,
    /// The Debian/Ubuntu package that ships it.
    pub package: &'static str,
    /// A file every install has, relative to a search folder; its presence marks a usable folder.
    pub marker: &'static str,
    /// Folders searched when the override variable is not set.
    pub search_dirs: &'static [&'static str],
    /// Environment variable naming a folder that holds the marker (for installs elsewhere).
    pub env_override: &'static str,
    /// Why the project needs it.
    pub why: &'static str,
}

/// Gloo's headers, for ipt-dist's C++ shim.
pub const GLOO: Requirement = Requirement {
    what: "the Gloo headers",
    package: "libgloo-dev",
    marker: "gloo/config.h",
    search_dirs: &["/usr/include", "/usr/local/include"],
    env_override: "IPT_GLOO_INCLUDE",
    why: "ipt-dist's C++ shim includes libtorch's ProcessGroupGloo.hpp, which needs them, and the torch \
          wheel does not ship them",
};

/// Chromium, for the browser test of `ipt serve`.
pub const CHROMIUM: Requirement = Requirement {
    what: "Chromium",
    package: "chromium",
    marker: "chromium",
    search_dirs: &["/usr/bin", "/usr/local/bin"],
    env_override: "IPT_CHROMIUM_DIR",
    why: "the browser test of `ipt serve` drives its page in a headless Chromium",
};

/// CMake, for building the libjpeg-turbo that ipt-degrade's `jpeg` feature binds.
pub const CMAKE: Requirement = Requirement {
    what: "CMake",
    package: "cmake",
    marker: "cmake",
    search_dirs: &["/usr/bin", "/usr/local/bin"],
    env_override: "IPT_CMAKE_DIR",
    why: "ipt-degrade's JPEG degradation builds libjpeg-turbo from source (turbojpeg-sys) with it",
};

impl Requirement {
    /// The search folders as one line.
    fn searched(&self) -> String {
        self.search_dirs.join(", ")
    }
}

/// What setup sees of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// The override variable, when set and non-empty.
    pub override_dir: Option<PathBuf>,
    /// The first folder of the search list holding the marker, if any.
    pub found: Option<PathBuf>,
    /// Whether xtask runs as root (effective uid 0).
    pub is_root: bool,
    /// Whether `apt-get` can be run.
    pub has_apt: bool,
}

/// What to do about a requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Present in this folder; nothing to do.
    Present(PathBuf),
    /// Run these commands (program and arguments, with `DEBIAN_FRONTEND=noninteractive`), then look again.
    Install(Vec<Vec<String>>),
    /// Cannot proceed; the error says what to do.
    Fail(Error),
}

/// Why a requirement cannot be provided; each message names the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The requirement.
    pub req: &'static Requirement,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// The ways providing a requirement fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The override variable points at a folder without the marker.
    BadOverride {
        /// The folder named by the variable.
        dir: PathBuf,
    },
    /// Missing, `apt-get` present, but not root.
    NotRoot,
    /// Missing and no `apt-get` on this machine.
    NoApt,
    /// `apt-get` failed.
    AptFailed {
        /// The command that failed, as typed in a shell.
        command: String,
        /// The last lines of its output.
        tail: String,
    },
    /// `apt-get` succeeded, but the marker is still not found.
    StillMissing,
}

/// The commands that install `req`'s package, as a person would type them (without `sudo`).
pub fn install_commands(req: &Requirement) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        s(&["apt-get", "update"]),
        s(&[
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            req.package,
        ]),
    ]
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Requirement {
            what,
            package,
            marker,
            env_override,
            why,
            ..
        } = self.req;
        let searched = self.req.searched();
        match &self.kind {
            ErrorKind::BadOverride { dir } => write!(
                f,
                "{env_override}={} is set, but {marker} does not exist there.\nPoint {env_override} at the \
                 folder that holds {marker} ({what}), or unset it to use the system's ({searched}).",
                dir.display(),
            ),
            ErrorKind::NotRoot => write!(
                f,
                "{what} ({marker}) not found: {why}.\n\
                 Install it (this needs root), then rerun:\n    \
                 sudo apt-get update && sudo apt-get install -y --no-install-recommends {package}\n\
                 (searched: {searched}; installed elsewhere: set {env_override}=DIR)"
            ),
            ErrorKind::NoApt => write!(
                f,
                "{what} ({marker}) not found and this machine has no apt-get: {why}.\n\
                 Install it (Debian/Ubuntu package {package}) and set {env_override}=DIR to the folder \
                 holding {marker} (searched: {searched})."
            ),
            ErrorKind::AptFailed { command, tail } => write!(
                f,
                "`{command}` failed while installing {what} ({package}):\n{tail}"
            ),
            ErrorKind::StillMissing => write!(
                f,
                "{package} was installed but {marker} is still not in {searched}; set {env_override}=DIR \
                 to the folder holding it."
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Decide what to do about `req`, from what the machine looks like.
pub fn plan(req: &'static Requirement, inputs: &Inputs) -> Plan {
    let fail = |kind| Plan::Fail(Error { req, kind });
    if let Some(dir) = &inputs.override_dir {
        return match &inputs.found {
            Some(found) if found == dir => Plan::Present(dir.clone()),
            _ => fail(ErrorKind::BadOverride { dir: dir.clone() }),
        };
    }
    match (&inputs.found, inputs.has_apt, inputs.is_root) {
        (Some(dir), _, _) => Plan::Present(dir.clone()),
        (None, true, true) => Plan::Install(install_commands(req)),
        (None, true, false) => fail(ErrorKind::NotRoot),
        (None, false, _) => fail(ErrorKind::NoApt),
    }
}

/// The outside world, as these checks see it.
pub trait Host {
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> bool;
    /// Whether the process runs as root.
    fn is_root(&self) -> bool;
    /// Whether `apt-get` can be run.
    fn has_apt(&self) -> bool;
    /// Run a command non-interactively, its output shown to the user; on failure return its last lines.
    fn run(&self, command: &[String]) -> Result<(), String>;
}

/// The folder holding `req`'s marker: the override alone when given, else the first of its search folders.
pub fn find(req: &Requirement, host: &dyn Host, override_dir: Option<&Path>) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match override_dir {
        Some(d) => vec![d.to_path_buf()],
        None => req.search_dirs.iter().map(PathBuf::from).collect(),
    };
    candidates
        .into_iter()
        .find(|d| host.exists(&d.join(req.marker)))
}

/// `req`'s override variable, when set and non-empty.
pub fn override_dir(req: &Requirement) -> Option<PathBuf> {
    std::env::var_os(req.env_override)
        .filter(|v| !v.is_empty())
        .map(Into::into)
}

/// Read the inputs of [`plan`] through `host`.
pub fn inputs(req: &Requirement, host: &dyn Host, override_dir: Option<PathBuf>) -> Inputs {
    Inputs {
        found: find(req, host, override_dir.as_deref()),
        override_dir,
        is_root: host.is_root(),
        has_apt: host.has_apt(),
    }
}

/// Make sure `req` is there, installing it when [`plan`] says so. `note` is told what is about to be done, before
/// it is done, for the user.
pub fn ensure(
    req: &'static Requirement,
    host: &dyn Host,
    override_dir: Option<PathBuf>,
    note: &mut dyn FnMut(String),
) -> Result<PathBuf, Error> {
    match plan(req, &inputs(req, host, override_dir)) {
        Plan::Present(dir) => Ok(dir),
        Plan::Fail(e) => Err(e),
        Plan::Install(commands) => {
            note(format!(
                "{} ({}) missing; installing the Debian package {} ({}) with: {}",
                req.what,
                req.marker,
                req.package,
                req.why,
                commands
                    .iter()
                    .map(|c| c.join(" "))
                    .collect::<Vec<_>>()
                    .join(" && ")
            ));
            for c in &commands {
                host.run(c).map_err(|tail| Error {
                    req,
                    kind: ErrorKind::AptFailed {
                        command: c.join(" "),
                        tail,
                    },
                })?;
            }
            find(req, host, None).ok_or(Error {
                req,
                kind: ErrorKind::StillMissing,
            })
        }
    }
}

/// The real machine.
pub struct SystemHost;

impl Host for SystemHost {
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
            self.files
                .borrow_mut()
                .insert(Path::new(dir).join(GLOO.marker));
            self
        }
    }

    impl Host for FakeHost {
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
                    .insert(Path::new("/usr/include").join(GLOO.marker));
            }
            Ok(())
        }
    }

    #[test]
    fn present_headers_need_nothing_even_without_root() {
        let host = FakeHost::new(false, false).with_headers("/usr/local/include");
        let got = ensure(&GLOO, &host, None, &mut |_| {}).unwrap();
        assert_eq!(got, PathBuf::from("/usr/local/include"));
        assert!(host.ran.borrow().is_empty());
    }

    #[test]
    fn the_first_search_folder_wins() {
        let host = FakeHost::new(false, false)
            .with_headers("/usr/local/include")
            .with_headers("/usr/include");
        assert_eq!(
            find(&GLOO, &host, None),
            Some(PathBuf::from("/usr/include"))
        );
    }

    #[test]
    fn root_with_apt_installs_update_then_package_noninteractively() {
        let host = FakeHost::new(true, true);
        let mut notes = vec![];
        let got = ensure(&GLOO, &host, None, &mut |n| notes.push(n)).unwrap();
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
        let err = ensure(&GLOO, &host, None, &mut |_| {}).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotRoot);
        let msg = err.to_string();
        assert!(
            msg.contains("sudo apt-get install -y --no-install-recommends libgloo-dev"),
            "{msg}"
        );
        assert!(host.ran.borrow().is_empty());
    }

    #[test]
    fn no_apt_fails_naming_the_override_variable() {
        let err = ensure(&GLOO, &FakeHost::new(true, false), None, &mut |_| {}).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoApt);
        assert!(err.to_string().contains(GLOO.env_override));
    }

    #[test]
    fn planning_alone_runs_nothing() {
        let host = FakeHost::new(true, true);
        assert_eq!(
            plan(&GLOO, &inputs(&GLOO, &host, None)),
            Plan::Install(install_commands(&GLOO))
        );
        assert!(host.ran.borrow().is_empty());
    }

    #[test]
    fn override_is_used_alone_and_never_installs() {
        let host = FakeHost::new(true, true)
            .with_headers("/opt/gloo/include")
            .with_headers("/usr/include");
        let got = ensure(
            &GLOO,
            &host,
            Some(PathBuf::from("/opt/gloo/include")),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(got, PathBuf::from("/opt/gloo/include"));

        let bad = ensure(&GLOO, &host, Some(PathBuf::from("/nope")), &mut |_| {}).unwrap_err();
        assert_eq!(
            bad.kind,
            ErrorKind::BadOverride {
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
        let err = ensure(&GLOO, &host, None, &mut |_| {}).unwrap_err();
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
        let err = ensure(&GLOO, &host, None, &mut |_| {}).unwrap_err();
        assert_eq!(err.kind, ErrorKind::StillMissing);
    }

    #[test]
    fn chromium_is_found_and_installed_by_the_same_rule() {
        let host = FakeHost::new(false, false);
        host.files
            .borrow_mut()
            .insert(PathBuf::from("/usr/local/bin/chromium"));
        let got = ensure(&CHROMIUM, &host, None, &mut |_| {}).unwrap();
        assert_eq!(got, PathBuf::from("/usr/local/bin"));
        let err = ensure(&CHROMIUM, &FakeHost::new(false, true), None, &mut |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("apt-get install -y --no-install-recommends chromium"),
            "{msg}"
        );
        assert!(msg.contains("browser test"), "{msg}");
        assert_eq!(install_commands(&CHROMIUM)[1].last().unwrap(), "chromium");
    }
}
