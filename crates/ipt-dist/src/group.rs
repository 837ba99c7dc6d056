//! A process group: the safe face of the shim's TCPStore rendezvous and Gloo/NCCL backend.

use crate::bucket::{plan_buckets, Slot};
use crate::env::DistEnv;
use crate::error::{classify, peer_addr, DistError, Failure, Peer};
use crate::ffi::{self, CxxError, RawPg};
use std::ffi::{c_int, c_void, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs, UdpSocket};
use std::ptr::NonNull;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// Which c10d backend carries the collectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Gloo, for CPU tensors (TCP).
    Gloo,
    /// NCCL, for CUDA tensors; one rank per GPU, the GPU being `cuda:LOCAL_RANK`.
    Nccl,
}

impl Backend {
    /// The backend for tensors on `device`: NCCL for CUDA, Gloo otherwise.
    pub fn for_device(device: Device) -> Backend {
        match device {
            Device::Cuda(_) => Backend::Nccl,
            _ => Backend::Gloo,
        }
    }

    /// Whether this build can use the backend (NCCL needs the CUDA libtorch at build time).
    pub fn is_available(self) -> bool {
        match self {
            Backend::Gloo => true,
            // SAFETY: a constant query without arguments.
            Backend::Nccl => unsafe { ffi::ipt_dist_has_nccl() != 0 },
        }
    }
}

/// A reduction for [`ProcessGroup::all_reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise mean over the ranks (sum, then division by the world size; floating-point tensors only).
    Avg,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
}

impl ReduceOp {
    fn code(self) -> c_int {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Avg => 1,
            ReduceOp::Max => 2,
            ReduceOp::Min => 3,
        }
    }
}

/// Default bucket size of [`ProcessGroup::all_reduce_coalesced_avg`], as PyTorch DDP's `bucket_cap_mb`.
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// Membership of a c10d process group. Rank 0 hosts the rendezvous store, so it should be the last to leave;
/// dropping the group closes the connections.
///
/// Every collective must be called by all ranks in the same order with tensors of the same shapes. A collective
/// that cannot complete (a peer died, stopped or hangs) returns an error within the group's timeout; the group is
/// unusable afterwards.
pub struct ProcessGroup {
    raw: NonNull<RawPg>,
    rank: usize,
    world: usize,
    backend: Backend,
    device: Device,
    timeout: Duration,
    /// Each rank's address, as this group's peers see it (gathered once at connect).
    hosts: Vec<Option<IpAddr>>,
}

// SAFETY: the c10d objects behind `raw` are not tied to the thread that made them, so the group may move to another
// thread. It is deliberately not `Sync`: collectives must be issued in the same order on every rank, which
// concurrent calls from several threads would not guarantee.
unsafe impl Send for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from the shim's constructor and is freed exactly once.
        unsafe { ffi::ipt_pg_free(self.raw.as_ptr()) }
    }
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("backend", &self.backend)
            .field("device", &self.device)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn cstring(what: &str, s: &str) -> Result<CString, DistError> {
    CString::new(s)
        .map_err(|_| DistError::InvalidArgument(format!("{what} contains a NUL byte: {s:?}")))
}

/// This machine's address as seen from `master`: the local end of a UDP socket "connected" to it (no packet is
/// sent). Loopback masters give the loopback address.
pub fn local_address_towards(master: &str, port: u16) -> Result<IpAddr, DistError> {
    let err = |reason: String| DistError::LocalAddress {
        master: master.to_string(),
        reason,
    };
    let target = (master, port)
        .to_socket_addrs()
        .map_err(|e| err(format!("cannot resolve it: {e}")))?
        .next()
        .ok_or_else(|| err("it resolves to no address".into()))?;
    if target.ip().is_loopback() {
        return Ok(target.ip());
    }
    let any: IpAddr = if target.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let sock = UdpSocket::bind((any, 0)).map_err(|e| err(e.to_string()))?;
    sock.connect(target).map_err(|e| err(e.to_string()))?;
    Ok(sock.local_addr().map_err(|e| err(e.to_string()))?.ip())
}

