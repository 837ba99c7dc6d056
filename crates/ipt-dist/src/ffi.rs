//! The raw interface of `csrc/c10d_shim.cpp`, and one helper that turns its (kind, message) results into
//! Rust values. Nothing here is public outside the crate.

use std::ffi::{c_char, c_int, c_void, CStr};

/// Opaque handle to the shim's process group (store + backend).
#[repr(C)]
pub(crate) struct RawPg {
    _private: [u8; 0],
}

extern "C" {
    pub(crate) fn ipt_dist_free_string(s: *mut c_char);
    pub(crate) fn ipt_dist_has_nccl() -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ipt_pg_new_gloo(
        master_addr: *const c_char,
        port: u16,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        gloo_host: *const c_char,
        gloo_iface: *const c_char,
        out: *mut *mut RawPg,
        err: *mut *mut c_char,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ipt_pg_new_nccl(
        master_addr: *const c_char,
        port: u16,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        device: c_int,
        out: *mut *mut RawPg,
        err: *mut *mut c_char,
    ) -> c_int;
    pub(crate) fn ipt_pg_free(pg: *mut RawPg);
    pub(crate) fn ipt_pg_all_reduce(
        pg: *mut RawPg,
        tensors: *mut *mut c_void,
        n: usize,
        op: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub(crate) fn ipt_pg_broadcast(
        pg: *mut RawPg,
        tensors: *mut *mut c_void,
        n: usize,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    pub(crate) fn ipt_pg_barrier(pg: *mut RawPg, err: *mut *mut c_char) -> c_int;
}

/// The class of the C++ exception the shim caught (the `k*` constants of the shim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CxxErrorKind {
    /// Any other exception (bad argument, CUDA error, ...).
    Other,
    /// `c10::DistNetworkError`: a connection failed or was closed.
    Network,
    /// `c10::DistStoreError`: the rendezvous store failed or timed out.
    Store,
    /// `c10::DistBackendError`: the collective backend failed.
    Backend,
    /// Another `c10::DistError`.
    Dist,
}

impl CxxErrorKind {
    fn from_code(code: c_int) -> CxxErrorKind {
        match code {
            2 => CxxErrorKind::Network,
            3 => CxxErrorKind::Store,
            4 => CxxErrorKind::Backend,
            5 => CxxErrorKind::Dist,
            _ => CxxErrorKind::Other,
        }
    }
}

/// A C++ exception caught by the shim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CxxError {
    pub(crate) kind: CxxErrorKind,
    pub(crate) message: String,
}

/// Call a shim function that reports failure as a non-zero code plus a malloc'ed message in `err`.
pub(crate) fn call(f: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<(), CxxError> {
    let mut err: *mut c_char = std::ptr::null_mut();
    let code = f(&mut err);
    if code == 0 {
        return Ok(());
    }
    let message = if err.is_null() {
        "(no message)".to_string()
    } else {
        // SAFETY: the shim hands over a NUL-terminated string from malloc, freed right after the copy.
        let s = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { ipt_dist_free_string(err) };
        s
    };
    Err(CxxError {
        kind: CxxErrorKind::from_code(code),
        message: message.trim().to_string(),
    })
}
