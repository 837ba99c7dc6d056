//! Device selection: making libtorch's CUDA backend available, parsing `--device`, and bf16
//! autocast on CUDA.
//!
//! A binary linked against libtorch does not see CUDA by itself: the linker drops
//! `libtorch_cuda.so` (nothing references it directly), and the CUDA backend only registers when
//! that library is loaded. [`init_cuda`] loads it at run time (first by bare name, through the
//! usual search path, then from the libtorch folder the build used) and keeps it loaded for the
//! life of the process. When it is absent, or its CUDA dependencies are missing, CUDA simply
//! stays unavailable.

use std::str::FromStr;
use std::sync::OnceLock;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
use tch::{Cuda, Device};

/// Errors of device selection.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device string is not `auto`, `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device {0:?}: expected auto, cpu, cuda or cuda:N")]
    Parse(String),
    /// CUDA was asked for but libtorch sees no CUDA device.
    #[error("device {requested} was requested but CUDA is not available (libtorch_cuda.so {loaded}; run `ipt doctor`)")]
    CudaUnavailable {
        /// The device that was asked for.
        requested: String,
        /// Whether `libtorch_cuda.so` could be loaded, in words.
        loaded: &'static str,
    },
    /// The CUDA ordinal is out of range.
    #[error("device cuda:{index} was requested but only {count} CUDA device(s) are visible")]
    CudaIndex {
        /// Requested ordinal.
        index: usize,
        /// Visible devices.
        count: usize,
    },
    /// bf16 autocast needs libtorch's autocast dtype switch, which was not found.
    #[error("bf16 autocast is unavailable: {0}")]
    Autocast(String),
}

static CUDA_LIBRARY: OnceLock<Option<Library>> = OnceLock::new();

/// Load `libtorch_cuda.so` (once per process) so that libtorch's CUDA backend registers, and
/// return whether CUDA is now available. Quietly `false` when the library or its dependencies
/// are missing or no GPU is present.
pub fn init_cuda() -> bool {
    cuda_library_loaded();
    Cuda::is_available()
}

/// Whether `libtorch_cuda.so` is loaded (trying once to load it).
fn cuda_library_loaded() -> bool {
    CUDA_LIBRARY.get_or_init(load_cuda_library).is_some()
}

/// Candidates for `libtorch_cuda.so`: the bare name (library search path, `LD_LIBRARY_PATH`,
/// rpath of the executable), then the libtorch folder of the build.
fn cuda_library_candidates() -> Vec<String> {
    let mut names = vec!["libtorch_cuda.so".to_string()];
    if let Some(dir) = option_env!("IPT_LIBTORCH_LIB") {
        names.push(format!("{dir}/libtorch_cuda.so"));
    }
    names
}

fn load_cuda_library() -> Option<Library> {
    cuda_library_candidates().into_iter().find_map(|name| {
        // SAFETY: loading libtorch's own CUDA backend runs its static initialisers, which
        // register the CUDA kernels with the already-loaded libtorch; it has no other effects.
        unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_GLOBAL) }.ok()
    })
}

/// The best device: the first CUDA device when available (after [`init_cuda`]), else the CPU.
pub fn auto_device() -> Device {
    if init_cuda() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}

/// A device as asked for on the command line: `auto`, `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA when available, else CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => t
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| DeviceError::Parse(s.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSpec {
    /// The concrete device, loading CUDA if needed; an error when CUDA is asked for but
    /// unavailable, or the ordinal is out of range.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            DeviceSpec::Auto => Ok(auto_device()),
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(index) => {
                if !init_cuda() {
                    return Err(DeviceError::CudaUnavailable {
                        requested: self.to_string(),
                        loaded: if cuda_library_loaded() {
                            "is loaded, but no CUDA device is visible"
                        } else {
                            "could not be loaded"
                        },
                    });
                }
                let count = Cuda::device_count().max(0) as usize;
                if index >= count {
                    return Err(DeviceError::CudaIndex { index, count });
                }
                Ok(Device::Cuda(index))
            }
        }
    }
}

/// `c10::DeviceType::CUDA`.
const DEVICE_TYPE_CUDA: i8 = 1;
/// `c10::ScalarType::BFloat16`.
pub(crate) const SCALAR_TYPE_BFLOAT16: i8 = 15;

type GetAutocastDtype = unsafe extern "C" fn(i8) -> i8;
type SetAutocastDtype = unsafe extern "C" fn(i8, i8);

