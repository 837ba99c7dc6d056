//! Data parallelism: this process's place in a multi-process job and every collective the
//! training loop makes, through `ipt-dist` (libtorch's c10d: Gloo between CPUs, NCCL between
//! GPUs). A single process makes none, and trains exactly as before.
//!
//! Per step, a data-parallel job makes two collectives (PyTorch DDP makes the second):
//! 1. [`Replicas::agree`]: the mean loss terms of the ranks and whether any rank was asked to
//!    stop, in one small all-reduce before backward — so a NaN/Inf on any rank skips the step
//!    on every rank, and a Ctrl-C stops every rank after the same step;
//! 2. [`Replicas::average_gradients`]: the gradients averaged over the ranks in size-bounded
//!    buckets, before clipping and Adam.
//!
//! At start, rank 0 alone reads the run directory; [`Replicas::sync_from_main`] then gives every
//! rank its weights, optimizer state and step.

use std::time::Duration;

use ipt_dist::{Backend, DistEnv, DistError, ProcessGroup, ReduceOp, DEFAULT_BUCKET_BYTES};
use tch::{Device, Tensor};

/// This process's replica of the model in a data-parallel job (or the only one).
pub(crate) struct Replicas {
    group: Option<ProcessGroup>,
}

/// What the ranks agree on before backward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Agreement {
    /// Mean total loss over the ranks (NaN/Inf when any rank's is).
    pub total: f64,
    /// Mean L1 term.
    pub l1: f64,
    /// Mean contrastive term.
    pub contrastive: f64,
    /// Some rank was asked to stop.
    pub stop: bool,
}

impl Replicas {
    /// A single process: no collectives.
    pub(crate) fn single() -> Self {
        Replicas { group: None }
    }

    /// Join the job described by `env` on `device` (Gloo for the CPU, NCCL for CUDA), with
    /// `timeout` for every collective.
    pub(crate) fn join(
        env: &DistEnv,
        device: Device,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        let group = ProcessGroup::connect(env, Backend::for_device(device), timeout)?;
        Ok(Replicas { group: Some(group) })
    }

    /// This process's rank.
    pub(crate) fn rank(&self) -> usize {
        self.group.as_ref().map_or(0, ProcessGroup::rank)
    }

    /// Number of processes.
    pub(crate) fn world(&self) -> usize {
        self.group.as_ref().map_or(1, ProcessGroup::world_size)
    }

    /// Whether this process writes the run directory (rank 0).
    pub(crate) fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Overwrite `tensors`, in place, with rank 0's (same list, same shapes on every rank).
    pub(crate) fn sync_from_main(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        match &self.group {
            Some(g) => g.broadcast(tensors, 0),
            None => Ok(()),
        }
    }

    /// The mean loss terms over the ranks and whether any rank wants to stop.
    pub(crate) fn agree(&self, local: Agreement) -> Result<Agreement, DistError> {
        let Some(g) = &self.group else {
            return Ok(local);
        };
        let v = [
            local.total,
            local.l1,
            local.contrastive,
            f64::from(u8::from(local.stop)),
        ];
        let t = Tensor::from_slice(&v).to_device(g.device());
        g.all_reduce(std::slice::from_ref(&t), ReduceOp::Sum)?;
        let sum = Vec::<f64>::try_from(t.to_device(Device::Cpu))
            .map_err(|e| DistError::InvalidArgument(format!("reading the agreed loss: {e}")))?;
        let n = self.world() as f64;
        Ok(Agreement {
            total: sum[0] / n,
            l1: sum[1] / n,
            contrastive: sum[2] / n,
            stop: sum[3] > 0.0,
        })
    }

    /// Average `grads` over the ranks, in place (undefined entries are skipped; every rank
    /// must have the same ones defined).
    pub(crate) fn average_gradients(&self, grads: &mut [Tensor]) -> Result<(), DistError> {
        match &self.group {
            Some(g) => g
                .all_reduce_coalesced_avg(grads, DEFAULT_BUCKET_BYTES)
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Whether every rank holds bit-identical `tensors` (compared through a 63-bit digest of
    /// their bytes: two collectives of one number each).
    pub(crate) fn identical(&self, tensors: &[Tensor]) -> Result<bool, DistError> {
        let Some(g) = &self.group else {
            return Ok(true);
        };
        let d = digest(tensors);
        let max = g.agree_u64(d, ReduceOp::Max)?;
        let min = DIGEST_MASK - g.agree_u64(DIGEST_MASK - d, ReduceOp::Max)?;
        Ok(max == min)
    }
}

/// Digests are kept to 63 bits (the collectives reduce `i64`s).
const DIGEST_MASK: u64 = i64::MAX as u64;

/// FNV-1a over the bytes of `tensors` (copied to the host), in order, kept to 63 bits.
fn digest(tensors: &[Tensor]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut bytes = Vec::new();
    for t in tensors {
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        bytes.resize(numel * t.kind().elt_size_in_bytes(), 0);
        t.copy_data_u8(&mut bytes, numel);
        for &b in &bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h & DIGEST_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_process_agrees_with_itself() {
        let r = Replicas::single();
        assert_eq!((r.rank(), r.world(), r.is_main()), (0, 1, true));
        let a = Agreement {
            total: f64::NAN,
            l1: 1.0,
            contrastive: 2.0,
            stop: true,
        };
        let b = r.agree(a).unwrap();
        assert!(b.total.is_nan() && b.stop && b.l1 == 1.0);
        assert!(r.identical(&[Tensor::from(1.0f32)]).unwrap());
    }

    #[test]
    fn the_digest_sees_every_bit() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let b = Tensor::from_slice(&[1.0f32, 2.0, f32::from_bits(3.0f32.to_bits() ^ 1)]);
        assert_eq!(digest(&[a.shallow_clone()]), digest(&[a.copy()]));
        assert_ne!(digest(&[a]), digest(&[b]));
        assert!(digest(&[Tensor::from(7i64)]) <= DIGEST_MASK);
    }
}
