//! Give every binary and test of this crate an rpath to libtorch, so that nothing needs
//! `LD_LIBRARY_PATH` at run time. torch-sys (`links = "tch"`) exports its library folder to
//! direct dependents as `DEP_TCH_LIBTORCH_LIB`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=IPT_LIBTORCH_LIB={dir}");
    }
}