/// `at::autocast::get_autocast_dtype(DeviceType)` and `set_autocast_dtype(DeviceType,
/// ScalarType)` from the loaded libtorch (tch exposes autocast but not its dtype, which defaults
/// to fp16 on CUDA).
fn autocast_dtype_fns() -> Result<(GetAutocastDtype, SetAutocastDtype), DeviceError> {
    static FNS: OnceLock<Result<(GetAutocastDtype, SetAutocastDtype), String>> = OnceLock::new();
    FNS.get_or_init(|| {
        let this = Library::this();
        // SAFETY: both symbols are exported C++ functions of libtorch_cpu (declared TORCH_API in
        // ATen/autocast_mode.h) taking/returning the int8-backed enums DeviceType and ScalarType,
        // which the x86-64/aarch64 C ABI passes exactly like i8.
        unsafe {
            let get = this
                .get::<GetAutocastDtype>(
                    b"_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE\0",
                )
                .map_err(|e| e.to_string())?;
            let set = this
                .get::<SetAutocastDtype>(
                    b"_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE\0",
                )
                .map_err(|e| e.to_string())?;
            Ok((*get, *set))
        }
    })
    .clone()
    .map_err(DeviceError::Autocast)
}

/// The current CUDA autocast dtype as a `c10::ScalarType` code (5 = fp16, 15 = bf16).
pub fn cuda_autocast_dtype_code() -> Result<i8, DeviceError> {
    let (get, _) = autocast_dtype_fns()?;
    // SAFETY: see `autocast_dtype_fns`; the function only reads a thread-local setting.
    Ok(unsafe { get(DEVICE_TYPE_CUDA) })
}

/// Set the CUDA autocast dtype (a `c10::ScalarType` code) and return the previous one.
fn set_cuda_autocast_dtype_code(code: i8) -> Result<i8, DeviceError> {
    let (get, set) = autocast_dtype_fns()?;
    // SAFETY: see `autocast_dtype_fns`; these only read/write a thread-local setting.
    unsafe {
        let prev = get(DEVICE_TYPE_CUDA);
        set(DEVICE_TYPE_CUDA, code);
        Ok(prev)
    }
}

/// Run `f` under CUDA autocast with bf16 (matmuls and convolutions in bf16, reductions such as
/// softmax and LayerNorm in f32), restoring the previous autocast settings afterwards. Without
/// CUDA this just runs `f` (libtorch has no CPU autocast through tch).
pub fn autocast_bf16<T>(f: impl FnOnce() -> T) -> Result<T, DeviceError> {
    if !Cuda::is_available() {
        return Ok(f());
    }
    let prev = set_cuda_autocast_dtype_code(SCALAR_TYPE_BFLOAT16)?;
    let out = tch::autocast(true, f);
    set_cuda_autocast_dtype_code(prev)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        for bad in ["cuda:", "cuda:x", "tpu", "cuda:-1"] {
            assert!(
                matches!(bad.parse::<DeviceSpec>(), Err(DeviceError::Parse(_))),
                "{bad}"
            );
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cuda_request_fails_clearly_without_cuda() {
        let available = init_cuda();
        assert_eq!(available, Cuda::is_available());
        if available {
            eprintln!("CUDA is available here: the no-CUDA error path is not exercised");
            assert_eq!(DeviceSpec::Cuda(0).resolve().unwrap(), Device::Cuda(0));
            return;
        }
        let err = DeviceSpec::Cuda(0).resolve().unwrap_err();
        assert!(matches!(err, DeviceError::CudaUnavailable { .. }));
        assert!(err.to_string().contains("cuda:0"), "{err}");
        assert_eq!(DeviceSpec::Auto.resolve().unwrap(), Device::Cpu);
        assert_eq!(auto_device(), Device::Cpu);
    }

    #[test]
    fn autocast_dtype_switch_round_trips() {
        let before = cuda_autocast_dtype_code().unwrap();
        assert_eq!(before, 5, "libtorch's default CUDA autocast dtype is fp16");
        let prev = set_cuda_autocast_dtype_code(SCALAR_TYPE_BFLOAT16).unwrap();
        assert_eq!(prev, 5);
        assert_eq!(cuda_autocast_dtype_code().unwrap(), SCALAR_TYPE_BFLOAT16);
        set_cuda_autocast_dtype_code(prev).unwrap();
        assert_eq!(cuda_autocast_dtype_code().unwrap(), 5);
        // without CUDA the closure simply runs
        assert_eq!(autocast_bf16(|| 7).unwrap(), 7);
    }
}
