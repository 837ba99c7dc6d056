//! `ipt doctor`: what libtorch this binary runs on and which devices it sees.

/// Arguments of `ipt doctor` (none yet).
#[derive(clap::Args)]
pub struct Args {}

/// Print the libtorch location baked in at build time and the devices available.
pub fn run(_args: Args) -> anyhow::Result<()> {
    println!(
        "libtorch lib dir (build time): {}",
        option_env!("IPT_LIBTORCH_LIB").unwrap_or("<unknown>")
    );
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {}", tch::Cuda::device_count());
    println!("cpu threads: {}", tch::get_num_threads());
    Ok(())
}
