//! Build the c10d shim (`csrc/c10d_shim.cpp`) against the libtorch torch-sys uses.
//!
//! - libtorch: torch-sys (`links = "tch"`) exports its library folder to direct dependents as
//!   `DEP_TCH_LIBTORCH_LIB`; its headers are in the sibling `include/`.
//! - Gloo: `ProcessGroupGloo.hpp` includes Gloo's headers, which the torch wheel lacks. They come from
//!   `IPT_GLOO_INCLUDE`, else `/usr/include` or `/usr/local/include` (Debian's `libgloo-dev`; `cargo xtask setup`
//!   installs it, and xtask/src/system_package.rs (`GLOO`) searches the same folders).
//! - NCCL: compiled (cfg `ipt_dist_nccl`) only when libtorch has `libtorch_cuda.so` and the NCCL and CUDA headers
//!   are found, so the CPU build never needs CUDA headers. `IPT_DIST_NCCL=0` turns it off, `IPT_DIST_NCCL=1`
//!   makes a missing piece an error.
//!
//! Every binary and test of this crate gets an rpath to libtorch, as in ipt-model.

use std::path::{Path, PathBuf};

const SHIM: &str = "csrc/c10d_shim.cpp";
const GLOO_MARKER: &str = "gloo/config.h";
const GLOO_SEARCH: [&str; 2] = ["/usr/include", "/usr/local/include"];
/// Headers `ProcessGroupNCCL.hpp` pulls in (through NCCLUtils.hpp and ATen/cuda/CUDAContext.h).
const NCCL_HEADERS: [&str; 5] = [
    "nccl.h",
    "cuda_runtime_api.h",
    "cublas_v2.h",
    "cusparse.h",
    "cusolverDn.h",
];

fn main() {
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "DEP_TCH_LIBTORCH_LIB",
        "IPT_GLOO_INCLUDE",
        "IPT_DIST_NCCL",
        "CUDA_HOME",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(ipt_dist_nccl)");

    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        // torch-sys built with its doc-only feature: nothing to link against.
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let libtorch = lib.parent().unwrap_or(&lib).to_path_buf();
    let include = libtorch.join("include");

    let gloo = find_gloo().unwrap_or_else(|searched| {
        panic!(
            "ipt-dist: the Gloo headers ({GLOO_MARKER}) were not found (searched: {searched}).\n\
             libtorch's ProcessGroupGloo.hpp needs them and the torch wheel does not ship them.\n\
             Run `cargo xtask setup` (as root it installs Debian's libgloo-dev), or \
             `sudo apt-get install -y --no-install-recommends libgloo-dev`, or set IPT_GLOO_INCLUDE to the \
             folder holding gloo/."
        )
    });

    let nccl = nccl_includes(&libtorch, &lib);

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .file(SHIM);
    if let Some(dir) = &gloo {
        build.include(dir);
    }
    if let Some(dirs) = &nccl {
        build
            .define("USE_C10D_NCCL", None)
            .define("IPT_DIST_NCCL", None);
        build.includes(dirs);
        println!("cargo:rustc-cfg=ipt_dist_nccl");
    }
    build.compile("ipt_c10d_shim");

    println!("cargo:rustc-link-search=native={}", lib.display());
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The include folder holding `gloo/config.h` when it must be passed with `-I` (`IPT_GLOO_INCLUDE`), `Ok(None)`
/// when it is one of the compiler's default folders (passing `-I/usr/include` would break libstdc++'s
/// `#include_next`), `Err(searched)` when it is nowhere.
fn find_gloo() -> Result<Option<PathBuf>, String> {
    if let Some(dir) = std::env::var_os("IPT_GLOO_INCLUDE").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.join(GLOO_MARKER).exists() {
            Ok(Some(dir))
        } else {
            Err(format!("IPT_GLOO_INCLUDE={}", dir.display()))
        };
    }
    GLOO_SEARCH
        .iter()
        .map(Path::new)
        .find(|d| d.join(GLOO_MARKER).exists())
        .map(|_| None)
        .ok_or_else(|| GLOO_SEARCH.join(", "))
}

/// Include folders for the NCCL part, or `None` when it is not built (see the crate docs).
fn nccl_includes(libtorch: &Path, lib: &Path) -> Option<Vec<PathBuf>> {
    let setting = std::env::var("IPT_DIST_NCCL").ok();
    if setting.as_deref() == Some("0") {
        return None;
    }
    let required = setting.as_deref() == Some("1");
    let fail = |why: String| -> Option<Vec<PathBuf>> {
        if required {
            panic!("ipt-dist: IPT_DIST_NCCL=1, but {why}");
        }
        None
    };
    if !lib.join("libtorch_cuda.so").exists() {
        return fail(format!("{} has no libtorch_cuda.so", lib.display()));
    }
    let dirs = cuda_include_candidates(libtorch);
    let missing: Vec<&str> = NCCL_HEADERS
        .iter()
        .copied()
        .filter(|h| !dirs.iter().any(|d| d.join(h).exists()))
        .collect();
    if !missing.is_empty() {
        // The CPU-only libtorch lands here: it ships libtorch_cuda.so but not the CUDA libraries' headers.
        return fail(format!(
            "the headers {} were not found in {}",
            missing.join(", "),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Some(dirs)
}

/// Where CUDA and NCCL headers live: the `nvidia/*/include` folders of a pip install next to the `torch` folder,
/// `$CUDA_HOME/include` and `/usr/local/cuda/include`.
fn cuda_include_candidates(libtorch: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(site) = libtorch.parent() {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path().join("include"))
                .filter(|p| p.is_dir())
                .collect();
            found.sort();
            dirs.extend(found);
        }
    }
    if let Some(home) = std::env::var_os("CUDA_HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(home).join("include"));
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs.retain(|d| d.is_dir());
    dirs
}