impl ProcessGroup {
    /// Join the group described by `env`: rendezvous through a TCPStore at `MASTER_ADDR:MASTER_PORT` (rank 0 hosts
    /// it), then connect the backend to every peer. Blocks until all `world_size` ranks have joined, or fails after
    /// `timeout`, which also bounds every later collective.
    ///
    /// Gloo binds to this machine's address towards `MASTER_ADDR`, or to the interface named by
    /// `GLOO_SOCKET_IFNAME` (PyTorch's variable). NCCL uses `cuda:LOCAL_RANK`.
    pub fn connect(
        env: &DistEnv,
        backend: Backend,
        timeout: Duration,
    ) -> Result<ProcessGroup, DistError> {
        let timeout_ms = i64::try_from(timeout.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| DistError::InvalidArgument(format!("timeout {timeout:?}")))?;
        let master = cstring("MASTER_ADDR", &env.master_addr)?;
        let rank = c_int::try_from(env.rank)
            .map_err(|_| DistError::InvalidArgument(format!("rank {}", env.rank)))?;
        let world = c_int::try_from(env.world_size)
            .map_err(|_| DistError::InvalidArgument(format!("world size {}", env.world_size)))?;
        let local_ip = local_address_towards(&env.master_addr, env.master_port)?;
        let mut raw: *mut RawPg = std::ptr::null_mut();
        let (result, device) = match backend {
            Backend::Gloo => {
                let iface_name = std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default();
                if local_ip.is_loopback()
                    && env.world_size > env.local_world_size
                    && iface_name.is_empty()
                {
                    // e.g. Debian's /etc/hosts maps the host name to 127.0.1.1: peers on other machines could
                    // not reach a Gloo bound there.
                    return Err(DistError::LocalAddress {
                        master: env.master_addr.clone(),
                        reason: format!(
                            "it resolves to the loopback address {local_ip} here, but the job spans machines \
                             ({} ranks, {} on this one); use its network address",
                            env.world_size, env.local_world_size
                        ),
                    });
                }
                let host = cstring("address", &local_ip.to_string())?;
                let iface = cstring("GLOO_SOCKET_IFNAME", &iface_name)?;
                let r = ffi::call(|err| unsafe {
                    // SAFETY: valid NUL-terminated strings and out-pointers for the duration of the call.
                    ffi::ipt_pg_new_gloo(
                        master.as_ptr(),
                        env.master_port,
                        rank,
                        world,
                        timeout_ms,
                        host.as_ptr(),
                        iface.as_ptr(),
                        &mut raw,
                        err,
                    )
                });
                (r, Device::Cpu)
            }
            Backend::Nccl => {
                if !Backend::Nccl.is_available() {
                    return Err(DistError::NoNccl);
                }
                let dev = c_int::try_from(env.local_rank).map_err(|_| {
                    DistError::InvalidArgument(format!("local rank {}", env.local_rank))
                })?;
                let r = ffi::call(|err| unsafe {
                    // SAFETY: as above.
                    ffi::ipt_pg_new_nccl(
                        master.as_ptr(),
                        env.master_port,
                        rank,
                        world,
                        timeout_ms,
                        dev,
                        &mut raw,
                        err,
                    )
                });
                (r, Device::Cuda(env.local_rank))
            }
        };
        let master_desc = format!("{}:{}", env.master_addr, env.master_port);
        result.map_err(|e| DistError::Connect {
            rank: env.rank,
            world: env.world_size,
            master: master_desc,
            failure: classify(&e),
            message: e.message,
        })?;
        let raw = NonNull::new(raw).ok_or_else(|| {
            DistError::InvalidArgument("the shim returned no process group".into())
        })?;
        let mut pg = ProcessGroup {
            raw,
            rank: env.rank,
            world: env.world_size,
            backend,
            device,
            timeout,
            hosts: Vec::new(),
        };
        pg.hosts = pg.gather_hosts(local_ip)?;
        Ok(pg)
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The device collectives run on: CPU for Gloo, `cuda:LOCAL_RANK` for NCCL.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The timeout of every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Each rank's address as its peers reach it (`None` where it could not be read).
    pub fn hosts(&self) -> &[Option<IpAddr>] {
        &self.hosts
    }

    /// Turn a shim failure into a [`DistError::Collective`] naming the peer where that can be told.
    fn collective_error(&self, op: &'static str, e: CxxError) -> DistError {
        let failure = classify(&e);
        let addr = peer_addr(&e.message);
        let lost = matches!(failure, Failure::PeerLost | Failure::Timeout);
        let ranks: Vec<usize> = if lost && self.world == 2 {
            vec![1 - self.rank]
        } else if let Some((host, _)) = &addr {
            (0..self.world)
                .filter(|&r| r != self.rank && self.hosts.get(r).copied().flatten() == Some(*host))
                .collect()
        } else {
            Vec::new()
        };
        let addr = addr.map(|(_, text)| text);
        let peer = (addr.is_some() || !ranks.is_empty()).then_some(Peer { addr, ranks });
        DistError::Collective {
            op,
            rank: self.rank,
            world: self.world,
            failure,
            peer,
            message: e.message,
        }
    }

    /// Every rank's address: one all-reduce (sum) of a `[world, 17]` byte table in which each rank fills its row
    /// (a version byte, then 16 address bytes).
    fn gather_hosts(&self, mine: IpAddr) -> Result<Vec<Option<IpAddr>>, DistError> {
        let mut table = vec![0u8; self.world * 17];
        let row = &mut table[self.rank * 17..(self.rank + 1) * 17];
        match mine {
            IpAddr::V4(a) => {
                row[0] = 4;
                row[1..5].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                row[0] = 6;
                row[1..17].copy_from_slice(&a.octets());
            }
        }
        let t = Tensor::from_slice(&table)
            .to_kind(Kind::Int)
            .to_device(self.device);
        self.all_reduce(std::slice::from_ref(&t), ReduceOp::Sum)?;
        let sums: Vec<i32> = Vec::<i32>::try_from(t.to_device(Device::Cpu).reshape([-1]))?;
        Ok(sums
            .chunks(17)
            .map(|r| {
                let b: Vec<u8> = r.iter().map(|&v| v as u8).collect();
                match b[0] {
                    4 => Some(IpAddr::from([b[1], b[2], b[3], b[4]])),
                    6 => <[u8; 16]>::try_from(&b[1..17]).ok().map(IpAddr::from),
                    _ => None,
                }
            })
            .collect())
    }

    fn handles(tensors: &[Tensor]) -> Result<Vec<*mut c_void>, DistError> {
        tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.defined() {
                    // The shim writes the tensor's storage, never the `torch::Tensor` object itself.
                    Ok(t.as_ptr() as *mut c_void)
                } else {
                    Err(DistError::InvalidArgument(format!(
                        "tensor {i} is undefined"
                    )))
                }
            })
            .collect()
    }

    /// All-reduce each tensor in place (one collective per tensor, all in flight at once). The tensors' storage
    /// is written through their handles, as tch's in-place operations do. Gloo needs CPU tensors, NCCL CUDA ones.
    pub fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<(), DistError> {
        let mut h = Self::handles(tensors)?;
        ffi::call(|err| unsafe {
            // SAFETY: `h` holds live `torch::Tensor*` handles borrowed from `tensors` for the whole call.
            ffi::ipt_pg_all_reduce(self.raw.as_ptr(), h.as_mut_ptr(), h.len(), op.code(), err)
        })
        .map_err(|e| self.collective_error("all_reduce", e))
    }

    /// Overwrite each tensor, in place, with rank `root`'s.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<(), DistError> {
        let root_c = c_int::try_from(root)
            .ok()
            .filter(|_| root < self.world)
            .ok_or_else(|| {
                DistError::InvalidArgument(format!("root rank {root} of {}", self.world))
            })?;
        let mut h = Self::handles(tensors)?;
        ffi::call(|err| unsafe {
            // SAFETY: as in `all_reduce`.
            ffi::ipt_pg_broadcast(self.raw.as_ptr(), h.as_mut_ptr(), h.len(), root_c, err)
        })
        .map_err(|e| self.collective_error("broadcast", e))
    }

    /// Wait until every rank has called `barrier`.
    pub fn barrier(&self) -> Result<(), DistError> {
        ffi::call(|err| unsafe {
            // SAFETY: the group is live.
            ffi::ipt_pg_barrier(self.raw.as_ptr(), err)
        })
        .map_err(|e| self.collective_error("barrier", e))
    }

    /// Reduce one `u64` over the ranks (e.g. `ReduceOp::Max` of each rank's stop step after Ctrl-C, so that all
    /// stop at the same step). `Avg` is refused; values above `i64::MAX` too.
    pub fn agree_u64(&self, value: u64, op: ReduceOp) -> Result<u64, DistError> {
        if op == ReduceOp::Avg {
            return Err(DistError::InvalidArgument(
                "agree_u64 cannot average".into(),
            ));
        }
        let v = i64::try_from(value)
            .map_err(|_| DistError::InvalidArgument(format!("{value} does not fit an i64")))?;
        let t = Tensor::from_slice(&[v]).to_device(self.device);
        self.all_reduce(std::slice::from_ref(&t), op)?;
        let out = t.to_device(Device::Cpu).int64_value(&[0]);
        u64::try_from(out).map_err(|_| DistError::InvalidArgument(format!("reduced value {out}")))
    }

    /// Average gradients over the ranks in size-bounded buckets: the defined tensors are flattened, in order, into
    /// buckets of at most `bucket_bytes` bytes of one element type (a larger tensor is a bucket of its own), each
    /// bucket is all-reduced with one collective (all buckets in flight together), and the averages are copied
    /// back. Undefined tensors (parameters the loss did not reach) are skipped; every rank must pass the same
    /// layout (the same tensors defined, of the same sizes), which is checked first with one small all-reduce,
    /// so that a mismatch is an error rather than a hang. Returns the number of buckets.
    pub fn all_reduce_coalesced_avg(
        &self,
        tensors: &mut [Tensor],
        bucket_bytes: usize,
    ) -> Result<usize, DistError> {
        let slots: Vec<Option<Slot>> = tensors
            .iter()
            .map(|t| {
                t.defined().then(|| Slot {
                    kind: t.kind(),
                    device: t.device(),
                    numel: t.numel(),
                })
            })
            .collect();
        self.check_layout(&slots)?;
        if self.world == 1 {
            return Ok(0);
        }
        let buckets = plan_buckets(&slots, bucket_bytes);
        let flats: Vec<Tensor> = tch::no_grad(|| {
            buckets
                .iter()
                .map(|b| match b.as_slice() {
                    [i] => tensors[*i].shallow_clone(),
                    _ => Tensor::cat(
                        &b.iter()
                            .map(|&i| tensors[i].reshape([-1]))
                            .collect::<Vec<_>>(),
                        0,
                    ),
                })
                .collect()
        });
        self.all_reduce(&flats, ReduceOp::Avg)?;
        tch::no_grad(|| {
            for (b, flat) in buckets.iter().zip(&flats) {
                if b.len() == 1 {
                    continue;
                }
                let mut offset = 0i64;
                for &i in b {
                    let n = tensors[i].numel() as i64;
                    let src = flat.narrow(0, offset, n).view_as(&tensors[i]);
                    tensors[i].f_copy_(&src)?;
                    offset += n;
                }
            }
            Ok::<(), DistError>(())
        })?;
        Ok(buckets.len())
    }

    /// Check that every rank has the same tensors defined with the same sizes: one all-reduce (max) of
    /// `[code, -code]` per tensor, where `code` is `numel + 1` for a defined tensor and 0 otherwise.
    fn check_layout(&self, slots: &[Option<Slot>]) -> Result<(), DistError> {
        if self.world == 1 || slots.is_empty() {
            return Ok(());
        }
        let codes: Vec<i64> = slots
            .iter()
            .map(|s| s.map_or(0, |s| s.numel as i64 + 1))
            .collect();
        let both: Vec<i64> = codes
            .iter()
            .copied()
            .chain(codes.iter().map(|c| -c))
            .collect();
        let t = Tensor::from_slice(&both).to_device(self.device);
        self.all_reduce(std::slice::from_ref(&t), ReduceOp::Max)?;
        let r: Vec<i64> = Vec::<i64>::try_from(t.to_device(Device::Cpu))?;
        let n = codes.len();
        let indices: Vec<usize> = (0..n).filter(|&i| r[i] != -r[n + i]).take(8).collect();
        if indices.is_empty() {
            Ok(())
        } else {
            Err(DistError::LayoutMismatch { indices })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_script_and_the_shim_agree_on_nccl() {
        assert_eq!(Backend::Nccl.is_available(), cfg!(ipt_dist_nccl));
        assert!(Backend::Gloo.is_available());
        assert_eq!(Backend::for_device(Device::Cuda(3)), Backend::Nccl);
        assert_eq!(Backend::for_device(Device::Cpu), Backend::Gloo);
    }

    #[test]
    fn loopback_masters_give_loopback_addresses() {
        for master in ["127.0.0.1", "127.0.0.2", "::1"] {
            let ip = local_address_towards(master, 29500).unwrap();
            assert_eq!(ip, master.parse::<IpAddr>().unwrap());
        }
    }

    #[test]
    fn a_loopback_master_is_refused_for_a_job_spanning_machines() {
        let env = DistEnv {
            rank: 0,
            world_size: 4,
            local_rank: 0,
            local_world_size: 2,
            master_addr: "127.0.0.1".into(),
            master_port: 29500,
            launcher: crate::Launcher::Torchrun,
        };
        let err = ProcessGroup::connect(&env, Backend::Gloo, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, DistError::LocalAddress { .. }), "{err}");
        assert!(err.to_string().contains("spans machines"), "{err}");
    }
}
